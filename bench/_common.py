"""Timing helpers shared by the benchmarks: interleaved runs, medians, ratios."""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def wsgi_caller(app: Any, path: str = "/", method: str = "GET",
                headers: dict[str, str] | None = None, body: bytes = b"") -> Callable[[], None]:
    """A function that sends one request straight through ``app``'s WSGI callable."""
    base = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
        "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost",
    }
    for key, value in (headers or {}).items():
        name = key.upper().replace("-", "_")
        if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            base[name] = value
        else:
            base["HTTP_" + name] = value
    if body:
        base["CONTENT_LENGTH"] = str(len(body))

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        return None

    def call() -> None:
        environ = dict(base)
        environ["wsgi.input"] = BytesIO(body)
        for _chunk in app(environ, start_response):
            pass

    return call


def case_arguments(description: str, cases: tuple[str, ...]) -> argparse.ArgumentParser:
    """A parser whose positional arguments name some of ``cases`` (default: all), checked by
    :func:`chosen_cases`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("case", nargs="*", help=f"{', '.join(cases)} (default: all)")
    return parser


def chosen_cases(parser: argparse.ArgumentParser, asked: list[str],
                 cases: tuple[str, ...]) -> None:
    """Stop with the parser's error when ``asked`` names a case not in ``cases``."""
    unknown = [c for c in asked if c not in cases]
    if unknown:
        parser.error(f"unknown case {', '.join(unknown)}; choose from {', '.join(cases)}")


def per_call(fn: Callable[[], None], n: int) -> float:
    """CPU seconds of this process per call over ``n`` calls.

    CPU time rather than wall time, so that other work on a busy machine
    (which preempts the benchmark) disturbs the ratios less.
    """
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n


def compare(cases: dict[str, Callable[[], None]], *, n: int = 2000, rounds: int = 15,
            warmup: int = 300) -> dict[str, float]:
    """Median seconds per call of each case, rounds interleaved so drift hits all alike."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name].append(per_call(fn, n))
    return {name: statistics.median(values) for name, values in samples.items()}


def report(title: str, results: dict[str, float], baseline: str,
           budgets: dict[str, float] | None = None) -> bool:
    """Print µs per call and the ratio to ``baseline``; True when every budget holds."""
    print(f"\n{title}")
    base = results[baseline]
    ok = True
    for name, seconds in results.items():
        ratio = seconds / base
        budget = (budgets or {}).get(name)
        verdict = ""
        if budget is not None:
            verdict = f"  budget ≤ {budget:.2f}×  {'OK' if ratio <= budget else 'OVER'}"
            ok &= ratio <= budget
        print(f"  {name:<44} {seconds * 1e6:8.1f} µs   {ratio:5.3f}×{verdict}")
    return ok


@contextmanager
def postgres_schema(prefix: str, wanted: bool = True) -> Iterator[str | None]:
    """The URL of a fresh PostgreSQL schema ``<prefix><random>`` on
    ``CONSENTKIT_TEST_POSTGRES_URL``, dropped afterwards with its ledger's engines;
    ``None`` when not ``wanted`` or the variable is unset."""
    base = os.environ.get("CONSENTKIT_TEST_POSTGRES_URL")
    if not wanted or not base:
        yield None
        return
    from sqlalchemy import create_engine, make_url, text

    from flask_consentkit.ledger.store import dispose_engines

    schema = prefix + secrets.token_hex(4)
    admin = create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}) \
            .render_as_string(hide_password=False)
        try:
            yield url
        finally:
            dispose_engines(url)
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    finally:
        admin.dispose()
