"""The visitor's rights: ``GET /consent/export`` and ``POST /consent/erase``.

Both find the visitor only through the signed consent cookie — never through
an id passed as a parameter — and are rate limited per visitor (429 with
``Retry-After``). A signed cookie made for an older policy version still names
its visitor here, so a visitor keeps these rights after a policy change.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from flask import current_app, jsonify, request
from werkzeug.urls import iri_to_uri
from werkzeug.wrappers import Response

from . import jsonbody, signals
from .appstate import ConsentKitState, get_kit_state
from .categories import NECESSARY
from .errors import ConsentBadRequest, LedgerUnavailable
from .ledger.signing import receipt_jws
from .ledger.store import Draft, Ledger
from .ratelimit import RateLimiter, anonymise_ip
from .recording import banner_fingerprint
from .state import MAX_COOKIE_LENGTH, UNDECIDED, get_state, request_consent
from .urls import safe_next
from .views import _bounded_body, bp, require_same_origin

log = logging.getLogger("flask_consentkit.ledger")

_CONSENT_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def cookie_consent_id(ext: ConsentKitState) -> str | None:
    """The consent id of the visitor's signed cookie, or ``None``.

    A valid cookie for the current policy gives its id directly; a cookie
    signed by this app for an older policy version is accepted too (its
    signature and age are checked, nothing else).
    """
    state = get_state()
    if state.decided:
        return state.consent_id
    value = request.cookies.get(ext.settings.cookie_name)
    if not value or len(value) > MAX_COOKIE_LENGTH:
        return None
    try:
        payload: Any = ext.codec.serializer.loads(value, max_age=ext.settings.max_age)
    except Exception:  # noqa: BLE001 - anything wrong means "no visitor"
        return None
    consent_id = payload.get("i") if isinstance(payload, dict) else None
    if isinstance(consent_id, str) and _CONSENT_ID.match(consent_id):
        return consent_id
    return None


def _limit(ext: ConsentKitState, endpoint: str, consent_id: str | None) -> None:
    limiter: RateLimiter | None = ext.ratelimiter
    if limiter is None:
        return
    visitor = f"id:{consent_id}" if consent_id else \
        f"ip:{anonymise_ip(request.remote_addr) or 'unknown'}"
    limiter.hit(endpoint, visitor)


def visitor_receipts(ledger: Ledger, consent_id: str, what: str,
                     doing: str) -> list[dict[str, Any]]:
    """The receipts of ``consent_id``; a ledger that cannot be read is a 503 saying that
    ``what`` ("Your receipts") cannot be read just now, and ``doing`` ("export") is
    logged at ERROR with the cause."""
    try:
        return ledger.export(consent_id)
    except Exception as exc:  # noqa: BLE001 - whatever the store raised, the visitor gets a 503
        log.error("%s of a visitor's receipts failed: %s", doing, exc, exc_info=exc)
        raise LedgerUnavailable(f"{what} cannot be read just now; try again later.",
                                retry_after=60) from None


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.vary.add("Cookie")
    return response


@bp.get("/export")
def export() -> Response:
    """This visitor's receipts as JSON (access and portability)."""
    ext = get_kit_state()
    consent_id = cookie_consent_id(ext)
    _limit(ext, "export", consent_id)
    ledger: Ledger | None = ext.ledger
    found: list[dict[str, Any]] = []
    if consent_id and ledger is not None:
        found = visitor_receipts(ledger, consent_id, "Your receipts", "export")
    keyring = ext.receipt_keyring
    if keyring is not None:  # each receipt's signed form too (see .receipts)
        found = [{**r, "jws": receipt_jws(keyring, consent_id, r)} for r in found]
    response = jsonify(consent_id=consent_id, receipts=found, ledger=ledger is not None)
    response.headers["Content-Disposition"] = 'inline; filename="consent-receipts.json"'
    return _no_store(response)


@bp.post("/erase")
def erase() -> Response:
    """Erase this visitor's receipts (a tombstone keeps the ledger verifiable) and the cookie.

    A form (``next``) is answered ``303`` to ``next``; anything else gets JSON
    ``{"erased": n, "receipt_id": tombstone id}``. If the ledger cannot be
    reached the answer is ``503`` and the cookie is kept, so the visitor can
    try again.
    """
    ext = get_kit_state()
    settings = ext.settings
    require_same_origin()
    consent_id = cookie_consent_id(ext)
    _limit(ext, "erase", consent_id)
    body = _bounded_body(settings)
    is_form = request.mimetype in _FORM_TYPES
    if request.is_json and body.strip():
        try:
            data = jsonbody.loads(body)
        except jsonbody.JSONBodyError as e:
            raise ConsentBadRequest(str(e)) from None
        if not isinstance(data, dict):
            raise ConsentBadRequest("Send a JSON object, e.g. {}, or no body at all.")
    next_url = request.form.get("next") if is_form else None

    previous = get_state()
    withdrawn = frozenset(previous.granted - {NECESSARY}) if previous.decided else frozenset()
    ledger: Ledger | None = ext.ledger
    erased, tombstone_id = 0, None
    if consent_id and ledger is not None:
        banner_hash, language = banner_fingerprint(ext)
        tombstone = Draft(
            action="erase",
            consent_id=None,
            granted=frozenset({NECESSARY}),
            denied=frozenset(settings.optional_keys),
            withdrawn=withdrawn,
            policy_version=settings.policy_version,
            method="preferences" if is_form else "api",
            banner_hash=banner_hash,
            language=language,
        )
        try:
            erased, row = ledger.erase(consent_id, tombstone)
        except Exception as exc:  # noqa: BLE001
            log.error("erasure failed (receipts kept, cookie kept): %s; tombstone: %s", exc,
                      json.dumps(tombstone.as_log(), sort_keys=True), exc_info=exc)
            raise LedgerUnavailable("Your data could not be erased just now; nothing was "
                                    "changed. Try again later.", retry_after=60) from None
        tombstone_id = row["receipt_id"]

    ctx = request_consent()
    ctx.clear = True
    ctx.withdrawn = withdrawn
    if consent_id or previous.decided:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        signals.consent_withdrawn.send(app, state=UNDECIDED, previous=previous)
    response: Response
    if is_form:
        response = current_app.response_class(status=303)
        response.headers["Location"] = iri_to_uri(safe_next(next_url))
    else:
        response = jsonify(erased=erased, receipt_id=tombstone_id)
    return _no_store(response)
