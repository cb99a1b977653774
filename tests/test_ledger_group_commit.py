"""Group commit: receipts that arrive together share one commit and still form one line.

A receipt is returned only after the commit that holds it; a failure fails
each receipt it concerns, and only those. Commits are counted by the database
itself: on PostgreSQL the distinct transaction ids (``xmin``) of the receipts,
on SQLite the ``COMMIT`` statements SQLite ran on the writer's connection.
"""
# ruff: noqa: F811  (pytest fixtures imported from ledger_helpers)

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text

from flask_consentkit.ledger import store
from flask_consentkit.ledger.store import Ledger, LedgerWriteError, get_engine

from .ledger_helpers import draft, execute, pg_schema, store_url  # noqa: F401

WRITERS = 32


def commit_counter(ledger: Ledger) -> Callable[[], int]:
    """How many transactions have written receipts so far (call before the first write).

    On SQLite: the ``COMMIT`` statements, and the ``INSERT`` statements of batches the
    writer guessed, each a transaction of its own (one whose guess failed is counted
    too: an upper bound). SQLite traces a statement again for each run of a trigger
    it fires, with the same text (its values included): those are counted once."""
    if ledger.dialect == "postgresql":
        return lambda: int(execute(
            ledger.url, "SELECT count(DISTINCT xmin::text) FROM consentkit_receipts")[0][0])
    commits: list[str] = []

    def trace(statement: str) -> None:
        if statement.strip().upper() == "COMMIT" or (
                "SELECT * FROM (VALUES" in statement
                and (not commits or commits[-1] != statement)):
            commits.append(statement)

    engine = get_engine(ledger.url, ledger.timeout, writer=True)
    event.listen(engine, "connect", lambda dbapi, _record: dbapi.set_trace_callback(trace))
    return lambda: len(commits)


def together(n: int, call: Any) -> list[Any]:
    """``call(i)`` for ``i`` in ``range(n)``, in ``n`` threads released at once."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait()
        try:
            return call(i)
        except Exception as exc:  # noqa: BLE001 - returned for the test to look at
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def visitor(i: int) -> str:
    return f"visitor-{i % 8:016d}"  # 8 visitors, 4 writers each


def test_32_writers_share_commits_and_keep_one_line(store_url: str) -> None:
    ledger = Ledger(store_url)
    commits = commit_counter(ledger)
    ledger.append(draft("warm-up-0000000000000"))
    before = commits()
    reader = create_engine(store_url)  # another connection: sees only what is committed
    unseen: list[str] = []

    def append(i: int) -> dict[str, Any]:
        row = ledger.append(draft(visitor(i)))
        with reader.connect() as conn:  # returned, so committed
            found = conn.execute(text("SELECT seq FROM consentkit_receipts "
                                      "WHERE receipt_id = :r"), {"r": row["receipt_id"]}).all()
        if found != [(row["seq"],)]:
            unseen.append(row["receipt_id"])
        return row

    rounds = 10
    rows: list[Any] = []
    try:
        for _ in range(rounds):
            rows += together(WRITERS, append)
    finally:
        reader.dispose()
    assert all(isinstance(r, dict) for r in rows), [r for r in rows if not isinstance(r, dict)]
    assert not unseen, f"{len(unseen)} receipts were returned before their commit"
    total = 1 + rounds * WRITERS
    shared = commits() - before
    assert 0 < shared < rounds * WRITERS / 4, f"{shared} commits for {rounds * WRITERS} receipts"

    result = ledger.verify()
    assert result.ok and result.checked == total, result.describe()
    stored = execute(store_url, "SELECT seq, receipt_id, consent_id, previous_receipt_id "
                     "FROM consentkit_receipts ORDER BY seq")
    assert [r[0] for r in stored] == list(range(1, total + 1))
    by_id = {r[1]: r for r in stored}
    assert all(by_id[r["receipt_id"]][0] == r["seq"] for r in rows)  # what was returned is stored
    last: dict[str, str] = {}
    for _, receipt_id, consent_id, previous in stored:  # each visitor's receipts: one line
        assert previous == last.get(consent_id)
        last[consent_id] = receipt_id


def test_an_erasure_in_a_batch_erases_what_the_batch_wrote_before_it(store_url: str) -> None:
    ledger = Ledger(store_url)
    commits = commit_counter(ledger)
    ledger.append(draft("warm-up-0000000000000"))
    before = commits()
    target = visitor(0)

    def call(i: int) -> Any:
        if i == WRITERS // 2:
            return ledger.erase(target, draft(None, action="erase"))
        return ledger.append(draft(visitor(i)))

    results = together(WRITERS, call)
    [(count, tombstone)] = [r for r in results if isinstance(r, tuple)]
    rows = execute(store_url, "SELECT seq FROM consentkit_receipts WHERE consent_id = :c",
                   c=target)
    assert all(seq > tombstone["seq"] for (seq,) in rows)
    erased = execute(store_url, "SELECT count(*) FROM consentkit_receipts WHERE erased_at "
                     "IS NOT NULL")[0][0]
    assert erased == count and count + len(rows) == 3  # i = 0, 8, 24 (16 erases)
    assert commits() - before < WRITERS
    assert ledger.verify().ok


def test_a_receipt_the_database_refuses_fails_alone(store_url: str) -> None:
    ledger = Ledger(store_url)
    ledger.append(draft("warm-up-0000000000000"))
    bad = {3, 11, 20, 29}

    def call(i: int) -> Any:
        # a NOT NULL column left empty: the database refuses this receipt, not the batch
        return ledger.append(draft(visitor(i), policy_version=None if i in bad else "1"))

    results = together(WRITERS, call)
    for i, result in enumerate(results):
        if i in bad:
            assert isinstance(result, LedgerWriteError), result
            assert "IntegrityError" in str(result) or "NotNull" in str(result)
        else:
            assert isinstance(result, dict), result
    assert ledger.count() == 1 + WRITERS - len(bad)
    assert ledger.verify().ok


REFUSE = {
    # SQLSTATE 53100 "disk_full": an OperationalError, the database's availability
    "postgresql": [
        "CREATE FUNCTION ck_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'disk full' USING ERRCODE = 'disk_full'; END $$",
        "CREATE TRIGGER ck_refuse BEFORE INSERT ON consentkit_receipts "
        "FOR EACH ROW EXECUTE FUNCTION ck_refuse()",
    ],
    # SQLite's RAISE is a constraint failure: the batch is retried one receipt at a time
    "sqlite": [
        "CREATE TRIGGER ck_refuse BEFORE INSERT ON consentkit_receipts "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    ],
}
ALLOW = {
    "postgresql": ["DROP TRIGGER ck_refuse ON consentkit_receipts", "DROP FUNCTION ck_refuse()"],
    "sqlite": ["DROP TRIGGER ck_refuse"],
}


def test_when_the_database_refuses_a_batch_each_receipt_gets_its_own_error(
        store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    ledger = Ledger(store_url)
    commits = commit_counter(ledger)
    ledger.append(draft())
    before = commits()
    for statement in REFUSE[ledger.dialect]:
        execute(store_url, statement)
    with caplog.at_level(logging.ERROR, logger="flask_consentkit.ledger"):
        results = together(WRITERS, lambda i: ledger.append(draft(visitor(i))))
    assert all(isinstance(r, LedgerWriteError) and "disk full" in str(r) for r in results), \
        results
    assert len({id(r) for r in results}) == WRITERS  # one exception per waiting request
    assert commits() == before and ledger.count() == 1
    for statement in ALLOW[ledger.dialect]:
        execute(store_url, statement)
    assert ledger.append(draft())["seq"] == 2  # writes resume
    assert ledger.verify().ok


@pytest.mark.postgres
def test_a_writer_connection_killed_while_idle_is_replaced(
        postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with pg_schema(postgres_url) as url:
        ledger = Ledger(url)
        ledger.append(draft())
        writer = store._writer(url, ledger.timeout)
        assert writer._conn is not None
        pid = writer._conn.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
        assert execute(url, "SELECT pg_terminate_backend(:p)", p=pid) == [(True,)]
        with caplog.at_level(logging.INFO, logger="flask_consentkit.ledger"):
            assert ledger.append(draft())["seq"] == 2
        assert "retrying on a new one" in caplog.text  # once, on a new connection
        assert ledger.verify().ok


@pytest.mark.postgres
def test_a_pooled_connection_killed_while_idle_is_replaced(postgres_url: str) -> None:
    with pg_schema(postgres_url) as url:
        ledger = Ledger(url)
        ledger.append(draft())
        with ledger.engine.connect() as conn:  # the pooled connection export will get
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        assert execute(url, "SELECT pg_terminate_backend(:p)", p=pid) == [(True,)]
        assert len(ledger.export(draft().consent_id or "")) == 1  # pinged, replaced


def test_a_visitors_latest_receipt_is_found_without_reading_their_history(
        store_url: str) -> None:
    """The writer looks up each visitor's latest receipt for every batch: one index
    probe per visitor, however many receipts they have (a visitor who changes their
    mind often, a script deciding through the API), not a read of all of them."""
    ledger = Ledger(store_url)
    busy, new = "visitor-busy-0000000000", "visitor-new-00000000000"
    for _ in range(300):
        ledger.append(draft(busy))
    last = ledger.append(draft(busy))
    row = ledger.append(draft(new))
    assert row["previous_receipt_id"] is None
    assert ledger.append(draft(busy))["previous_receipt_id"] == last["receipt_id"]

    sql = store._Sql.of(get_engine(store_url).dialect)
    if ledger.dialect == "postgresql":
        query = sql.latest(2).replace("%s", "{}").format(f"'{busy}'", f"'{new}'")
        [[plan]] = execute(store_url, "EXPLAIN (ANALYZE, FORMAT JSON) " + query)

        def read(node: dict[str, Any]) -> int:  # receipts read, over every loop
            own = (node["Actual Rows"] * node["Actual Loops"]
                   if node.get("Relation Name") == "consentkit_receipts" else 0)
            return own + sum(read(child) for child in node.get("Plans", []))

        assert read(plan[0]["Plan"]) <= 2, plan
    else:
        steps = [r[-1] for r in execute(store_url, "EXPLAIN QUERY PLAN "
                                        + sql.latest(2).replace("?", f"'{busy}'", 1)
                                        .replace("?", f"'{new}'", 1))]
        assert any("SEARCH r USING" in s and "consent_id" in s for s in steps), steps
        assert not any("TEMP B-TREE" in s or s.startswith("SCAN r") for s in steps), steps
