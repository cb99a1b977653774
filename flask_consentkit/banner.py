"""The banner and the preferences page: language choice, catalogs, rendering, injection.

:func:`install` is called once from :meth:`ConsentKit.init_app`. It loads the
message catalogs (``flask_consentkit/i18n/<lang>.json``, one flat JSON object
per language), registers the ``translate`` and ``banner_fingerprint`` services,
the Jinja globals ``consent_banner()`` and ``consentkit_ui()``, and the response
processors that put the banner into HTML pages and remember a language the
visitor asked for.

The banner goes into every full HTML document: before the last ``</body>``,
else before the last ``</html>``, else at the end of a body that starts like a
document (``<!doctype`` or ``<html``, after any comments). A fragment is left
alone: an htmx request (``HX-Request: true``, unless it is a boosted or a
history-restore request, which swap in whole pages), a Turbo frame request
(``Turbo-Frame``), or a body that does not start like a document. An HTML page
that cannot take the banner (streamed, compressed, sent as a file) is logged
once per endpoint on the ``flask_consentkit.banner`` logger.

The language of a request is, in order: ``?lang=`` (when it is one of
``CONSENTKIT_LANGUAGES``), the language the visitor asked for earlier with
``?lang=`` (the session cookie ``<CONSENTKIT_COOKIE_NAME>_lang``, see
:meth:`Banner.remember_language`), the app's locale (a callable the app puts at
``ConsentKit(locale_selector=…)``, else Flask-Babel's
locale selector), the browser's ``Accept-Language``, then
``CONSENTKIT_DEFAULT_LANGUAGE``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import html
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from flask import Flask, Response, current_app, has_request_context, render_template, request
from flask import url_for as _url_for
from jinja2 import TemplateNotFound
from markupsafe import Markup, escape
from werkzeug.exceptions import BadHost
from werkzeug.routing import BuildError

from . import _compat, configkeys
from ._compat import serving
from .cache import Kept
from .categories import Category, Text, pick_text
from .config import Settings
from .errors import ConsentConfigError
from .gpc import gpc_covers, gpc_received, privacy_signal, signal_headers
from .notice import NOTICE_SCHEMA, notice_id
from .regions import (
    TRANSFERS,
    current_rule,
    regions_of,
    restricted_view,
    shown_rule,
    visitor_country,
)
from .responses import add_vary, first_header, replace_body, response_body
from .state import (
    ConsentState,
    RequestConsent,
    current_request,
    get_state,
    peek_request_consent,
    query_args,
    request_consent,
    request_parts,
    state_of,
)
from .urls import safe_next

if TYPE_CHECKING:
    from .appstate import ConsentKitState

logger = logging.getLogger("flask_consentkit.banner")

#: Where the catalogs live; adding a language is adding ``<code>.json`` here.
I18N_FOLDER = Path(__file__).parent / "i18n"
#: The catalog every other one falls back to for a missing message.
BASE_LANGUAGE = "en"

#: Flask's own Content-Type for HTML, the common case
_HTML = "text/html; charset=utf-8"
#: how a whole document starts: a doctype or an <html> tag, after a BOM, spaces, comments
_DOC_START = re.compile(
    rb"(?:\xef\xbb\xbf)?(?:\s|<!--.*?-->)*<(?:!doctype[\s>]|html[\s>/]|\?xml\s)",
    re.IGNORECASE | re.DOTALL)
#: where a body has no place for the banner (a fragment)
_NOWHERE = -1
#: a ``<base>`` element (any case), before which the banner goes: the page sets its base URL
_BASE = re.compile(rb"<base[\t\n\f\r />]", re.IGNORECASE)
#: an attribute of the banner's markup whose value is a root-relative URL (``="/consent/…"``)
_ROOT_RELATIVE = re.compile(rb'(\s[\w:.-]+=")/(?!/)')
_PARAM = re.compile(r"\{([a-z_]+)\}")
_CATEGORY_TEXT = re.compile(r"^category\.([a-z][a-z0-9_-]*)\.(label|description)$")
_CACHE_LANG = "banner.language"
_CACHE_PLACED = "banner.placed"
#: the language this request asked for with ``?lang=`` (to remember it)
_CACHE_ASKED = "banner.asked"
#: this request's notice (:meth:`Banner.notice`): what it depends on is the request's
_CACHE_NOTICE = "banner.notice"
_TEMPLATES = Path(__file__).parent / "templates" / "consentkit"
#: stand-ins in a cached rendering for what changes on every request
_NEXT = "/consentkit-stand-in-next-7f3a"
_PREFERENCES = "consentkit-stand-in-preferences-7f3a"
_NONCE = "consentkit-stand-in-nonce-7f3a"
_NOTICE = "consentkit-stand-in-notice-7f3a"
_OPT_OUT = "consentkit-stand-in-opt-out-7f3a"
#: pages up to this size are kept with the banner put in, up to this many bytes in all
_KEEP_PAGE = 1 << 20
_KEEP_TOTAL = 16 << 20
_STAND_INS = re.compile("(" + "|".join(
    re.escape(s) for s in (_NEXT, _PREFERENCES, _NONCE, _NOTICE, _OPT_OUT)) + ")")

Catalog = Mapping[str, str]


# -- catalogs -----------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def read_catalog(path: Path) -> dict[str, str]:
    """One catalog file as a flat ``{key: text}`` dict; read once per process."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConsentConfigError(
            configkeys.LANGUAGES, f"the catalog {path} cannot be read as JSON ({e})."
        ) from e
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ConsentConfigError(
            configkeys.LANGUAGES,
            f"the catalog {path} must be one flat JSON object of message key to text.",
        )
    return data


def load_catalogs(languages: tuple[str, ...], folder: Path = I18N_FOLDER) -> dict[str, Catalog]:
    """The catalogs of ``languages`` (and the English base), keyed by language code."""
    out: dict[str, Catalog] = {}
    for lang in dict.fromkeys((*languages, BASE_LANGUAGE)):
        path = folder / f"{lang}.json"
        if not path.is_file():
            if lang == BASE_LANGUAGE and lang not in languages:
                continue
            raise ConsentConfigError(
                configkeys.LANGUAGES,
                f"there is no catalog for {lang!r}. Add {path} (copy en.json and "
                "translate every message) or remove the language.",
            )
        out[lang] = read_catalog(path)
    return out


def _match_language(tag: str, languages: tuple[str, ...]) -> str | None:
    """``tag`` (``az-Latn-AZ``, ``EN_gb``) as one of ``languages``, else ``None``."""
    tag = tag.strip().replace("_", "-").lower()
    if not tag or len(tag) > 35:
        return None
    lowered = {lang.lower(): lang for lang in languages}
    if tag in lowered:
        return lowered[tag]
    return lowered.get(tag.split("-", 1)[0])


# -- the per-app banner object ---------------------------------------------------


@dataclass
class ServiceView:
    name: str
    purpose: str | None
    policy_url: str | None
    cookies: tuple[str, ...]
    #: where the browser connects for it (the browser policy allows these with consent)
    hosts: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()


@dataclass
class CategoryView:
    """A category as the templates show it, in one language."""

    key: str
    label: str
    description: str
    required: bool
    checked: bool
    services: list[ServiceView]
    cookies: tuple[str, ...]

    @property
    def toggle_id(self) -> str:
        return f"consentkit-cat-{self.key}"


#: why an HTML page got no banner: (log level, what to do)
_NO_BANNER: dict[str, tuple[int, str]] = {
    # a streamed template may place it by hand: only known once the stream has run
    "streamed": (logging.INFO, "it is streamed; put {{ consent_banner() }} in its "
                 "template (and wrap the stream with gated_stream())"),
    "file": (logging.WARNING, "it is sent as a file (send_file); serve it through a "
             "template, or put {{ consent_banner() }} in it"),
    # the gating already warns of a compressed page
    "compressed": (logging.INFO, "it was compressed before the extension saw it; "
                   "register ConsentKit after the compression extension"),
    "fragment": (logging.INFO, "its body does not start like a document (no <!doctype "
                 "or <html>) and has no </body> or </html>, so it is taken for a fragment; "
                 "if it is a whole page, start it with <!doctype html>"),
}


class Banner:
    """Per-app banner state: settings, catalogs and the cached text fingerprints."""

    def __init__(self, app: Flask, ext: ConsentKitState) -> None:
        self.ext = ext
        self.settings: Settings = ext.settings
        self.catalogs = load_catalogs(self.settings.languages)
        #: what a page with the banner varies by: the language, and the privacy signals
        #: honoured (which keep ``marketing`` off on "Accept all")
        self._vary_tokens = ("Accept-Language", *signal_headers(self.settings))
        # What each kept output depends on is its key, built where it is used (and
        # listed in ARCHITECTURE.md); nothing is kept for an app that overrides a
        # template of ours or has url_defaults (see _finished).
        #: the notice of a language, privacy signal, policy news and rule (see notice())
        self._fingerprints: Kept[tuple[Any, ...], tuple[str, str, dict[str, Any]]] = Kept(
            "notices", 256, 4 << 20)
        #: the rendered banner split at its stand-ins, by everything but the page
        self._rendered: Kept[tuple[Any, ...], tuple[tuple[str, ...], str]] = Kept(
            "banner templates", 1024, 8 << 20)
        #: the finished markup of requests without a nonce, by everything it depends on
        #: (the consent-mode mapping by identity: it is kept in the first slot)
        self._finals: Kept[tuple[Any, ...], tuple[Any, str]] = Kept(
            "banner markup", 1024, 8 << 20)
        #: finished markup (the same ``str`` object each time) -> its bytes, per charset
        self._encoded: Kept[tuple[str, str], bytes] = Kept("banner bytes", 2048, 8 << 20)
        #: pages seen by :meth:`inject`, by the page object's ``id`` (kept in the entry,
        #: so the ``id`` is not reused while it is here): ``(page, where the banner goes,
        #: where its </head> is, whether its head has a ``<base>``)``; and their
        #: outputs, by the ids of the page and of the banner's bytes: ``(page, banner,
        #: output)``, not for a page with a ``<base>``. Half the budget each.
        self._pages: Kept[int, tuple[bytes, int, int, bool]] = Kept(
            "pages", 64, _KEEP_TOTAL // 2)
        self._outputs: Kept[tuple[int, int], tuple[bytes, bytes, bytes]] = Kept(
            "page outputs", 512, _KEEP_TOTAL // 2)
        self._own: bool | None = None
        self._defaults: bool | None = None
        #: the stylesheet's ``<link>`` by charset and script root (see :meth:`_stylesheet`)
        self._links: Kept[tuple[str, str], bytes] = Kept("stylesheet links", 64, 64 << 10)
        #: Accept-Language header → banner language ("" for none); browsers send few values
        self._accept_cache: Kept[str, str] = Kept("accept-language", 512, 1 << 20)
        self._asks = bool(self.settings.optional_keys)
        #: the session cookie that keeps a language asked for with ``?lang=``
        self.language_cookie = f"{self.settings.cookie_name}_lang"
        #: (endpoint, reason) of the pages already logged as unable to take the banner
        self._logged: set[tuple[str, str]] = set()
        self._log_lock = threading.Lock()

    # -- language ------------------------------------------------------------

    def language(self) -> str:
        """The language of the current request (cached on the request)."""
        if _compat.request_context() is None and not has_request_context():
            return self.settings.default_language
        ctx = request_consent()
        lang: str | None = ctx.cache.get(_CACHE_LANG)
        if lang is None:
            lang = ctx.cache[_CACHE_LANG] = self._pick_language(ctx)
        return lang

    def _pick_language(self, ctx: RequestConsent) -> str:
        languages = self.settings.languages
        app, environ = request_parts()
        query = environ.get("QUERY_STRING", "")
        # parse the query only when it can name "lang" (a key may be percent-encoded)
        asked = query_args().get("lang") if "lang" in query or "%" in query else None
        if asked:
            found = _match_language(asked, languages)
            if found:
                ctx.cache[_CACHE_ASKED] = found
                return found
        if self.language_cookie in environ.get("HTTP_COOKIE", ""):
            remembered = self._remembered()
            if remembered:
                return remembered
        return self._inferred_language(app, environ)

    def _remembered(self) -> str | None:
        """The language kept in the language cookie, when it is one of ours."""
        value = request.cookies.get(self.language_cookie)
        return _match_language(value, self.settings.languages) if value else None

    def _inferred_language(self, app: Flask | None = None,
                           environ: Mapping[str, Any] | None = None) -> str:
        """The language when the visitor has not asked for one: app, browser, default.

        ``app`` and ``environ``: the request's, when the caller holds them already.
        """
        if app is None or environ is None:
            app, environ = request_parts()
        selector = self.ext.kit.locale_selector
        if selector is None:
            babel = app.extensions.get("babel")
            selector = getattr(babel, "locale_selector", None) if babel is not None else None
        if selector is not None and callable(selector):
            locale = selector()
            if locale is not None:
                found = _match_language(str(locale), self.settings.languages)
                if found:
                    return found
        header = environ.get("HTTP_ACCEPT_LANGUAGE")
        if header:
            found = self._accept_cache.get(header)
            if found is None:
                found = self._from_accept_language()
                self._accept_cache.put(header, found, len(header))
            if found:
                return found
        return self.settings.default_language

    def remember_language(self, response: Response, ext: ConsentKitState) -> Response:
        """The response processor that keeps a language asked for with ``?lang=``.

        A visitor who picks a language in the banner's or the preferences' menu
        (or follows a ``?lang=`` link) keeps it on the next page, whose links do
        not carry ``?lang=``: the choice goes into a session cookie (no
        ``Max-Age``, ``HttpOnly``, ``SameSite=Lax``) that holds the language code
        and nothing else. It is set only on such an explicit request, and only
        when the language differs from the one the visitor would get anyway
        (else an earlier one is removed): a user-interface preference the
        visitor asked for, which needs no consent (the Article 29 Working
        Party's opinion 04/2012 on cookie consent exemption, section 3.6). It is
        no category's cookie, so a withdrawal leaves it alone.
        """
        ctx = peek_request_consent()
        if ctx is None:
            return response
        asked = ctx.cache.get(_CACHE_ASKED)
        if asked is None:
            return response
        name = self.language_cookie
        current = request.cookies.get(name)
        kit = ext.kit
        secure = kit.cookie_secure(self.settings) or name.startswith("__Host-")
        if asked == self._inferred_language():
            if current is not None:
                response.delete_cookie(name, path="/", secure=secure, httponly=True,
                                       samesite="Lax")
        elif current != asked:
            response.set_cookie(name, asked, path="/", secure=secure, httponly=True,
                                samesite="Lax")
        return response

    def _from_accept_language(self) -> str:
        """The best banner language the browser accepts, or ``""``."""
        for tag, quality in request.accept_languages:
            if quality > 0:
                found = _match_language(tag, self.settings.languages)
                if found:
                    return found
        return ""

    # -- texts ---------------------------------------------------------------

    def translate(self, key: str, lang: str | None = None, **params: Any) -> str:
        """Message ``key`` in ``lang`` (default: this request's), ``{name}`` filled from params.

        The app's ``translate`` hook (:class:`~.ConsentKit`) answers first; a message
        it leaves to us, or missing from a catalog, falls back to the default language,
        then English, then the key itself.
        """
        lang = lang or self.language()
        text = self._own_text(key, lang, params)
        if text is None:
            for code in (lang, self.settings.default_language, BASE_LANGUAGE):
                catalog = self.catalogs.get(code)
                if catalog is not None and key in catalog:
                    text = catalog[key]
                    break
        if text is None:
            return key
        if not params:
            return text
        return _PARAM.sub(lambda m: str(params.get(m.group(1), m.group(0))), text)

    def _own_text(self, key: str, lang: str, params: Mapping[str, Any]) -> str | None:
        """The app's own text of ``key`` in ``lang``, or ``None`` (also when its hook fails)."""
        own = self.ext.kit.translate
        if own is None:
            return None
        try:
            text = own(key, lang, **params)
        except Exception:  # noqa: BLE001 - an app's broken catalog must not break the page
            logger.exception("flask-consentkit: the app's translate hook failed for %r", key)
            return None
        return text if isinstance(text, str) and text else None

    def format_date(self, iso: str, lang: str | None = None) -> str:
        """The day ``iso`` (``YYYY-MM-DD``) as ``lang`` writes it: ``November 1, 2026``,
        ``1 ноября 2026 г.``, ``1 noyabr 2026``, ``1 Kasım 2026``.

        From the catalog's ``date.format`` and ``date.months`` (twelve names, in the form
        a date takes, separated by spaces); ``iso`` itself when they do not fit.
        """
        lang = lang or self.language()
        try:
            day = _dt.date.fromisoformat(iso)
        except ValueError:
            return iso
        months = self.translate("date.months", lang).split()
        if len(months) != 12:
            return iso
        return self.translate("date.format", lang, day=day.day, month=months[day.month - 1],
                              year=day.year)

    def translate_for_services(self, key: str, **params: Any) -> str:
        """The ``translate`` service: :meth:`translate` in this request's language.

        ``category.<key>.label`` and ``category.<key>.description`` give the
        app's own text for that category when it configured one, as the banner shows it.
        """
        found = _CATEGORY_TEXT.match(key)
        if found:
            try:
                category = self.settings.category(found.group(1))
            except KeyError:
                pass
            else:
                lang = self.language()
                if found.group(2) == "label":
                    return self.category_label(category, lang)
                return self.category_description(category, lang)
        return self.translate(key, **params)

    def _category_text(self, category: Category, own: Text | None, field: str, lang: str,
                       fallback: str) -> str:
        """The app's own text, else the catalog's ``category.KEY.FIELD``, else ``fallback``."""
        text = pick_text(own, lang, self.settings.default_language)
        if text:
            return text
        key = f"category.{category.key}.{field}"
        text = self.translate(key, lang)
        return fallback if text == key else text

    def category_label(self, category: Category, lang: str) -> str:
        readable = category.key.replace("_", " ").replace("-", " ").capitalize()
        return self._category_text(category, category.label, "label", lang, readable)

    def category_description(self, category: Category, lang: str) -> str:
        return self._category_text(category, category.description, "description", lang, "")

    def category_purpose(self, category: Category, lang: str) -> str:
        key = f"category.{category.key}.purpose"
        text = self.translate(key, lang)
        return self.category_label(category, lang) if text == key else text

    def categories(self, lang: str, checked: Callable[[str], bool]) -> list[CategoryView]:
        default = self.settings.default_language
        rule = restricted_view(self.ext)  # a rule per audience may forbid services: not offered
        categories = self.settings.categories if rule is None else [
            replace(c, services=tuple(s for s in c.services if not rule.rule.forbids(s)))
            for c in self.settings.categories]
        return [
            CategoryView(
                key=c.key,
                label=self.category_label(c, lang),
                description=self.category_description(c, lang),
                required=c.required,
                checked=c.required or checked(c.key),
                services=[
                    ServiceView(
                        name=s.name,
                        purpose=pick_text(s.purpose, lang, default),
                        policy_url=s.policy_url,
                        cookies=tuple(str(p) for p in s.cookies),
                        hosts=tuple(str(h) for h in s.hosts),
                        countries=s.countries,
                    )
                    for s in c.services
                ],
                cookies=tuple(str(p) for p in c.all_cookies()),
            )
            for c in categories
        ]

    # -- rendering -----------------------------------------------------------

    def view(self, next_url: str | None = None) -> BannerView:
        """Everything the templates need for this request."""
        return BannerView(self, next_url)

    def render(self) -> Markup:
        """The banner's HTML for this request (both layers and the reopen control).

        With the package's own templates the HTML is rendered once per
        language and choice, with stand-ins for what changes on every request
        (the return path and the CSP nonce), which are filled in escaped. An
        app that overrides a banner template gets it rendered on every request.
        """
        return Markup(self._render())

    def _render(self) -> str:
        """:meth:`render` as a plain string (markup, escaped where it must be)."""
        return self._finished()[0]

    def _finished(self, head: bool = False) -> tuple[str, bool]:
        """``(markup, kept)``: :meth:`_render`, and whether the string is a kept one.

        Without a CSP nonce the finished string is kept per language, choice and
        page, and is the same object on every such request. ``head``: the
        stylesheet goes into the page's ``<head>`` (:meth:`inject`), so the
        banner's own ``<link>`` is left out.
        """
        ctx = request_consent()
        ctx.cache[_CACHE_PLACED] = True
        if not self._own_templates() or self._url_defaults():
            # the app's own templates may hold anything of the request (a CSRF token),
            # its URL defaults anything of the request in every link: nothing is kept
            return str(render_template("consentkit/banner.html", ui=self.view())), False
        _, environ = request_parts()
        lang = self.language()
        state = get_state()
        nonce = self.ext.kit.csp_nonce()
        mode = self.ext.consent_mode or {}
        signal = _signal(self.settings)
        outdated = _outdated()
        final_key = None
        if nonce is None:
            final_key = (_rule_key(self.ext), lang, signal, outdated, state.decided,
                         state.granted if state.decided else None,
                         id(mode), environ.get("SCRIPT_NAME", ""), environ.get("PATH_INFO", ""),
                         environ.get("QUERY_STRING", ""), head)
            found = self._finals.get(final_key)
            if found is not None and found[0] is mode:
                return found[1], True
        key = (_rule_key(self.ext), lang, signal, outdated, state.decided,
               state.granted if state.decided else None,
               nonce is None, request.script_root,
               tuple((k, tuple(v)) for k, v in dict(mode).items()), head)
        cached = self._rendered.get(key)
        if cached is None:
            view = BannerView(self, _NEXT, stand_ins=nonce is not None, style_in_head=head)
            rendered = render_template("consentkit/banner.html", ui=view)
            # split at the stand-ins once, so a request only joins the pieces
            cached = (tuple(_STAND_INS.split(rendered)), _url_for("consentkit.preferences"))
            self._rendered.put(key, cached, sum(len(p) for p in cached[0]))
        pieces, preferences = cached
        next_url = safe_next(_here())
        preferences += ("&" if "?" in preferences else "?") + (
            f"next={quote(next_url, safe='/')}&lang={quote(lang)}")
        values = {_NEXT: str(escape(next_url)), _PREFERENCES: str(escape(preferences))}
        for stand_in, endpoint in ((_NOTICE, "consentkit.notice"),
                                   (_OPT_OUT, "consentkit.opt_out")):
            if stand_in in pieces:  # a rule per audience's links, with the same query
                url = _url_for(endpoint)
                url += ("&" if "?" in url else "?") + (
                    f"next={quote(next_url, safe='/')}&lang={quote(lang)}")
                values[stand_in] = str(escape(url))
        if nonce is not None:
            values[_NONCE] = str(escape(nonce))
        text = "".join([values.get(piece, piece) for piece in pieces])
        if final_key is not None:
            self._finals.put(final_key, (mode, text), len(text))
        return text, final_key is not None

    def _encoded_banner(self, charset: str, head: bool = False) -> bytes:
        """This request's banner, encoded for the page; kept when its markup is."""
        text, kept = self._finished(head)
        if not kept:
            return text.encode(charset, "xmlcharrefreplace")
        key = (text, charset)
        data = self._encoded.get(key)
        if data is None:
            data = text.encode(charset, "xmlcharrefreplace")
            self._encoded.put(key, data, len(data))
        return data

    def _url_defaults(self) -> bool:
        """Does the app have ``url_defaults`` callbacks (which may change any URL built)?

        Read once the app serves requests: none can be added after that.
        """
        if self._defaults is None:
            app = current_app
            found = any(app.url_default_functions.values())
            if not serving(app):  # still being set up: ask again next time
                return found
            self._defaults = found
        return self._defaults

    def _own_templates(self) -> bool:
        """True while the app has overridden none of the templates the banner is made of."""
        if self._own is None:
            env = current_app.jinja_env
            own = env.loader is not None
            for path in sorted(_TEMPLATES.glob("*.html")):
                name = f"consentkit/{path.name}"
                try:
                    _, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
                except TemplateNotFound:
                    filename = None
                own = own and filename is not None and Path(filename).parent == _TEMPLATES
            self._own = own
        return self._own

    def notice(self) -> tuple[str, str, dict[str, Any]]:
        """``(notice id, language, notice)``: what this request's visitor is shown and told.

        The notice (see :mod:`flask_consentkit.ledger.notices`) holds the banner's
        text in the language shown, the categories offered with their services,
        the policy and the controller; its id is the SHA-256 of its canonical JSON,
        which the receipt of a decision records. Built once per language, privacy
        signal, policy news and rule per audience, and looked up once per request (a
        decision asks twice: for its receipt, then to keep the notice): each of these is
        the request's own, the same before and after a decision in it (policy news is
        what the visitor came with).
        """
        outside = _compat.request_context() is None and not has_request_context()
        ctx = None if outside else request_consent()
        if ctx is not None and (found := ctx.cache.get(_CACHE_NOTICE)) is not None:
            return found  # type: ignore[no-any-return]
        lang = self.language()
        key = (lang, _signal(self.settings), _outdated(), _rule_key(self.ext))
        cached = self._fingerprints.get(key)
        if cached is None:
            view = BannerView(self, "/", undecided=True)
            markup = render_template("consentkit/banner.html", ui=view)
            settings = self.settings
            content: dict[str, Any] = {
                "schema": NOTICE_SCHEMA,
                "language": lang,
                "text": visible_text(markup),
                "categories": [{
                    "key": c.key, "name": c.label, "description": c.description,
                    "required": c.required,
                    "services": [{"name": sv.name, "purpose": sv.purpose,
                                  "policy_url": sv.policy_url, "hosts": list(sv.hosts),
                                  "countries": list(sv.countries), "cookies": list(sv.cookies)}
                                 for sv in c.services],
                } for c in view.categories],
                "policy": {"version": settings.policy_version,
                           "url": settings.privacy_policy_url,
                           "effective": settings.policy_effective},
                "controller": dict(settings.controller) or None,
                "rule": _rule_key(self.ext) or None,
            }
            cached = (notice_id(content), lang, content)
            self._fingerprints.put(key, cached, len(content["text"]))
        if ctx is not None:
            ctx.cache[_CACHE_NOTICE] = cached
        return cached

    def fingerprint(self) -> tuple[str, str]:
        """``(notice id, language)`` of this request's notice (see :meth:`notice`)."""
        ident, lang, _ = self.notice()
        return ident, lang

    # -- the response processor ---------------------------------------------------

    def page_key(self, response: Response, content_type: str,
                 ctx: RequestConsent | None = None) -> tuple[Any, ...] | None:
        """The key of this response's whole output, the gating's and the banner's (see
        :meth:`.ConsentKit._kept_page`), or ``None`` when it may not be kept.

        Everything that output depends on: the page (its length and ends; the kept
        page is compared whole), its media type and charset; the visitor's decisions,
        language, privacy signal and policy news; the rule per audience; the Consent
        Mode mapping; and the request's address (the placeholders' and the banner's
        links, the page's own host). Not kept: a nonce, ``url_defaults`` or templates
        of the app's own (which may put anything of the request in), our own pages,
        pages that get no banner (which need not read the consent cookie), partial
        requests, a decision or an erasure in this request, a banner the page placed
        itself, a compressed or streamed body. ``ctx``: the request's bookkeeping, when
        the caller holds it.
        """
        parts = response.response
        if (not self.settings.auto_inject or not self._asks  # else the page may not read
                or type(parts) is not list or len(parts) != 1 or type(parts[0]) is not bytes
                or (content_type != _HTML
                    and content_type.split(";", 1)[0].strip().lower() != "text/html")):
            return None
        req = current_request()
        endpoint = req.endpoint
        environ = req.environ
        if ((endpoint is not None and endpoint.startswith("consentkit."))
                # the two flags as read once the app serves (the methods read them first)
                or not (self._own if self._own is not None else self._own_templates())
                or (self._defaults if self._defaults is not None else self._url_defaults())
                or (("HTTP_HX_REQUEST" in environ or "HTTP_TURBO_FRAME" in environ)
                    and _partial_request(environ))
                or first_header(response.headers, "Content-Encoding") is not None):
            return None
        if ctx is None:
            ctx = request_consent()
        if (ctx.decision is not None or ctx.clear or ctx.fills
                or ctx.cache.get(_CACHE_PLACED) or self.ext.kit.csp_nonce(req) is not None):
            return None
        # reading the consent for the key does not make the response depend on it: a
        # kept output does (it was made by reading it), a page that needs nothing not
        varies = ctx.varies
        state = state_of(ctx)
        body: bytes = parts[0]
        get = environ.get
        lang = ctx.cache.get(_CACHE_LANG)
        if lang is None:  # what language() does, with the bookkeeping at hand
            lang = ctx.cache[_CACHE_LANG] = self._pick_language(ctx)
        rule = _rule_key(self.ext) if self.settings.regions.shapes_banner else ""
        key = (len(body), body[:48], body[-48:], content_type, rule,
               lang, _signal(self.settings, environ),
               _outdated(state, ctx), state.decided, state.granted, id(self.ext.consent_mode),
               get("SCRIPT_NAME"), get("PATH_INFO"), get("QUERY_STRING"), get("HTTP_HOST"),
               get("SERVER_NAME"), get("SERVER_PORT"), get("wsgi.url_scheme"))
        ctx.varies = varies
        return key

    def inject(self, response: Response, ext: ConsentKitState) -> Response:
        """Put the banner into a plain HTML response that is a whole document.

        Before the last ``</body>``, else before the last ``</html>``, else at
        the end of a body that starts like a document; a fragment is left alone
        (see the module's docstring).
        """
        content_type = first_header(response.headers, "Content-Type") or ""
        if content_type != _HTML and content_type.split(";", 1)[0].strip().lower() != "text/html":
            return response  # checked first: most responses of an API end here
        req = current_request()
        endpoint = req.endpoint
        if endpoint == "consentkit.preferences":
            self._vary(response)
            return response
        if not self.settings.auto_inject or not self._asks:
            return response
        if endpoint is not None and endpoint.startswith("consentkit."):
            return response  # our own views
        environ = req.environ
        if _partial_request(environ):
            return response  # an htmx or Turbo partial: the page around it has the banner
        if isinstance(req.routing_exception, BadHost):
            return response  # Flask refused the Host: no link of ours can be built
        ctx = peek_request_consent()
        if ctx is not None and ctx.cache.get(_CACHE_PLACED):
            return response
        if response.is_streamed or response.direct_passthrough:
            self._cannot_place(req, "file" if response.direct_passthrough else "streamed")
            return response
        if first_header(response.headers, "Content-Encoding") not in (None, "identity"):
            self._cannot_place(req, "compressed")
            return response
        body = response_body(response)
        charset = "utf-8"
        if content_type != _HTML and "charset" in content_type.lower():
            charset = response.mimetype_params.get("charset", "utf-8")
        # The page is usually the very object of an earlier request (kept by the
        # gating), and so is the banner (kept by _render): then so is the result.
        page = self._pages.get(id(body))
        if page is None or page[0] is not body:
            end = insertion_point(body)
            head = _head_end(body, end)
            # a <base> of the head, where HTML puts it (the whole page when it has none)
            based = end != _NOWHERE and _BASE.search(
                body, 0, head if head != _NOWHERE else end) is not None
            page = (body, end, head, based)
            if len(body) <= _KEEP_PAGE:
                self._pages.put(id(body), page, len(body))
        end, head, based = page[1], page[2], page[3]
        if end == _NOWHERE:
            if body.strip():
                self._cannot_place(req, "fragment")
            return response
        head = head if self._own_templates() else _NOWHERE
        banner = self._encoded_banner(charset, head != _NOWHERE)
        kept = None if based else self._outputs.get((id(body), id(banner)))
        if kept is not None and kept[0] is body and kept[1] is banner:
            out = kept[2]
        else:
            link = self._stylesheet(charset) if head != _NOWHERE else b""
            if based:
                # the page's <base href> would resolve the banner's root-relative URLs
                # against its own origin: the choice would be posted there, and lost
                root = str(escape(req.host_url.rstrip("/"))).encode(charset, "xmlcharrefreplace")
                banner, link = _absolute(banner, root), _absolute(link, root)
            if head != _NOWHERE:
                # the stylesheet in the head: the page's first paint already has the
                # banner and the blocked embeds styled (no flash, no layout shift)
                out = b"".join((body[:head], link, body[head:end], banner, body[end:]))
            else:
                out = b"".join((body[:end], banner, body[end:]))
            if len(body) <= _KEEP_PAGE and not based:
                # the entry keeps the page and the banner: their ids are not reused
                # while it is here
                self._outputs.put((id(body), id(banner)), (body, banner, out), len(out))
        replace_body(response, out, body)
        self._vary(response)
        return response

    def _vary(self, response: Response) -> None:
        """The page speaks the visitor's language and says what a privacy signal turned
        off: ``Vary`` on those headers (written with ``Cookie`` at the end of the hook)."""
        tokens = self._vary_tokens
        ctx = peek_request_consent()
        if ctx is None:
            add_vary(response, *tokens)
        else:
            ctx.vary += tokens

    def _cannot_place(self, req: Any, reason: str) -> None:
        """Log, once per endpoint and reason, an HTML page that got no banner."""
        where = req.endpoint or "(no endpoint)"  # an unknown URL: once, not once per URL
        key = (where, reason)
        if key in self._logged:
            return
        with self._log_lock:
            if key in self._logged:
                return
            self._logged.add(key)
        level, why = _NO_BANNER[reason]
        logger.log(level, "flask-consentkit: %s %s (endpoint %r) got no consent banner: %s.",
                   req.method, req.path, where, why)

    def _stylesheet(self, charset: str) -> bytes:
        """The ``<link>`` of the banner's stylesheet for the page's head (with the nonce).

        Kept per charset and script root when there is no nonce and no ``url_defaults``
        (nothing else goes into it).
        """
        nonce = self.ext.kit.csp_nonce()
        key = None if nonce or self._url_defaults() else (charset, request.script_root)
        link = self._links.get(key) if key is not None else None
        if link is None:
            href = escape(_url_for("consentkit.static", filename="consentkit.css"))
            extra = f' nonce="{escape(nonce)}"' if nonce else ""
            link = f'<link rel="stylesheet" href="{href}"{extra}>'.encode(
                charset, "xmlcharrefreplace")
            if key is not None:
                self._links.put(key, link, len(link))
        return link



Banner.inject.documents_only = True  # type: ignore[attr-defined]  # run on documents only
Banner.inject.page_output = True  # type: ignore[attr-defined]  # its output may be kept whole
Banner.remember_language.documents_only = False  # type: ignore[attr-defined]
Banner.remember_language.page_output = False  # type: ignore[attr-defined]


class BannerView:
    """The banner and preferences of one request: language, texts, URLs, toggles."""

    def __init__(self, banner: Banner, next_url: str | None = None, *,
                 undecided: bool = False, stand_ins: bool = False,
                 style_in_head: bool = False) -> None:
        settings = banner.settings
        self.banner = banner
        #: the page's head links the stylesheet: the banner leaves its own ``<link>`` out
        self.style_in_head = style_in_head
        self.lang = banner.language()
        state = get_state()
        self.state = state
        self.decided = state.decided and not undecided
        #: the rule per audience of this request (``opt-in`` when there are none)
        self.rule = shown_rule(banner.ext)
        #: undecided under the opt-out model: on by default (``regions.opt_out_state``);
        #: the first layer is not shown, the reopen control and the opt-out link are
        self.by_default = not self.decided and state.source == "opt-out" and not undecided
        shown = self.decided or self.by_default
        self.granted = sorted(state.granted) if shown else ["necessary"]
        self.next = safe_next(next_url if next_url is not None else _here())
        self.categories = banner.categories(
            self.lang, lambda key: shown and state.allows(key)
        )
        optional = [c for c in settings.categories if not c.required]
        self.purposes = self.t(
            "banner.purposes_separator"
        ).join(banner.category_purpose(c, self.lang) for c in optional)
        #: what a decided visitor allowed, as the reopened banner says it
        allowed = [banner.category_label(c, self.lang) for c in optional
                   if self.decided and c.key in state.granted]
        self.choice = ", ".join(allowed)
        self.policy_url = settings.privacy_policy_url
        #: the browser asks not to be tracked ("gpc" or "dnt", else ""): "Accept all"
        #: leaves marketing off
        self.privacy_signal = _signal(settings)
        #: undecided because the policy changed since the visitor's choice
        self.policy_changed = not self.decided and _outdated()
        self.action_url = _url_for("consentkit.choose", lang=self.lang)
        self.nonce: str | None
        if next_url == _NEXT:  # rendered once, the request's values filled in later
            self.next = _NEXT
            self.preferences_url = _PREFERENCES
            self.nonce = _NONCE if stand_ins else None
            notice_url, opt_out_url = _NOTICE, _OPT_OUT
        else:
            self.preferences_url = _url_for("consentkit.preferences", next=self.next,
                                            lang=self.lang)
            self.nonce = banner.ext.kit.csp_nonce()
            notice_url = _url_for("consentkit.notice", next=self.next, lang=self.lang)
            opt_out_url = _url_for("consentkit.opt_out", next=self.next, lang=self.lang)
        #: the information notice of its own, linked from the first layer in place of the
        #: privacy policy (a rule with ``separate_notice``), else ``None``
        self.notice_url: str | None = notice_url if self.rule.separate_notice else None
        #: "Do Not Sell or Share My Personal Information" (a rule of the opt-out model)
        self.opt_out_url: str | None = opt_out_url if self.rule.opt_out else None
        self.script_url = _url_for("consentkit.static", filename="consentkit.js")
        self.style_url = _url_for("consentkit.static", filename="consentkit.css")

    @property
    def languages(self) -> list[tuple[str, str, str]]:
        """``(code, name, preferences URL)`` of every language, for a language menu."""
        return [
            (code, self.banner.translate("language.name", code),
             _url_for("consentkit.preferences", next=self.next, lang=code))
            for code in self.banner.settings.languages
        ]

    def t(self, key: str, **params: Any) -> str:
        """Message ``key`` in this view's language."""
        return self.banner.translate(key, self.lang, **params)

    def label(self, key: str) -> str:
        """A button's label: :meth:`t`, with a soft hyphen in each long word (see
        :func:`soft_hyphens`), so that a narrow button breaks it between syllables."""
        return soft_hyphens(self.t(key))

    @property
    def lead(self) -> str:
        """The first layer's text: the purposes, then what is on and how to change it
        (for a visitor asked again after a policy version bump, :attr:`changed` follows)."""
        text = self.t("banner.lead", purposes=self.purposes)
        if self.policy_changed:
            return text
        if not self.decided:
            return f"{text} {self.t('banner.undecided')}"
        if self.choice:
            return f"{text} {self.t('banner.decided', choice=self.choice)}"
        return f"{text} {self.t('banner.decided_none')}"

    @property
    def changed(self) -> str:
        """That the policy changed, and from when (``CONSENTKIT_POLICY_EFFECTIVE``): the
        first layer's news for a visitor asked again after a policy version bump, linked
        to the policy and followed by what changed (``CONSENTKIT_POLICY_CHANGES``)."""
        date = self.policy_date
        return self.t("banner.changed", date=date) if date else self.t("banner.changed_undated")

    @property
    def policy_date(self) -> str:
        """``CONSENTKIT_POLICY_EFFECTIVE`` written for this view's language, or ``""``."""
        effective = self.banner.settings.policy_effective
        return self.banner.format_date(effective, self.lang) if effective else ""

    @property
    def policy_changes(self) -> str:
        """``CONSENTKIT_POLICY_CHANGES`` in this view's language, or ``""``."""
        settings = self.banner.settings
        return pick_text(settings.policy_changes, self.lang, settings.default_language) or ""

    @property
    def gpc_note(self) -> str:
        """What the browser's privacy signal did, or ``""``.

        With ``Sec-GPC: 1``: the signal was received and honoured, and the categories it
        keeps off (those the visitor has not switched on themselves); with ``DNT: 1``
        (``CONSENTKIT_HONOR_DNT``): that "Accept all" leaves marketing off.
        """
        if self.privacy_signal == "gpc":
            off = [self.banner.category_label(self.banner.settings.category(k), self.lang)
                   for k in gpc_covers(self.banner.settings) if k not in self.granted]
            return self.t("banner.gpc", off=", ".join(off)) if off else ""
        return self.t("banner.dnt") if self.privacy_signal else ""

    @property
    def min_age(self) -> str:
        """The line that the site is not meant for children (``CONSENTKIT_MIN_AGE``), or ``""``."""
        age = self.banner.settings.min_age
        return self.t("banner.min_age", age=age) if age else ""

    @property
    def keeps_records(self) -> bool:
        """True when the app keeps consent records (a ledger), which the visitor may get."""
        return self.banner.ext.ledger is not None

    @property
    def records(self) -> Records | None:
        """The visitor's consent records (download, erase, receipt); ``None`` without a ledger."""
        return Records.of(self)

    @property
    def data(self) -> dict[str, Any]:
        """What the banner script needs, handed over as JSON (``|tojson``)."""
        ext = self.banner.ext
        mode = ext.consent_mode
        data = {
            "endpoint": self.action_url,
            "decided": self.decided or self.by_default,
            "granted": self.granted,
            "consentMode": {k: list(v) for k, v in dict(mode).items()},
            "saved": self.t("status.saved"),
        }
        if ext.policy is not None and ext.vendors is not None:
            # granting one of these lets the browser reach a host this page's policy
            # blocks: only a reload gets the page the new policy
            view = restricted_view(ext)
            registry = view.registry if view is not None else ext.vendors
            reload_on = list(registry.widening(frozenset(self.granted)))
            if view is not None and view.home is not None:
                reload_on.append(TRANSFERS)  # brings the services abroad in
            data["reloadOn"] = reload_on
        return data

    # -- rules per audience ------------------------------------------------------

    @property
    def transfers(self) -> Transfers | None:
        """The separate "transfers abroad" line (a rule with ``transfer_consent`` and
        services sending data outside the visitor's country), else ``None``."""
        if not self.rule.transfer_consent:
            return None
        abroad = regions_of(self.banner.ext).abroad(self.rule, visitor_country())
        if not abroad:
            return None
        countries = sorted({c for s in abroad for c in s.countries})
        shown = self.decided or self.by_default
        return Transfers(
            services=[s.name for s in abroad], countries=countries,
            checked=shown and self.state.allows(TRANSFERS),
            text=self.t("transfers.text", services=", ".join(s.name for s in abroad),
                        countries=", ".join(countries)))

    @property
    def not_offered(self) -> str:
        """One line naming the services the rule per audience does not offer here, or ``""``."""
        if not self.rule.forbids_any:
            return ""
        names = sorted({s.name for s in self.banner.ext.vendors.declared
                        if self.rule.forbids(s)})
        return self.t("prefs.not_offered", services=", ".join(names)) if names else ""

    @property
    def controller(self) -> list[tuple[str, str]]:
        """``CONSENTKIT_CONTROLLER`` as ``(field, value)`` pairs (empty when not set)."""
        return list(self.banner.settings.controller)

    @property
    def consent_days(self) -> int:
        """How long a choice lasts (``CONSENTKIT_MAX_AGE``), in whole days (at least 1)."""
        return max(1, round(self.banner.settings.max_age / 86400))

    @property
    def opted_out(self) -> bool:
        """Is the sale and sharing of the visitor's data (``marketing``) off?"""
        return not self.state.allows("marketing")

    @property
    def opt_out_keeps(self) -> list[str]:
        """What the opt-out form keeps granted: the visitor's choice (or the opt-out model's
        defaults) without the categories a Global Privacy Control signal opts out of."""
        from .gpc import GPC_OFF

        shown = self.decided or self.by_default
        granted = self.state.granted if shown else frozenset()
        return sorted(k for k in granted if k != "necessary" and k not in GPC_OFF)

    @property
    def abroad(self) -> list[tuple[str, tuple[str, ...]]]:
        """``(service, countries)`` of the services offered here that send data outside
        the visitor's country (the information notice's transfers abroad)."""
        services = regions_of(self.banner.ext).abroad(self.rule, visitor_country())
        return [(s.name, s.countries) for s in services]


@dataclass
class Transfers:
    """The separate consent line for transfers abroad, as the templates show it."""

    services: list[str]
    countries: list[str]
    checked: bool
    text: str
    key: str = TRANSFERS
    toggle_id: str = "consentkit-transfers"


@dataclass
class Records:
    """What the preferences page offers for the visitor's consent records, without JavaScript.

    ``export_url`` downloads them (``GET /consent/export``); ``erase_url`` asks
    for a confirmation first (``confirm_url``, the preferences page with
    ``?erase=confirm``), whose form posts to ``POST /consent/erase`` and comes
    back to ``erased_url``; ``receipt_url`` is the signed receipt, when the app
    has a ``"receipt"`` service.
    """

    #: the visitor has a consent id (a cookie): there may be records
    known: bool
    export_url: str
    erase_url: str
    confirm_url: str
    cancel_url: str
    erased_url: str
    receipt_url: str | None
    #: this request is the confirmation step, or comes back from an erasure
    confirming: bool
    erased: bool

    @classmethod
    def of(cls, view: BannerView) -> Records | None:
        ext = view.banner.ext
        if ext.ledger is None:
            return None
        from .rights import cookie_consent_id

        receipt_url = None
        if ext.receipt_keyring is not None:
            try:
                receipt_url = _url_for("consentkit.receipt")
            except BuildError:  # the signed receipt's endpoint is not there yet
                receipt_url = (view.banner.settings.url_prefix or "") + "/receipt"
        args = query_args() if has_request_context() else {}

        def page(**extra: Any) -> str:
            return _url_for("consentkit.preferences", next=view.next, lang=view.lang, **extra)

        return cls(
            known=cookie_consent_id(ext) is not None,
            export_url=_url_for("consentkit.export"),
            erase_url=_url_for("consentkit.erase", lang=view.lang),
            confirm_url=page(erase="confirm") + "#consentkit-records",
            cancel_url=page() + "#consentkit-records",
            erased_url=page(erased="1") + "#consentkit-records",
            receipt_url=receipt_url,
            confirming=args.get("erase") == "confirm",
            erased=args.get("erased") == "1",
        )


_VOWELS = frozenset("aeiouyəıöüAEIOUYƏIİÖÜаеёиоуыэюяАЕЁИОУЫЭЮЯ")
_LONG_WORD = re.compile(r"\w{12,}")


def soft_hyphens(text: str) -> str:
    """``text`` with a soft hyphen (U+00AD) in every word of 12 letters or more.

    It goes before the consonant that starts a syllable (a consonant followed by
    a vowel) nearest the middle of the word, where a browser may break the word
    and show a hyphen: ``Tənzimləmələr`` becomes ``Tənzim­ləmələr``. Nothing
    changes where the word fits.
    """

    def split(match: re.Match[str]) -> str:
        word = match.group(0)
        cuts = [i for i in range(3, len(word) - 3)
                if word[i] not in _VOWELS and word[i + 1] in _VOWELS]
        if not cuts:
            return word
        cut = min(cuts, key=lambda i: abs(i - len(word) / 2))
        return word[:cut] + "\u00ad" + word[cut:]

    return _LONG_WORD.sub(split, text)


_SPACE_BYTES = b" \t\n\r\f"


def _tag_end(text: bytes, at: int, tag: bytes) -> bool:
    """True when ``text[at:]`` is the end tag ``tag`` (``b"</body"``): spaces, then ``>``."""
    end = at + len(tag)
    while end < len(text) and text[end] in _SPACE_BYTES:
        end += 1
    return end < len(text) and text[end] == 0x3E  # ">"


def _rfind_tag(text: bytes, tag: bytes) -> int:
    """The start of the last end tag ``tag`` in ``text`` (lower case), or -1."""
    at = text.rfind(tag)
    while at >= 0 and not _tag_end(text, at, tag):
        at = text.rfind(tag, 0, at)
    return at


def _last_ends(body: bytes, tail: int = 4096) -> tuple[int, int]:
    """Where the last ``</body>`` and the last ``</html>`` of ``body`` start (any
    case, spaces before ``>``), -1 for none.

    They are almost always near the end, so the last ``tail`` bytes are searched
    first; a ``</body>`` there is the last one of the whole body (one that
    straddles the boundary starts earlier), else the whole body is searched.
    Plain searches in a lower-cased copy: far faster than a case-blind pattern.
    """
    start = max(len(body) - tail, 0)
    text = body[start:].lower()
    found = _rfind_tag(text, b"</body")
    if found < 0 and start:
        start, text = 0, body.lower()
        found = _rfind_tag(text, b"</body")
    if found >= 0:
        return start + found, -1  # the </html> after it does not matter
    found = _rfind_tag(text, b"</html")
    return -1, (start + found if found >= 0 else -1)


def _absolute(markup: bytes, root: bytes) -> bytes:
    """``markup`` with each attribute's root-relative URL (``="/consent/…"``) made absolute
    with ``root`` (the request's ``scheme://host``, escaped and encoded)."""
    return _ROOT_RELATIVE.sub(lambda m: m[1] + root + b"/", markup)


def _head_end(body: bytes, before: int) -> int:
    """Where the first ``</head>`` of ``body`` starts, when it comes before ``before``; else -1.

    Only the first 64 KB are searched (the lower-case tag; another spelling in
    the first 8 KB): past that, the banner brings its own link.
    """
    limit = min(max(before, 0), 65536)
    for text, end in ((body, limit), (body[:min(limit, 8192)].lower(), limit)):
        at = text.find(b"</head", 0, end)
        while at >= 0:
            if _tag_end(text, at, b"</head"):
                return at
            at = text.find(b"</head", at + 1, end)
    return _NOWHERE


def insertion_point(body: bytes) -> int:
    """Where the banner goes in ``body``: before the last ``</body>`` (any case,
    spaces before ``>``), else before the last ``</html>``, else at the end of a
    body that starts like a document; ``-1`` for a fragment."""
    body_end, html_end = _last_ends(body)
    if body_end >= 0:
        return body_end
    if html_end >= 0:
        return html_end
    return len(body) if _DOC_START.match(body) else _NOWHERE


def _partial_request(environ: Mapping[str, Any]) -> bool:
    """True for a request whose answer replaces a part of a page (htmx, Turbo frames).

    A boosted htmx request and an htmx history restore swap in a whole page,
    so they get the banner like any other.
    """
    if "HTTP_TURBO_FRAME" in environ:
        return True
    if environ.get("HTTP_HX_REQUEST", "").strip().lower() != "true":
        return False
    return not any(environ.get(key, "").strip().lower() == "true"
                   for key in ("HTTP_HX_BOOSTED", "HTTP_HX_HISTORY_RESTORE_REQUEST"))


def _signal(settings: Settings, environ: Mapping[str, Any] | None = None) -> str:
    """Which browser privacy signal keeps ``marketing`` off on "Accept all": ``"gpc"``
    (``Sec-GPC: 1``), ``"dnt"`` (``DNT: 1``, when honoured), else ``""``. ``environ``:
    the request's, when the caller holds it already."""
    if "marketing" not in settings.optional_keys or not privacy_signal(settings, environ):
        return ""
    return "gpc" if settings.honor_gpc and gpc_received() else "dnt"


def _outdated(state: ConsentState | None = None, ctx: RequestConsent | None = None) -> bool:
    """True when the visitor's cookie holds a choice for an earlier policy version.

    The state the request came with, even once a choice of this request replaced it:
    the banner the visitor answered said that the policy changed. ``state`` and ``ctx``:
    the request's state and bookkeeping, when the caller holds them already.
    """
    if state is None:
        state = get_state()
    if state.outdated:
        return True
    came_with = (ctx if ctx is not None else request_consent()).state
    return came_with is not None and came_with.outdated


def _here() -> str:
    """The current path with its query string: where the forms return to."""
    query = request.query_string.decode("latin-1")
    return request.path + ("?" + query if query else "")


_SCRIPT_OR_TAG = re.compile(r"<script\b.*?</script\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_SPACE = re.compile(r"\s+")


def _rule_key(ext: ConsentKitState) -> str:
    """What the banner's markup depends on of the request's rule per audience (``""``:
    nothing; else the key of the view of a rule that keeps services off, which are then not
    offered, or the name of a rule with a notice, a transfers line or the opt-out model)."""
    view = restricted_view(ext)
    if view is not None:
        return view.key
    table = ext.settings.regions
    if table.notices_any or table.opt_out_any or table.transfers_any:
        rule = current_rule()
        if rule.separate_notice or rule.opt_out or rule.transfer_consent:
            return rule.name
    return ""


def visible_text(markup: str) -> str:
    """The text of ``markup`` as a reader sees it: no tags, no scripts, single spaces."""
    return _SPACE.sub(" ", html.unescape(_SCRIPT_OR_TAG.sub(" ", markup))).strip()


def get_banner(app: Flask | None = None) -> Banner:
    from .appstate import get_kit_state

    banner: Banner = get_kit_state(app).banner
    return banner


def install(app: Flask, ext: ConsentKitState) -> None:
    """Wire the banner into ``app``: services, Jinja globals and the injecting processor."""
    banner = Banner(app, ext)
    ext.banner = banner
    ext.translate = banner.translate_for_services
    ext.language = banner.language
    ext.banner_fingerprint = banner.fingerprint
    ext.notice = banner.notice
    ext.processors.append(banner.inject)  # documents only (see Banner.inject)
    ext.processors.append(banner.remember_language)  # after inject, which picks the language
    app.jinja_env.globals["consent_banner"] = banner.render
    app.jinja_env.globals["consentkit_ui"] = banner.view
