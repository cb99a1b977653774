"""Staff commands: ``flask consent export|erase|verify|prune``."""
# ruff: noqa: F811  (pytest fixtures imported from ledger_helpers)

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask import Flask

from flask_consentkit.cli import cli
from flask_consentkit.ledger.store import Ledger

from .conftest import make_app
from .ledger_helpers import CONSENT_ID, draft, execute, ledger_app, store_url  # noqa: F401

OTHER = "visitor-0000000000000002"


def ledger_of(app: Flask) -> Ledger:
    ledger: Ledger = app.extensions["consentkit"].ledger
    return ledger


def test_export_prints_the_receipts_as_json(ledger_app: Flask) -> None:
    ledger = ledger_of(ledger_app)
    ledger.append(draft())
    ledger.append(draft(OTHER))
    result = ledger_app.test_cli_runner().invoke(cli, ["export", CONSENT_ID])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["consent_id"] == CONSENT_ID and len(body["receipts"]) == 1
    assert body["receipts"][0]["page_path"] == "/story/lighthouse"


def test_export_of_an_unknown_id_is_empty_and_says_so(ledger_app: Flask) -> None:
    result = ledger_app.test_cli_runner().invoke(cli, ["export", OTHER])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["receipts"] == []
    assert f"no receipts for {OTHER}" in result.stderr


def test_a_malformed_id_is_refused(ledger_app: Flask) -> None:
    result = ledger_app.test_cli_runner().invoke(cli, ["export", "x'; drop"])
    assert result.exit_code == 2 and "is not a consent id" in result.output


def test_erase_asks_then_erases_and_verify_still_passes(ledger_app: Flask) -> None:
    ledger = ledger_of(ledger_app)
    ledger.append(draft())
    ledger.append(draft())
    runner = ledger_app.test_cli_runner()
    declined = runner.invoke(cli, ["erase", CONSENT_ID], input="n\n")
    assert declined.exit_code == 1 and len(ledger.export(CONSENT_ID)) == 2
    result = runner.invoke(cli, ["erase", CONSENT_ID], input="y\n")
    assert result.exit_code == 0 and f"erased 2 receipt(s) of {CONSENT_ID}" in result.output
    assert ledger.export(CONSENT_ID) == []
    verify = runner.invoke(cli, ["verify"])
    assert verify.exit_code == 0
    assert "ledger OK: 3 receipts" in verify.output and "(2 erased)" in verify.output


def test_erase_of_an_id_without_receipts_fails_and_writes_no_tombstone(
        ledger_app: Flask) -> None:
    ledger = ledger_of(ledger_app)
    ledger.append(draft())
    runner = ledger_app.test_cli_runner()
    before = ledger.count()
    unknown = runner.invoke(cli, ["erase", OTHER, "--yes"])
    assert unknown.exit_code == 1
    assert f"no receipts for {OTHER}: nothing to erase" in unknown.output
    assert "no tombstone was written" in unknown.output
    assert ledger.count() == before
    # erasing an id twice: the second time there is nothing left
    assert runner.invoke(cli, ["erase", CONSENT_ID, "--yes"]).exit_code == 0
    after_first = ledger.count()
    again = runner.invoke(cli, ["erase", CONSENT_ID], input="y\n")
    assert again.exit_code == 1 and "nothing to erase" in again.output
    assert "Erase every receipt" not in again.output  # refused before asking
    assert ledger.count() == after_first
    report = json.loads(runner.invoke(cli, ["report", "--format", "json", "--min-count", "0"]
                                      ).stdout)
    assert report["erasures"] == 1


def test_verify_exits_1_naming_the_first_bad_receipt(ledger_app: Flask, store_url: str
                                                     ) -> None:
    ledger = ledger_of(ledger_app)
    rows = [ledger.append(draft()) for _ in range(4)]
    runner = ledger_app.test_cli_runner()
    assert runner.invoke(cli, ["verify"]).exit_code == 0
    execute(store_url, "UPDATE consentkit_receipts SET denied = ',' WHERE seq = 2")
    execute(store_url, "UPDATE consentkit_receipts SET denied = ',' WHERE seq = 3")
    result = runner.invoke(cli, ["verify"])
    assert result.exit_code == 1
    assert rows[1]["receipt_id"] in result.stderr and "(seq 2)" in result.stderr
    assert rows[2]["receipt_id"] not in result.stderr


def test_verify_detects_a_deleted_receipt(ledger_app: Flask, store_url: str) -> None:
    ledger = ledger_of(ledger_app)
    rows = [ledger.append(draft()) for _ in range(4)]
    execute(store_url, "DELETE FROM consentkit_receipts WHERE seq = 3")
    result = ledger_app.test_cli_runner().invoke(cli, ["verify"])
    assert result.exit_code == 1
    assert rows[3]["receipt_id"] in result.stderr and "missing" in result.stderr


def test_prune_deletes_old_receipts_in_batches_and_keeps_the_chain(
        ledger_app: Flask, store_url: str) -> None:
    ledger = ledger_of(ledger_app)
    old = datetime.now(UTC) - timedelta(days=400)
    for i in range(23):
        ledger.append(draft(), created_at=old + timedelta(minutes=i))
    recent = [ledger.append(draft(OTHER)) for _ in range(3)]
    runner = ledger_app.test_cli_runner()

    dry = runner.invoke(cli, ["prune", "--dry-run"])
    assert dry.exit_code == 0 and "would delete 23 receipt(s) older than 365 days" in dry.output
    assert ledger.count() == 26

    result = runner.invoke(cli, ["prune", "--batch-size", "5"])
    assert result.exit_code == 0 and "deleted 23 receipt(s)" in result.output
    assert ledger.count() == 3
    assert [r["receipt_id"] for r in ledger.export(OTHER)] == [r["receipt_id"] for r in recent]
    assert execute(store_url, "SELECT value FROM consentkit_meta WHERE key = 'anchor'")[0][0] \
        .startswith("23:")
    assert runner.invoke(cli, ["verify"]).exit_code == 0
    # the chain goes on from the anchor; deleting its first remaining receipt is still caught
    ledger.append(draft())
    assert ledger.verify().ok
    execute(store_url, "DELETE FROM consentkit_receipts WHERE seq = 24")
    assert runner.invoke(cli, ["verify"]).exit_code == 1
    assert "deleted 0" in runner.invoke(cli, ["prune"]).output


def test_prune_keeps_an_old_receipt_that_follows_a_newer_one(ledger_app: Flask) -> None:
    ledger = ledger_of(ledger_app)
    old = datetime.now(UTC) - timedelta(days=30)
    ledger.append(draft(), created_at=old)
    ledger.append(draft())
    ledger.append(draft(), created_at=old)  # e.g. a clock that was behind
    result = ledger_app.test_cli_runner().invoke(cli, ["prune", "--days", "7"])
    assert "deleted 1 receipt(s) older than 7 days" in result.output
    assert ledger.count() == 2 and ledger.verify().ok


def test_commands_explain_when_receipts_are_off(tmp_path: Path) -> None:
    runner = make_app(tmp_path).test_cli_runner()
    for args in (["export", CONSENT_ID], ["erase", "--yes", CONSENT_ID], ["verify"],
                 ["prune"]):
        result = runner.invoke(cli, [*args])
        assert result.exit_code == 1
        assert "receipts are off (CONSENTKIT_LEDGER_URL is None)" in result.output
