"""The notice a visitor decided under, kept once and named by every receipt (issue 12, part 5).

Real SQLite and real PostgreSQL. A receipt's ``notice_id`` (stored in the chained
``banner_hash`` column) is the SHA-256 of the notice's canonical JSON: the banner's
text in the language shown, the categories and services, the policy and the
controller. After the texts change, the notice of an older receipt is still the one
its visitor read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_consentkit import ConsentKit
from flask_consentkit.cache import Kept
from flask_consentkit.cli import cli
from flask_consentkit.errors import ConsentConfigError
from flask_consentkit.notice import notice_id

from . import ledger_helpers
from .conftest import SAME_ORIGIN, SECRET
from .ledger_helpers import execute

store_url = ledger_helpers.store_url  # the fixture: each test on SQLite, then PostgreSQL

CONTROLLER = {"name": "Example Stories LLC",
              "address": "79 Samad Vurgun street, Baku 1000, Azerbaijan",
              "email": "privacy@example.az", "phone": "+994505860038"}


def _app(url: str, **config: Any) -> Flask:
    app = Flask("notices")
    app.config.update(SECRET_KEY=SECRET, TESTING=True, CONSENTKIT_LEDGER_URL=url,
                      CONSENTKIT_PRIVACY_POLICY_URL="/privacy", CONSENTKIT_CONTROLLER=CONTROLLER,
                      CONSENTKIT_POLICY_EFFECTIVE="2026-11-01",
                      CONSENTKIT_SERVICES=["yandex-metrica", "youtube"])
    app.config.update(config)
    ConsentKit(app)

    @app.get("/")
    def index() -> str:
        return "<!doctype html><html><body><p>A story</p></body></html>"

    return app


def _decide(app: Flask, body: dict[str, Any], lang: str = "en") -> dict[str, Any]:
    client = app.test_client()
    client.get(f"/?lang={lang}")
    answer = client.post(f"/consent/?lang={lang}", json=body, headers=SAME_ORIGIN)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    consent_id = answer.get_json()["consent_id"]
    run = app.test_cli_runner().invoke(cli, ["export", "--", consent_id])
    assert run.exit_code == 0, run.output
    receipts: list[dict[str, Any]] = json.loads(run.stdout)["receipts"]
    return receipts[-1]


def _notice(app: Flask, ident: str) -> dict[str, Any]:
    run = app.test_cli_runner().invoke(cli, ["notice", ident])
    assert run.exit_code == 0, run.output
    notice: dict[str, Any] = json.loads(run.stdout)
    return notice


def test_a_receipt_names_the_notice_shown_and_the_notice_is_kept(store_url: str) -> None:
    app = _app(store_url)
    receipt = _decide(app, {"action": "accept_all"}, lang="az")
    assert receipt["schema_version"] >= 3
    notice = _notice(app, receipt["receipt_id"])  # found from the receipt
    assert notice == _notice(app, receipt["notice_id"])  # and by its own id
    assert notice["notice_id"] == receipt["notice_id"] == receipt["banner_hash"]
    assert notice_id({k: v for k, v in notice.items() if k != "notice_id"}) == notice["notice_id"]
    assert notice["language"] == "az"
    assert "Hamısını qəbul et" in notice["text"]  # the banner's text, in the language shown
    assert notice["controller"] == CONTROLLER
    assert notice["policy"] == {"version": "1", "url": "/privacy", "effective": "2026-11-01"}
    by_key = {c["key"]: c for c in notice["categories"]}
    assert by_key["necessary"]["required"] is True
    marketing = {s["name"]: s for s in by_key["marketing"]["services"]}
    assert "youtube.com" in " ".join(marketing["YouTube embeds and IFrame API"]["hosts"])
    assert "US" in marketing["YouTube embeds and IFrame API"]["countries"]
    assert execute(store_url, "SELECT count(*) FROM consentkit_notices")[0][0] == 1


def test_the_notice_of_an_old_receipt_survives_a_change_of_the_texts(store_url: str) -> None:
    before = _app(store_url)
    old = _decide(before, {"action": "reject_all"})
    # the next release words the analytics category differently
    after = _app(store_url, CONSENTKIT_CATEGORIES=[
        "necessary", "functional",
        {"key": "analytics", "description": "Counting visits to each story, without ads."},
        "performance", "marketing"])
    new = _decide(after, {"action": "reject_all"})
    assert new["notice_id"] != old["notice_id"]
    old_notice, new_notice = _notice(after, old["receipt_id"]), _notice(after, new["receipt_id"])
    old_texts = {c["key"]: c["description"] for c in old_notice["categories"]}
    new_texts = {c["key"]: c["description"] for c in new_notice["categories"]}
    assert new_texts["analytics"] == "Counting visits to each story, without ads."
    assert old_texts["analytics"] != new_texts["analytics"]
    assert "Counting visits" not in old_notice["text"]
    assert execute(store_url, "SELECT count(*) FROM consentkit_notices")[0][0] == 2
    assert after.test_cli_runner().invoke(cli, ["verify"]).exit_code == 0


def test_a_visitor_told_of_a_policy_change_has_that_notice_on_the_receipt(
        store_url: str) -> None:
    """The banner a returning visitor answers after a new policy version says that the
    policy changed; the receipt of the answer names that notice, and that notice is
    the one kept (it is looked up once for the decision, before and after which it
    is the same: what the visitor came with)."""
    old = _app(store_url, CONSENTKIT_POLICY_VERSION="1").test_client()
    first_answer = old.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    assert first_answer.status_code == 200
    cookie = old.get_cookie("consentkit")
    assert cookie is not None
    app = _app(store_url, CONSENTKIT_POLICY_VERSION="2")
    client = app.test_client()
    client.set_cookie("consentkit", cookie.value)
    lookups: list[Any] = []

    class Counted(Kept[Any, Any]):
        def get(self, key: Any) -> Any:
            lookups.append(key)
            return super().get(key)

    app.extensions["consentkit"].banner._fingerprints = Counted("notices", 256, 4 << 20)
    answer = client.post("/consent/", json={"action": "reject_all"}, headers=SAME_ORIGIN)
    assert answer.status_code == 200
    assert len(lookups) == 1  # the receipt's notice and the one kept: one lookup
    run = app.test_cli_runner().invoke(cli, ["export", "--", answer.get_json()["consent_id"]])
    receipt = json.loads(run.stdout)["receipts"][-1]
    assert receipt["policy_version"] == "2"
    notice = _notice(app, receipt["receipt_id"])
    assert "Our privacy policy changed as of November 1, 2026" in notice["text"], notice["text"]
    run = app.test_cli_runner().invoke(
        cli, ["export", "--", first_answer.get_json()["consent_id"]])
    first = _notice(app, json.loads(run.stdout)["receipts"][0]["receipt_id"])
    assert "privacy policy changed" not in first["text"]  # the first choice's banner


def test_each_notice_is_stored_once(store_url: str) -> None:
    app = _app(store_url)
    for action in ("accept_all", "reject_all", "accept_all"):
        _decide(app, {"action": action})
    _decide(app, {"action": "accept_all"}, lang="ru")
    assert execute(store_url, "SELECT count(*) FROM consentkit_notices")[0][0] == 2  # en, ru


def test_verify_fails_on_a_notice_changed_in_the_database(store_url: str) -> None:
    app = _app(store_url)
    receipt = _decide(app, {"action": "accept_all"})
    execute(store_url, "UPDATE consentkit_notices SET content = "
            "replace(content, 'Example Stories LLC', 'Someone Else Ltd')")
    run = app.test_cli_runner().invoke(cli, ["verify"])
    assert run.exit_code == 1
    assert f"notice {receipt['notice_id']}: its content was changed" in run.output


def test_export_as_dpv_consent_records_and_kantara_receipts(store_url: str) -> None:
    app = _app(store_url)
    client = app.test_client()
    client.get("/")
    first = client.post("/consent/", json={"action": "save", "categories": ["analytics",
                                                                            "marketing"]},
                        headers=SAME_ORIGIN).get_json()
    client.post("/consent/", json={"action": "save", "categories": ["analytics"]},
                headers=SAME_ORIGIN)
    consent_id = first["consent_id"]
    runner = app.test_cli_runner()

    dpv = runner.invoke(cli, ["export", "--format", "dpv", "--", consent_id])
    assert dpv.exit_code == 0, dpv.output
    document = json.loads(dpv.stdout)
    assert document["format"] == "dpv" and document["schema_version"] >= 3
    first_record, withdrawal = document["records"]
    assert first_record["@type"] == "dpv:ConsentRecord"
    assert first_record["dct:conformsTo"] == "https://w3id.org/dpv/schema/iso-27560#record"
    assert first_record["dpv:hasDataSubject"]["dct:identifier"] == consent_id
    assert first_record["dpv:hasDataController"]["schema:name"] == CONTROLLER["name"]
    status = {p["dct:identifier"]: p["dpv:hasConsentStatus"]
              for p in withdrawal["dpv:hasProcess"]}
    assert status["analytics"] == "dpv:ConsentGiven"
    assert status["marketing"] == "dpv:ConsentWithdrawn"
    assert status["performance"] == "dpv:ConsentRefused"
    assert withdrawal["dct:replaces"] == f"urn:uuid:{first_record['dct:identifier']}"
    assert withdrawal["dpv:hasNotice"]["dct:identifier"]

    kantara = runner.invoke(cli, ["export", "--format", "kantara", "--", consent_id])
    assert kantara.exit_code == 0, kantara.output
    receipts = json.loads(kantara.stdout)["receipts"]
    assert receipts[0]["version"] == "KI-CR-v1.1.0"
    assert receipts[0]["piiPrincipalId"] == consent_id
    assert receipts[0]["piiControllers"][0]["email"] == CONTROLLER["email"]
    assert receipts[0]["policyUrl"] == "/privacy"
    assert {s["purposes"][0]["purposeCategory"][0] for s in receipts[1]["services"]} == {
        "necessary", "analytics"}  # what the latest receipt consents to
    marketing = next(s for s in receipts[0]["services"]
                     if s["purposes"][0]["purposeCategory"] == ["marketing"])
    assert "YouTube" in marketing["purposes"][0]["thirdPartyName"]


def test_notice_command_refuses_what_is_not_an_id(store_url: str) -> None:
    app = _app(store_url)
    app.extensions["consentkit"].ledger.count()  # the ledger exists (the app made its tables)
    runner = app.test_cli_runner()
    bad = runner.invoke(cli, ["notice", "not-an-id"])
    assert bad.exit_code == 2 and "neither a notice id" in bad.output
    missing = runner.invoke(cli, ["notice", "0" * 64])
    assert missing.exit_code == 1 and "no notice" in missing.output
    unknown = runner.invoke(cli, ["notice", "00000000-0000-4000-8000-000000000000"])
    assert unknown.exit_code == 1 and "no receipt" in unknown.output


@pytest.mark.parametrize("value, message", [
    ("Example LLC", "is not a mapping"),
    ({"email": "a@b.c"}, "'name' is missing"),
    ({"name": "X", "fax": "1"}, "unknown field(s) fax"),
    ({"name": ""}, "non-empty text"),
    ({"name": 5}, "non-empty text"),
])
def test_a_bad_controller_says_what_to_fix(tmp_path: Path, value: Any, message: str) -> None:
    app = Flask("bad")
    app.config.update(SECRET_KEY=SECRET, CONSENTKIT_LEDGER_URL=None, CONSENTKIT_CONTROLLER=value)
    with pytest.raises(ConsentConfigError, match="CONSENTKIT_CONTROLLER") as error:
        ConsentKit(app)
    assert message in str(error.value)
