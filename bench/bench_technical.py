"""Benchmark of ``technical_data()`` and of the two user-agent parsers.

Run from the project root: ``python bench/bench_technical.py``. Prints medians
over several batches, and ratios against bare Flask measured in the same run.
Reads ``tests/testdata/`` (the MaxMind City test database and the uap-core
corpus).
"""

from __future__ import annotations

import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from flask import Flask
from werkzeug.test import EnvironBuilder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask_consentkit import ConsentKit, technical_data  # noqa: E402
from flask_consentkit.collect import technical  # noqa: E402
from flask_consentkit.collect.useragent import UserAgentParser  # noqa: E402
from flask_consentkit.extension import get_kit_state  # noqa: E402
from flask_consentkit.state import UNDECIDED, decide, get_state  # noqa: E402

TESTDATA = ROOT / "tests" / "testdata"
CITY = TESTDATA / "GeoIP2-City-Test.mmdb"
CORPUS = TESTDATA / "uap-core_test_ua.yaml"
UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/120.0.0.0 Safari/537.36")
IP = "175.16.199.23"


def median_us(fn: Callable[[], Any], number: int, repeat: int = 7) -> float:
    """Median over ``repeat`` batches of the µs one call of ``fn`` takes."""
    fn()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter_ns() - start) / number / 1000)
    return statistics.median(runs)


def wsgi_caller(app: Flask, headers: dict[str, str]) -> Callable[[], Any]:
    environ = EnvironBuilder(path="/", headers=list(headers.items()),
                             environ_base={"REMOTE_ADDR": IP}).get_environ()

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return None

    def call() -> None:
        for _ in app(dict(environ), start_response):
            pass

    return call


def bare_app() -> Flask:
    app = Flask("bare")

    @app.get("/")
    def index() -> dict[str, Any]:
        return {"ok": True}

    return app


def kit_app(use_technical_data: bool = True) -> tuple[Flask, str]:
    app = Flask("kit")
    app.config.update(SECRET_KEY="bench-secret-key-long-enough", CONSENTKIT_LEDGER_URL=None,
                      CONSENTKIT_GEOIP_DATABASE=str(CITY))
    ConsentKit(app)

    @app.get("/")
    def index() -> dict[str, Any]:
        if use_technical_data:
            return {"country": technical_data().country}
        return {"analytics": get_state().allows("analytics")}

    ext = get_kit_state(app)
    state = decide(ext.settings, ext.settings.optional_keys, previous=UNDECIDED, source="api")
    return app, f"{ext.settings.cookie_name}={ext.codec.dumps(state)}"


def clear_caches(app: Flask) -> None:
    ext = get_kit_state(app)
    ext.geo.clear()
    ext.user_agent.clear()
    technical.clear_caches()


def _time_state(app: Flask, cookie: str) -> float:
    with app.test_request_context(environ_base={"REMOTE_ADDR": IP},
                                  headers={"User-Agent": UA, "Cookie": cookie}):
        start = time.perf_counter_ns()
        get_state()
        return (time.perf_counter_ns() - start) / 1000


def main() -> None:
    if not CITY.exists():
        sys.exit(f"the test data is not at {TESTDATA}")
    with CORPUS.open() as f:
        cases = yaml.load(f, Loader=yaml.CSafeLoader)["test_cases"]
    corpus = [c["user_agent_string"] for c in cases]

    app, cookie = kit_app()
    headers = {"User-Agent": UA, "Cookie": cookie}
    ext = get_kit_state(app)
    print(f"user-agent parser in use: {ext.services['user_agent'].name}; "
          f"geo: {ext.services['geo'].database_type}")

    # -- technical_data() alone, inside a request ---------------------------
    def one_call(push_fresh: bool, cold: bool, uas: list[str],
                 resolved: bool = False) -> Callable[[], float]:
        it = iter(range(10**9))

        def run() -> float:
            n = next(it)
            env = {"REMOTE_ADDR": f"175.16.{n % 250}.23" if cold else IP}
            ua = uas[n % len(uas)] if cold else UA
            with app.test_request_context(environ_base=env,
                                          headers={"User-Agent": ua, "Cookie": cookie}):
                if cold:
                    clear_caches(app)
                if not push_fresh:
                    technical_data()
                if resolved:
                    get_state()
                start = time.perf_counter_ns()
                technical_data()
                return (time.perf_counter_ns() - start) / 1000

        return run

    def per_call(run: Callable[[], float], number: int) -> float:
        run()
        return statistics.median(run() for _ in range(number))

    warm = per_call(one_call(True, False, []), 20000)
    warm_resolved = per_call(one_call(True, False, [], resolved=True), 20000)
    state_only = per_call(lambda: _time_state(app, cookie), 20000)
    memo = per_call(one_call(False, False, []), 20000)
    cold = per_call(one_call(True, True, corpus), 1601)
    print("\ntechnical_data(), everything allowed (median µs per call)")
    print(f"  cold (caches empty, new UA and /24)   {cold:9.1f} µs")
    print(f"  warm, consent already read this request {warm_resolved:7.1f} µs   budget ≤ 20 µs: "
          f"{'ok' if warm_resolved <= 20 else 'OVER'}")
    print(f"  warm, first to read the consent cookie  {warm:7.1f} µs   "
          f"(of which get_state() alone: {state_only:.1f} µs)")
    print(f"  same request again (per-request memo) {memo:9.1f} µs")

    # -- whole requests through WSGI, against bare Flask in the same run ----
    plain, plain_cookie = kit_app(use_technical_data=False)
    callers = {
        "bare": wsgi_caller(bare_app(), {"User-Agent": UA}),
        "consent": wsgi_caller(plain, {"User-Agent": UA, "Cookie": plain_cookie}),
        "technical": wsgi_caller(app, headers),
    }
    rounds: dict[str, list[float]] = {k: [] for k in callers}
    for _ in range(11):  # interleaved, so drift hits all three alike
        for name, caller in callers.items():
            rounds[name].append(median_us(caller, 500, repeat=1))
    bare, consent_only, with_td = (statistics.median(rounds[k]) for k in callers)
    print("\nJSON request through WSGI (median µs)")
    print(f"  bare Flask                            {bare:9.1f} µs")
    print(f"  consentkit, view reads the consent    {consent_only:9.1f} µs   "
          f"ratio {consent_only / bare:.3f}× bare Flask")
    print(f"  consentkit + technical_data() warm    {with_td:9.1f} µs   "
          f"ratio {with_td / bare:.3f}× bare Flask; technical_data() adds "
          f"{with_td - consent_only:.1f} µs")

    # -- the two user-agent parsers on the uap-core corpus -------------------
    print(f"\nuser-agent parsers on the uap-core corpus ({len(corpus)} user agents)")
    results = {}
    for name in ("user-agents", "ua-parser"):
        parser = UserAgentParser(name)
        parser.uncached(UA)  # build the rules once
        start = time.perf_counter()
        out = [parser.uncached(ua) for ua in corpus]
        elapsed = time.perf_counter() - start
        results[name] = out
        cached = median_us(functools.partial(parser.parse, UA), 100000)
        print(f"  {name:12s} uncached {len(corpus) / elapsed:9.0f} UA/s "
              f"({elapsed / len(corpus) * 1e6:7.1f} µs each); cached {cached:5.2f} µs")
    same = sum(a == b for a, b in zip(results["ua-parser"], results["user-agents"], strict=True))
    print(f"  identical answers: {same}/{len(corpus)}")


if __name__ == "__main__":
    main()
