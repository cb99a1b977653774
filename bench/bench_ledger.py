"""Decisions per second through the full ``POST /consent/`` endpoint, with receipts.

Compares, in the same run: bare Flask answering a JSON POST, the choice endpoint
with the ledger off, with the default SQLite file (WAL, synchronous=FULL) and with
PostgreSQL (``CONSENTKIT_TEST_POSTGRES_URL``, a fresh schema dropped afterwards).

    python bench/bench_ledger.py [--decisions 400] [--rounds 5] [--prune-rows 200000]

With ``--prune-rows N`` it also fills the SQLite ledger with N receipts past
retention, prunes them while decisions keep arriving, and prints the prune rate
and the slowest decision during the prune (batches keep the table usable).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, request  # noqa: E402
from sqlalchemy import create_engine, insert, text, update  # noqa: E402

from flask_consentkit import ConsentKit  # noqa: E402
from flask_consentkit.ledger import chain  # noqa: E402
from flask_consentkit.ledger.schema import meta, receipts  # noqa: E402
from flask_consentkit.ledger.store import Ledger, dispose_engines  # noqa: E402

HEADERS = {"Origin": "http://localhost"}
BODY = {"action": "save", "categories": ["analytics", "functional"]}


def bare_app() -> Flask:
    app = Flask(__name__)

    @app.post("/consent/")
    def choose() -> dict[str, object]:
        data = request.get_json()
        return {"decided": True, "granted": sorted(data["categories"])}

    return app


def kit_app(instance: str, ledger_url: str | None) -> Flask:
    app = Flask(__name__, instance_path=instance)
    app.config.update(SECRET_KEY="bench-secret-key-long-enough", CONSENTKIT_LEDGER_URL=ledger_url,
                      TESTING=True)
    ConsentKit(app)
    return app


def rate(app: Flask, decisions: int, rounds: int) -> float:
    """Median decisions per second; 20 visitors, each deciding repeatedly."""
    clients = [app.test_client() for _ in range(20)]
    for c in clients:  # warm up: schema, pool, first receipt of each visitor
        assert c.post("/consent/", json=BODY, headers=HEADERS).status_code == 200
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(decisions):
            response = clients[i % 20].post("/consent/", json=BODY, headers=HEADERS)
            assert response.status_code == 200
        results.append(decisions / (time.perf_counter() - start))
    return statistics.median(results)


def fill_old(ledger: Ledger, rows: int) -> None:
    """``rows`` valid, chained receipts from 400 days ago, inserted in bulk."""
    engine = ledger.engine
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=400)
    prev, seq = chain.GENESIS, 0
    with engine.begin() as conn:
        while seq < rows:
            batch = []
            for _ in range(min(20000, rows - seq)):
                seq += 1
                row = {
                    "seq": seq, "receipt_id": str(uuid.uuid4()),
                    "consent_id": f"bench-{seq % 5000:012d}-visitor", "page_path": "/",
                    "created_at": start + timedelta(seconds=seq), "action": "accept_all",
                    "granted": ",analytics,necessary,", "denied": ",", "withdrawn": ",",
                    "policy_version": "1", "banner_hash": None, "language": "en",
                    "method": "banner", "previous_receipt_id": None, "ip_prefix": None,
                    "country": None, "erased_at": None, "personal_salt": chain.new_salt(),
                    "prev_digest": prev,
                }
                row["personal_digest"] = chain.personal_digest(row)
                row["digest"] = prev = chain.receipt_digest(row)
                batch.append(row)
            conn.execute(insert(receipts), batch)
        conn.execute(update(meta).where(meta.c.key == "head")
                     .values(value=chain.encode_link(seq, prev)))


def prune_under_load(tmp: str, rows: int) -> None:
    url = f"sqlite:///{Path(tmp) / 'prune.sqlite3'}"
    app = kit_app(tmp, url)
    ledger: Ledger = app.extensions["consentkit"].services["ledger"]
    fill_old(ledger, rows)
    client = app.test_client()
    latencies: list[float] = []
    done = threading.Event()

    def decide() -> None:
        while not done.is_set():
            t = time.perf_counter()
            assert client.post("/consent/", json=BODY, headers=HEADERS).status_code == 200
            latencies.append(time.perf_counter() - t)

    writer = threading.Thread(target=decide)
    writer.start()
    time.sleep(5)  # decisions alone, for comparison
    done.set()
    writer.join()
    alone, latencies[:] = list(latencies), []
    done.clear()
    writer = threading.Thread(target=decide)
    writer.start()
    start = time.perf_counter()
    removed = ledger.prune(datetime.now(UTC) - timedelta(days=365))
    elapsed = time.perf_counter() - start
    done.set()
    writer.join()
    assert removed == rows and ledger.verify().ok
    print(f"prune of {rows} receipts on SQLite: {elapsed:.1f} s ({rows / elapsed:,.0f}/s)")
    for name, values in (("decisions alone", alone), ("decisions during prune", latencies)):
        print(f"  {name:24} {len(values):6} done, median "
              f"{statistics.median(values) * 1000:6.1f} ms, slowest {max(values) * 1000:6.0f} ms")
    dispose_engines(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prune-rows", type=int, default=0)
    args = parser.parse_args()

    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cases: list[tuple[str, Callable[[], Flask]]] = [
            ("bare Flask JSON POST", bare_app),
            ("consent POST, ledger off", lambda: kit_app(tmp, None)),
            ("consent POST, SQLite ledger", lambda: kit_app(
                tmp, f"sqlite:///{Path(tmp) / 'ledger.sqlite3'}")),
        ]
        base = os.environ.get("CONSENTKIT_TEST_POSTGRES_URL")
        schema = "ck_bench_" + secrets.token_hex(4)
        pg_url = f"{base}?options=-csearch_path%3D{schema}" if base else None
        admin = create_engine(base) if base else None
        if admin is not None and pg_url is not None:
            with admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {schema}"))
            url = pg_url
            cases.append(("consent POST, PostgreSQL ledger", lambda: kit_app(tmp, url)))
        try:
            for name, build in cases:
                rows.append((name, rate(build(), args.decisions, args.rounds)))
        finally:
            if admin is not None and pg_url is not None:
                dispose_engines(pg_url)
                with admin.begin() as conn:
                    conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
                admin.dispose()
            dispose_engines()

    bare, off = rows[0][1], rows[1][1]
    print(f"{'case':34} {'decisions/s':>12} {'vs ledger off':>14} {'vs bare Flask':>14}")
    for name, value in rows:
        print(f"{name:34} {value:12.0f} {value / off:13.2f}x {value / bare:13.2f}x")
    if len(rows) < 4:
        print("(PostgreSQL skipped: set CONSENTKIT_TEST_POSTGRES_URL)")
    if args.prune_rows:
        with tempfile.TemporaryDirectory() as tmp:
            prune_under_load(tmp, args.prune_rows)


if __name__ == "__main__":
    main()
