"""The visitor's consent: :class:`ConsentState`, ``current_consent`` and the cookie codec.

The cookie holds ``{"v": policy version, "g": granted categories, "t": decision
time, "i": consent id, "s": source}`` signed by :class:`itsdangerous.URLSafeTimedSerializer`
with a salt of its own and the keys ``[*SECRET_KEY_FALLBACKS, SECRET_KEY]``.
Anything wrong with it — absent, tampered with, signed by an unknown key, for
another policy version, expired, oversized, malformed — reads as *undecided*.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from flask import current_app, g, has_request_context, request
from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest
from werkzeug.local import LocalProxy

from . import _compat
from .categories import NECESSARY, TRANSFERS

if TYPE_CHECKING:
    from flask import Flask, Request

    from .config import Settings


Source = Literal["banner", "preferences", "api", "gpc"]
SOURCES: frozenset[str] = frozenset({"banner", "preferences", "api", "gpc"})

#: Salt of the consent cookie; no other token of the app can be replayed as consent.
COOKIE_SALT = "flask-consentkit.consent.v1"
#: Browsers keep cookies up to about 4 KB; anything longer is not ours.
MAX_COOKIE_LENGTH = 4096
_CONSENT_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_ONLY_NECESSARY = frozenset({NECESSARY})


@dataclass(frozen=True)
class ConsentState:
    """What one visitor has decided. Immutable; a decision makes a new state."""

    granted: frozenset[str] = _ONLY_NECESSARY
    decided: bool = False
    consent_id: str | None = None
    policy_version: str | None = None
    decided_at: datetime | None = None
    source: str | None = None
    #: undecided because the visitor's choice was made for another policy version
    #: (a valid cookie of an earlier ``CONSENTKIT_POLICY_VERSION``): the banner says
    #: that the policy changed
    outdated: bool = False

    def allows(self, category: str) -> bool:
        """True when ``category`` is granted (``necessary`` always is)."""
        return category == NECESSARY or category in self.granted

    def denied(self, categories: Iterable[str]) -> frozenset[str]:
        """The categories among ``categories`` that are not granted."""
        return frozenset(c for c in categories if not self.allows(c))

    def expires_at(self, max_age: int) -> datetime | None:
        if self.decided_at is None:
            return None
        return datetime.fromtimestamp(self.decided_at.timestamp() + max_age, UTC)

    def to_json(self, max_age: int) -> dict[str, Any]:
        """The JSON shape of ``GET /consent/state``."""
        expires = self.expires_at(max_age)
        return {
            "decided": self.decided,
            "granted": sorted(self.granted | _ONLY_NECESSARY),
            "policy_version": self.policy_version,
            "consent_id": self.consent_id,
            "decided_at": _iso(self.decided_at),
            "expires_at": _iso(expires),
            "source": self.source,
        }


UNDECIDED = ConsentState()
#: the state of a visitor whose choice was for another policy version
OUTDATED = ConsentState(outdated=True)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def new_consent_id() -> str:
    """A random pseudonymous id: 128 bits, no link to the person."""
    return secrets.token_urlsafe(16)


def consent_keys(settings: Settings) -> set[str]:
    """What a visitor may grant: the optional categories and, when a rule per audience asks
    for it, the separate consent to transfers abroad (``regions.TRANSFERS``)."""
    keys = set(settings.optional_keys)
    if settings.regions.transfers_any:
        keys.add(TRANSFERS)
    return keys


def decide(
    settings: Settings,
    granted: Iterable[str],
    *,
    previous: ConsentState,
    source: str,
    now: float | None = None,
) -> ConsentState:
    """A new decided state; the consent id is kept from ``previous`` when it has one."""
    now_ts = int(now if now is not None else time.time())
    keys = consent_keys(settings)
    return ConsentState(
        granted=frozenset(c for c in granted if c in keys) | _ONLY_NECESSARY,
        decided=True,
        consent_id=previous.consent_id or new_consent_id(),
        policy_version=settings.policy_version,
        decided_at=datetime.fromtimestamp(now_ts, UTC),
        source=source,
    )


def withdrawn_by(previous: ConsentState, state: ConsentState) -> frozenset[str]:
    """The categories a decision takes back: granted in ``previous`` — the visitor's last
    choice or, undecided, their defaults (under the opt-out model every category but what a
    privacy signal keeps off) — and not in ``state``."""
    return previous.granted - state.granted - _ONLY_NECESSARY


class ConsentCodec:
    """Signs and verifies the consent cookie; caches verified values.

    The cache maps a cookie value whose signature has been verified to the
    state it carries and the moment that state expires, checked on every use,
    so a cached value never outlives its validity. Settings (keys, policy
    version, max age) are fixed for the codec's lifetime.
    """

    cache_size = 4096

    def __init__(self, settings: Settings, secret_key: Any, fallbacks: Iterable[Any] = ()) -> None:
        self.settings = settings
        keys = [*fallbacks, secret_key]
        self.serializer = URLSafeTimedSerializer(keys, salt=COOKIE_SALT)
        self.current = URLSafeTimedSerializer(secret_key, salt=COOKIE_SALT)
        self._has_fallbacks = len(keys) > 1
        self._cache: OrderedDict[str, tuple[ConsentState, float, bool]] = OrderedDict()
        self._lock = threading.Lock()

    def dumps(self, state: ConsentState) -> str:
        assert state.decided and state.decided_at is not None and state.consent_id
        payload: dict[str, Any] = {
            "v": state.policy_version,
            "g": sorted(state.granted - _ONLY_NECESSARY),
            "t": int(state.decided_at.timestamp()),
            "i": state.consent_id,
        }
        if state.source:
            payload["s"] = state.source
        token: str = self.current.dumps(payload)
        return token

    def loads(self, value: str | None, now: float | None = None) -> tuple[ConsentState, bool]:
        """Return ``(state, reissue)``; ``reissue`` means it was signed with a fallback key."""
        if not value or len(value) > MAX_COOKIE_LENGTH:
            return UNDECIDED, False
        hit = self._cache.get(value)
        if hit is None:
            verified = self._verify(value)
            if verified is None:
                return UNDECIDED, False
            payload, reissue = verified
            state = self._state(payload, now)
            expires = (state.decided_at.timestamp() + self.settings.max_age
                       if state.decided_at is not None else float("inf"))
            hit = (state, expires, reissue and state.decided)
            with self._lock:
                self._cache[value] = hit
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        state, expires, reissue = hit
        if (now if now is not None else time.time()) >= expires:
            return UNDECIDED, False
        return state, reissue

    def _verify(self, value: str) -> tuple[dict[str, Any], bool] | None:
        max_age = self.settings.max_age
        try:
            payload = self.current.loads(value, max_age=max_age)
            reissue = False
        except BadData:
            if not self._has_fallbacks:
                return None
            try:
                payload = self.serializer.loads(value, max_age=max_age)
            except BadData:
                return None
            reissue = True
        except Exception:  # noqa: BLE001 - any decoding failure means "undecided"
            return None
        if not isinstance(payload, dict):
            return None
        return payload, reissue

    def _state(self, payload: dict[str, Any], now: float | None) -> ConsentState:
        settings = self.settings
        version, granted, decided_at = payload.get("v"), payload.get("g"), payload.get("t")
        consent_id, source = payload.get("i"), payload.get("s")
        now_ts = now if now is not None else time.time()
        if (
            not isinstance(version, str)
            or not isinstance(granted, list)
            or not all(isinstance(c, str) for c in granted)
            or isinstance(decided_at, bool)
            or not isinstance(decided_at, int)
            or not 0 < decided_at <= now_ts + 300
            or decided_at + settings.max_age <= now_ts
            or not isinstance(consent_id, str)
            or not _CONSENT_ID.match(consent_id)
            or (source is not None and source not in SOURCES)
        ):
            return UNDECIDED
        if version != settings.policy_version:
            return OUTDATED
        keys = consent_keys(settings)
        return ConsentState(
            granted=frozenset(c for c in granted if c in keys) | _ONLY_NECESSARY,
            decided=True,
            consent_id=consent_id,
            policy_version=version,
            decided_at=datetime.fromtimestamp(decided_at, UTC),
            source=source,
        )


@dataclass(slots=True)
class RequestConsent:
    """Per-request bookkeeping, kept in the request's environ (see ``ENVIRON_KEY``)."""

    state: ConsentState | None = None
    #: the cookie was signed with a fallback key: re-sign it on this response
    reissue: bool = False
    #: a decision made during this request, to be written to the cookie
    decision: ConsentState | None = None
    #: the visitor erased their data: clear the cookie
    clear: bool = False
    #: the response depends on the consent cookie (adds ``Vary: Cookie``)
    varies: bool = False
    #: other request headers the response depends on, written into ``Vary`` with
    #: ``Cookie`` once, at the end of the response hook
    vary: tuple[str, ...] = ()
    #: the request's rule per audience was read from the client's address (``regions``):
    #: the response depends on it, which ``Vary`` cannot say (``Cache-Control: private``)
    by_address: bool = False
    #: categories withdrawn by this request's decision
    withdrawn: frozenset[str] = frozenset()
    #: the response's body holds runs of NULs where these bytes go, put in last, after
    #: the banner (the gating's output of a page kept with holes: the same kept object
    #: on every request, which the banner finds by identity)
    fills: tuple[bytes, ...] = ()
    #: the kept document (``gating.html.ScannedDocument``) whose holes ``fills`` go into:
    #: a later page with the same bytes around its holes gets the same whole output
    holed: Any = None
    #: scratch space for subsystems (technical data, language …), keyed by name
    cache: dict[str, Any] = field(default_factory=dict)


def _g() -> Any:
    """Flask's ``g`` of the current app context (the proxy raises outside one)."""
    app_ctx = _compat.app_context()
    return app_ctx.g if app_ctx is not None else g


#: where a request's bookkeeping lives: its WSGI environ, which belongs to that request
#: alone (``g`` does not: requests made inside an app context pushed by the caller, as
#: ``flask consent scan`` and tests do, share that context's ``g``)
ENVIRON_KEY = "consentkit.request"


def _store() -> dict[str, Any]:
    """The current request's environ, or outside a request the app context's ``g``."""
    req_ctx = _compat.request_context()
    if req_ctx is not None:
        return req_ctx.request.environ  # type: ignore[no-any-return]
    if has_request_context():  # a Flask without the context variables
        return request.environ
    return _g().__dict__  # type: ignore[no-any-return]


def request_consent() -> RequestConsent:
    """The per-request bookkeeping object, created on first use."""
    req_ctx = _compat.request_context()  # what _store() does, without its call (asked often)
    store = req_ctx.request.environ if req_ctx is not None else _store()
    ctx: RequestConsent | None = store.get(ENVIRON_KEY)
    if ctx is None:
        ctx = store[ENVIRON_KEY] = RequestConsent()
    return ctx


def environ_and_consent() -> tuple[dict[str, Any], RequestConsent]:
    """``(the request's environ, request_consent())``, without ``request_parts()``'s call."""
    req_ctx = _compat.request_context()
    environ = req_ctx.request.environ if req_ctx is not None else request_parts()[1]
    return environ, request_consent()


def peek_request_consent() -> RequestConsent | None:
    """The per-request bookkeeping object if something created it, else ``None``."""
    req_ctx = _compat.request_context()  # as in request_consent()
    store = req_ctx.request.environ if req_ctx is not None else _store()
    ctx: RequestConsent | None = store.get(ENVIRON_KEY)
    return ctx


def request_parts() -> tuple[Flask, dict[str, Any]]:
    """``(current app, WSGI environ)`` of the current request (the proxies raise outside one)."""
    req_ctx = _compat.request_context()
    if req_ctx is not None:
        return req_ctx.app, req_ctx.request.environ
    return current_app._get_current_object(), request.environ  # type: ignore[attr-defined]


def query_args(strict: bool = False) -> MultiDict[str, str]:
    """The current request's query arguments (``request.args``); none when the query
    string is not UTF-8, or with ``strict`` a 400.

    A server may pass the request line's bytes as they came (PEP 3333: decoded as
    latin-1), and werkzeug raises ``UnicodeDecodeError`` reading such a query. An
    app's page must not fail for an argument the extension reads (``lang``); its own
    views (``strict``) tell the visitor what is wrong.
    """
    try:
        return request.args
    except UnicodeDecodeError:
        if strict:
            raise BadRequest("The query string is not valid UTF-8 (percent-encode it).") from None
        return MultiDict()


def current_request() -> Request:
    """Flask's ``request`` object itself (the proxy raises outside a request)."""
    req_ctx = _compat.request_context()
    if req_ctx is not None:
        return req_ctx.request  # type: ignore[no-any-return]
    return request._get_current_object()  # type: ignore[attr-defined,no-any-return]


def get_state() -> ConsentState:
    """The visitor's consent for this request, resolved once and lazily."""
    return state_of(request_consent())


def state_of(ctx: RequestConsent) -> ConsentState:
    """:func:`get_state`, for a caller that holds the request's bookkeeping already."""
    ctx.varies = True
    if ctx.decision is not None:
        return ctx.decision
    if ctx.clear:
        return UNDECIDED
    if ctx.state is None:
        app, environ = request_parts()
        ext = app.extensions["consentkit"]
        value = read_cookie(environ.get("HTTP_COOKIE"), ext.settings.cookie_name)
        ctx.state, ctx.reissue = ext.codec.loads(value)
        if not ctx.state.decided:
            # a rule per audience of the opt-out model: its undecided visitors' defaults
            default = ext.default_state
            if default is not None:
                ctx.state = default(ctx.state)
    return ctx.state


def read_cookie(header: str | None, name: str) -> str | None:
    """The first value of cookie ``name`` in a ``Cookie`` header.

    Parsing the whole header into a dict costs about 8 µs per request; the
    consent cookie is never quoted (URL-safe base64 and dots), so finding its
    ``name=`` pair is enough. Quoted or otherwise odd values fail the signature
    check later and read as undecided.
    """
    if not header:
        return None
    prefix = name + "="
    for part in header.split(";"):
        part = part.strip()
        if part.startswith(prefix):
            return part[len(prefix):]
    return None


#: The visitor's :class:`ConsentState` for the current request.
current_consent: ConsentState = LocalProxy(get_state)  # type: ignore[assignment]
