"""Server-side enforcement: gated scripts and embeds, known trackers, cookies, Consent Mode.

:func:`install` is called by :meth:`ConsentKit.init_app`. It registers two
response processors, in this order — the cookie filter (:mod:`.cookies`), then
the HTML rewrite (:mod:`.html`) — and the Jinja globals ``consent_script``,
``consent_iframe`` and ``consent_mode_defaults``.

The HTML rewrite runs on every ``text/html`` response whose body is in
memory. It is skipped, at no cost, for bodies without ``<script`` or
``<iframe``; the visitor's consent is resolved only when an element needs a
decision; a body seen before (the same page served to many visitors) is not
scanned again. It leaves alone:

- streamed responses (wrap the generator with :func:`gated_stream`),
- ``direct_passthrough`` responses (files sent with ``send_file``),
- bodies that are already compressed (``Content-Encoding``): register
  ``ConsentKit`` *after* a compression extension, so that its hook runs first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from urllib.parse import quote

from flask import Flask, Response, request, stream_with_context, url_for
from markupsafe import escape

from ..categories import NECESSARY, pick_text
from ..config import Settings
from ..extension import ConsentKitState, get_kit_state
from ..state import get_state, request_consent
from .consent_mode import consent_mode_defaults
from .cookies import CookieRules, filter_cookies
from .helpers import consent_iframe, consent_script
from .html import ScanCache, TrackerMatcher, could_need_gating, gate_stream, rewrite
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
]

logger = logging.getLogger("flask_consentkit.gating")

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})

#: English texts used when no translation service is registered.
ENGLISH = {
    "placeholder.title": "This content is blocked",
    "placeholder.text": "It comes from another site and loads only with your consent "
                        "to {category} cookies.",
    "placeholder.button": "Choose cookie settings",
}
ENGLISH_LABELS = {
    "necessary": "Necessary",
    "functional": "Functional",
    "analytics": "Analytics",
    "performance": "Performance",
    "marketing": "Marketing",
}


class Gating:
    """The per-app objects of the gating, at ``ext.services["gating"]``."""

    def __init__(self, settings: Settings, trackers: Iterable[Tracker] = TRACKERS) -> None:
        self.settings = settings
        self.matcher = TrackerMatcher(trackers)
        self.scans = ScanCache()
        self.cookies = CookieRules(settings.categories, settings.cookie_name)
        self._reported: set[str] = set()
        self._lock = threading.Lock()

    def report(self, key: str, message: str) -> None:
        """Log ``message`` as a warning the first time ``key`` is seen."""
        with self._lock:
            if key in self._reported:
                return
            self._reported.add(key)
        logger.warning("flask-consentkit: %s", message)


class RequestGate:
    """The :class:`~.html.Gate` of one request: lazy consent, translated placeholders."""

    def __init__(self, ext: ConsentKitState, charset: str = "utf-8") -> None:
        self.ext = ext
        self.gating: Gating = ext.services["gating"]
        self.charset = charset
        self._granted: frozenset[str] | None = None
        self._texts: dict[tuple[str, str], str] = {}
        self._href: str | None = None

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
        translate = self.ext.services.get("translate")
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
            return pick_text(configured, "en") or category
        translated = self._text(f"category.{category}.label")
        if translated != f"category.{category}.label":
            return translated
        return ENGLISH_LABELS.get(category, category.replace("_", " ").title())

    def placeholder(self, category: str, title: str | None) -> bytes:
        if self._href is None:
            target = request.path + ("?" + request.query_string.decode("latin-1")
                                     if request.query_string else "")
            self._href = url_for("consentkit.preferences") + "?next=" + quote(target, safe="/")
        href = self._href + "#consentkit-cat-" + quote(category, safe="")
        heading = self._text("placeholder.title")
        cat = escape(category)
        markup = (
            f'<div class="consentkit-placeholder" data-consent-placeholder="{cat}" role="group"'
            f' aria-label="{escape(title or heading)}">'
            f'<p class="consentkit-placeholder-title">{escape(heading)}</p>'
            '<p class="consentkit-placeholder-text">'
            f'{escape(self._text("placeholder.text", category=self.label(category)))}</p>'
            f'<a href="{escape(href)}" data-consentkit-open="{cat}" role="button">'
            f'{escape(self._text("placeholder.button"))}</a></div>'
        )
        return markup.encode(self.charset, "xmlcharrefreplace")


def process_html(response: Response, ext: ConsentKitState) -> Response:
    """The response processor: gate the scripts and iframes of an HTML body."""
    if response.mimetype not in HTML_TYPES:
        return response
    gating: Gating = ext.services["gating"]
    if response.direct_passthrough or response.is_streamed:
        if response.is_streamed and not request_consent().cache.get("gated_stream"):
            gating.report("streamed", "a streamed HTML response is not gated on the server; "
                          "wrap its generator with flask_consentkit.gating.gated_stream().")
        return response
    if response.content_encoding:
        gating.report("encoded", "an HTML response was already compressed "
                      f"({response.content_encoding}) and could not be gated; register "
                      "ConsentKit after the compression extension so it runs first.")
        return response
    body = response.get_data()
    if not could_need_gating(body, gating.matcher):
        return response
    charset = response.mimetype_params.get("charset", "utf-8")
    new, _ = rewrite(body, RequestGate(ext, charset), matcher=gating.matcher,
                     cache=gating.scans)
    if new is not body:
        response.set_data(new)
    return response


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
    return stream_with_context(
        gate_stream(chunks, gate, encoding=encoding, matcher=ext.services["gating"].matcher)
    )


def add_trackers(app: Flask, trackers: Iterable[Tracker]) -> None:
    """Neutralise more known trackers on ``app`` (in addition to :data:`TRACKERS`)."""
    gating: Gating = get_kit_state(app).services["gating"]
    gating.matcher = TrackerMatcher([*gating.matcher.trackers, *trackers])
    gating.scans = ScanCache()


def install(app: Flask, ext: ConsentKitState) -> None:
    """Wire the gating into ``app``: processors, services and Jinja globals."""
    ext.services["gating"] = Gating(ext.settings)
    ext.services["consent_mode"] = {k: list(v) for k, v in ext.settings.consent_mode.items()}
    ext.processors.append(filter_cookies)
    ext.processors.append(process_html)
    app.jinja_env.globals.update(
        consent_script=consent_script,
        consent_iframe=consent_iframe,
        consent_mode_defaults=consent_mode_defaults,
    )

