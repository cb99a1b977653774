"""The :class:`ConsentKit` extension object."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from flask import Flask, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from ._compat import header_items, header_list
from .config import Settings, load_settings
from .errors import ConsentConfigError, ConsentKitError
from .state import (
    ConsentCodec,
    ConsentState,
    RequestConsent,
    _g,
    current_consent,
    current_request,
    get_state,
    peek_request_consent,
)

F = TypeVar("F", bound=Callable[..., Any])

#: A function that post-processes every response (gating, banner, cookies).
ResponseProcessor = Callable[[Response, "ConsentKitState"], Response]


class AlreadyRegisteredError(ConsentKitError, RuntimeError):
    """:meth:`ConsentKit.init_app` was called twice for one app."""


@dataclass
class ConsentKitState:
    """Everything the extension keeps for one app, at ``app.extensions["consentkit"]``."""

    kit: ConsentKit
    settings: Settings
    codec: ConsentCodec
    #: run in order on every response before the consent cookie is written; one whose
    #: function has ``documents_only = True`` only on documents (:func:`is_document`)
    processors: list[ResponseProcessor] = field(default_factory=list)
    #: objects of the subsystems (ledger, geo reader, user-agent parser …)
    services: dict[str, Any] = field(default_factory=dict)


def first_header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of header ``name`` (any case), or ``None``.

    ``headers.get(name)`` of werkzeug builds and catches an exception for a
    header that is absent, the common case on the per-request path.
    """
    name = name.lower()
    key: str
    value: str
    for key, value in header_items(headers):
        if key.lower() == name:
            return value
    return None


#: the media types of documents, which the HTML rewrite, the banner and the browser
#: policy may change (each processor narrows it further: the rewrite leaves SVG alone)
DOCUMENT_TYPES = frozenset({"text/html", "application/xhtml+xml", "image/svg+xml"})
_HTML = "text/html; charset=utf-8"


def _content_type_and_cookies(headers: Iterable[tuple[str, str]]) -> tuple[str | None, bool]:
    """``(the first Content-Type, whether a Set-Cookie is there)``, in one pass."""
    content_type: str | None = None
    cookies = False
    key: str
    value: str
    for key, value in header_items(headers):
        if len(key) == 12 and content_type is None and key.lower() == "content-type":
            content_type = value
        elif len(key) == 10 and key.lower() == "set-cookie":
            cookies = True
    return content_type, cookies


def is_document(headers: Iterable[tuple[str, str]]) -> bool:
    """Is the response with ``headers`` an HTML, XHTML or SVG document?"""
    content_type = first_header(headers, "Content-Type")
    if content_type is None:
        return False
    return (content_type == _HTML
            or content_type.split(";", 1)[0].strip().lower() in DOCUMENT_TYPES)


def response_body(response: Response) -> bytes:
    """``response.get_data()``, without the flattening when the body is one ``bytes``.

    The caller has checked that the response is neither streamed nor passed through.
    """
    body = response.response
    if type(body) is list and len(body) == 1 and type(body[0]) is bytes:
        return body[0]
    return response.get_data()


def replace_body(response: Response, data: bytes, old: bytes) -> None:
    """``response.set_data(data)``, with less work for ``Content-Length``.

    Left alone when the length cannot change; else rewritten in place when
    werkzeug wrote it (its own spelling, one header), else set as werkzeug does.
    """
    response.response = [data]
    if len(data) == len(old) or not response.automatically_set_content_length:
        return
    headers = header_list(response.headers)
    if headers is not None:
        for index, (key, _) in enumerate(headers):
            if key == "Content-Length":
                headers[index] = (key, str(len(data)))
                return
    response.headers["Content-Length"] = str(len(data))


#: the largest error page read whole so that it can be gated and get the banner
MAX_ERROR_PAGE = 1 << 20


def _settle_error_page(response: Response) -> None:
    """Read an error page whose body is an iterator, but of a known small length, whole.

    Flask turns an ``HTTPException`` (``abort(404)``, an unknown URL) into a
    response by running it as a WSGI app, so its body is an iterator although it
    is one small page: read whole, it is gated and gets the banner like any
    page, instead of being taken for a stream.
    """
    length = response.content_length
    if (not response.direct_passthrough and length is not None
            and length <= MAX_ERROR_PAGE):
        response.make_sequence()


_PLAIN_VARY = re.compile(r"[A-Za-z0-9-]+(?:, [A-Za-z0-9-]+)*")


def add_vary(response: Response, *tokens: str) -> None:
    """``response.vary.add(token)`` for each token, without the parse and rewrite when
    it is cheap.

    An absent header is added; a header of plain comma-separated names gets the
    same value werkzeug's ``HeaderSet`` would write; anything else goes through it.
    """
    current = first_header(response.headers, "Vary")
    if current is None:
        response.headers.add("Vary", ", ".join(dict.fromkeys(tokens)))
    elif _PLAIN_VARY.fullmatch(current):
        have = current.lower().split(", ")
        new = [t for t in dict.fromkeys(tokens) if t.lower() not in have]
        if new:
            response.headers.set("Vary", ", ".join([current, *new]))
    else:
        for token in tokens:
            response.vary.add(token)


def get_kit_state(app: Flask | None = None) -> ConsentKitState:
    """The extension's per-app state; raises when the app did not register it."""
    app = app or current_app
    try:
        return cast(ConsentKitState, app.extensions["consentkit"])
    except KeyError:
        raise ConsentKitError(
            "flask-consentkit is not registered on this app; call ConsentKit(app) "
            "or consent.init_app(app) first."
        ) from None


class ConsentKit:
    """Consent for a Flask app: banner, signed cookie, receipts and enforcement.

    ::

        consent = ConsentKit(app)
        # or, with an app factory
        consent = ConsentKit()
        consent.init_app(app)

    :param app: the app to register on now, or ``None`` to call :meth:`init_app` later.
    :param nonce_getter: returns the request's CSP nonce (for example
        ``lambda: request.csp_nonce`` with Flask-Talisman). By default the
        extension looks for ``request.csp_nonce`` and ``g.csp_nonce``.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        nonce_getter: Callable[[], str | None] | None = None,
    ) -> None:
        self.nonce_getter = nonce_getter
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate the configuration and wire the extension into ``app``."""
        if "consentkit" in app.extensions:
            raise AlreadyRegisteredError(
                "A 'ConsentKit' instance has already been registered on this app. "
                "Import and use that instance."
            )
        settings = load_settings(app)
        codec = ConsentCodec(
            settings,
            app.config["SECRET_KEY"],
            app.config.get("SECRET_KEY_FALLBACKS") or (),
        )
        state = ConsentKitState(kit=self, settings=settings, codec=codec)
        app.extensions["consentkit"] = state
        self._install(app, state)

    def _install(self, app: Flask, state: ConsentKitState) -> None:
        # imported here: the subsystems import this module
        from . import views
        from .banner import install as install_banner
        from .collect import install as install_collect
        from .gating import install as install_gating
        from .policy import install as install_policy
        from .receipts import install as install_signing
        from .recording import install as install_ledger
        from .regions import install as install_regions

        views.register(app, state.settings)
        install_gating(app, state)  # processors: cookie filter, then HTML gating
        install_ledger(app, state)
        install_signing(app, state)  # needs the ledger (a receipt to sign)
        install_policy(app, state)  # needs the ledger (where violation reports are kept)
        install_collect(app, state)
        install_regions(app, state)  # needs the vendors (policy) and the geo source (collect)
        app.after_request(self._after_request_of(state))
        app.jinja_env.globals["consent"] = current_consent
        install_banner(app, state)  # keep last: its processor must run after the others

    # -- cookie attributes: small methods an app may override in a subclass --

    def cookie_secure(self, settings: Settings) -> bool:
        """``Secure`` attribute: the configured value, else on for HTTPS requests."""
        if settings.cookie_secure is not None:
            return settings.cookie_secure
        return request.is_secure

    def cookie_samesite(self) -> str:
        return "Lax"

    def cookie_path(self) -> str:
        return "/"

    def csp_nonce(self) -> str | None:
        """The CSP nonce of the current request, if the app uses one."""
        if self.nonce_getter is not None:
            return self.nonce_getter()
        req = current_request()
        # an attribute set on the request (as CSP extensions do) is in its __dict__;
        # getattr() is kept for a property of a Request subclass (it costs an
        # exception when there is none)
        nonce = req.__dict__.get("csp_nonce")
        if nonce is None and hasattr(type(req), "csp_nonce"):
            nonce = getattr(req, "csp_nonce", None)
        if not nonce:
            nonce = _g().get("csp_nonce")
        return nonce if isinstance(nonce, str) else None

    # -- the response pipeline ----------------------------------------------

    def _after_request_of(self, ext: ConsentKitState) -> Callable[[Response], Response]:
        """The ``after_request`` hook of one app, bound to its state (no lookup per request)."""

        def after_request(response: Response) -> Response:
            return self._process_response(response, ext)

        return after_request

    def _after_request(self, response: Response) -> Response:
        return self._process_response(response, get_kit_state())

    def _process_response(self, response: Response, ext: ConsentKitState) -> Response:
        if type(response.response) is not list and response.status_code >= 400:
            _settle_error_page(response)
        content_type, sets_cookies = _content_type_and_cookies(response.headers)
        document = content_type is not None and (
            content_type == _HTML
            or content_type.split(";", 1)[0].strip().lower() in DOCUMENT_TYPES)
        ctx: RequestConsent | None = peek_request_consent()
        if not document and not sets_cookies and ctx is None:
            return response  # an API answer that nothing of the visitor's consent touched
        for processor in ext.processors:
            if document or not getattr(processor, "documents_only", False):
                response = processor(response, ext)
        ctx = peek_request_consent()
        if ctx is None:
            return response
        settings = ext.settings
        if ctx.clear:
            response.delete_cookie(
                settings.cookie_name,
                path=self.cookie_path(),
                secure=self.cookie_secure(settings),
                httponly=True,
                samesite=self.cookie_samesite(),
            )
        elif ctx.decision is not None:
            self._write_cookie(response, ext, ctx.decision)
        elif ctx.reissue and ctx.state is not None and ctx.state.decided:
            self._write_cookie(response, ext, ctx.state)
        if ctx.varies:
            add_vary(response, "Cookie")
        return response

    def _write_cookie(self, response: Response, ext: ConsentKitState, state: ConsentState) -> None:
        settings = ext.settings
        assert state.decided_at is not None
        remaining = int(state.decided_at.timestamp()) + settings.max_age - int(time.time())
        response.set_cookie(
            settings.cookie_name,
            ext.codec.dumps(state),
            max_age=max(remaining, 0),
            path=self.cookie_path(),
            secure=self.cookie_secure(settings),
            httponly=True,
            samesite=self.cookie_samesite(),
        )


def requires_consent(
    category: str,
    *,
    status: int | None = None,
    on_denied: Callable[[], ResponseReturnValue] | None = None,
) -> Callable[[F], F]:
    """Call the view only when the visitor granted ``category``.

    Without that consent the view is not called and the answer is
    ``CONSENTKIT_DENIED_STATUS`` (``204 No Content`` by default, the right
    answer to a tracking beacon), or ``status``, or whatever ``on_denied``
    returns. ::

        @app.post("/beacon")
        @requires_consent("analytics")
        def beacon(): ...
    """

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            ext = get_kit_state()
            if category not in ext.settings.category_keys:
                raise ConsentConfigError(
                    "CONSENTKIT_CATEGORIES",
                    f"@requires_consent({category!r}) names a category the app does not "
                    f"have; use one of {list(ext.settings.category_keys)}.",
                )
            if get_state().allows(category):
                return cast(ResponseReturnValue, view(*args, **kwargs))
            if on_denied is not None:
                return on_denied()
            code = status if status is not None else ext.settings.denied_status
            response = current_app.response_class(status=code)
            if code != 204:
                response = jsonify(error=f"consent for {category!r} is required")
                response.status_code = code
            return response

        return cast(F, wrapper)

    return decorator
