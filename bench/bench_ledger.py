"""Decisions per second through ``POST /consent/`` over real HTTP, with receipts.

A threaded werkzeug server on 127.0.0.1 serves the app; clients (threads of a
separate process, each with its own visitor's cookie) send decisions as fast as
they are answered, at 1, 8 and 32 concurrent clients. werkzeug closes the
connection after each answer, so each decision is a connection of its own
(see :class:`KeepAlive`). With ``--workers N`` each case is served instead by
gunicorn, ``N`` worker processes with threads enough for the most clients
(``gthread``, connections kept alive), as an app is deployed: each process has
its own writer, and the processes take the chain's lock in turn. Compared in
the same run, interleaved round by round: bare Flask answering a JSON POST,
the choice endpoint with the ledger off, with a SQLite file (WAL,
synchronous=FULL) and with PostgreSQL (``CONSENTKIT_TEST_POSTGRES_URL``, a
fresh schema dropped afterwards). Every
receipt is durable before its decision is answered; decisions that arrive
together share one commit (group commit).

    python bench/bench_ledger.py [--clients 1,8,32] [--seconds 2] [--rounds 5]
                                 [--workers N] [--prune-rows 200000] [--bounds]

It prints the median decisions per second of each case and client count, and
its ratio to the ledger off at the same count, and the machine's load average
before and after (on a shared 2-core machine other work moves the figures by
±10 %: compare the ratios, and run it more than once). With ``--prune-rows N`` it also
fills a SQLite ledger with N receipts past retention, prunes them while
decisions keep arriving, and prints the prune rate and the slowest decision
during the prune (batches keep the table usable). With ``--bounds`` (werkzeug's
server only) it also measures two cases that store nothing, the most any storage
could reach with receipts built as they are: "receipt, no writer" (the request
plans its receipt itself, as the writer would, and goes on) and "writer, no
database" (the writer thread batches and plans as always, then waits
:data:`STUB_WAIT` instead of writing: a database that costs this process no CPU).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import postgres_schema  # noqa: E402
from flask import Flask, request  # noqa: E402
from sqlalchemy import insert, update  # noqa: E402
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server  # noqa: E402

from flask_consentkit import ConsentKit  # noqa: E402
from flask_consentkit.ledger import chain  # noqa: E402
from flask_consentkit.ledger.schema import meta, receipts  # noqa: E402
from flask_consentkit.ledger.store import Ledger, dispose_engines  # noqa: E402

HEADERS = {"Origin": "http://localhost"}
BODY = {"action": "save", "categories": ["analytics", "functional"]}


#: what "writer, no database" (``--bounds``) waits for instead of each batch's
#: write: about a PostgreSQL batch's wall time at 32 clients here
STUB_WAIT = 0.005


def stub_storage(no_writer: str, no_database: str) -> None:
    """``--bounds``: the ledgers at these two URLs store nothing (see the docstring);
    the other ledgers of the process are untouched."""
    from flask_consentkit.ledger import store

    heads = {url: chain.encode_link(0, chain.GENESIS) for url in (no_writer, no_database)}
    submit, write_batch = store._submit, store._write_batch

    def planned(url: str, jobs: list[Any]) -> list[Any]:
        results, steps = store._plan(jobs, heads[url], {})
        heads[url] = steps[-1][1]
        return results

    def bounded_submit(job: Any) -> Any:
        if job.ledger.url == no_writer:
            return planned(no_writer, [job])[0]
        return submit(job)

    def bounded_write_batch(conn: Any, jobs: list[Any], *args: Any, **kwargs: Any) -> Any:
        if jobs[0].ledger.url != no_database:
            return write_batch(conn, jobs, *args, **kwargs)
        results = planned(no_database, jobs)
        time.sleep(STUB_WAIT)
        return results

    store._submit, store._write_batch = bounded_submit, bounded_write_batch


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
                      TESTING=True, CONSENTKIT_RATELIMIT=None)
    ConsentKit(app)
    return app


def gunicorn_app() -> Flask:
    """The app of one case, in a gunicorn worker (``--workers``): named by the environment.

    ``GET /bench-ledger/pid`` answers the worker's process id, so that the benchmark
    starts once every worker is serving.
    """
    case = os.environ["BENCH_LEDGER_CASE"]
    app = bare_app() if case == "bare" else kit_app(
        os.environ["BENCH_LEDGER_INSTANCE"], os.environ.get("BENCH_LEDGER_URL") or None)
    app.add_url_rule("/bench-ledger/pid", "bench_pid", lambda: str(os.getpid()))
    return app


class Gunicorn:
    """One case's app under gunicorn: ``workers`` processes of ``threads`` threads each."""

    def __init__(self, case: str, instance: str, url: str | None, workers: int,
                 threads: int) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = dict(os.environ, BENCH_LEDGER_CASE=case, BENCH_LEDGER_INSTANCE=instance,
                   BENCH_LEDGER_URL=url or "")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--worker-class",
             "gthread", "--threads", str(threads), "--bind", f"127.0.0.1:{self.port}",
             "--backlog", "2048", "--graceful-timeout", "5", "--log-level", "warning",
             "bench_ledger:gunicorn_app()"],
            cwd=Path(__file__).parent, env=env, start_new_session=True)
        try:
            self._wait_for(workers, case)
        except BaseException:
            self.close()
            raise

    def _wait_for(self, workers: int, case: str) -> None:
        """Until ``workers`` distinct worker processes have answered (each has its app)."""
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while len(seen) < workers:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"gunicorn did not start {workers} workers for {case!r}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/bench-ledger/pid")
                seen.add(conn.getresponse().read().decode())
                conn.close()
            except OSError:
                time.sleep(0.1)

    def close(self) -> None:
        """The master and its workers (their own process group), at once or killed."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        except ProcessLookupError:
            pass


class KeepAlive(WSGIRequestHandler):
    """HTTP/1.1, without a log line per request.

    werkzeug's server still answers every request with ``Connection: close``
    (it drains the socket after each response, so it cannot keep a connection
    open): each decision is a new connection, as an app server behind a reverse
    proxy that does not keep its upstream connections alive sees it, and (werkzeug's
    own cost, which a pooled server does not have) a new server thread — for
    every case alike.
    """

    protocol_version = "HTTP/1.1"

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class Served:
    """``app`` on a threaded werkzeug server on 127.0.0.1, in a thread of this process."""

    def __init__(self, app: Flask) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True,
                                                  request_handler=KeepAlive)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def drive(port: int, clients: int, seconds: float) -> tuple[int, int]:
    """In a client process: ``clients`` threads deciding for ``seconds``; (answered, errors)."""
    body = json.dumps(BODY).encode()
    ready = threading.Barrier(clients + 1)
    counts = [0] * clients
    errors = [0] * clients
    stop = time.monotonic() + 3600.0
    bounds = {"stop": stop}

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json", "Connection": "keep-alive",
                   "Origin": f"http://127.0.0.1:{port}"}

        def post() -> bool:
            conn.request("POST", "/consent/", body=body, headers=headers)
            response = conn.getresponse()
            cookie = response.getheader("Set-Cookie")
            response.read()
            if cookie and "Cookie" not in headers:  # this client's visitor from now on
                headers["Cookie"] = cookie.split(";", 1)[0]
            return response.status == 200

        for _ in range(3):  # warm up: a connection, a visitor, a first receipt
            post()
        ready.wait()
        while time.monotonic() < bounds["stop"]:
            if post():
                counts[n] += 1
            else:
                errors[n] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    start = time.monotonic()
    bounds["stop"] = start + seconds
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    return int(sum(counts) / elapsed), sum(errors)


def rate(pool: Any, port: int, clients: int, seconds: float) -> float:
    answered, errors = pool.apply(drive, (port, clients, seconds))
    if errors:
        raise SystemExit(f"{errors} decisions were not answered 200")
    return float(answered)


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
    ledger: Ledger = app.extensions["consentkit"].ledger
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
    parser.add_argument("--clients", default="1,8,32",
                        help="concurrent clients, comma-separated (default 1,8,32)")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prune-rows", type=int, default=0)
    parser.add_argument("--bounds", action="store_true",
                        help="also measure the two cases that store nothing (see above)")
    parser.add_argument("--workers", type=int, default=0,
                        help="serve with gunicorn, this many worker processes (default: "
                        "werkzeug's threaded server in this process)")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    if args.workers < 0:
        parser.error("--workers is a number of processes, 0 for werkzeug's server")
    if args.bounds and args.workers:
        parser.error("--bounds measures werkzeug's server in this process: no --workers")

    results: dict[tuple[str, int], list[float]] = {}
    names: list[str] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, postgres_schema("ck_bench_") as pg_url:
        sqlite_url = f"sqlite:///{Path(tmp) / 'ledger.sqlite3'}"
        cases: list[tuple[str, str, str | None]] = [  # (name, gunicorn case, ledger URL)
            ("bare Flask JSON POST", "bare", None),
            ("ledger off", "kit", None),
            ("SQLite ledger", "kit", sqlite_url),
        ]
        if pg_url is not None:
            cases.append(("PostgreSQL ledger", "kit", pg_url))
        if args.bounds:
            no_writer = f"sqlite:///{Path(tmp) / 'no-writer.sqlite3'}"
            no_database = f"sqlite:///{Path(tmp) / 'no-database.sqlite3'}"
            stub_storage(no_writer, no_database)
            cases += [("receipt, no writer", "kit", no_writer),
                      ("writer, no database", "kit", no_database)]
        servers: list[tuple[str, Served | Gunicorn]] = []
        context = multiprocessing.get_context("spawn")
        try:
            for name, case, url in cases:
                if not args.workers:
                    servers.append((name, Served(bare_app() if case == "bare"
                                                 else kit_app(tmp, url))))
                    continue
                if url is not None:  # the tables, before the workers' writers race for them
                    kit_app(tmp, url).extensions["consentkit"].ledger._ready_engine()
                    dispose_engines(url)
                threads = math.ceil(max(counts) / args.workers)
                servers.append((name, Gunicorn(case, tmp, url, args.workers, threads)))
            names = [name for name, _ in servers]
            with context.Pool(1) as pool:
                for _ in range(args.rounds):  # interleaved: drift hits every case alike
                    for clients in counts:
                        for name, served in servers:
                            results.setdefault((name, clients), []).append(
                                rate(pool, served.port, clients, args.seconds))
        finally:
            for _, served in servers:
                served.close()
            dispose_engines()

    load_after = os.getloadavg()
    served_by = (f"gunicorn, {args.workers} worker process"
                 f"{'es' if args.workers > 1 else ''} (gthread)" if args.workers
                 else "werkzeug's threaded server, one process")
    print(f"decisions/s over HTTP, {served_by} (median of {args.rounds} rounds of "
          f"{args.seconds:g} s; {os.cpu_count()} CPUs; load average {load_before[0]:.1f} "
          f"before, {load_after[0]:.1f} after)")
    header = "".join(f"{f'{c} client' + ('s' if c > 1 else ''):>22}" for c in counts)
    print(f"{'case':24}{header}")
    for name in names:
        cells = []
        for clients in counts:
            value = statistics.median(results[(name, clients)])
            off = statistics.median(results[("ledger off", clients)])
            cells.append(f"{value:12.0f} ({value / off:5.2f}x)")
        print(f"{name:24}" + "".join(f"{c:>22}" for c in cells))
    print("(ratios: against the ledger off at the same number of clients)")
    if "PostgreSQL ledger" not in names:
        print("(PostgreSQL skipped: set CONSENTKIT_TEST_POSTGRES_URL)")
    if args.prune_rows:
        with tempfile.TemporaryDirectory() as tmp:
            prune_under_load(tmp, args.prune_rows)


if __name__ == "__main__":
    main()
