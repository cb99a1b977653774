"""Group commit: receipts that arrive together share one commit and still form one line.

A receipt is returned only after the commit that holds it; a failure fails
each receipt it concerns, and only those.
"""
# ruff: noqa: F811  (pytest fixtures imported from ledger_helpers)

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import event

from flask_consentkit.ledger import store
from flask_consentkit.ledger.store import Ledger, LedgerWriteError, get_engine

from .ledger_helpers import draft, execute, store_url  # noqa: F401

WRITERS = 32


def commits_of(ledger: Ledger) -> list[int]:
    """A list that grows by one at each commit of the process's writer for ``ledger``."""
    ledger.append(draft("warm-up-0000000000000"))  # the writer's engine exists
    commits: list[int] = []
    engine = get_engine(ledger.url, ledger.timeout, writer=True)
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    return commits


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
    commits = commits_of(ledger)
    rounds = 10
    rows: list[Any] = []
    for _ in range(rounds):
        rows += together(WRITERS, lambda i: ledger.append(draft(visitor(i))))
    assert all(isinstance(r, dict) for r in rows), [r for r in rows if not isinstance(r, dict)]
    total = 1 + rounds * WRITERS
    assert len(commits) < rounds * WRITERS / 4, f"{len(commits)} commits for {total} receipts"

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
    commits = commits_of(ledger)
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
    assert len(commits) < WRITERS
    assert ledger.verify().ok


def test_a_receipt_the_database_refuses_fails_alone(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = Ledger(store_url)
    commits_of(ledger)
    bad = {3, 11, 20, 29}
    alone: list[Any] = []
    real = store._Writer._commit_alone

    def spy(self: Any, job: Any) -> None:
        alone.append(job)
        real(self, job)

    monkeypatch.setattr(store._Writer, "_commit_alone", spy)

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
    assert len(alone) > len(bad)  # a batch with a refused receipt was retried one by one
    assert ledger.count() == 1 + WRITERS - len(bad)
    assert ledger.verify().ok


def test_when_a_batch_fails_each_of_its_receipts_gets_its_own_error(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = Ledger(store_url)
    commits = commits_of(ledger)
    real = store._write_batch
    failing = threading.Event()

    def flaky(conn: Any, jobs: list[Any]) -> list[Any]:
        if failing.is_set():
            from sqlalchemy.exc import OperationalError

            raise OperationalError("INSERT", {}, Exception("disk full"))
        return real(conn, jobs)

    monkeypatch.setattr(store, "_write_batch", flaky)
    failing.set()
    results = together(WRITERS, lambda i: ledger.append(draft(visitor(i))))
    assert all(isinstance(r, LedgerWriteError) and "disk full" in str(r) for r in results)
    assert len({id(r) for r in results}) == WRITERS  # one exception per waiting request
    assert not commits and ledger.count() == 1
    failing.clear()
    assert ledger.append(draft())["seq"] == 2
    assert ledger.verify().ok


@pytest.mark.postgres
def test_a_writer_connection_killed_while_idle_is_replaced(
        postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    from .ledger_helpers import pg_schema

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
    from sqlalchemy import text

    from .ledger_helpers import pg_schema

    with pg_schema(postgres_url) as url:
        ledger = Ledger(url)
        ledger.append(draft())
        with ledger.engine.connect() as conn:  # the pooled connection export will get
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        assert execute(url, "SELECT pg_terminate_backend(:p)", p=pid) == [(True,)]
        assert len(ledger.export(draft().consent_id or "")) == 1  # pinged, replaced
