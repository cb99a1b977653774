"""The banner and the preferences page: language choice, catalogs, rendering, injection.

:func:`install` is called once from :meth:`ConsentKit.init_app`. It loads the
message catalogs (``flask_consentkit/i18n/<lang>.json``, one flat JSON object
per language), registers the ``translate`` and ``banner_fingerprint`` services,
the Jinja globals ``consent_banner()`` and ``consentkit_ui()``, and the response
processor that puts the banner before ``</body>`` of HTML pages.

The language of a request is, in order: ``?lang=`` (when it is one of
``CONSENTKIT_LANGUAGES``), the app's locale (a callable the app puts at
``app.extensions["consentkit"].services["locale_selector"]``, else Flask-Babel's
locale selector), the browser's ``Accept-Language``, then
``CONSENTKIT_DEFAULT_LANGUAGE``.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from flask import Flask, Response, current_app, has_request_context, render_template, request
from flask import url_for as _url_for
from jinja2 import TemplateNotFound
from markupsafe import Markup, escape

from .categories import Category, Text, pick_text
from .config import Settings
from .errors import ConsentConfigError
from .extension import add_vary, first_header, replace_body, response_body
from .state import (
    current_request,
    get_state,
    peek_request_consent,
    request_consent,
    request_parts,
)
from .views import privacy_signal, safe_next

if TYPE_CHECKING:
    from .extension import ConsentKitState

#: Where the catalogs live; adding a language is adding ``<code>.json`` here.
I18N_FOLDER = Path(__file__).parent / "i18n"
#: The catalog every other one falls back to for a missing message.
BASE_LANGUAGE = "en"

#: Flask's own Content-Type for HTML, the common case
_HTML = "text/html; charset=utf-8"
_BODY_END = re.compile(rb"</body\s*>", re.IGNORECASE)
_PARAM = re.compile(r"\{([a-z_]+)\}")
_CATEGORY_TEXT = re.compile(r"^category\.([a-z][a-z0-9_-]*)\.(label|description)$")
_CACHE_LANG = "banner.language"
_CACHE_PLACED = "banner.placed"
_TEMPLATES = Path(__file__).parent / "templates" / "consentkit"
#: stand-ins in a cached rendering for what changes on every request
_NEXT = "/consentkit-stand-in-next-7f3a"
_PREFERENCES = "consentkit-stand-in-preferences-7f3a"
_NONCE = "consentkit-stand-in-nonce-7f3a"
#: pages up to this size are kept with the banner put in, up to this many bytes in all
_KEEP_PAGE = 1 << 20
_KEEP_TOTAL = 16 << 20
_STAND_INS = re.compile("(" + "|".join(re.escape(s) for s in (_NEXT, _PREFERENCES, _NONCE)) + ")")

Catalog = Mapping[str, str]


# -- catalogs -----------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def read_catalog(path: Path) -> dict[str, str]:
    """One catalog file as a flat ``{key: text}`` dict; read once per process."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConsentConfigError(
            "CONSENTKIT_LANGUAGES", f"the catalog {path} cannot be read as JSON ({e})."
        ) from e
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ConsentConfigError(
            "CONSENTKIT_LANGUAGES",
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
                "CONSENTKIT_LANGUAGES",
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


class Banner:
    """Per-app banner state: settings, catalogs and the cached text fingerprints."""

    def __init__(self, app: Flask, ext: ConsentKitState) -> None:
        self.ext = ext
        self.settings: Settings = ext.settings
        self.catalogs = load_catalogs(self.settings.languages)
        self._fingerprints: dict[tuple[str, bool], tuple[str, str]] = {}
        self._rendered: dict[tuple[Any, ...], tuple[tuple[str, ...], str]] = {}
        #: the finished markup of requests without a nonce, by everything it depends on
        #: (the consent-mode mapping by identity: it is kept in the first slot)
        self._finals: dict[tuple[Any, ...], tuple[Any, str]] = {}
        #: finished markup (the same ``str`` object each time) -> its bytes, per charset
        self._encoded: dict[tuple[str, str], bytes] = {}
        #: pages seen by :meth:`inject`, by the page object's ``id`` (kept in the
        #: entry, so the ``id`` is not reused while it is here): the page, where its
        #: last ``</body>`` is, and its outputs by the banner object's ``id``
        self._pages: dict[int, tuple[bytes, int, dict[int, tuple[bytes, bytes]]]] = {}
        self._pages_bytes = 0
        self._own: bool | None = None
        #: Accept-Language header → banner language ("" for none); browsers send few values
        self._accept_cache: dict[str, str] = {}
        self._asks = bool(self.settings.optional_keys)

    # -- language ------------------------------------------------------------

    def language(self) -> str:
        """The language of the current request (cached on the request)."""
        if not has_request_context():
            return self.settings.default_language
        ctx = request_consent()
        lang: str | None = ctx.cache.get(_CACHE_LANG)
        if lang is None:
            lang = self._pick_language()
            ctx.cache[_CACHE_LANG] = lang
        return lang

    def _pick_language(self) -> str:
        languages = self.settings.languages
        app, environ = request_parts()
        query = environ.get("QUERY_STRING", "")
        # parse the query only when it can name "lang" (a key may be percent-encoded)
        asked = request.args.get("lang") if "lang" in query or "%" in query else None
        if asked:
            found = _match_language(asked, languages)
            if found:
                return found
        selector = self.ext.services.get("locale_selector")
        if selector is None:
            babel = app.extensions.get("babel")
            selector = getattr(babel, "locale_selector", None)
        if callable(selector):
            locale = selector()
            if locale is not None:
                found = _match_language(str(locale), languages)
                if found:
                    return found
        header = environ.get("HTTP_ACCEPT_LANGUAGE")
        if header:
            found = self._accept_cache.get(header)
            if found is None:
                found = self._from_accept_language()
                if len(self._accept_cache) >= 512:
                    self._accept_cache.clear()
                self._accept_cache[header] = found
            if found:
                return found
        return self.settings.default_language

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

        A message missing from a catalog falls back to the default language,
        then English, then the key itself.
        """
        lang = lang or self.language()
        text = None
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
            for c in self.settings.categories
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

    def _finished(self) -> tuple[str, bool]:
        """``(markup, kept)``: :meth:`_render`, and whether the string is a kept one.

        Without a CSP nonce the finished string is kept per language, choice and
        page, and is the same object on every such request.
        """
        ctx = request_consent()
        ctx.cache[_CACHE_PLACED] = True
        if not self._own_templates():
            return str(render_template("consentkit/banner.html", ui=self.view())), False
        _, environ = request_parts()
        lang = self.language()
        state = get_state()
        nonce = self.ext.kit.csp_nonce()
        mode = self.ext.services.get("consent_mode") or {}
        signal = _signal(self.settings)
        final_key = None
        if nonce is None:
            final_key = (lang, signal, state.decided, state.granted if state.decided else None,
                         id(mode), environ.get("SCRIPT_NAME", ""), environ.get("PATH_INFO", ""),
                         environ.get("QUERY_STRING", ""))
            found = self._finals.get(final_key)
            if found is not None and found[0] is mode:
                return found[1], True
        key = (lang, signal, state.decided, state.granted if state.decided else None,
               nonce is None, request.script_root,
               tuple((k, tuple(v)) for k, v in dict(mode).items()))
        cached = self._rendered.get(key)
        if cached is None:
            view = BannerView(self, _NEXT, stand_ins=nonce is not None)
            rendered = render_template("consentkit/banner.html", ui=view)
            # split at the stand-ins once, so a request only joins the pieces
            cached = (tuple(_STAND_INS.split(rendered)), _url_for("consentkit.preferences"))
            if len(self._rendered) >= 1024:
                self._rendered.clear()
            self._rendered[key] = cached
        pieces, preferences = cached
        next_url = safe_next(_here())
        preferences += f"?next={quote(next_url, safe='/')}&lang={quote(lang)}"
        values = {_NEXT: str(escape(next_url)), _PREFERENCES: str(escape(preferences))}
        if nonce is not None:
            values[_NONCE] = str(escape(nonce))
        text = "".join([values.get(piece, piece) for piece in pieces])
        if final_key is not None:
            if len(self._finals) >= 1024:
                self._finals.clear()
                self._encoded.clear()
            self._finals[final_key] = (mode, text)
        return text, final_key is not None

    def _encoded_banner(self, charset: str) -> bytes:
        """This request's banner, encoded for the page; kept when its markup is."""
        text, kept = self._finished()
        if not kept:
            return text.encode(charset, "xmlcharrefreplace")
        key = (text, charset)
        data = self._encoded.get(key)
        if data is None:
            data = text.encode(charset, "xmlcharrefreplace")
            if len(self._encoded) < 2048:
                self._encoded[key] = data
        return data

    def _own_templates(self) -> bool:
        """True while the app has not overridden the banner's templates."""
        if self._own is None:
            env = current_app.jinja_env
            own = env.loader is not None
            for name in ("consentkit/banner.html", "consentkit/_categories.html"):
                try:
                    _, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
                except TemplateNotFound:
                    filename = None
                own = own and filename is not None and Path(filename).parent == _TEMPLATES
            self._own = own
        return self._own

    def fingerprint(self) -> tuple[str, str]:
        """``(sha256 hex of the banner text shown in this request's language, language)``."""
        lang = self.language()
        key = (lang, _signal(self.settings))
        cached = self._fingerprints.get(key)
        if cached is None:
            view = BannerView(self, "/", undecided=True)
            markup = render_template("consentkit/banner.html", ui=view)
            cached = (hashlib.sha256(visible_text(markup).encode()).hexdigest(), lang)
            self._fingerprints[key] = cached
        return cached

    # -- the response processor ---------------------------------------------------

    def inject(self, response: Response, ext: ConsentKitState) -> Response:
        """Put the banner before the last ``</body>`` of a plain HTML response."""
        content_type = first_header(response.headers, "Content-Type") or ""
        if content_type != _HTML and content_type.split(";", 1)[0].strip() != "text/html":
            return response  # checked first: most responses of an API end here
        endpoint = current_request().endpoint
        if endpoint == "consentkit.preferences":
            add_vary(response, "Accept-Language")  # the page speaks the visitor's language
            return response
        if not self.settings.auto_inject or not self._asks:
            return response
        if (
            response.is_streamed
            or response.direct_passthrough
            or first_header(response.headers, "Content-Encoding") not in (None, "identity")
            or (endpoint is not None and endpoint.startswith("consentkit."))  # our own views
        ):
            return response
        ctx = peek_request_consent()
        if ctx is not None and ctx.cache.get(_CACHE_PLACED):
            return response
        body = response_body(response)
        charset = "utf-8"
        if content_type != _HTML and "charset" in content_type.lower():
            charset = response.mimetype_params.get("charset", "utf-8")
        # The page is usually the very object of an earlier request (kept by the
        # gating), and so is the banner (kept by _render): then so is the result.
        page = self._pages.get(id(body))
        if page is None or page[0] is not body:
            page = (body, _last_body_end(body), {})
            if len(body) <= _KEEP_PAGE:
                self._keep(id(body), page, len(body))
        end, outputs = page[1], page[2]
        if end < 0:
            return response  # no </body> to put it before
        banner = self._encoded_banner(charset)
        found = outputs.get(id(banner))
        if found is not None and found[0] is banner:
            out = found[1]
        else:
            out = b"".join((body[:end], banner, body[end:]))
            if len(body) <= _KEEP_PAGE and len(outputs) < 8:
                # the entry keeps the banner, so its id is not reused while it is here
                outputs[id(banner)] = (banner, out)
                self._pages_bytes += len(out) + len(banner)
        replace_body(response, out, body)
        add_vary(response, "Accept-Language")
        return response

    def _keep(self, key: int, page: tuple[bytes, int, dict[int, tuple[bytes, bytes]]],
              size: int) -> None:
        if len(self._pages) >= 64 or self._pages_bytes + size > _KEEP_TOTAL:
            self._pages = {}
            self._pages_bytes = 0
        # a new dict for each change: readers in other threads see one or the other
        self._pages = {**self._pages, key: page}
        self._pages_bytes += size


class BannerView:
    """The banner and preferences of one request: language, texts, URLs, toggles."""

    def __init__(self, banner: Banner, next_url: str | None = None, *,
                 undecided: bool = False, stand_ins: bool = False) -> None:
        settings = banner.settings
        self.banner = banner
        self.lang = banner.language()
        state = get_state()
        self.decided = state.decided and not undecided
        self.granted = sorted(state.granted) if self.decided else ["necessary"]
        self.next = safe_next(next_url if next_url is not None else _here())
        self.categories = banner.categories(
            self.lang, lambda key: self.decided and state.allows(key)
        )
        optional = [c for c in settings.categories if not c.required]
        self.purposes = self.t(
            "banner.purposes_separator"
        ).join(banner.category_purpose(c, self.lang) for c in optional)
        self.policy_url = settings.privacy_policy_url
        #: the browser asks not to be tracked: "Accept all" leaves marketing off
        self.privacy_signal = _signal(settings)
        self.action_url = _url_for("consentkit.choose", lang=self.lang)
        self.nonce: str | None
        if next_url == _NEXT:  # rendered once, the request's values filled in later
            self.next = _NEXT
            self.preferences_url = _PREFERENCES
            self.nonce = _NONCE if stand_ins else None
        else:
            self.preferences_url = _url_for("consentkit.preferences", next=self.next,
                                            lang=self.lang)
            self.nonce = banner.ext.kit.csp_nonce()
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

    @property
    def data(self) -> dict[str, Any]:
        """What the banner script needs, handed over as JSON (``|tojson``)."""
        services = self.banner.ext.services
        mode = services.get("consent_mode") or {}
        data = {
            "endpoint": self.action_url,
            "decided": self.decided,
            "granted": self.granted,
            "consentMode": {k: list(v) for k, v in dict(mode).items()},
            "saved": self.t("status.saved"),
        }
        if "policy" in services:
            # granting one of these lets the browser reach a host this page's policy
            # blocks: only a reload gets the page the new policy
            data["reloadOn"] = list(services["vendors"].widening(frozenset(self.granted)))
        return data


def _last_body_end(body: bytes, tail: int = 4096) -> int:
    """Where the last ``</body>`` of ``body`` starts (any case, spaces before ``>``), or -1.

    It is almost always near the end, so the last ``tail`` bytes are searched
    first; a match there is the last one of the whole body (one that straddles
    the boundary starts earlier), else the whole body is searched.
    """
    start = max(len(body) - tail, 0)
    end = -1
    for match in _BODY_END.finditer(body, start):
        end = match.start()
    if end >= 0 or start == 0:
        return end
    for match in _BODY_END.finditer(body):
        end = match.start()
    return end


def _signal(settings: Settings) -> bool:
    """True when a browser privacy signal keeps ``marketing`` off on "Accept all"."""
    return "marketing" in settings.optional_keys and privacy_signal(settings)


def _here() -> str:
    """The current path with its query string: where the forms return to."""
    query = request.query_string.decode("latin-1")
    return request.path + ("?" + query if query else "")


_SCRIPT_OR_TAG = re.compile(r"<script\b.*?</script\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_SPACE = re.compile(r"\s+")


def visible_text(markup: str) -> str:
    """The text of ``markup`` as a reader sees it: no tags, no scripts, single spaces."""
    return _SPACE.sub(" ", html.unescape(_SCRIPT_OR_TAG.sub(" ", markup))).strip()


def get_banner(app: Flask | None = None) -> Banner:
    from .extension import get_kit_state

    banner: Banner = get_kit_state(app).services["banner"]
    return banner


def install(app: Flask, ext: ConsentKitState) -> None:
    """Wire the banner into ``app``: services, Jinja globals and the injecting processor."""
    banner = Banner(app, ext)
    ext.services["banner"] = banner
    ext.services["translate"] = banner.translate_for_services
    ext.services["language"] = banner.language
    ext.services["banner_fingerprint"] = banner.fingerprint
    ext.processors.append(banner.inject)
    app.jinja_env.globals["consent_banner"] = banner.render
    app.jinja_env.globals["consentkit_ui"] = banner.view
