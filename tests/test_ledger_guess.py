"""The writer's guess: a batch written in one go from what the writer wrote last.

A writer that wrote the last batch itself guesses what the reads under the lock
would find (the head, each visitor's latest receipt) and writes the next batch
in one statement (SQLite) or one round trip (PostgreSQL), with the checks that
the guess holds made by the database under the lock. These tests make the guess
wrong the ways a real deployment does — another process writes in between, a
visitor returns whom this writer has not seen, the SQLite triggers that check
it are gone — and look at what is stored: one line, each visitor's receipts
linked, the head on the newest receipt.
"""
# ruff: noqa: F811  (pytest fixtures imported from ledger_helpers)

from __future__ import annotations

import logging
import os
import time
from typing import Any

import pytest
from sqlalchemy import event

from flask_consentkit.ledger import store
from flask_consentkit.ledger.store import (
    Ledger,
    LedgerError,
    LedgerOutcomeUnknown,
    LedgerTimeout,
    get_engine,
)

from .ledger_helpers import draft, execute, pg_schema, store_url  # noqa: F401
from .test_ledger_timeouts import chain_lock_held


def stored(url: str) -> list[Any]:
    return execute(url, "SELECT seq, receipt_id, consent_id, previous_receipt_id "
                   "FROM consentkit_receipts ORDER BY seq")


def assert_one_line(url: str, ledger: Ledger) -> None:
    """Verify passes, ``seq`` has no gap, each visitor's receipts link one after the
    other, and the head is the newest receipt."""
    result = ledger.verify()
    assert result.ok, result.describe()
    rows = stored(url)
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    last: dict[str, str] = {}
    for _, receipt_id, consent_id, previous in rows:
        assert previous == last.get(consent_id), (receipt_id, consent_id)
        last[consent_id] = receipt_id
    [(head,)] = execute(url, "SELECT value FROM consentkit_meta WHERE key = 'head'")
    assert head.startswith(f"{len(rows)}:")


def writer_of(ledger: Ledger) -> Any:
    """``ledger``'s writer in this process."""
    return store._writers[(ledger.url, os.getpid(), float(ledger.timeout))]


def guess_of(ledger: Ledger) -> Any:
    """The guess of ``ledger``'s writer in this process."""
    return writer_of(ledger)._guess


def two_writers(url: str) -> tuple[Ledger, Ledger]:
    """Two ledgers on ``url`` whose receipts go through two writers, as two processes'
    do (a writer serves one URL and timeout in a process)."""
    return Ledger(url, timeout=5.0), Ledger(url, timeout=4.0)


def test_a_writer_alone_writes_each_batch_in_one_statement(tmp_path: Any) -> None:
    """SQLite: once the writer has found the head where it left it, a batch is one
    ``INSERT`` (a transaction of its own: no ``BEGIN``, no read, no ``COMMIT``)."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    ledger = Ledger(url)
    statements: list[str] = []
    engine = get_engine(url, ledger.timeout, writer=True)
    event.listen(engine, "connect",
                 lambda dbapi, _record: dbapi.set_trace_callback(statements.append))
    try:
        for i in range(3):  # the first reads the head; the second finds it unmoved
            ledger.append(draft(f"visitor-{i:016d}"))
        del statements[:]
        row = ledger.append(draft("visitor-0000000000000000"))
        # SQLite traces the statement again for each run of a trigger it fires
        ran = [s for i, s in enumerate(statements) if i == 0 or statements[i - 1] != s]
        assert len(ran) == 1 and ran[0].startswith("INSERT INTO consentkit_receipts"), ran
        assert row["seq"] == 4 and row["previous_receipt_id"] is not None
        assert_one_line(url, ledger)
    finally:
        store.dispose_engines(url)


def test_another_writer_in_between_is_caught_under_the_lock(store_url: str) -> None:
    """Two processes' writers take turns: each one's guess is wrong every time, the
    database says so, and the batch is written from what is read under the lock."""
    first, second = two_writers(store_url)
    visitors = [f"visitor-{i:016d}" for i in range(3)]
    for i in range(3):  # the first writer comes to trust its guess
        first.append(draft(visitors[i]))
    assert guess_of(first).trusted
    for round_ in range(6):
        for n, ledger in enumerate((second, first, first, second)):
            row = ledger.append(draft(visitors[(round_ + n) % 3]))
            assert row["seq"] == len(stored(store_url))
    assert_one_line(store_url, first)


def test_a_visitor_the_writer_has_not_seen_links_to_their_latest_receipt(
        store_url: str) -> None:
    """The guess takes a visitor it does not know for one without receipts (most
    decisions are a visitor's first); a returning visitor's latest receipt, written
    through another writer, is found under the lock all the same."""
    first, second = two_writers(store_url)
    returning = "visitor-returning-00000"
    earlier = second.append(draft(returning))
    for i in range(3):
        first.append(draft(f"visitor-{i:016d}"))
    assert guess_of(first).trusted and returning not in guess_of(first).latest
    row = first.append(draft(returning))
    assert row["previous_receipt_id"] == earlier["receipt_id"]
    again = first.append(draft(returning))  # now it is known
    assert again["previous_receipt_id"] == row["receipt_id"]
    assert_one_line(store_url, first)


def test_an_erasure_between_two_guessed_batches_is_followed(store_url: str) -> None:
    """An erasure goes through the reads under the lock; the visitor's next receipt
    starts a new line (nothing of theirs is left to link to)."""
    ledger = Ledger(store_url)
    visitor = "visitor-erasing-0000000"
    for _ in range(3):
        ledger.append(draft(visitor))
    count, _tombstone = ledger.erase(visitor, draft(None, action="erase"))
    assert count == 3
    for _ in range(3):
        ledger.append(draft("visitor-other-000000000"))
    assert ledger.append(draft(visitor))["previous_receipt_id"] is None
    assert_one_line(store_url, ledger)


def test_receipts_written_through_another_connection_move_the_head_for_the_guess(
        store_url: str) -> None:
    """Someone restores a receipt by hand (another connection, head moved with it): the
    writer's guess of the head is then wrong, and its next receipt follows the restored
    one, not the one it remembers."""
    ledger = Ledger(store_url)
    for i in range(3):
        ledger.append(draft(f"visitor-{i:016d}"))
    assert guess_of(ledger).trusted
    # the ledger is emptied and started again under the writer (a restore, a test)
    execute(store_url, "DELETE FROM consentkit_receipts")
    execute(store_url, f"UPDATE consentkit_meta SET value = '0:{'0' * 64}' WHERE key = 'head'")
    row = ledger.append(draft("visitor-0000000000000000"))
    assert row["seq"] == 1 and row["previous_receipt_id"] is None
    assert_one_line(store_url, ledger)


def test_the_sqlite_writer_makes_its_triggers_again_when_they_are_gone(
        tmp_path: Any) -> None:
    """A batch guessed without the triggers that check it writes nothing (the
    ``INSERT`` asks for them), is written from the reads instead, and the triggers are
    made again for the next one."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    ledger = Ledger(url)
    try:
        for i in range(3):
            ledger.append(draft(f"visitor-{i:016d}"))
        writer = writer_of(ledger)
        assert writer._conn is not None
        dbapi = writer._conn.connection.dbapi_connection
        assert dbapi is not None
        names = "SELECT name FROM sqlite_temp_master WHERE type = 'trigger' ORDER BY name"
        assert [n for (n,) in dbapi.execute(names)] == ["consentkit_guard",
                                                        "consentkit_move_head"]
        dbapi.execute("DROP TRIGGER temp.consentkit_move_head")
        ledger.append(draft("visitor-0000000000000000"))  # found out; read under the lock
        assert_one_line(url, ledger)
        assert list(dbapi.execute(names)) == []  # the reads' write ran without the other
        for i in range(3):
            ledger.append(draft(f"visitor-{i:016d}"))
        assert [n for (n,) in dbapi.execute(names)] == ["consentkit_guard",
                                                        "consentkit_move_head"]
        assert_one_line(url, ledger)
    finally:
        store.dispose_engines(url)


@pytest.mark.postgres
def test_a_guess_that_fails_on_postgresql_leaves_no_transaction_open(
        postgres_url: str) -> None:
    """The guard stops the round trip; the writer rolls back and writes the batch from
    the reads, on the same connection."""
    with pg_schema(postgres_url) as url:
        guard_fails_and_nothing_is_left_open(url)


def guard_fails_and_nothing_is_left_open(store_url: str) -> None:
    first, second = two_writers(store_url)
    for i in range(3):
        first.append(draft(f"visitor-{i:016d}"))
    second.append(draft("visitor-0000000000000000"))
    row = first.append(draft("visitor-0000000000000001"))
    assert row["seq"] == 5
    idle = execute(store_url, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                   "current_database() AND state = 'idle in transaction (aborted)'")[0][0]
    assert idle == 0
    assert_one_line(store_url, first)


def test_a_trusted_writer_waiting_for_the_lock_writes_nothing_and_says_so(
        store_url: str) -> None:
    """The lock held elsewhere past the timeout: the guessed write's wait is ended by the
    server (PostgreSQL) or its busy timeout (SQLite), so the request learns that nothing
    was written — and nothing is, even when the lock is free a moment later."""
    Ledger(store_url).count()  # the tables, before the lock is taken
    ledger = Ledger(store_url, timeout=1.0)
    for i in range(3):  # the writer comes to trust its guess
        ledger.append(draft(f"visitor-{i:016d}"))
    assert guess_of(ledger).trusted
    before = ledger.count()
    with chain_lock_held(store_url):
        with pytest.raises(LedgerTimeout) as raised:
            ledger.append(draft())
        time.sleep(0.01)  # the lock is free a moment after the request was answered
    assert not isinstance(raised.value, LedgerOutcomeUnknown), raised.value
    assert "nothing was written" in str(raised.value)
    time.sleep(1.5)
    assert ledger.count() == before
    assert_one_line(store_url, ledger)


@pytest.mark.postgres
def test_a_trusted_writer_whose_connection_died_while_idle_writes_on_a_new_one(
        postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A server restart while the writer waits for work (its backend terminated): the
    next batch finds the connection gone before it sends anything it cannot take back,
    and is written on a new connection."""
    with pg_schema(postgres_url) as url:
        ledger = Ledger(url)
        for _ in range(3):
            ledger.append(draft())
        assert guess_of(ledger).trusted
        writer = writer_of(ledger)
        assert writer._conn is not None
        pid = writer._conn.connection.dbapi_connection.info.backend_pid
        assert execute(url, "SELECT pg_terminate_backend(:p)", p=pid) == [(True,)]
        for _ in range(100):  # until the backend is gone, as after a restart
            if not execute(url, "SELECT 1 FROM pg_stat_activity WHERE pid = :p", p=pid):
                break
            time.sleep(0.01)
        time.sleep(0.05)
        with caplog.at_level(logging.INFO, logger="flask_consentkit.ledger"):
            assert ledger.append(draft())["seq"] == 4
        assert "retrying on a new one" in caplog.text
        assert_one_line(url, ledger)


@pytest.mark.parametrize("garbled", ["+{}", " {}", "{}x", "{}.0"], ids=str)
def test_a_garbled_head_stops_a_guessed_write_as_it_stops_the_reads(
        tmp_path: Any, garbled: str) -> None:
    """A head that ``verify`` does not read (its number written otherwise) is no head the
    guard takes either: the write fails, and the damage stays for ``verify`` to find."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    ledger = Ledger(url)
    try:
        for i in range(3):
            ledger.append(draft(f"visitor-{i:016d}"))
        assert guess_of(ledger).trusted
        [(head,)] = execute(url, "SELECT value FROM consentkit_meta WHERE key = 'head'")
        seq, _, digest = head.partition(":")
        bad = garbled.format(seq) + ":" + digest
        execute(url, "UPDATE consentkit_meta SET value = :v WHERE key = 'head'", v=bad)
        assert not ledger.verify().ok
        with pytest.raises(LedgerError, match="garbled"):
            ledger.append(draft("visitor-0000000000000000"))
        [(after,)] = execute(url, "SELECT value FROM consentkit_meta WHERE key = 'head'")
        assert after == bad and len(stored(url)) == 3
    finally:
        store.dispose_engines(url)


@pytest.mark.postgres
def test_the_guess_is_used_whatever_the_socket_s_number(postgres_url: str) -> None:
    """A busy process has many files open: a writer whose socket's descriptor is past
    1,024 (where ``select()`` stops) still writes a batch in one round trip."""
    held = [open(os.devnull) for _ in range(1100)]  # noqa: SIM115 - closed below
    try:
        with pg_schema(postgres_url) as url:
            ledger = Ledger(url)
            for i in range(3):
                ledger.append(draft(f"visitor-{i:016d}"))
            writer = writer_of(ledger)
            assert writer._conn is not None
            dbapi = writer._conn.connection.dbapi_connection
            assert dbapi.pgconn.socket > 1024
            assert store._quiet(dbapi)
            ledger.append(draft("visitor-0000000000000000"))
            assert guess_of(ledger).trusted
            assert_one_line(url, ledger)
    finally:
        for f in held:
            f.close()


def test_the_reads_do_not_depend_on_the_sqlite_guard(tmp_path: Any) -> None:
    """What the reads under the lock write is written whatever the triggers made for a
    guessed batch would say: a consent id that is empty (no visitor to link, as for the
    writer) and a head written by hand in another form that verify reads the same."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    ledger = Ledger(url)
    try:
        for i in range(3):  # the writer trusts its guess: its triggers are made
            ledger.append(draft(f"visitor-{i:016d}"))
        for _ in range(3):
            assert ledger.append(draft(""))["previous_receipt_id"] is None
        [(head,)] = execute(url, "SELECT value FROM consentkit_meta WHERE key = 'head'")
        execute(url, f"UPDATE consentkit_meta SET value = '0{head}' WHERE key = 'head'")
        assert ledger.verify().ok
        assert ledger.append(draft("visitor-0000000000000000"))["seq"] == 7
        for i in range(3):
            ledger.append(draft(f"visitor-{i:016d}"))
        result = ledger.verify()
        assert result.ok and result.checked == 10, result.describe()
    finally:
        store.dispose_engines(url)


@pytest.mark.postgres
def test_the_postgresql_writer_does_not_count_its_queries_for_preparing(
        postgres_url: str) -> None:
    """Each of the writer's queries is new (its values are literals): psycopg is told
    not to keep counts of them, which costs two hashes of each query string."""
    with pg_schema(postgres_url) as url:
        ledger = Ledger(url)
        for i in range(3):
            ledger.append(draft(f"visitor-{i:016d}"))
        dbapi = writer_of(ledger)._conn.connection.dbapi_connection
        assert dbapi.prepare_threshold is None
        assert_one_line(url, ledger)
