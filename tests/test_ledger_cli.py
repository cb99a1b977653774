"""Staff commands: ``flask consent export|erase|verify|prune``."""
# ruff: noqa: F811  (pytest fixtures imported from ledger_helpers)

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, insert

from flask_consentkit.cli import cli
from flask_consentkit.ledger.schema import SCHEMA_VERSION, meta, metadata
from flask_consentkit.ledger.signing import generate
from flask_consentkit.ledger.store import Ledger, dispose_engines

from .conftest import make_app
from .ledger_helpers import (  # noqa: F401
    CONSENT_ID,
    draft,
    execute,
    ledger_app,
    pg_schema,
    store_url,
)

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
    ledger_of(ledger_app).append(draft())
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


# -- a ledger that cannot be used: one line saying why, never a traceback ---------------

SOME_ID = "GRzq0g0W6c0gtC6CWgVuLg"
LEDGER_COMMANDS = [
    ["verify"], ["export", SOME_ID], ["erase", SOME_ID, "--yes"], ["prune", "--dry-run"],
    ["prune"], ["notice", "0" * 64], ["checkpoint"],
]


def keyed_app(tmp_path: Path, url: str) -> Flask:
    """An app whose ledger is at ``url``, with a signing key (for ``checkpoint``)."""
    key = tmp_path / "signing.key"
    if not key.exists():
        generate(key)
    return make_app(tmp_path, CONSENTKIT_LEDGER_URL=url, CONSENTKIT_RATELIMIT=None,
                    CONSENTKIT_SIGNING_KEY=str(key))


def one_line_error(result: Any) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    return str(result.output)


@pytest.mark.parametrize("args", LEDGER_COMMANDS, ids=lambda a: a[0] + a[-1][:3])
def test_a_file_that_is_not_a_database(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "garbage.db"
    path.write_text("not a database\n")
    app = keyed_app(tmp_path, f"sqlite:///{path}")
    output = one_line_error(app.test_cli_runner().invoke(cli, args))
    assert output == f"Error: Cannot read the ledger at sqlite:///{path}: file is not a database\n"
    assert path.read_text() == "not a database\n"


@pytest.mark.parametrize("args", LEDGER_COMMANDS, ids=lambda a: a[0] + a[-1][:3])
def test_an_unreachable_postgresql(tmp_path: Path, args: list[str]) -> None:
    app = keyed_app(tmp_path, "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test")
    output = one_line_error(app.test_cli_runner().invoke(cli, args))
    assert output.startswith("Error: Cannot read the ledger at "
                             "postgresql+psycopg://postgres:***@127.0.0.1:1/test: connection "
                             "failed: "), output
    assert "s3cret" not in output


@pytest.mark.parametrize("args", LEDGER_COMMANDS, ids=lambda a: a[0] + a[-1][:3])
def test_a_ledger_of_a_newer_schema_version(store_url: str, tmp_path: Path,
                                            args: list[str]) -> None:
    Ledger(store_url).append(draft(SOME_ID))
    execute(store_url, "UPDATE consentkit_meta SET value = '99' WHERE key = 'schema_version'")
    output = one_line_error(keyed_app(tmp_path, store_url).test_cli_runner().invoke(cli, args))
    assert "have schema version '99', newer than this flask-consentkit understands" in output
    assert output.endswith("upgrade flask-consentkit.\n")
    assert execute(store_url, "SELECT count(*) FROM consentkit_receipts") == [(1,)]


def test_verify_names_a_receipt_whose_time_cannot_be_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    ledger = Ledger(url)
    for _ in range(3):
        ledger.append(draft())
    [(receipt_id,)] = execute(url, "SELECT receipt_id FROM consentkit_receipts WHERE seq = 2")
    execute(url, "UPDATE consentkit_receipts SET created_at = 'not a date' WHERE seq = 2")
    result = make_app(tmp_path, CONSENTKIT_LEDGER_URL=url).test_cli_runner().invoke(
        cli, ["verify"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr == (f"ledger BROKEN at receipt {receipt_id} (seq 2): a stored value "
                             "cannot be read (Invalid isoformat string: 'not a date')\n")


# -- read-only commands on a ledger that is not there: said so, nothing created ---------

READ_ONLY = [["verify"], ["export", SOME_ID], ["notice", "0" * 64],
             ["notice", "00000000-0000-4000-8000-000000000000"], ["prune", "--dry-run"],
             ["checkpoint"], ["report"],
             # these two write, but only to a ledger that holds something to change
             ["erase", SOME_ID, "--yes"], ["prune"]]


def test_a_missing_sqlite_ledger_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "typo" / "ledgr.db"
    app = keyed_app(tmp_path, f"sqlite:///{path}")
    for args in READ_ONLY:
        output = one_line_error(app.test_cli_runner().invoke(cli, args))
        assert output == (f"Error: There is no ledger database at {path}. Check "
                          "CONSENTKIT_LEDGER_URL, or let the app record a first decision (it "
                          "creates the file).\n"), args
        assert not path.parent.exists(), args


@pytest.mark.postgres
def test_a_postgresql_schema_without_a_ledger_gets_no_tables(postgres_url: str,
                                                             tmp_path: Path) -> None:
    with pg_schema(postgres_url) as url:
        app = keyed_app(tmp_path, url)
        for args in READ_ONLY:
            output = one_line_error(app.test_cli_runner().invoke(cli, args))
            assert output == (f"Error: There is no ledger at {url}: it has no "
                              "consentkit_receipts table. Check CONSENTKIT_LEDGER_URL, or let "
                              "the app record a first decision (it creates the tables).\n"), args
            assert execute(url, "SELECT count(*) FROM information_schema.tables "
                                "WHERE table_schema = current_schema()") == [(0,)], args


# -- the head row: verify tells a missing one, and never writes one ----------------------


def test_verify_fails_when_the_newest_receipts_and_the_head_row_are_deleted(
        store_url: str, tmp_path: Path) -> None:
    ledger = Ledger(store_url)
    for _ in range(4):
        ledger.append(draft())
    dispose_engines(store_url)
    execute(store_url, "DELETE FROM consentkit_receipts WHERE seq >= 3")
    execute(store_url, "DELETE FROM consentkit_meta WHERE key = 'head'")
    # a process that has not opened the ledger yet, as `flask consent verify` is
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url)
    result = app.test_cli_runner().invoke(cli, ["verify"])
    assert result.exit_code == 1
    assert result.stderr == "ledger BROKEN: the head row of consentkit_meta is missing or garbled\n"
    assert execute(store_url, "SELECT key FROM consentkit_meta ORDER BY key") == [
        ("schema_version",)]  # verify wrote nothing


def test_a_head_the_app_rebuilt_stays_evidence_for_verify(
        store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The app opening the ledger after the newest receipts and the head row went: it goes
    on recording (nothing is lost), and verify still says what happened."""
    ledger = Ledger(store_url)
    for _ in range(4):
        ledger.append(draft())
    dispose_engines(store_url)
    execute(store_url, "DELETE FROM consentkit_receipts WHERE seq >= 3")
    execute(store_url, "DELETE FROM consentkit_meta WHERE key = 'head'")
    with caplog.at_level("ERROR", logger="flask_consentkit.ledger"):
        Ledger(store_url).append(draft())  # the app's writer, in a new process
    assert "head row was missing; rebuilt from the newest receipt (seq 2)" in caplog.text
    assert execute(store_url, "SELECT max(seq) FROM consentkit_receipts") == [(3,)]
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url)
    for _ in range(2):  # and again after more receipts, and another open
        result = app.test_cli_runner().invoke(cli, ["verify"])
        assert result.exit_code == 1
        assert result.stderr == (
            "ledger BROKEN: the head row of consentkit_meta was missing when the app opened "
            "the ledger and was rebuilt from its newest receipt then (seq 2): receipts after "
            "it may have been deleted\n")
        dispose_engines(store_url)
        Ledger(store_url).append(draft())


def test_verify_of_tables_made_without_any_receipt_or_head(store_url: str,
                                                           tmp_path: Path) -> None:
    """Tables made by someone else, nothing recorded yet: an empty ledger, not a broken one."""
    engine = create_engine(store_url)
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
    finally:
        engine.dispose()
    result = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url).test_cli_runner().invoke(
        cli, ["verify"])
    assert result.exit_code == 0, result.output
    assert result.output == "ledger OK: 0 receipts, chain intact (0 erased)\n"
    assert execute(store_url, "SELECT key FROM consentkit_meta") == [("schema_version",)]


@pytest.mark.parametrize("args, option", [
    (["prune", "--dry-run", "--days", "1000000"], "--days"),
    (["prune", "--days", "0"], "--days"),
    (["verify", "--checkpoint", "-", "--retention-days", "99999999"], "--retention-days"),
])
def test_days_beyond_a_hundred_years_are_refused(ledger_app: Flask, args: list[str],
                                                 option: str) -> None:
    result = ledger_app.test_cli_runner().invoke(cli, args, input="")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"Invalid value for '{option}': " in result.output
    assert "is not in the range 1<=x<=36500." in result.output


def test_a_read_only_postgresql_ledgers_connections_refuse_writes(tmp_path):
    url = os.environ.get("CONSENTKIT_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("CONSENTKIT_TEST_POSTGRES_URL is not set; .ci/run sets it")
    from sqlalchemy import text

    from flask_consentkit.ledger.store import get_engine

    engine = get_engine(url, read_only=True)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW transaction_read_only")).scalar() == "on"
    finally:
        engine.dispose()  # (a disposed engine opens new connections when used again)
