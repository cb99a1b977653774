"""The visitor's signed receipt and the public keys: ``GET /consent/receipt`` and the JWK Set.

:func:`install` (from ``init_app``) loads ``CONSENTKIT_SIGNING_KEY`` and
``CONSENTKIT_SIGNING_OLD_KEYS`` (:func:`.signing.keyring_of`) and registers:

- ``ext.keyring`` — the :class:`~.signing.Keyring` (absent without any key);
- ``ext.receipt_keyring`` — the same keyring, when it holds a private key and
  the ledger is on: receipts can be signed (the preferences page then offers
  the download);
- ``GET /.well-known/consentkit/jwks.json`` — every public key, current first,
  retired ones after it (404 when there is none).

``GET /consent/receipt`` answers the visitor's latest receipt as a compact JWS
(RFC 7515: ``alg`` EdDSA, ``kid``, ``typ`` JOSE) whose payload is the receipt
as ``GET /consent/export`` shows it, plus its ``consent_id``. It finds the
visitor only through the signed consent cookie, like the other data-subject
endpoints, and shares their rate limit. ``404`` without a signing key, without
a ledger, and for a visitor without a receipt.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask import Flask, current_app, jsonify
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response

from .appstate import get_kit_state
from .errors import ConsentKitError
from .ledger.signing import Keyring, keyring_of, receipt_jws
from .rights import _limit, _no_store, cookie_consent_id, visitor_receipts
from .views import bp

if TYPE_CHECKING:
    from .appstate import ConsentKitState

log = logging.getLogger("flask_consentkit.ledger")

JWKS_PATH = "/.well-known/consentkit/jwks.json"
#: RFC 7515 §9.2.1: the media type of a compact JWS.
JOSE_TYPE = "application/jose"


class ConsentNotFound(ConsentKitError, NotFound):
    """No signed receipt here (404); the description says why."""


def install(app: Flask, ext: ConsentKitState) -> None:
    """Load the signing keys and register the JWK Set's URL (see the module docstring)."""
    settings = ext.settings
    keyring = keyring_of(settings.signing_key, settings.signing_old_keys)
    if keyring is not None:
        ext.keyring = keyring
        if keyring.can_sign and ext.ledger is not None:
            ext.receipt_keyring = keyring
    app.add_url_rule(JWKS_PATH, "consentkit_jwks", jwks_json)


@bp.get("/receipt")
def receipt() -> Response:
    """The visitor's latest receipt as a compact JWS, to keep (``consent-receipt.jws``)."""
    ext = get_kit_state()
    keyring: Keyring | None = ext.receipt_keyring
    if keyring is None:
        if ext.ledger is None:
            raise ConsentNotFound("This site keeps no consent records, so there is no receipt "
                                  "to sign.")
        raise ConsentNotFound("This site does not sign receipts (no signing key is configured); "
                              "GET /consent/export has your receipts unsigned.")
    consent_id = cookie_consent_id(ext)
    _limit(ext, "receipt", consent_id)
    if consent_id is None:
        raise ConsentNotFound("No consent choice from this browser: make a choice first, then "
                              "download its signed receipt.")
    assert ext.ledger is not None  # a receipt keyring is made only beside a ledger
    found = visitor_receipts(ext.ledger, consent_id, "Your receipt", "receipt download")
    if not found:
        raise ConsentNotFound("No receipt of your choice is recorded (it may have been "
                              "erased); make a choice to get one.")
    token = receipt_jws(keyring, consent_id, found[-1])
    response = current_app.response_class(token, mimetype=JOSE_TYPE)
    response.headers["Content-Disposition"] = 'attachment; filename="consent-receipt.jws"'
    return _no_store(response)


def jwks_json() -> Response:
    """``/.well-known/consentkit/jwks.json``: the keys that sign receipts and checkpoints."""
    ext = get_kit_state()
    keyring: Keyring | None = ext.keyring
    if keyring is None or not keyring.public:
        response = jsonify(error="this site signs nothing: no signing key is configured",
                           status=404)
        response.status_code = 404
        return response
    response = jsonify(keyring.jwks())
    response.mimetype = "application/jwk-set+json"
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
