"""Python work per request, counted rather than timed: bytecodes executed, against bare Flask.

    python bench/bench_opcodes.py [--top N] [CASE ...]

The timed benchmarks (``bench_core``, ``bench_gating``) are the budgets' measure,
but on a shared 2-core machine the same run differs by up to ±10 % from one
minute to the next: a change worth 2 % cannot be seen in them. This counts the
bytecodes one request executes (``sys.settrace`` with opcode events, one warm
request per case), which is the same on every run (up to a few bytecodes of set
and dict order under another ``PYTHONHASHSEED``): a change that removes work from
the per-request path shows here exactly, however busy the machine is.

It counts Python only: the C underneath (template rendering's string joins,
comparing a page with the kept one, hashing, the signature check) does not show,
so a count is a guide for changes to our Python code, not a substitute for the
timed ratios. Cases, as in the timed benchmarks: ``json`` (a JSON route, a valid
consent cookie), ``json-reading`` (the view reads the consent), ``page`` (a
returning visitor's 50 KB templated page, default banner), ``form`` (the same
page with a CSRF field, a new token per request). ``--top N`` lists the N
functions whose counts differ most from bare Flask's (both get the same request,
the consent cookie included).

``decide`` counts a returning visitor's decision (``POST /consent/``, as in
``bench_ledger``) with a SQLite ledger against the same decision with the ledger
off, the ledger's writer thread included; ``decide-pg`` the same with PostgreSQL
(``CONSENTKIT_TEST_POSTGRES_URL``). One decision alone: its batch is of one, so
the commit's own cost is not shared as it is under load.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import secrets
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import bench_core
import bench_gating
import bench_ledger
from _common import ROOT, wsgi_caller
from sqlalchemy import create_engine, text
from werkzeug.test import EnvironBuilder

from flask_consentkit.ledger.store import dispose_engines
from tests.pages import realistic_page


def _short(path: str) -> str:
    """``path`` from the project root, or from the package directories."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if path.startswith(str(ROOT)):
        return path[len(str(ROOT)) + 1:]
    if "/lib/python" in path:
        return path.split("/lib/python", 1)[1].split("/", 1)[-1]
    return path


def count(fn: Callable[[], None]) -> collections.Counter[str]:
    """The bytecodes ``fn()`` executes, per function (``file:name``), in every thread.

    The tracer is installed in threads started since :func:`trace_threads` too
    (the ledger's writer): their frames count while ``fn()`` runs.
    """
    counts: collections.Counter[str] = collections.Counter()
    _counting[:] = [counts]
    sys.settrace(_tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
        _counting[:] = []
    return counts


#: the counter of the :func:`count` in progress, if any
_counting: list[collections.Counter[str]] = []


def _tracer(frame: FrameType, event: str, arg: Any) -> Any:
    frame.f_trace_opcodes = True
    name = f"{_short(frame.f_code.co_filename)}:{frame.f_code.co_name}"

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode" and _counting:
            _counting[0][name] += 1
        return local

    return local


def trace_threads() -> None:
    """Trace the threads started from now on (counted only inside :func:`count`)."""
    threading.settrace(_tracer)


def decision(app: Any) -> Callable[[], None]:
    """A returning visitor's decision through ``app`` (the visitor decided once before)."""
    client = app.test_client()
    first = client.post("/consent/", json=bench_ledger.BODY, headers=bench_ledger.HEADERS)
    cookie = first.headers["Set-Cookie"].split(";", 1)[0]
    return wsgi_caller(app, "/consent/", "POST", body=json.dumps(bench_ledger.BODY).encode(),
                       headers={**bench_ledger.HEADERS, "Cookie": cookie,
                                "Content-Type": "application/json"})


#: (the baseline's name, its request, the extension's name, its request)
Case = tuple[str, Callable[[], None], str, Callable[[], None]]


def cases(instance: str, postgres: str | None) -> dict[str, Case]:
    """``{case: (baseline, its request, the extension, its request)}``; the PostgreSQL
    decision where ``postgres`` (a URL) is given."""
    plain, kit = bench_core.bare(), bench_core.with_kit()
    cookie = {"Cookie": bench_core.consent_cookie(kit)}
    found: dict[str, Case] = {
        "json": ("bare Flask", wsgi_caller(plain, "/api", headers=cookie),
                 "the extension", wsgi_caller(kit, "/api", headers=cookie)),
        "json-reading": ("bare Flask", wsgi_caller(plain, "/api", headers=cookie),
                         "the extension", wsgi_caller(kit, "/api/personal", headers=cookie)),
    }
    page = realistic_page(50_000)
    bare_app, kit_app = bench_gating.make_app(False, page), bench_gating.make_app(True, page)
    visitor = bench_gating.consent_cookie(kit_app, "analytics")
    for case, path in (("page", "/page"), ("form", "/form")):
        environ = EnvironBuilder(path=path, headers=[("Cookie", visitor)]).get_environ()
        found[case] = ("bare Flask",
                       bench_gating.wsgi_call(bare_app, environ),  # the same request to both
                       "the extension", bench_gating.wsgi_call(kit_app, environ))
    off = decision(bench_ledger.kit_app(instance, None))
    found["decide"] = ("ledger off", off, "SQLite ledger", decision(bench_ledger.kit_app(
        instance, f"sqlite:///{os.path.join(instance, 'ledger.sqlite3')}")))
    if postgres:
        found["decide-pg"] = ("ledger off", off, "PostgreSQL ledger",
                              decision(bench_ledger.kit_app(instance, postgres)))
    return found


@contextmanager
def postgres_schema() -> Iterator[str | None]:
    """A URL of a fresh PostgreSQL schema, dropped afterwards; ``None`` without
    ``CONSENTKIT_TEST_POSTGRES_URL``."""
    base = os.environ.get("CONSENTKIT_TEST_POSTGRES_URL")
    if not base:
        yield None
        return
    schema = "ck_opcodes_" + secrets.token_hex(4)
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = f"{base}?options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        dispose_engines(url)
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", nargs="*",
                        help="json, json-reading, page, form, decide, decide-pg (default: all)")
    parser.add_argument("--top", type=int, default=0, help="list the N functions that differ most")
    args = parser.parse_args()
    trace_threads()  # before the ledgers' writers start
    with tempfile.TemporaryDirectory() as instance, postgres_schema() as postgres:
        known = cases(instance, postgres)
        unknown = [c for c in args.case if c not in known]
        if unknown:
            parser.error(f"unknown case {', '.join(unknown)}; choose from {', '.join(known)}"
                         + ("" if "decide-pg" in known
                            else " (decide-pg needs CONSENTKIT_TEST_POSTGRES_URL)"))
        print("bytecodes per warm request (Python only; the same on every run)")
        for case in args.case or list(known):
            label, bare, name, ours = known[case]
            for _ in range(50):  # warm: caches filled, templates compiled
                bare(), ours()
            base, mine = count(bare), count(ours)
            total_base, total_mine = sum(base.values()), sum(mine.values())
            print(f"  {case:14} {label} {total_base:6}   {name} {total_mine:6}   "
                  f"+{total_mine - total_base:5} ({total_mine / total_base:.2f}x)")
            if args.top:
                diff = {k: mine.get(k, 0) - base.get(k, 0) for k in set(mine) | set(base)}
                for name in sorted(diff, key=lambda k: -abs(diff[k]))[:args.top]:
                    print(f"      {diff[name]:+6}  {name}")
        dispose_engines()


if __name__ == "__main__":
    main()
