"""Concurrent writers (threads, processes) keep one linear chain and lose nothing; a
committed receipt survives ``kill -9``."""
# ruff: noqa: F811  (pytest fixtures imported from ledger_helpers)

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flask_consentkit.ledger.store import Ledger

from .conftest import ROOT, make_app
from .ledger_helpers import (  # noqa: F401
    decide_as_one_visitor,
    decide_many,
    execute,
    store_url,
)


def assert_one_linear_chain(url: str, expected: int) -> None:
    ledger = Ledger(url)
    result = ledger.verify()
    assert result.ok, result.describe()
    assert result.checked == expected
    rows = execute(url, "SELECT seq, receipt_id, consent_id, previous_receipt_id "
                   "FROM consentkit_receipts ORDER BY seq")
    assert [r[0] for r in rows] == list(range(1, expected + 1))
    last: dict[str, str] = {}
    for _, receipt_id, consent_id, previous in rows:
        assert previous == last.get(consent_id)  # each visitor's receipts link in order
        last[consent_id] = receipt_id


def test_200_decisions_from_8_threads(store_url: str, tmp_path: Path) -> None:
    # one app served by 8 threads, as a threaded server would
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url, CONSENTKIT_RATELIMIT=None)
    with ThreadPoolExecutor(8) as pool:
        done = list(pool.map(lambda _: decide_as_one_visitor(app, 25), range(8)))
    assert done == [25] * 8
    assert_one_linear_chain(store_url, 200)


def test_200_decisions_from_4_processes(store_url: str, tmp_path: Path) -> None:
    context = multiprocessing.get_context("forkserver")
    # workers fork from a server that has imported Flask, SQLAlchemy and the app once
    context.set_forkserver_preload(["tests.ledger_helpers"])
    with context.Pool(4) as pool:
        done = pool.starmap(decide_many, [(store_url, str(tmp_path), 50, True)] * 4)
    assert done == [50] * 4
    assert_one_linear_chain(store_url, 200)


KILLED = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tests.conftest import SAME_ORIGIN, make_app
    app = make_app(Path(sys.argv[2]), CONSENTKIT_LEDGER_URL=sys.argv[1])
    response = app.test_client().post("/consent/", json={"action": "accept_all"},
                                      headers=SAME_ORIGIN)
    assert response.status_code == 200
    print(response.get_json()["consent_id"], flush=True)  # acknowledged
    time.sleep(120)
""")


def test_a_committed_receipt_survives_kill_9(store_url: str, tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, store_url, str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        consent_id = child.stdout.readline().strip()
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert consent_id
    [receipt] = Ledger(store_url).export(consent_id)
    assert receipt["action"] == "accept_all"
    assert Ledger(store_url).verify().ok


def test_pruning_while_decisions_arrive_keeps_one_valid_chain(store_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    from .ledger_helpers import draft

    ledger = Ledger(store_url)
    old = datetime.now(UTC) - timedelta(days=400)
    for i in range(60):
        ledger.append(draft(), created_at=old + timedelta(seconds=i))
    def write(n: int) -> None:
        for _ in range(15):
            ledger.append(draft(f"writer-{n:019d}"))

    with ThreadPoolExecutor(3) as pool:
        writers = [pool.submit(write, n) for n in range(2)]
        pruned = ledger.prune(datetime.now(UTC) - timedelta(days=365), batch_size=7, pause=0)
        for w in writers:
            w.result()
    assert pruned == 60
    result = ledger.verify()
    assert result.ok, result.describe()
    assert result.checked == 30


def test_verify_while_decisions_arrive_sees_a_consistent_chain(store_url: str) -> None:
    from .ledger_helpers import draft

    ledger = Ledger(store_url)
    ledger.append(draft())

    def write(n: int) -> None:
        for _ in range(20):
            ledger.append(draft(f"writer-{n:019d}"))

    with ThreadPoolExecutor(3) as pool:
        writers = [pool.submit(write, n) for n in range(2)]
        results = []
        while not all(w.done() for w in writers):
            results.append(ledger.verify(batch_size=3))
        for w in writers:
            w.result()
    assert results and all(r.ok for r in results), [r.describe() for r in results if not r.ok]
    assert ledger.verify().checked == 41
