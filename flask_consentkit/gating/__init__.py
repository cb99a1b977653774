"""Server-side enforcement: gated scripts and embeds, known trackers, cookies, Consent Mode.

:func:`install` is called by :meth:`ConsentKit.init_app`. It registers two
response processors, in this order — the cookie filter (:mod:`.cookies`), then
the HTML rewrite (:mod:`.html`) — and the Jinja globals ``consent_script``,
``consent_iframe``, ``vendor_consent_defaults`` and ``consent_mode_defaults`` (the
same script under its earlier name).

The HTML rewrite runs on every ``text/html`` response whose body is in
memory. It decides every element that fetches from a third party by the app's
vendor registry (``ext.vendors``, see :class:`~.html.HostRules`),
and known trackers (:mod:`.trackers`) by their patterns; each third-party host
a page names is told to ``ext.undeclared_hosts`` when the page is
first scanned (an undeclared one is logged once). It is skipped, at no cost,
for bodies that hold nothing it could change (no script, iframe, link, image,
media, embed, ``<noscript>``, ``<svg>``, style …); the visitor's consent is
resolved only when an element needs a decision; a body seen before (the same
page served to many visitors, on the same host) is not scanned again. It
leaves alone:

- streamed responses (wrap the generator with :func:`gated_stream`),
- ``direct_passthrough`` responses (files sent with ``send_file``),
- bodies that are already compressed (``Content-Encoding``): register
  ``ConsentKit`` *after* a compression extension, so that its hook runs first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Literal
from urllib.parse import quote

from flask import Flask, Response, request, stream_with_context, url_for
from markupsafe import escape
from werkzeug.exceptions import BadHost

from .._compat import header_items, serving
from ..appstate import ConsentKitState, get_kit_state
from ..cache import Kept
from ..categories import NECESSARY, pick_text
from ..config import Settings
from ..regions import restricted_view
from ..responses import replace_body, response_body
from ..state import get_state, request_consent, request_parts
from ..urls import network_target
from .consent_mode import consent_mode_defaults, vendor_consent_defaults
from .cookies import CookieRules, filter_cookies
from .helpers import consent_iframe, consent_script
from .html import (
    FilledDocument,
    HostRules,
    NoncedDocument,
    ScanCache,
    ScannedDocument,
    TrackerMatcher,
    could_need_gating,
    gate_stream,
)
from .trackers import TRACKERS, Tracker, find_tracker

__all__ = [
    "TRACKERS",
    "Tracker",
    "add_trackers",
    "consent_iframe",
    "consent_mode_defaults",
    "consent_script",
    "find_tracker",
    "gated_stream",
    "install",
    "vendor_consent_defaults",
]

logger = logging.getLogger("flask_consentkit.gating")

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
#: Flask's own Content-Type for HTML, the common case
_HTML = "text/html; charset=utf-8"
#: what a URL built for the request depends on, besides the app's rules
_URL_ENVIRON = ("SCRIPT_NAME", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "wsgi.url_scheme")

#: English texts used when no translation service is registered.
ENGLISH = {
    "placeholder.title": "This content is blocked",
    "placeholder.text": "It comes from another site and loads only with your consent "
                        "to {category} cookies.",
    "placeholder.button": "Choose cookie settings",
    "placeholder.undeclared": "It comes from another site that this site has not declared, "
                              "so it cannot be loaded.",
}
ENGLISH_LABELS = {
    "necessary": "Necessary",
    "functional": "Functional",
    "analytics": "Analytics",
    "performance": "Performance",
    "marketing": "Marketing",
}


class Gating:
    """The per-app objects of the gating, at ``ext.gating``."""

    def __init__(self, settings: Settings, trackers: Iterable[Tracker] = TRACKERS) -> None:
        self.settings = settings
        self.matcher = TrackerMatcher(trackers)
        self.scans = ScanCache()
        self.cookies = CookieRules(settings.categories, settings.cookie_name)
        #: assembled placeholders by language, category, title, link and charset: the
        #: same bytes object for every request that needs them (kept outputs are
        #: found by it, see :class:`~.html.ScannedDocument`)
        self.placeholders: Kept[tuple[Any, ...], bytes] = Kept("placeholders", 512, 1 << 20)
        #: the preferences path per script root, host and scheme (``_URL_ENVIRON``)
        self._paths: Kept[tuple[Any, ...], str] = Kept("preferences paths", 64, 64 << 10)
        self._reported: set[str] = set()
        self._url_defaults: bool | None = None
        self._lock = threading.Lock()
        self._hosts: HostRules | None = None
        #: the page's own host by the request's Host header
        self._own: dict[str, str | None] = {}

    def host_rules(self, ext: ConsentKitState) -> HostRules | None:
        """The app's hosts as the rewrite asks about them (built on first use: the
        vendor registry is installed after the gating)."""
        registry = ext.vendors
        rules = self._hosts
        if rules is None or rules.registry is not registry:
            if registry is None:
                return None
            if rules is not None:  # a new registry: what was scanned with the old one goes
                self.scans = ScanCache()
            rules = self._hosts = HostRules(registry)
        return rules

    def own_host(self, environ: dict[str, Any]) -> str | None:
        """The host of the request's own origin, as URLs in its pages name it."""
        key = environ.get("HTTP_HOST") or environ.get("SERVER_NAME") or ""
        found = self._own.get(key, "")
        if found == "":
            target = network_target("http://" + key + "/") if key else None
            found = target.host if target is not None else None
            with self._lock:
                if len(self._own) >= 64:
                    self._own.clear()
                self._own[key] = found
        return found

    def preferences_path(self) -> str:
        """``url_for("consentkit.preferences")``, built once per script root, host and scheme.

        Built every time when the app has ``url_defaults`` callbacks, which may
        depend on anything.
        """
        app, environ = request_parts()
        if isinstance(request.routing_exception, BadHost):  # no URL can be built
            return str(environ.get("SCRIPT_NAME", "")) + self.settings.url_prefix + "/"
        if self.url_defaults(app):
            return url_for("consentkit.preferences")
        key = tuple(environ.get(name) for name in _URL_ENVIRON)
        path = self._paths.get(key)
        if path is None:
            path = url_for("consentkit.preferences")
            self._paths.put(key, path, len(path))
        return path

    def url_defaults(self, app: Flask) -> bool:
        """Does ``app`` have ``url_defaults`` callbacks (which may change any URL built)?

        Read once the app serves requests: they cannot be added after that.
        """
        if self._url_defaults is None:
            found = any(app.url_default_functions.values())
            if not serving(app):  # still being set up: ask again next time
                return found
            self._url_defaults = found
        return self._url_defaults

    def remember_placeholder(self, key: tuple[Any, ...], markup: bytes) -> None:
        """Keep a placeholder (at most 512: titles and links come from the pages)."""
        self.placeholders.put(key, markup, len(markup))

    def report(self, key: str, message: str) -> None:
        """Log ``message`` as a warning the first time ``key`` is seen."""
        if key in self._reported:  # the common case, without the lock
            return
        with self._lock:
            if key in self._reported:
                return
            self._reported.add(key)
        logger.warning("flask-consentkit: %s", message)


class RequestGate:
    """The :class:`~.html.Gate` of one request: lazy consent, translated placeholders."""

    def __init__(self, ext: ConsentKitState, charset: str = "utf-8") -> None:
        self.ext = ext
        self.gating: Gating = ext.gating
        #: reports are logged once per key by the app's gating (see Gate.report)
        self.reports_once = self.gating
        self.charset = charset
        self._granted: frozenset[str] | None = None
        self._texts: dict[tuple[str, str], str] = {}
        self._href: str | None = None
        #: what the placeholders of this request depend on (see _placeholder_key)
        self._key: tuple[str | None, ...] | Literal[False] | None = None

    def allows(self, category: str) -> bool:
        if category == NECESSARY:
            return True
        if self._granted is None:
            self._granted = get_state().granted
        return category in self._granted

    def report(self, key: str, message: str) -> None:
        self.gating.report(key, message)

    def _text(self, key: str, **params: str) -> str:
        memo = (key, params.get("category", ""))
        text = self._texts.get(memo)
        if text is None:
            text = self._texts[memo] = self._translate(key, **params)
        return text

    def _translate(self, key: str, **params: str) -> str:
        translate = self.ext.translate
        if translate is not None:
            try:
                text = translate(key, **params)
            except Exception:  # noqa: BLE001 - a broken catalog must not break the page
                text = None
            if isinstance(text, str) and text and text != key:
                return text
        fallback = ENGLISH.get(key)
        if fallback is None:
            return key
        return fallback.format(**params)

    def label(self, category: str) -> str:
        try:
            configured = self.ext.settings.category(category).label
        except KeyError:
            configured = None
        if configured is not None:
            language = self.ext.language
            return pick_text(configured, language() if language else "en") or category
        translated = self._text(f"category.{category}.label")
        if translated != f"category.{category}.label":
            return translated
        return ENGLISH_LABELS.get(category, category.replace("_", " ").title())

    def placeholders_key(self) -> tuple[str | None, ...] | None:
        """What every placeholder of this request depends on besides category and title."""
        if self._key is None:
            self._key = self._placeholder_key()
        return None if self._key is False else self._key

    def placeholder(self, category: str, title: str | None) -> bytes:
        if self._key is None:
            self._key = self._placeholder_key()
        if self._key is False:
            return self._placeholder(category, title)
        # the same for every request in this language on this page: kept assembled
        key = (self._key, category, title)
        markup = self.gating.placeholders.get(key)
        if markup is None:
            markup = self._placeholder(category, title)
            self.gating.remember_placeholder(key, markup)
        return markup

    def _placeholder_key(self) -> tuple[str | None, ...] | Literal[False]:
        """What this request's placeholders depend on besides category and title.

        ``False`` when that is not known: no ``language`` service, or
        ``url_defaults`` callbacks that may change the link for any reason.
        """
        language = self.ext.language
        app, environ = request_parts()
        if language is None or self.gating.url_defaults(app):
            return False
        get = environ.get  # the link's page, then _URL_ENVIRON written out (per request)
        return (language(), self.charset, get("PATH_INFO"), get("QUERY_STRING"),
                get("SCRIPT_NAME"), get("HTTP_HOST"), get("SERVER_NAME"), get("SERVER_PORT"),
                get("wsgi.url_scheme"))

    def _placeholder(self, category: str, title: str | None) -> bytes:
        heading = self._text("placeholder.title")
        if not category:  # from a host the site did not declare: no choice loads it
            text = self._text("placeholder.undeclared")
            markup = (
                f'<div class="consentkit-placeholder" data-consent-placeholder="" '
                f'data-consentkit-undeclared role="group" aria-label="{escape(title or heading)}">'
                f'<p class="consentkit-placeholder-title">{escape(heading)}</p>'
                f'<p class="consentkit-placeholder-text">{escape(text)}</p></div>'
            )
            return markup.encode(self.charset, "xmlcharrefreplace")
        if self._href is None:
            target = request.path + ("?" + request.query_string.decode("latin-1")
                                     if request.query_string else "")
            self._href = self.gating.preferences_path() + "?next=" + quote(target, safe="/")
        href = self._href + "#consentkit-cat-" + quote(category, safe="")
        text = self._text("placeholder.text", category=self.label(category))
        button = self._text("placeholder.button")
        cat = escape(category)
        markup = (
            f'<div class="consentkit-placeholder" data-consent-placeholder="{cat}" '
            f'role="group" aria-label="{escape(title or heading)}">'
            f'<p class="consentkit-placeholder-title">{escape(heading)}</p>'
            f'<p class="consentkit-placeholder-text">{escape(text)}</p>'
            f'<a href="{escape(href)}" data-consentkit-open="{cat}" role="button">'
            f"{escape(button)}</a></div>"
        )
        return markup.encode(self.charset, "xmlcharrefreplace")


def process_html(response: Response, ext: ConsentKitState) -> Response:
    """The response processor: gate the scripts and iframes of an HTML body."""
    content_type = encoding = None
    for key, value in header_items(response.headers):
        name = key.lower()
        if name == "content-type":
            content_type = value if content_type is None else content_type
        elif name == "content-encoding":
            encoding = value if encoding is None else encoding
    if content_type != _HTML and (
            not content_type or content_type.split(";", 1)[0].strip().lower() not in HTML_TYPES):
        return response
    gating: Gating = ext.gating
    parts = response.response
    if response.direct_passthrough or (type(parts) is not list and response.is_streamed):
        if response.is_streamed and not request_consent().cache.get("gated_stream"):
            gating.report("streamed", "a streamed HTML response is not gated on the server; "
                          "wrap its generator with flask_consentkit.gating.gated_stream().")
        return response
    if encoding:
        gating.report("encoded", "an HTML response was already compressed "
                      f"({encoding}) and could not be gated; register "
                      "ConsentKit after the compression extension so it runs first.")
        return response
    body = response_body(response)
    charset = "utf-8"
    if content_type != _HTML and "charset" in content_type.lower():
        charset = response.mimetype_params.get("charset", "utf-8")
    hosts = gating.host_rules(ext)
    scans = gating.scans
    view = restricted_view(ext)  # a rule per audience that forbids services: its own hosts
    if view is not None:
        hosts, scans = view.host_rules, view.scans
    own = gating.own_host(request.environ)
    doc: ScannedDocument | NoncedDocument | FilledDocument | None = scans.known(body, own)
    if doc is None:  # not a page seen before: the same page but for a token (a CSRF
        # field) or a nonce is found without the prefilter; any other page the
        # prefilter clears needs nothing
        if not scans.kin(body) and not could_need_gating(body, gating.matcher):
            return response
        doc = scans.entry(body, gating.matcher, ext.kit.csp_nonce, hosts=hosts, own=own,
                          saw=_saw(ext))
    gate = RequestGate(ext, charset)
    if isinstance(doc, FilledDocument):
        # the kept output with its holes: this request's tokens go in last
        # (ConsentKit._process_response), after the banner has found the page by identity
        new = doc.base.apply(gate)
        ctx = request_consent()
        ctx.fills, ctx.holed = tuple(doc.fills), doc.base
    else:
        new = doc.apply(gate)
    if new is not body:
        # also when ``new`` only equals ``body``: the kept bytes are the same object on
        # every request, which lets the banner find its own kept output by identity
        replace_body(response, new, body)
    return response


def _saw(ext: ConsentKitState) -> Any:
    """What the scan tells each third-party host it finds (with this request's page)."""
    undeclared = ext.undeclared_hosts
    if undeclared is None:
        return None
    page = request.path

    def saw(host: str, how: str) -> None:
        undeclared.saw(host, page, how)

    return saw


def gated_stream(chunks: Iterable[bytes | str], *, encoding: str = "utf-8") -> Iterator[bytes]:
    """Gate a streamed HTML response. Call it in the view::

        return Response(gated_stream(generate()), mimetype="text/html")

    The chunks are rewritten as they come (an element split between chunks waits
    for the rest of it); the request context is kept for the stream, and the
    response gets ``Vary: Cookie``.
    """
    ext = get_kit_state()
    ctx = request_consent()
    ctx.cache["gated_stream"] = True
    ctx.varies = True
    gate = RequestGate(ext, encoding)
    gating: Gating = ext.gating
    view = restricted_view(ext)
    return stream_with_context(
        gate_stream(chunks, gate, encoding=encoding, matcher=gating.matcher,
                    hosts=view.host_rules if view is not None else gating.host_rules(ext),
                    own=gating.own_host(request.environ), saw=_saw(ext))
    )


def add_trackers(app: Flask, trackers: Iterable[Tracker]) -> None:
    """Neutralise more known trackers on ``app`` (in addition to :data:`TRACKERS`)."""
    gating: Gating = get_kit_state(app).gating
    gating.matcher = TrackerMatcher([*gating.matcher.trackers, *trackers])
    gating.scans = ScanCache()
    get_kit_state(app).page_outputs.clear()  # made with the old trackers
    regions = get_kit_state(app).regions
    for view in regions.views() if regions is not None else ():
        view.scans = ScanCache()  # scanned with the old trackers too


def install(app: Flask, ext: ConsentKitState) -> None:
    """Wire the gating into ``app``: processors, services and Jinja globals."""
    ext.gating = Gating(ext.settings)
    ext.consent_mode = {k: list(v) for k, v in ext.settings.consent_mode.items()}
    filter_cookies.documents_only = False  # type: ignore[attr-defined]
    filter_cookies.page_output = False  # type: ignore[attr-defined]
    ext.processors.append(filter_cookies)
    process_html.documents_only = True  # type: ignore[attr-defined]
    process_html.page_output = True  # type: ignore[attr-defined]  # kept whole with the banner
    ext.processors.append(process_html)
    app.jinja_env.globals.update(
        consent_script=consent_script,
        consent_iframe=consent_iframe,
        consent_mode_defaults=consent_mode_defaults,
        vendor_consent_defaults=vendor_consent_defaults,
    )

