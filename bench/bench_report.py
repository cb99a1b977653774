"""Benchmark: ``flask consent report`` over 1,000,000 receipts spread over 365 days.

Run from the project root::

    python bench/bench_report.py                      # SQLite only
    CONSENTKIT_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        python bench/bench_report.py                  # SQLite and PostgreSQL
    python bench/bench_report.py --store postgresql   # one store only (repeatable)

The receipts are generated inside the database (a recursive CTE on SQLite,
``generate_series`` on PostgreSQL) into a temporary SQLite file and a
PostgreSQL schema of its own, both dropped afterwards. ~400,000 visitors,
1 % erasure tombstones, four methods, two policy versions.

Each report runs through the real command (``flask consent report --format
json``) and is timed end to end, median of 5. The budget is 2 s; the table
also shows the time of one bare ``count(*)`` pass over the same window, the
least any report must spend.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask  # noqa: E402

from flask_consentkit import ConsentKit  # noqa: E402
from flask_consentkit.cli import cli  # noqa: E402
from flask_consentkit.ledger.schema import metadata, receipts  # noqa: E402

ROWS = 1_000_000
VISITORS = 400_000
BUDGET = 2.0
REPEAT = 5
END = dt.date.today()
START = END - dt.timedelta(days=364)
SECONDS = 365 * 86400

# one row: seq i (1..ROWS); every 97th an erasure tombstone; actions cycle
#: action, granted, denied, withdrawn and policy version of receipt ``i`` (both dialects)
_DECISION_COLUMNS = f"""\
  CASE WHEN i % 97 = 0 THEN 'erase' WHEN i % 3 = 0 THEN 'accept_all'
       WHEN i % 3 = 1 THEN 'reject_all' ELSE 'save' END,
  CASE WHEN i % 97 = 0 THEN ',' WHEN i % 3 = 0
       THEN ',analytics,functional,marketing,necessary,performance,'
       WHEN i % 3 = 1 THEN ',necessary,' ELSE ',analytics,necessary,' END,
  CASE WHEN i % 97 = 0 OR i % 3 = 0 THEN ','
       WHEN i % 3 = 1 THEN ',analytics,functional,marketing,performance,'
       ELSE ',functional,marketing,performance,' END,
  CASE WHEN i % 11 = 0 THEN ',marketing,' ELSE ',' END,
  CASE WHEN i < {ROWS * 6 // 10} THEN '1' ELSE '2' END,
"""

_SQLITE_FILL = f"""
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
INSERT INTO consentkit_receipts (seq, receipt_id, consent_id, created_at, action, granted,
    denied, withdrawn, policy_version, banner_hash, language, method, page_path,
    personal_digest, digest, prev_digest)
SELECT i, printf('%08x-0000-4000-8000-%012x', i, i),
  CASE WHEN i % 97 = 0 THEN NULL ELSE printf('v%015d', (i * 7919) % {VISITORS}) END,
  strftime('%Y-%m-%d %H:%M:%S.000000', '{START}', printf('+%d seconds',
           (i - 1) * {SECONDS} / {ROWS})),
{_DECISION_COLUMNS}  printf('%064x', i % 4), 'en',
  CASE i % 4 WHEN 0 THEN 'banner' WHEN 1 THEN 'preferences' WHEN 2 THEN 'api' ELSE 'gpc' END,
  '/', printf('%064x', i), printf('%064x', i), printf('%064x', i - 1)
FROM n
"""

_PG_FILL = f"""
INSERT INTO consentkit_receipts (seq, receipt_id, consent_id, created_at, action, granted,
    denied, withdrawn, policy_version, banner_hash, language, method, page_path,
    personal_digest, digest, prev_digest)
SELECT i, lpad(to_hex(i), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(i), 12, '0'),
  CASE WHEN i % 97 = 0 THEN NULL ELSE 'v' || lpad(((i * 7919) % {VISITORS})::text, 15, '0') END,
  timestamp '{START}' + ((i - 1)::bigint * {SECONDS} / {ROWS}) * interval '1 second',
{_DECISION_COLUMNS}  lpad(to_hex(i % 4), 64, '0'), 'en',
  (ARRAY['banner', 'preferences', 'api', 'gpc'])[i % 4 + 1],
  '/', lpad(to_hex(i), 64, '0'), lpad(to_hex(i), 64, '0'), lpad(to_hex(i - 1), 64, '0')
FROM generate_series(1::bigint, {ROWS}) AS i
"""


def _app(url: str) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="bench-secret-key-long-enough-for-signing",
                      CONSENTKIT_LEDGER_URL=url, TESTING=True)
    ConsentKit(app)
    return app


def _time(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _bench(store: str, url: str, engine: Engine) -> None:
    app = _app(url)
    runner = app.test_cli_runner()

    def run(*args: str) -> Callable[[], object]:
        def go() -> object:
            result = runner.invoke(cli, ["report", "--format", "json", *args])
            assert result.exit_code == 0, result.output
            return result

        return go

    def bare(since: dt.date) -> Callable[[], object]:
        def go() -> object:
            with engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(receipts).where(
                    receipts.c.created_at >= dt.datetime.combine(since, dt.time()),
                    receipts.c.action != "erase")).scalar_one()

        return go

    year = ("--since", START.isoformat(), "--until", END.isoformat())
    cases = [
        ("365 days, by day", run(*year), START),
        ("365 days, by week", run(*year, "--by", "week"), START),
        ("365 days, by month", run(*year, "--by", "month"), START),
        ("last 30 days (default)", run(), END - dt.timedelta(days=29)),
    ]
    for name, fn, since in cases:
        fn()  # warm the cache once, as a second report would find it
        seconds = _time(fn)
        floor = _time(bare(since))
        verdict = "within" if seconds <= BUDGET else "OVER"
        print(f"{store:<10} {name:<24} {seconds:6.2f} s  {seconds / BUDGET:5.2f}x budget "
              f"({verdict})  bare count(*) {floor:5.2f} s  ratio {seconds / floor:5.1f}x")


def bench_sqlite() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.sqlite3"
        url = f"sqlite:///{path}"
        engine = create_engine(url)
        metadata.create_all(engine)
        t = time.perf_counter()
        with engine.begin() as conn:
            conn.exec_driver_sql(_SQLITE_FILL)
        print(f"sqlite     filled {ROWS:,} receipts in {time.perf_counter() - t:.1f} s "
              f"({path.stat().st_size / 1e6:.0f} MB)")
        _bench("sqlite", url, engine)
        engine.dispose()


def bench_postgres(base: str) -> None:
    schema = f"ck_bench_report_{secrets.token_hex(4)}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    url_s = url.render_as_string(hide_password=False)
    engine = create_engine(url_s)
    try:
        metadata.create_all(engine)
        t = time.perf_counter()
        with engine.begin() as conn:
            conn.exec_driver_sql(_PG_FILL.replace("%", "%%"))  # no driver placeholders
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE consentkit_receipts")
        print(f"postgresql filled {ROWS:,} receipts in {time.perf_counter() - t:.1f} s")
        _bench("postgresql", url_s, engine)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgresql"), action="append",
                        help="bench only this store (repeatable); default: both")
    stores = parser.parse_args().store or ["sqlite", "postgresql"]
    print(f"report over {ROWS:,} receipts, {VISITORS:,} visitors, {START} to {END}; "
          f"median of {REPEAT}; budget {BUDGET} s; load average {os.getloadavg()[0]:.1f}")
    if "sqlite" in stores:
        bench_sqlite()
    if "postgresql" not in stores:
        return
    pg = os.environ.get("CONSENTKIT_TEST_POSTGRES_URL")
    if pg:
        bench_postgres(pg)
    else:
        print("postgresql skipped: set CONSENTKIT_TEST_POSTGRES_URL")


if __name__ == "__main__":
    main()
