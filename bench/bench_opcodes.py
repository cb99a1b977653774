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
consent cookie), ``json-reading`` (the view reads the consent), ``least-json`` and
``least-reading`` (the same two against ``bench_core.least()``: the least any
extension with a response hook costs), ``page`` (a
returning visitor's 50 KB templated page, default banner), ``form`` (the same
page with a CSRF field, a new token per request), ``least-page`` (the page against
``bench_gating.least_app``), ``least-surface`` (the same least with the extension's
template globals and a policy header); ``page-500k`` and ``form-500k``
the same at 0.5 MB. ``--top N`` lists the N
functions whose counts differ most from bare Flask's (both get the same request,
the consent cookie included).

``decide`` counts a returning visitor's decision (``POST /consent/``, as in
``bench_ledger``) with a SQLite ledger against the same decision with the ledger
off, the ledger's writer thread included; ``decide-pg`` the same with PostgreSQL
(``CONSENTKIT_TEST_POSTGRES_URL``). One decision alone: its batch is of one, so
the commit's own cost is not shared as it is under load.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import bench_core
import bench_gating
import bench_ledger
from _common import ROOT, case_arguments, chosen_cases, postgres_schema, wsgi_caller
from werkzeug.test import EnvironBuilder

from flask_consentkit.ledger import store
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
    """The bytecodes ``fn()`` executes, per function (``file:name``).

    The ledger's writer thread (started after :func:`trace_threads`) counts too,
    until it waits for work again; its watchdog thread does not (it wakes on a
    clock of its own).
    """
    counts: collections.Counter[str] = collections.Counter()
    _counting[:] = [counts]
    sys.settrace(_tracer)
    try:
        fn()
    finally:
        sys.settrace(None)  # this thread only: the writer still counts until it is idle
        deadline = time.monotonic() + 2.0
        while (any(not w._idle for w in list(store._writers.values()))
               and time.monotonic() < deadline):
            time.sleep(0.001)
        _counting[:] = []
    return counts


#: the counter of the :func:`count` in progress, if any
_counting: list[collections.Counter[str]] = []


def _tracer(frame: FrameType, event: str, arg: Any) -> Any:
    if threading.current_thread().name == "consentkit-ledger-watchdog":
        return None
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

CASES = ("json", "json-reading", "least-json", "least-reading", "page", "least-page",
         "least-surface", "form", "page-500k", "form-500k", "decide", "decide-pg")


class Cases:
    """Each case's apps, made when the case is first asked for (and shared by its kin)."""

    def __init__(self, instance: str, postgres: str | None) -> None:
        self.instance = instance
        self.postgres = postgres

    @functools.cached_property
    def core(self) -> tuple[Any, Any, dict[str, str]]:
        kit = bench_core.with_kit()
        return bench_core.bare(), kit, {"Cookie": bench_core.consent_cookie(kit)}

    @functools.cached_property
    def least(self) -> Any:
        return bench_core.least()

    @functools.cached_property
    def least_page(self) -> Any:
        return bench_gating.least_app(realistic_page(50_000))

    @functools.cached_property
    def least_surface(self) -> Any:
        return bench_gating.least_app(realistic_page(50_000), surface=True)

    @functools.cached_property
    def pages(self) -> tuple[Any, Any, str]:
        return self._pages(50_000)

    @functools.cached_property
    def large_pages(self) -> tuple[Any, Any, str]:
        return self._pages(500_000)

    @staticmethod
    def _pages(size: int) -> tuple[Any, Any, str]:
        page = realistic_page(size)
        kit = bench_gating.make_app(True, page)
        visitor = bench_gating.consent_cookie(kit, "analytics")
        return bench_gating.make_app(False, page), kit, visitor

    @functools.cached_property
    def off(self) -> Callable[[], None]:
        return decision(bench_ledger.kit_app(self.instance, None))

    def __getitem__(self, case: str) -> Case:
        if case in ("json", "json-reading"):
            plain, kit, cookie = self.core
            path = "/api" if case == "json" else "/api/personal"
            return ("bare Flask", wsgi_caller(plain, "/api", headers=cookie),
                    "the extension", wsgi_caller(kit, path, headers=cookie))
        if case in ("least-json", "least-reading"):
            plain, _, cookie = self.core
            path = "/api" if case == "least-json" else "/api/personal"
            return ("bare Flask", wsgi_caller(plain, "/api", headers=cookie),
                    "the least", wsgi_caller(self.least, path, headers=cookie))
        if case in ("least-page", "least-surface"):
            bare_app, kit_app, visitor = self.pages
            environ = EnvironBuilder(path="/page", headers=[("Cookie", visitor)]).get_environ()
            least = self.least_page if case == "least-page" else self.least_surface
            return ("bare Flask", bench_gating.wsgi_call(bare_app, environ),
                    "the least", bench_gating.wsgi_call(least, environ))
        if case in ("page", "form", "page-500k", "form-500k"):
            route, _, large = case.partition("-")
            bare_app, kit_app, visitor = self.large_pages if large else self.pages
            environ = EnvironBuilder(path=f"/{route}", headers=[("Cookie", visitor)]).get_environ()
            return ("bare Flask", bench_gating.wsgi_call(bare_app, environ),  # the same request
                    "the extension", bench_gating.wsgi_call(kit_app, environ))
        if case == "decide":
            url = f"sqlite:///{os.path.join(self.instance, 'ledger.sqlite3')}"
            return ("ledger off", self.off, "SQLite ledger",
                    decision(bench_ledger.kit_app(self.instance, url)))
        assert case == "decide-pg" and self.postgres is not None
        return ("ledger off", self.off, "PostgreSQL ledger",
                decision(bench_ledger.kit_app(self.instance, self.postgres)))


def main() -> None:
    parser = case_arguments(__doc__.splitlines()[0], CASES)
    parser.add_argument("--top", type=int, default=0, help="list the N functions that differ most")
    args = parser.parse_args()
    chosen_cases(parser, args.case, CASES)
    has_postgres = bool(os.environ.get("CONSENTKIT_TEST_POSTGRES_URL"))
    if "decide-pg" in args.case and not has_postgres:
        parser.error("decide-pg needs CONSENTKIT_TEST_POSTGRES_URL")
    chosen = args.case or [c for c in CASES if c != "decide-pg" or has_postgres]
    trace_threads()  # before the ledgers' writers start
    with tempfile.TemporaryDirectory() as instance, \
            postgres_schema("ck_opcodes_", "decide-pg" in chosen) as postgres:
        known = Cases(instance, postgres)
        print("bytecodes per warm request (Python only; the same on every run)")
        for case in chosen:
            label, bare, name, ours = known[case]
            for _ in range(50):  # warm: caches filled, templates compiled
                bare(), ours()
            base, mine = count(bare), count(ours)
            total_base, total_mine = sum(base.values()), sum(mine.values())
            print(f"  {case:14} {label} {total_base:6}   {name} {total_mine:6}   "
                  f"+{total_mine - total_base:5} ({total_mine / total_base:.2f}x)")
            if args.top:
                diff = {k: mine.get(k, 0) - base.get(k, 0) for k in set(mine) | set(base)}
                for key in sorted(diff, key=lambda k: -abs(diff[k]))[:args.top]:
                    print(f"      {diff[key]:+6}  {key}")
        dispose_engines()


if __name__ == "__main__":
    main()
