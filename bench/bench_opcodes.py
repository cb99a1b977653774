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
"""

from __future__ import annotations

import argparse
import collections
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import bench_core
import bench_gating
from _common import ROOT, wsgi_caller
from werkzeug.test import EnvironBuilder

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
    """The bytecodes ``fn()`` executes, per function (``file:name``)."""
    counts: collections.Counter[str] = collections.Counter()

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        name = f"{_short(frame.f_code.co_filename)}:{frame.f_code.co_name}"

        def local(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "opcode":
                counts[name] += 1
            return local

        return local

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return counts


def cases() -> dict[str, tuple[Callable[[], None], Callable[[], None]]]:
    """``{case: (bare Flask's request, the extension's request)}``."""
    plain, kit = bench_core.bare(), bench_core.with_kit()
    cookie = {"Cookie": bench_core.consent_cookie(kit)}
    found: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
        "json": (wsgi_caller(plain, "/api", headers=cookie),
                 wsgi_caller(kit, "/api", headers=cookie)),
        "json-reading": (wsgi_caller(plain, "/api", headers=cookie),
                         wsgi_caller(kit, "/api/personal", headers=cookie)),
    }
    page = realistic_page(50_000)
    bare_app, kit_app = bench_gating.make_app(False, page), bench_gating.make_app(True, page)
    visitor = bench_gating.consent_cookie(kit_app, "analytics")
    for case, path in (("page", "/page"), ("form", "/form")):
        environ = EnvironBuilder(path=path, headers=[("Cookie", visitor)]).get_environ()
        found[case] = (bench_gating.wsgi_call(bare_app, environ),  # the same request to both
                       bench_gating.wsgi_call(kit_app, environ))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", nargs="*", help="json, json-reading, page, form (default: all)")
    parser.add_argument("--top", type=int, default=0, help="list the N functions that differ most")
    args = parser.parse_args()
    known = cases()
    unknown = [c for c in args.case if c not in known]
    if unknown:
        parser.error(f"unknown case {', '.join(unknown)}; choose from {', '.join(known)}")
    print("bytecodes per warm request (Python only; the same on every run)")
    for case in args.case or list(known):
        bare, ours = known[case]
        for _ in range(50):  # warm: caches filled, templates compiled
            bare(), ours()
        base, mine = count(bare), count(ours)
        total_base, total_mine = sum(base.values()), sum(mine.values())
        print(f"  {case:14} bare Flask {total_base:6}   with the extension {total_mine:6}   "
              f"+{total_mine - total_base:5} ({total_mine / total_base:.2f}x)")
        if args.top:
            diff = {k: mine.get(k, 0) - base.get(k, 0) for k in set(mine) | set(base)}
            for name in sorted(diff, key=lambda k: -abs(diff[k]))[:args.top]:
                print(f"      {diff[name]:+6}  {name}")


if __name__ == "__main__":
    main()
