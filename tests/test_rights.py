"""The visitor's rights: export and erase, found through the signed cookie only."""
# ruff: noqa: F811  (pytest fixtures imported from ledger_helpers)

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response

from flask_consentkit import consent_withdrawn
from flask_consentkit.ledger.store import Ledger
from flask_consentkit.state import request_consent

from .conftest import SAME_ORIGIN, make_app
from .ledger_helpers import choose, ledger_app, store_url  # noqa: F401


def erase(client: Any, **kw: Any) -> Any:
    headers = {**SAME_ORIGIN, **kw.pop("headers", {})}
    return client.post("/consent/erase", headers=headers, **kw)


def test_export_returns_this_visitors_receipts_in_order(ledger_app: Flask) -> None:
    client = ledger_app.test_client()
    consent_id = choose(client, "accept_all").get_json()["consent_id"]
    choose(client, "reject_all")
    response = client.get("/consent/export")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["consent_id"] == consent_id
    assert [r["action"] for r in body["receipts"]] == ["accept_all", "reject_all"]
    assert body["receipts"][1]["withdrawn"] == ["analytics", "functional", "marketing",
                                                "performance"]


def test_export_never_uses_an_id_from_the_request(ledger_app: Flask) -> None:
    alice, bob = ledger_app.test_client(), ledger_app.test_client()
    alice_id = choose(alice).get_json()["consent_id"]
    bob_id = choose(bob, "reject_all").get_json()["consent_id"]
    body = bob.get(f"/consent/export?consent_id={alice_id}&id={alice_id}").get_json()
    assert body["consent_id"] == bob_id
    assert [r["action"] for r in body["receipts"]] == ["reject_all"]
    stranger = ledger_app.test_client().get(f"/consent/export?consent_id={alice_id}")
    assert stranger.get_json() == {"consent_id": None, "receipts": [], "ledger": True}


def test_a_cookie_for_an_older_policy_still_names_its_visitor(
        store_url: str, tmp_path: Path) -> None:
    old = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url, CONSENTKIT_POLICY_VERSION="1")
    client = old.test_client()
    consent_id = choose(client).get_json()["consent_id"]
    cookie = client.get_cookie("consentkit")
    assert cookie is not None
    new = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url, CONSENTKIT_POLICY_VERSION="2")
    later = new.test_client()
    later.set_cookie("consentkit", cookie.value)
    assert later.get("/consent/state").get_json()["decided"] is False
    assert len(later.get("/consent/export").get_json()["receipts"]) == 1
    assert erase(later, json={}).get_json()["erased"] == 1
    assert Ledger(store_url).export(consent_id) == []


def test_a_forged_cookie_names_nobody(ledger_app: Flask) -> None:
    client = ledger_app.test_client()
    choose(client)
    cookie = client.get_cookie("consentkit")
    assert cookie is not None
    client.set_cookie("consentkit", cookie.value[:-3] + "AAA")
    assert client.get("/consent/export").get_json()["consent_id"] is None


def test_erase_erases_clears_the_cookie_and_keeps_the_chain(
        ledger_app: Flask, store_url: str) -> None:
    client = ledger_app.test_client()
    consent_id = choose(client, "save", categories=["analytics", "functional"]
                        ).get_json()["consent_id"]
    choose(client, "accept_all")
    other = ledger_app.test_client()
    choose(other)
    seen: dict[str, Any] = {}

    def spy(response: Response, ext: Any) -> Response:
        seen.setdefault("withdrawn", request_consent().withdrawn)
        return response

    ledger_app.extensions["consentkit"].processors.append(spy)
    signals: list[dict[str, Any]] = []

    def receiver(sender: Flask, **kw: Any) -> None:
        signals.append(kw)

    with consent_withdrawn.connected_to(receiver, ledger_app):
        cookie = client.get_cookie("consentkit")
        response = erase(client, json={})
    assert response.status_code == 200
    body = response.get_json()
    assert body["erased"] == 2 and len(body["receipt_id"]) == 36
    assert "consentkit=;" in response.headers["Set-Cookie"]
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert client.get("/consent/state").get_json()["decided"] is False
    assert seen["withdrawn"] == {"analytics", "functional", "marketing", "performance"}
    assert len(signals) == 1 and signals[0]["previous"].consent_id == consent_id
    assert not signals[0]["state"].decided

    assert cookie is not None
    again = ledger_app.test_client()
    again.set_cookie("consentkit", cookie.value)  # even with the old cookie: nothing left
    assert again.get("/consent/export").get_json()["receipts"] == []
    ledger = Ledger(store_url)
    assert ledger.verify().ok and ledger.verify().erased == 2
    assert len(other.get("/consent/export").get_json()["receipts"]) == 1


def test_erase_from_a_form_redirects_to_next(ledger_app: Flask) -> None:
    client = ledger_app.test_client()
    choose(client)
    response = erase(client, data={"next": "/about"})
    assert response.status_code == 303 and response.headers["Location"] == "/about"
    evil = erase(client, data={"next": "https://evil.example/"})
    assert evil.headers["Location"] == "/"


def test_erase_without_a_cookie_changes_nothing(ledger_app: Flask, store_url: str) -> None:
    choose(ledger_app.test_client())
    response = erase(ledger_app.test_client(), json={})
    assert response.get_json() == {"erased": 0, "receipt_id": None}
    assert Ledger(store_url).count() == 1


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Referer": "https://evil.example/page"},
])
def test_erase_refuses_cross_site_requests(ledger_app: Flask, headers: dict[str, str]
                                           ) -> None:
    client = ledger_app.test_client()
    choose(client)
    response = client.post("/consent/erase", json={}, headers=headers)
    assert response.status_code == 403
    assert len(client.get("/consent/export").get_json()["receipts"]) == 1


def test_erase_rejects_bad_bodies(ledger_app: Flask) -> None:
    client = ledger_app.test_client()
    choose(client)
    bad = erase(client, data="{nope", content_type="application/json")
    assert bad.status_code == 400 and "JSON" in bad.get_json()["error"]
    assert erase(client, json=[1]).status_code == 400
    assert erase(client, json={"pad": "x" * 10000}).status_code == 413
    assert len(client.get("/consent/export").get_json()["receipts"]) == 1


def test_unreachable_ledger_answers_503_and_keeps_the_cookie(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/test"
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=url)
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="flask_consentkit.ledger"):
        choose(client)
        response = erase(client, json={})
        exported = client.get("/consent/export")
    assert response.status_code == 503 and response.headers["Retry-After"] == "60"
    assert "Set-Cookie" not in response.headers
    assert client.get("/consent/state").get_json()["decided"] is True
    assert exported.status_code == 503
    assert any("erasure failed" in r.getMessage() for r in caplog.records)


def test_rights_work_with_receipts_off(app: Flask) -> None:
    client = app.test_client()
    choose(client)
    assert client.get("/consent/export").get_json() == {
        "consent_id": client.get("/consent/state").get_json()["consent_id"],
        "receipts": [], "ledger": False}
    response = erase(client, json={})
    assert response.get_json() == {"erased": 0, "receipt_id": None}
    assert client.get("/consent/state").get_json()["decided"] is False
