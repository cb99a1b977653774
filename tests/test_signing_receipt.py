"""The visitor's signed receipt (``GET /consent/receipt``), the JWK Set, and the signing keys.

The visitor's JWS is verified with an independent JOSE library (PyJWT) using
the key fetched from ``/.well-known/consentkit/jwks.json``.
"""
# ruff: noqa: F811  (pytest fixtures imported from ledger_helpers)

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from flask import Flask
from flask.cli import ScriptInfo

from flask_consentkit.cli import cli
from flask_consentkit.errors import ConsentConfigError
from flask_consentkit.ledger.signing import generate

from .conftest import SAME_ORIGIN, make_app
from .ledger_helpers import choose, store_url  # noqa: F401

JWKS = "/.well-known/consentkit/jwks.json"


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "signing.key"
    generate(path)
    return path


@pytest.fixture
def app(store_url: str, tmp_path: Path, key: Path) -> Flask:
    return make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url, CONSENTKIT_RATELIMIT=None,
                    CONSENTKIT_SIGNING_KEY=str(key))


def verified(token: str, jwks: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(header, payload)`` of ``token``, verified by PyJWT with the key the JWKS names."""
    keys = jwt.PyJWKSet.from_dict(jwks)
    kid = jwt.get_unverified_header(token)["kid"]
    decoded = jwt.api_jws.PyJWS().decode_complete(token, key=keys[kid], algorithms=["EdDSA"])
    return decoded["header"], json.loads(decoded["payload"])


def test_the_visitors_receipt_verifies_with_the_published_key(app: Flask) -> None:
    client = app.test_client()
    assert choose(client, "accept_all").status_code == 200
    assert choose(client, "save", categories=["analytics"]).status_code == 200
    response = client.get("/consent/receipt")
    assert response.status_code == 200
    assert response.mimetype == "application/jose"
    assert response.headers["Content-Disposition"] == \
        'attachment; filename="consent-receipt.jws"'
    assert response.headers["Cache-Control"] == "no-store"
    token = response.get_data(as_text=True)
    assert token.count(".") == 2

    published = client.get(JWKS)
    assert published.status_code == 200
    assert published.mimetype == "application/jwk-set+json"
    jwks = published.get_json()
    (jwk,) = jwks["keys"]
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["alg"] == "EdDSA"
    assert "d" not in jwk  # never the private part

    header, payload = verified(token, jwks)
    assert header == {"alg": "EdDSA", "kid": jwk["kid"], "typ": "JOSE"}
    export = client.get("/consent/export").get_json()
    latest = export["receipts"][-1]
    assert payload == {**{k: v for k, v in latest.items() if k != "jws"},
                       "consent_id": export["consent_id"]}
    assert payload["action"] == "save" and payload["granted"] == ["analytics", "necessary"]
    assert payload["previous_receipt_id"] == export["receipts"][0]["receipt_id"]
    # the export carries each receipt's signed form; the latest is the receipt's own token
    assert [verified(r["jws"], jwks)[1]["receipt_id"] for r in export["receipts"]] == \
        [r["receipt_id"] for r in export["receipts"]]
    assert latest["jws"] == token

    # a tampered payload does not verify
    head, body, sig = token.split(".")
    forged = jwt.utils.base64url_encode(json.dumps({**payload, "granted": ["necessary"]})
                                        .encode()).decode()
    with pytest.raises(jwt.InvalidSignatureError):
        verified(f"{head}.{forged}.{sig}", jwks)


def test_the_preferences_page_offers_the_signed_receipt_after_a_choice(app: Flask) -> None:
    client = app.test_client()
    before = client.get("/consent/?lang=en").get_data(as_text=True)
    assert "/consent/receipt" not in before  # no choice, nothing to download yet
    client.post("/consent/", data={"action": "reject_all", "next": "/"}, headers=SAME_ORIGIN)
    page = client.get("/consent/?lang=en").get_data(as_text=True)
    assert '<a href="/consent/receipt" download="consent-receipt.jws">' \
           "Download my signed receipt</a>" in page
    for lang, text in (("az", "İmzalanmış qəbzimi yüklə"), ("ru", "Скачать мою подписанную"),
                       ("tr", "İmzalı makbuzumu indir")):
        assert text in client.get(f"/consent/?lang={lang}").get_data(as_text=True)
    token = client.get("/consent/receipt").get_data(as_text=True)  # what the link fetches
    assert verified(token, client.get(JWKS).get_json())[1]["action"] == "reject_all"


def test_no_receipt_without_a_choice_or_after_erasure(app: Flask) -> None:
    client = app.test_client()
    response = client.get("/consent/receipt", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert "make a choice first" in response.get_json()["error"]
    choose(client)
    assert client.get("/consent/receipt").status_code == 200
    assert client.post("/consent/erase", json={}, headers=SAME_ORIGIN).status_code == 200
    assert client.get("/consent/receipt").status_code == 404


def test_without_a_signing_key_there_is_no_receipt_and_status_says_how(
        tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=f"sqlite:///{tmp_path}/l.sqlite3",
                   CONSENTKIT_RATELIMIT=None)
    client = app.test_client()
    choose(client)
    response = client.get("/consent/receipt")
    assert response.status_code == 404
    assert "does not sign receipts" in response.get_data(as_text=True)
    assert client.get(JWKS).status_code == 404
    assert "jws" not in client.get("/consent/export").get_json()["receipts"][0]
    assert "/consent/receipt" not in client.get("/consent/").get_data(as_text=True)
    status = app.test_cli_runner().invoke(cli, ["status"])
    assert status.exit_code == 0
    assert "signing:        off" in status.output
    assert "flask consent keygen" in status.output and "CONSENTKIT_SIGNING_KEY" in status.output


def test_after_rotation_the_jwks_lists_both_keys_and_old_receipts_verify(
        app: Flask, store_url: str, tmp_path: Path, key: Path) -> None:
    client = app.test_client()
    choose(client)
    old_token = client.get("/consent/receipt").get_data(as_text=True)
    cookie = client.get_cookie("consentkit")
    assert cookie is not None

    new_key = tmp_path / "signing-2027.key"
    generate(new_key)
    rotated = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url, CONSENTKIT_RATELIMIT=None,
                       CONSENTKIT_SIGNING_KEY=str(new_key),
                       CONSENTKIT_SIGNING_OLD_KEYS=[f"{key}.pub"])
    visitor = rotated.test_client()
    visitor.set_cookie("consentkit", cookie.value)
    jwks = visitor.get(JWKS).get_json()
    kids = [k["kid"] for k in jwks["keys"]]
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    new_token = visitor.get("/consent/receipt").get_data(as_text=True)
    new_kid = jwt.get_unverified_header(new_token)["kid"]
    assert kids == [new_kid, old_kid]  # the current key first, the old one still listed
    assert verified(old_token, jwks)[1] == verified(new_token, jwks)[1]
    status = rotated.test_cli_runner().invoke(cli, ["status"]).output
    assert f"old keys:       {old_kid} (verify only)" in status


def test_a_signing_key_without_a_ledger_signs_no_receipt(tmp_path: Path, key: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_SIGNING_KEY=str(key))  # receipts off
    client = app.test_client()
    choose(client)
    response = client.get("/consent/receipt")
    assert response.status_code == 404 and "keeps no consent records" in response.text
    assert client.get(JWKS).status_code == 200  # the key is still published
    status = app.test_cli_runner().invoke(cli, ["status"]).output
    assert "(no ledger: no receipts to sign)" in status


def test_the_receipt_shares_the_rate_limit_of_the_rights(tmp_path: Path, key: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=f"sqlite:///{tmp_path}/l.sqlite3",
                   CONSENTKIT_SIGNING_KEY=str(key), CONSENTKIT_RATELIMIT="2/minute")
    client = app.test_client()
    choose(client)
    assert [client.get("/consent/receipt").status_code for _ in range(3)] == [200, 200, 429]


# -- keys: keygen and bad key files -----------------------------------------------------


def test_keygen_writes_a_private_key_0600_and_its_public_half(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    runner = app.test_cli_runner()
    path = tmp_path / "consent-signing.key"
    result = runner.invoke(cli, ["keygen", str(path)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    public = serialization.load_pem_public_key(Path(f"{path}.pub").read_bytes())
    assert public == private.public_key()
    assert "CONSENTKIT_SIGNING_KEY" in result.output and "key id " in result.output
    before = path.read_bytes()
    again = runner.invoke(cli, ["keygen", str(path)])
    assert again.exit_code == 1 and "exists already; it is not overwritten" in again.output
    assert path.read_bytes() == before
    Path(f"{tmp_path}/b.key.pub").write_text("x")
    clash = runner.invoke(cli, ["keygen", str(tmp_path / "b.key")])
    assert clash.exit_code == 1 and "b.key.pub exists already" in clash.output
    assert not (tmp_path / "b.key").exists()
    nowhere = runner.invoke(cli, ["keygen", str(tmp_path / "missing" / "k.key")])
    assert nowhere.exit_code == 1 and "does not exist; create it first" in nowhere.output


@pytest.mark.parametrize("path", ["", "{tmp}/keys/"])
def test_keygen_of_a_path_that_names_no_file_is_a_usage_error(tmp_path: Path,
                                                              path: str) -> None:
    path = path.format(tmp=tmp_path)
    result = make_app(tmp_path).test_cli_runner().invoke(cli, ["keygen", path])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (f"Invalid value for 'PATH': {path!r} names no file: give the path of the private "
            "key file to write") in result.output
    assert list(tmp_path.iterdir()) == []


def _pem(key: Any) -> bytes:
    data: bytes = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    return data


@pytest.mark.parametrize("make, message", [
    (None, "does not exist; make one with `flask consent keygen"),
    ("dir", "is a folder; name the key file"),
    (lambda: b"hello", "is not a PEM private key"),
    (lambda: _pem(rsa.generate_private_key(65537, 2048)), "holds an RSA key; signatures here "
     "are Ed25519"),
    (lambda: _pem(ec.generate_private_key(ec.SECP256R1())), "holds an EC (ECDSA) key"),
    (lambda: ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
     "holds a public key; CONSENTKIT_SIGNING_KEY needs the private key"),
    (lambda: ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")), "is encrypted with a passphrase"),
])
def test_a_bad_key_file_is_refused_saying_what_to_fix(tmp_path: Path, make: Any,
                                                     message: str) -> None:
    path = tmp_path / "signing.key"
    if make == "dir":
        path.mkdir()
    elif make is not None:
        path.write_bytes(make())
    with pytest.raises(ConsentConfigError) as caught:
        make_app(tmp_path, CONSENTKIT_SIGNING_KEY=str(path))
    assert caught.value.key == "CONSENTKIT_SIGNING_KEY"
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_bad_old_keys_are_refused(tmp_path: Path, key: Path) -> None:
    with pytest.raises(ConsentConfigError, match="expected a list of file paths"):
        make_app(tmp_path, CONSENTKIT_SIGNING_KEY=str(key),
                 CONSENTKIT_SIGNING_OLD_KEYS=f"{key}.pub")
    (tmp_path / "junk.pub").write_text("not a key")
    with pytest.raises(ConsentConfigError) as caught:
        make_app(tmp_path, CONSENTKIT_SIGNING_OLD_KEYS=[str(tmp_path / "junk.pub")])
    assert caught.value.key == "CONSENTKIT_SIGNING_OLD_KEYS"
    assert "is not a PEM public key" in str(caught.value)
    # a retired key's private file is accepted as well: only its public half is used
    app = make_app(tmp_path, CONSENTKIT_SIGNING_OLD_KEYS=[str(key)])
    ring = app.extensions["consentkit"].keyring
    assert not ring.can_sign and len(ring.public) == 1
    assert app.extensions["consentkit"].receipt_keyring is None


def test_the_cli_explains_a_bad_key_without_a_traceback_and_keygen_still_runs(
        tmp_path: Path) -> None:
    missing = tmp_path / "not-yet.key"

    def create_app() -> Flask:
        return make_app(tmp_path, CONSENTKIT_SIGNING_KEY=str(missing))

    runner = CliRunner()
    status = runner.invoke(cli, ["status"], obj=ScriptInfo(create_app=create_app))
    assert status.exit_code == 1 and isinstance(status.exception, SystemExit)
    assert "the app's consent configuration is wrong: CONSENTKIT_SIGNING_KEY:" in status.output
    assert "does not exist; make one with `flask consent keygen" in status.output
    assert "Traceback" not in status.output
    made = runner.invoke(cli, ["keygen", str(missing)], obj=ScriptInfo(create_app=create_app))
    assert made.exit_code == 0, made.output
    fixed = runner.invoke(cli, ["status"], obj=ScriptInfo(create_app=create_app))
    assert fixed.exit_code == 0 and "signing:        key " in fixed.output
