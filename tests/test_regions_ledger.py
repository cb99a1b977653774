"""The receipt records the rule per audience applied; older receipts' digests are unchanged."""
# ruff: noqa: F811  (pytest fixtures imported from ledger_helpers)

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from flask_consentkit.ledger import chain
from flask_consentkit.ledger.schema import SCHEMA_VERSION
from flask_consentkit.ledger.store import Ledger, dispose_engines

from .ledger_helpers import CONSENT_ID, draft, execute, store_url  # noqa: F401
from .test_regions import RU, UK, accept_all, regions_app


def receipts(app) -> list[dict[str, object]]:
    rows = execute(app.config["CONSENTKIT_LEDGER_URL"],
                   "SELECT rule, country FROM consentkit_receipts ORDER BY seq")
    return [{"rule": r[0], "country": r[1]} for r in rows]


def test_the_receipt_names_the_rule_applied(tmp_path: Path, testdata: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    app = regions_app(tmp_path, CONSENTKIT_LEDGER_URL=url,
                      CONSENTKIT_GEOIP_DATABASE=str(testdata / "GeoIP2-City-Test.mmdb"))
    client = app.test_client()
    client.post("/consent/", data={"action": "reject_all", "source": "banner"},
                headers={"Origin": "http://localhost"}, environ_base={"REMOTE_ADDR": RU})
    accept_all(app.test_client(), UK)
    accept_all(app.test_client(), "10.0.0.1")  # unknown location: the strictest rule
    # recorded without analytics consent (the rule is the basis, not analytics); the
    # country itself only with it, as before
    assert [r["rule"] for r in receipts(app)] == ["ru", "eu", "ru"]
    assert receipts(app)[0]["country"] is None
    ledger: Ledger = app.extensions["consentkit"].ledger
    assert ledger.verify().ok
    dispose_engines(url)


def test_without_the_key_receipts_are_as_before(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    app = regions_app(tmp_path, CONSENTKIT_LEDGER_URL=url, CONSENTKIT_REGIONS=None)
    accept_all(app.test_client(), RU)
    assert receipts(app) == [{"rule": None, "country": None}]
    dispose_engines(url)


def test_a_receipt_without_a_rule_has_the_digest_it_always_had() -> None:
    base = {name: "x" for name in chain.CHAINED_COLUMNS}
    base.update(seq=1, created_at=datetime(2026, 1, 1),
                personal_digest="p" * 64, prev_digest=chain.GENESIS)
    before = chain.receipt_digest(base)  # a row of schema version 2: no "rule" at all
    assert chain.receipt_digest({**base, "rule": None}) == before
    assert chain.receipt_digest({**base, "rule": "ru"}) != before  # and it is covered


def test_the_rule_is_covered_by_the_chain(store_url: str) -> None:
    ledger = Ledger(store_url)
    ledger.append(draft(rule="ru"))
    assert ledger.verify().ok
    execute(store_url, "UPDATE consentkit_receipts SET rule = 'opt-in' WHERE seq = 1")
    assert not ledger.verify().ok
    assert ledger.export(CONSENT_ID)[0]["rule"] == "opt-in"


def test_a_version_2_ledger_gets_the_column_and_still_verifies(store_url: str) -> None:
    ledger = Ledger(store_url)
    old = [ledger.append(draft()) for _ in range(3)]
    # what version 2 had: no rule column
    execute(store_url, "ALTER TABLE consentkit_receipts DROP COLUMN rule")
    execute(store_url, "UPDATE consentkit_meta SET value = '2' WHERE key = 'schema_version'")
    dispose_engines(store_url)

    ledger = Ledger(store_url)
    new = ledger.append(draft(rule="tr"))
    assert execute(store_url, "SELECT value FROM consentkit_meta WHERE key = 'schema_version'") \
        == [(str(SCHEMA_VERSION),)] == [("3",)]
    assert execute(store_url, "SELECT rule FROM consentkit_receipts ORDER BY seq") == [
        (None,), (None,), (None,), ("tr",)]
    result = ledger.verify()
    assert result.ok and result.checked == 4
    assert new["prev_digest"] == old[-1]["digest"]
