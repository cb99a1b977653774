"""What a receipt costs a threaded server before any database work: the hand-over.

    python bench/bench_handover.py [--threads 32] [--rounds 8] [--seconds 1]

In one process, ``--threads`` threads send decisions (``POST /consent/``, each
thread its own returning visitor) straight through the app's WSGI callable, no
HTTP, as fast as they are answered. Interleaved round by round, in the same
threads: the ledger off; a SQLite ledger whose writer thread takes each batch
and answers it without writing anything (the batch's SQL replaced by a stub:
what is left is the request thread handing its draft over, waiting, and
getting the interpreter back; the receipts and their digests are not built
either); and the real SQLite ledger. It prints the
decisions per second and the CPU time of the process per decision, each with
its ratio to the ledger off. Run it under ``taskset -c 0`` to see how much of
the hand-over is the interpreter's lock moving between cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (the project's root on the path)
from bench_ledger import BODY, HEADERS, kit_app
from werkzeug.test import EnvironBuilder

from flask_consentkit.ledger import store


def _answered_unwritten(conn: Any, jobs: list[Any], limit_ms: Any, committing: list[bool],
                        guess: Any = None) -> list[dict[str, Any]]:
    """The writer's batch, answered without the database (what ``_write_batch`` returns)."""
    return [{"receipt_id": str(uuid.uuid4()), "seq": 0} for _ in jobs]


def _caller(app: Any, body: bytes, headers: dict[str, str]) -> Callable[[], str]:
    """A decision straight through ``app``'s WSGI callable; returns the status line."""
    environ = EnvironBuilder(path="/consent/", method="POST", data=body,
                             headers=list(headers.items())).get_environ()

    def call() -> str:
        status: list[str] = []

        def start_response(line: str, headers: Any, exc_info: Any = None) -> None:
            status.append(line)

        request = dict(environ)
        request["wsgi.input"] = BytesIO(body)
        for _chunk in app(request, start_response):
            pass
        return status[0]

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    args = parser.parse_args()
    if args.threads < 1 or args.rounds < 1 or args.seconds <= 0:
        parser.error("--threads and --rounds are at least 1, --seconds more than 0")
    real = store._write_batch
    body = json.dumps(BODY).encode()
    with tempfile.TemporaryDirectory() as tmp:
        apps = {"off": kit_app(tmp, None),
                "on": kit_app(tmp, f"sqlite:///{Path(tmp) / 'ledger.sqlite3'}")}
        calls: dict[str, list[Any]] = {}
        for name, app in apps.items():
            client = app.test_client()
            calls[name] = []
            for _ in range(args.threads):
                first = client.post("/consent/", json=BODY, headers=HEADERS)
                cookie = first.headers["Set-Cookie"].split(";", 1)[0]
                calls[name].append(_caller(
                    app, body, {**HEADERS, "Cookie": cookie, "Content-Type": "application/json"}))
        cases = {"ledger off": "off", "writer that writes nothing": "on", "SQLite ledger": "on"}
        current = ["off"]
        counts = [0] * args.threads
        failures: list[str] = []
        stop = threading.Event()

        def decide(n: int) -> None:
            try:
                while not stop.is_set():
                    if calls[current[0]][n]() != "200 OK":
                        failures.append("a decision was not answered 200")
                        stop.set()
                    counts[n] += 1
            except BaseException as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                stop.set()

        threads = [threading.Thread(target=decide, args=(n,)) for n in range(args.threads)]
        for t in threads:
            t.start()
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        try:
            for _ in range(args.rounds):
                for name, app_name in cases.items():
                    store._write_batch = (_answered_unwritten
                                          if name == "writer that writes nothing" else real)
                    current[0] = app_name
                    time.sleep(0.3)  # the threads move over
                    n0, r0, t0 = sum(counts), resource.getrusage(resource.RUSAGE_SELF), \
                        time.monotonic()
                    time.sleep(args.seconds)
                    n1, r1, t1 = sum(counts), resource.getrusage(resource.RUSAGE_SELF), \
                        time.monotonic()
                    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                    done = max(1, n1 - n0)
                    results[name].append((done / (t1 - t0), cpu / done))
                    if failures:
                        raise SystemExit(f"{name}: {failures[0]}")
        finally:
            stop.set()
            for t in threads:
                t.join()
            store._write_batch = real
            store.dispose_engines()
    off_rate = statistics.median(r for r, _ in results["ledger off"])
    off_cpu = statistics.median(c for _, c in results["ledger off"])
    print(f"decisions through WSGI, {args.threads} threads of one process (median of "
          f"{args.rounds} interleaved rounds of {args.seconds:g} s)")
    for name, values in results.items():
        rate = statistics.median(r for r, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"  {name:28} {rate:7.0f}/s ({rate / off_rate:4.2f}x)   "
              f"CPU {cpu * 1e6:5.0f} µs per decision ({(cpu - off_cpu) * 1e6:+5.0f})")


if __name__ == "__main__":
    main()
