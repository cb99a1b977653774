"""The :class:`ConsentKit` extension object."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, Request, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from . import configkeys
from .appstate import ConsentKitState, ResponseProcessor, get_kit_state
from .config import Settings, load_settings
from .errors import ConsentConfigError, ConsentKitError
from .responses import (
    HTML_UTF8,
    add_vary,
    content_type_and_cookies,
    fill_holes,
    is_document_type,
    make_private,
    replace_body,
    response_body,
    settle_error_page,
)
from .state import (
    ConsentCodec,
    ConsentState,
    RequestConsent,
    _g,
    current_consent,
    current_request,
    get_state,
    peek_request_consent,
    request_consent,
)

#: the largest page whose whole output is kept (:meth:`ConsentKit._kept_page`)
MAX_KEPT_PAGE = 1 << 20

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["AlreadyRegisteredError", "ConsentKit", "ConsentKitState", "ResponseProcessor",
           "get_kit_state", "requires_consent"]


class AlreadyRegisteredError(ConsentKitError, RuntimeError):
    """:meth:`ConsentKit.init_app` was called twice for one app."""


class ConsentKit:
    """Consent for a Flask app: banner, signed cookie, receipts and enforcement.

    ::

        consent = ConsentKit(app)
        # or, with an app factory
        consent = ConsentKit()
        consent.init_app(app)

    The hooks an app may replace are arguments here and attributes after (set them
    before the first request; they apply to every app this object is registered on):

    :param app: the app to register on now, or ``None`` to call :meth:`init_app` later.
    :param nonce_getter: ``() -> str | None``, the request's CSP nonce (for example
        ``lambda: request.csp_nonce`` with Flask-Talisman). By default the
        extension looks for ``request.csp_nonce`` and ``g.csp_nonce``.
    :param locale_selector: ``() -> str | None``, the app's locale for this request
        (``"az"``, ``"ru-RU"`` …), asked after ``?lang=`` and the language the visitor
        chose, before ``Accept-Language``. By default Flask-Babel's locale selector,
        when the app has one.
    :param translate: ``(key, lang, **params) -> str | None``, the app's own text of
        message ``key`` in ``lang`` (``None`` to use the extension's catalogs). It must
        answer from its arguments alone: rendered banners are kept per language.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        nonce_getter: Callable[[], str | None] | None = None,
        locale_selector: Callable[[], str | None] | None = None,
        translate: Callable[..., str | None] | None = None,
    ) -> None:
        self.nonce_getter = nonce_getter
        self.locale_selector = locale_selector
        self.translate = translate
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
        # imported here: they import the request machinery this module's users may not need
        from . import receipts, rights, views  # noqa: F401 - they add their views to views.bp
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

    def csp_nonce(self, req: Request | None = None) -> str | None:
        """The CSP nonce of the current request, if the app uses one.

        ``req``: the current request, when the caller holds it already.
        """
        if self.nonce_getter is not None:
            return self.nonce_getter()
        if req is None:
            req = current_request()
        # an attribute set on the request (as CSP extensions do) is in its __dict__;
        # getattr() is kept for a property of a Request subclass (it costs an
        # exception when there is none)
        nonce = req.__dict__.get("csp_nonce")
        if nonce is None and hasattr(type(req), "csp_nonce"):
            nonce = getattr(req, "csp_nonce", None)
        if not nonce:
            nonce = _g().get("csp_nonce")  # an app's own g class may answer get() itself
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
            settle_error_page(response)
        content_type, sets_cookies = content_type_and_cookies(response.headers)
        # the common page told without the call (is_document_type asks the same first)
        document = content_type == HTML_UTF8 or is_document_type(content_type)
        ctx: RequestConsent | None = peek_request_consent()
        if not document and not sets_cookies and ctx is None:
            return response  # an API answer that nothing of the visitor's consent touched
        page = None
        if document and ext.banner is not None and content_type is not None:
            if ctx is None:
                ctx = request_consent()
            page = ext.banner.page_key(response, content_type, ctx)
        if page is not None:
            assert ctx is not None
            response = self._kept_page(response, ext, page, ctx)
        else:
            for processor in ext.processors:
                if document or not getattr(processor, "documents_only", False):
                    response = processor(response, ext)
            ctx = peek_request_consent()  # a processor may have made it
        if ctx is None:
            return response
        if ctx.fills:
            body = response_body(response)
            replace_body(response, fill_holes(body, ctx.fills), body)
            ctx.fills = ()
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
        if ctx.varies or ctx.vary:
            add_vary(response, *ctx.vary, *(("Cookie",) if ctx.varies else ()))
        if ctx.by_address:
            make_private(response)  # no shared cache may serve it to another audience
        return response

    def _kept_page(self, response: Response, ext: ConsentKitState, key: tuple[Any, ...],
                   ctx: RequestConsent) -> Response:
        """Run the processors on a page whose whole output (the gating's and the banner's)
        is kept under ``key`` (:meth:`.Banner.page_key`: everything that output depends on).

        A page seen before for such a request gets the kept output and skips the
        processors marked ``page_output``; the others (the policy, the cookie filter …)
        run as always.
        """
        body = response_body(response)
        found = ext.page_outputs.get(key)
        out = None
        if found is not None:
            page = found[0]
            if page is body or page == body:
                out = found[1]
            elif type(page) is not bytes:
                # kept with holes (a CSRF field): this page's tokens go where they were
                tokens = page.tokens_in(body)
                if tokens is not None:
                    ctx.fills, out = tokens, found[1]
        if found is not None and out is not None:
            replace_body(response, out, body)
            ctx.vary += found[2]
            ctx.varies = True  # the kept output was made by reading the consent
            for processor in ext.processors:
                if not getattr(processor, "page_output", False):
                    response = processor(response, ext)
            return response
        vary = ctx.vary
        for processor in ext.processors:
            response = processor(response, ext)
        ctx = request_consent()
        if (ctx.varies and type(response.response) is list
                and len(response.response) == 1 and type(response.response[0]) is bytes
                and ctx.vary[:len(vary)] == vary):
            made = response.response[0]
            # a page kept with holes is matched by its kept document, and its output
            # is kept with the holes (the tokens go in at the end of the hook)
            page = body if not ctx.fills else ctx.holed
            if made is not body and page is not None and len(body) <= MAX_KEPT_PAGE:
                ext.page_outputs.put(key, (page, made, ctx.vary[len(vary):]),
                                     len(body) + len(made))
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
                    configkeys.CATEGORIES,
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
