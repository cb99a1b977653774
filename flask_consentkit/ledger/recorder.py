"""Turning a request's decision into a receipt, and wiring the ledger into an app.

:func:`install` registers, from :meth:`ConsentKit.init_app`:

- ``ext.services["ledger"]`` — the app's :class:`~.store.Ledger` (absent when
  ``CONSENTKIT_LEDGER_URL`` is ``None``);
- ``ext.services["recorder"]`` — called by the choice endpoint as
  ``recorder(action=, state=, previous=)``;
- ``ext.services["ratelimiter"]`` — the data-subject endpoints' limiter.

A write that fails never loses the visitor's choice: the recorder logs the
error, with the receipt's content (nothing personal beyond the pseudonymous
consent id), on the ``flask_consentkit.ledger`` logger, and returns ``None``;
the choice endpoint still sets the cookie and answers normally.

``CONSENTKIT_LEDGER_URL = None`` turns receipts off: a :class:`UserWarning` at
``init_app``, except under ``TESTING``, where it is logged at INFO so that test
suites (which often turn the ledger off) stay quiet.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Flask, request

from ..categories import NECESSARY
from ..ratelimit import RateLimiter, anonymise_ip
from ..state import ConsentState, request_consent
from .store import Draft, Ledger

if TYPE_CHECKING:
    from ..extension import ConsentKitState

log = logging.getLogger("flask_consentkit.ledger")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
MAX_PATH = 512


def install(app: Flask, ext: ConsentKitState) -> None:
    """Register the ledger, the recorder and the rate limiter on ``ext.services``."""
    settings = ext.settings
    ext.services["ratelimiter"] = RateLimiter.from_config(
        settings.ratelimit, settings.ratelimit_storage_url
    )
    if settings.ledger_url is None:
        message = ("CONSENTKIT_LEDGER_URL is None: consent receipts are off, so the app "
                   "cannot prove consent (GDPR Art. 7(1)).")
        if app.testing:
            log.info(message)
        else:
            warnings.warn(message, UserWarning, stacklevel=3)
        return
    ledger = Ledger(settings.ledger_url)
    ext.services["ledger"] = ledger
    ext.services["recorder"] = Recorder(ext, ledger)


class Recorder:
    """``recorder(action=, state=, previous=)``: append the receipt of a decision."""

    def __init__(self, ext: ConsentKitState, ledger: Ledger) -> None:
        self.ext = ext
        self.ledger = ledger

    def __call__(self, *, action: str, state: ConsentState, previous: ConsentState
                 ) -> dict[str, Any] | None:
        draft = decision_draft(self.ext, action=action, state=state, previous=previous)
        return record(self.ledger, draft)


def record(ledger: Ledger, draft: Draft) -> dict[str, Any] | None:
    """Append ``draft``; on failure log it (ERROR, with its content) and return ``None``."""
    try:
        row = ledger.append(draft)
    except Exception as exc:  # noqa: BLE001 - the visitor's choice must not be lost
        log.error(
            "consent receipt NOT recorded (%s: %s); receipt content: %s",
            type(exc).__name__, exc, json.dumps(draft.as_log(), sort_keys=True),
            exc_info=exc,
        )
        return None
    request_consent().cache["receipt_id"] = row["receipt_id"]
    return row


def decision_draft(
    ext: ConsentKitState, *, action: str, state: ConsentState, previous: ConsentState
) -> Draft:
    """The receipt of a decision made in the current request."""
    settings = ext.settings
    optional = frozenset(settings.optional_keys)
    granted = frozenset(state.granted & optional) | {NECESSARY}
    withdrawn = frozenset(previous.granted - state.granted) if previous.decided else frozenset()
    banner_hash, language = banner_fingerprint(ext)
    ip_prefix, country = technical(ext, state)
    return Draft(
        action=action,
        consent_id=state.consent_id,
        granted=granted,
        denied=optional - granted,
        withdrawn=withdrawn - {NECESSARY},
        policy_version=settings.policy_version,
        method=state.source or "api",
        banner_hash=banner_hash,
        language=language,
        page_path=page_path(),
        ip_prefix=ip_prefix,
        country=country,
    )


def banner_fingerprint(ext: ConsentKitState) -> tuple[str | None, str | None]:
    """``(sha256 hex of the banner text shown, language)`` from the banner, if present."""
    fingerprint = ext.services.get("banner_fingerprint")
    if fingerprint is None:
        return None, None
    try:
        digest, language = fingerprint()
    except Exception as exc:  # noqa: BLE001 - a receipt without it beats no receipt
        log.warning("banner fingerprint unavailable for the receipt: %s", exc)
        return None, None
    digest = digest if isinstance(digest, str) and _HEX64.match(digest) else None
    language = language[:16] if isinstance(language, str) and language else None
    return digest, language


def page_path() -> str | None:
    """The path (no query, no fragment) of the page the choice was made on.

    The ``Referer`` when it is a page of this site, else the form's ``next``;
    ``None`` when neither says.
    """
    own = f"{request.scheme}://{request.host}".lower()
    referer = request.headers.get("Referer")
    candidate: str | None = None
    if referer:
        try:
            parts = urlsplit(referer)
        except ValueError:
            parts = None
        if parts is not None and f"{parts.scheme}://{parts.netloc}".lower() == own:
            candidate = parts.path or "/"
    if candidate is None and request.mimetype in ("application/x-www-form-urlencoded",
                                                  "multipart/form-data"):
        from ..views import safe_next

        value = request.form.get("next")
        if value:
            candidate = urlsplit(safe_next(value)).path or "/"
    if not candidate:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in candidate):
        return None
    return candidate[:MAX_PATH]


def technical(ext: ConsentKitState, state: ConsentState) -> tuple[str | None, str | None]:
    """``(anonymised IP prefix, country)`` — only when analytics is granted.

    Both also need the category that ``CONSENTKIT_COLLECTION_RULES`` names for
    them. The values come from the ``technical_data`` service when the app has
    it; without it, the IP is the request's remote address and no country.
    The IP is anonymised here again, whatever the app's settings.
    """
    rules = ext.settings.collection_rules
    if not state.allows("analytics"):
        return None, None
    ip_allowed = state.allows(rules.get("ip", "analytics"))
    geo_allowed = state.allows(rules.get("geo", "analytics"))
    ip: str | None = None
    country: str | None = None
    provider = ext.services.get("technical_data")
    if provider is not None:
        try:
            data = provider()
            ip, country = getattr(data, "ip", None), getattr(data, "country", None)
        except Exception as exc:  # noqa: BLE001 - the receipt goes without them
            log.warning("technical data unavailable for the receipt: %s", exc)
    elif ip_allowed:
        ip = request.remote_addr
    ip_prefix = anonymise_ip(ip) if ip_allowed and isinstance(ip, str) else None
    if not (geo_allowed and isinstance(country, str) and _COUNTRY.match(country.upper())):
        country = None
    return ip_prefix, country.upper() if country else None
