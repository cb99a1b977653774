"""The hash chain: every edit, deletion or reordering is found and named; erasure is not."""
# ruff: noqa: F811  (pytest fixtures imported from ledger_helpers)

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import create_engine, inspect, text

from flask_consentkit import ConsentKit
from flask_consentkit.ledger.schema import SCHEMA_VERSION
from flask_consentkit.ledger.store import Ledger, LedgerError, dispose_engines

from .ledger_helpers import CONSENT_ID, draft, execute, ledger, store_url  # noqa: F401

OTHER = "visitor-0000000000000002"


def fill(ledger: Ledger, n: int = 5) -> list[dict[str, object]]:
    return [ledger.append(draft(CONSENT_ID if i % 2 else OTHER)) for i in range(n)]


def test_empty_and_filled_chains_verify(ledger: Ledger) -> None:
    assert ledger.verify().ok
    rows = fill(ledger)
    result = ledger.verify()
    assert result.ok and result.checked == 5
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["prev_digest"] == "0" * 64
    assert all(b["prev_digest"] == a["digest"] for a, b in zip(rows, rows[1:], strict=False))


def test_receipts_link_to_the_same_visitors_previous_receipt(ledger: Ledger) -> None:
    rows = fill(ledger, 4)
    assert rows[0]["previous_receipt_id"] is None and rows[1]["previous_receipt_id"] is None
    assert rows[2]["previous_receipt_id"] == rows[0]["receipt_id"]
    assert rows[3]["previous_receipt_id"] == rows[1]["receipt_id"]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("granted", ",marketing,necessary,"),
        ("action", "accept_all"),
        ("policy_version", "0"),
        ("consent_id", "visitor-9999999999999999"),
        ("page_path", "/elsewhere"),
        ("previous_receipt_id", None),
    ],
)
def test_an_edited_row_is_named(ledger: Ledger, store_url: str, column: str,
                                value: object) -> None:
    rows = fill(ledger)
    execute(store_url, f"UPDATE consentkit_receipts SET {column} = :v WHERE seq = 3", v=value)
    result = ledger.verify()
    assert not result.ok
    assert (result.bad_seq, result.bad_receipt_id) == (3, rows[2]["receipt_id"])
    assert result.checked == 2


def test_an_edit_that_rewrites_its_digest_is_caught_at_the_next_link(
        ledger: Ledger, store_url: str) -> None:
    from flask_consentkit.ledger import chain

    rows = fill(ledger)
    forged = dict(rows[2], granted=",marketing,necessary,")
    forged["digest"] = chain.receipt_digest(forged)
    execute(store_url, "UPDATE consentkit_receipts SET granted = :g, digest = :d WHERE seq = 3",
            g=forged["granted"], d=forged["digest"])
    result = ledger.verify()
    assert not result.ok and result.bad_seq == 4
    assert "link" in (result.reason or "")


def test_a_deleted_row_is_detected(ledger: Ledger, store_url: str) -> None:
    rows = fill(ledger)
    execute(store_url, "DELETE FROM consentkit_receipts WHERE seq = 2")
    result = ledger.verify()
    assert not result.ok
    assert result.bad_receipt_id == rows[2]["receipt_id"]
    assert "missing" in (result.reason or "")


def test_deleting_the_newest_row_is_detected(ledger: Ledger, store_url: str) -> None:
    fill(ledger)
    execute(store_url, "DELETE FROM consentkit_receipts WHERE seq = 5")
    result = ledger.verify()
    assert not result.ok and result.bad_seq == 5
    assert "newest receipts were deleted" in (result.reason or "")


def test_reordered_rows_are_detected(ledger: Ledger, store_url: str) -> None:
    fill(ledger)
    execute(store_url, "UPDATE consentkit_receipts SET seq = 100 WHERE seq = 2")
    execute(store_url, "UPDATE consentkit_receipts SET seq = 2 WHERE seq = 3")
    execute(store_url, "UPDATE consentkit_receipts SET seq = 3 WHERE seq = 100")
    result = ledger.verify()
    assert not result.ok and result.bad_seq == 2


def test_erasure_nulls_personal_columns_and_the_chain_still_verifies(
        ledger: Ledger, store_url: str) -> None:
    rows = fill(ledger, 6)
    count, tombstone = ledger.erase(CONSENT_ID, draft(None, action="erase"))
    assert count == 3
    assert ledger.export(CONSENT_ID) == []
    assert len(ledger.export(OTHER)) == 3
    erased = execute(store_url, "SELECT consent_id, page_path, ip_prefix, country, "
                     "personal_salt, erased_at, digest FROM consentkit_receipts "
                     "WHERE erased_at IS NOT NULL ORDER BY seq")
    assert len(erased) == 3
    assert all(r[:5] == (None,) * 5 and r[5] is not None for r in erased)
    assert [r[6] for r in erased] == [rows[i]["digest"] for i in (1, 3, 5)]
    assert tombstone["consent_id"] is None and tombstone["action"] == "erase"
    assert tombstone["previous_receipt_id"] == rows[5]["receipt_id"]
    result = ledger.verify()
    assert result.ok and result.erased == 3 and result.checked == 7


def test_erasing_without_a_tombstone_is_detected(ledger: Ledger, store_url: str) -> None:
    rows = fill(ledger)
    execute(store_url, "UPDATE consentkit_receipts SET consent_id = NULL, page_path = NULL, "
            "personal_salt = NULL, erased_at = created_at WHERE seq = 2")
    result = ledger.verify()
    assert not result.ok and result.bad_receipt_id == rows[1]["receipt_id"]
    assert "without a tombstone" in (result.reason or "")


def test_an_erased_row_that_still_holds_personal_data_is_detected(
        ledger: Ledger, store_url: str) -> None:
    fill(ledger)
    ledger.erase(CONSENT_ID, draft(None, action="erase"))
    execute(store_url, "UPDATE consentkit_receipts SET page_path = '/x' WHERE seq = 2")
    result = ledger.verify()
    assert not result.ok and result.bad_seq == 2
    assert "personal data" in (result.reason or "")


def test_schema_version_is_recorded_and_a_newer_one_is_refused(store_url: str) -> None:
    Ledger(store_url).append(draft())
    assert execute(store_url, "SELECT value FROM consentkit_meta WHERE key = 'schema_version'") \
        == [(str(SCHEMA_VERSION),)]
    execute(store_url, "UPDATE consentkit_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(LedgerError, match="newer"):
        Ledger(store_url).count()


def test_an_older_schema_without_a_migration_path_is_refused(store_url: str) -> None:
    Ledger(store_url).count()
    execute(store_url, "UPDATE consentkit_meta SET value = '0' WHERE key = 'schema_version'")
    dispose_engines(store_url)
    with pytest.raises(LedgerError, match="no migration from receipts schema version 0"):
        Ledger(store_url).count()


def test_a_version_1_ledger_is_migrated_to_the_covering_indexes(store_url: str) -> None:
    fill(Ledger(store_url))
    postgres = store_url.startswith("postgresql")
    if postgres:  # what version 1 had there: plain indexes on consent_id and created_at
        execute(store_url, "DROP INDEX ix_consentkit_receipts_consent_id_seq")
        execute(store_url, "CREATE INDEX ix_consentkit_receipts_consent_id "
                           "ON consentkit_receipts (consent_id)")
        execute(store_url, "DROP INDEX ix_consentkit_receipts_created_at")
        execute(store_url, "CREATE INDEX ix_consentkit_receipts_created_at "
                           "ON consentkit_receipts (created_at)")
    execute(store_url, "UPDATE consentkit_meta SET value = '1' WHERE key = 'schema_version'")
    dispose_engines(store_url)

    ledger = Ledger(store_url)
    ledger.append(draft())

    assert execute(store_url, "SELECT value FROM consentkit_meta WHERE key = 'schema_version'") \
        == [(str(SCHEMA_VERSION),)]
    engine = create_engine(store_url)
    try:
        indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("consentkit_receipts")}
    finally:
        engine.dispose()
    if postgres:
        assert "ix_consentkit_receipts_consent_id" not in indexes
        visitor = indexes["ix_consentkit_receipts_consent_id_seq"]
        assert visitor["column_names"] == ["consent_id", "seq"]
        assert visitor.get("column_sorting") == {"seq": ("desc",)}
        assert visitor.get("dialect_options", {}).get("postgresql_include") \
            == ["created_at", "action", "granted", "denied"]
        created = indexes["ix_consentkit_receipts_created_at"]
        assert created.get("dialect_options", {}).get("postgresql_include") \
            == ["action", "method", "policy_version", "withdrawn"]
    else:  # SQLite keeps its index, which holds seq (the rowid)
        assert indexes["ix_consentkit_receipts_consent_id"]["column_names"] == ["consent_id"]
        assert "ix_consentkit_receipts_consent_id_seq" not in indexes
    assert ledger.verify().ok and ledger.count() == 6
    assert len(ledger.export(CONSENT_ID)) == 3


def test_default_store_is_a_wal_sqlite_file_in_a_new_instance_folder(tmp_path: Path) -> None:
    instance = tmp_path / "missing" / "instance"
    app = Flask(__name__, instance_path=str(instance))
    app.config.update(SECRET_KEY="x" * 32)
    ConsentKit(app)
    ledger = app.extensions["consentkit"].ledger
    assert not instance.exists()  # nothing happens before the first use
    ledger.append(draft())
    path = instance / "consentkit-ledger.sqlite3"
    assert path.is_file()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT count(*) FROM consentkit_receipts").fetchone() == (1,)
    dispose_engines(ledger.url)


def test_one_engine_per_process_and_url(store_url: str) -> None:
    a, b = Ledger(store_url), Ledger(store_url)
    assert a.engine is b.engine
    with a.engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
