"""Decisions per second through the full ``POST /consent/`` endpoint, with receipts.

Compares, in the same run: bare Flask answering a JSON POST, the choice endpoint
with the ledger off, with the default SQLite file (WAL, synchronous=FULL) and with
PostgreSQL (``CONSENTKIT_TEST_POSTGRES_URL``, a fresh schema dropped afterwards).

    python bench/bench_ledger.py [--decisions 400] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, request  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from flask_consentkit import ConsentKit  # noqa: E402
from flask_consentkit.ledger.store import dispose_engines  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
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


if __name__ == "__main__":
    main()
