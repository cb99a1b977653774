"""The extension's per-app state: :class:`ConsentKitState`, at ``app.extensions["consentkit"]``.

A low module: every subsystem reads the state through it, none through
:mod:`.extension` (``tests/test_layering.py``). Each subsystem's ``install()``
fills its own attributes, in the order :meth:`ConsentKit.init_app` wires them. The
parts every app has are typed as such (reading one before its ``install()`` ran
raises ``AttributeError``); an optional part that stays ``None`` is off (no ledger,
no browser policy, no signing key …).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from flask import Flask, Response, current_app

from .cache import Kept
from .errors import ConsentKitError

if TYPE_CHECKING:
    from .banner import Banner
    from .categories import Service
    from .collect.geo import GeoService
    from .collect.technical import TechnicalData
    from .collect.useragent import UserAgentParser
    from .config import Settings
    from .csp import BrowserPolicy, TokenBucket
    from .extension import ConsentKit
    from .gating import Gating
    from .gating.cookies import VendorCookies
    from .ledger.notices import NoticeStore
    from .ledger.signing import Keyring
    from .ledger.store import Ledger
    from .ledger.violations import Violations
    from .policy import UndeclaredHosts
    from .ratelimit import RateLimiter
    from .regions import Regions
    from .state import ConsentCodec, ConsentState
    from .vendors import VendorRegistry

#: A function that post-processes every response (gating, banner, cookies).
ResponseProcessor = Callable[[Response, "ConsentKitState"], Response]


class Recorder(Protocol):
    """What the choice endpoint calls with each decision (:mod:`.recording`)."""

    def __call__(self, *, action: str, state: ConsentState, previous: ConsentState
                 ) -> dict[str, Any] | None: ...


@dataclass(eq=False)
class ConsentKitState:
    """Everything the extension keeps for one app, at ``app.extensions["consentkit"]``."""

    kit: ConsentKit
    settings: Settings
    codec: ConsentCodec
    #: run in order on every response before the consent cookie is written; one whose
    #: function has ``documents_only = True`` only on documents (:func:`.responses.is_document`).
    #: Ours set both flags, ``False`` included: reading a flag a function lacks raises
    #: (and catches) an ``AttributeError`` on every response
    processors: list[ResponseProcessor] = field(default_factory=list)
    #: whole outputs of pages (the gating's and the banner's, which are marked
    #: ``page_output``), by :meth:`.Banner.page_key`: ``(page, output, Vary tokens)``;
    #: a page kept with holes is its ``ScannedDocument``, and its output has the holes
    page_outputs: Kept[tuple[Any, ...], tuple[Any, bytes, tuple[str, ...]]] = field(
        default_factory=lambda: Kept("page outputs", 256, 16 << 20))

    # -- gating (gating/) ------------------------------------------------------
    gating: Gating = field(init=False)
    #: ``CONSENTKIT_CONSENT_MODE``: category → Consent Mode signals
    consent_mode: dict[str, list[str]] = field(default_factory=dict)
    #: ``vendor_consent_defaults()``: the vendors with a consent API, per extra keys
    vendor_signals: dict[tuple[str, ...], dict[str, Service]] = field(default_factory=dict)
    vendor_cookies: VendorCookies | None = None

    # -- receipts (recording.py, receipts.py) ----------------------------------
    #: ``None`` with ``CONSENTKIT_LEDGER_URL = None``
    ledger: Ledger | None = None
    notices: NoticeStore | None = None
    recorder: Recorder | None = None
    ratelimiter: RateLimiter = field(init=False)
    #: the keys of ``CONSENTKIT_SIGNING_KEY`` and ``…_OLD_KEYS`` (``None`` without any)
    keyring: Keyring | None = None
    #: the keyring, when it can sign and there is a ledger (``GET /consent/receipt``)
    receipt_keyring: Keyring | None = None

    # -- the browser policy (policy.py) ------------------------------------------
    vendors: VendorRegistry = field(init=False)
    undeclared_hosts: UndeclaredHosts = field(init=False)
    violations: Violations = field(init=False)
    report_bucket: TokenBucket = field(init=False)
    #: ``None`` with ``CONSENTKIT_CSP = False``
    policy: BrowserPolicy | None = None

    # -- technical data (collect/) -------------------------------------------------
    geo: GeoService | None = None
    user_agent: UserAgentParser = field(init=False)
    #: ``technical_data()`` of the request (a test may put a stand-in here)
    technical_data: Callable[[], TechnicalData] | None = None

    # -- rules per audience (regions.py) ---------------------------------------
    regions: Regions | None = None
    #: the opt-out model's state of an undecided visitor (``state.get_state``)
    default_state: Callable[[ConsentState], ConsentState] | None = None

    # -- the banner (banner.py) --------------------------------------------------
    banner: Banner = field(init=False)
    #: ``translate(key, **params)`` in the request's language (the banner's catalogs and the
    #: app's ``translate`` hook)
    translate: Callable[..., str] | None = None
    #: the request's language
    language: Callable[[], str] | None = None
    #: ``(notice id, language)`` of the request's notice
    banner_fingerprint: Callable[[], tuple[str, str]] | None = None
    #: ``(id, language, notice)`` of the request's notice
    notice: Callable[[], tuple[str, str, dict[str, Any]]] | None = None


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
