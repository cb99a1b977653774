"""The banner's weight and cost: gzipped JS + CSS, and an HTML page with the banner.

    python bench/bench_banner_size.py

Prints the gzipped size of what a browser downloads for the banner (budget:
6 KB for JS + CSS together) and the time of a small HTML page with the banner
injected, for an undecided and a decided visitor, as a ratio to the same page
from a bare Flask app measured in the same run (the cases take turns, so a
busy machine slows them alike), and the banner's own share against the
extension with injection turned off.
"""

from __future__ import annotations

import gzip
import statistics
import sys
import time
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask import Flask  # noqa: E402

from flask_consentkit import ConsentKit  # noqa: E402

BUDGET = 6 * 1024
FILES = ("consentkit.js", "consentkit.css")
PAGE = ("<!doctype html><html lang=en><head><title>Story</title></head><body><main>"
        + "<p>Once upon a time on the Caspian coast.</p>" * 40 + "</main></body></html>")


def sizes() -> dict[str, tuple[int, int]]:
    out = {}
    for name in FILES:
        data = (ROOT / "static" / name).read_bytes()
        out[name] = (len(data), len(gzip.compress(data, 9)))
    return out


def app(with_kit: bool, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="bench-secret-key-long-enough", CONSENTKIT_LEDGER_URL=None,
                      **config)
    if with_kit:
        ConsentKit(app)
    app.add_url_rule("/", "page", lambda: PAGE)
    return app


def medians_us(cases: dict[str, tuple[Any, dict[str, str]]], n: int = 1400,
               rounds: int = 7) -> dict[str, float]:
    """Median µs per request of each case; the cases take turns so load hits all alike."""
    for client, headers in cases.values():
        for _ in range(100):
            client.get("/", headers=headers)
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (client, headers) in cases.items():
            start = time.perf_counter()
            for _ in range(n // rounds):
                client.get("/", headers=headers)
            runs[name].append((time.perf_counter() - start) / (n // rounds) * 1e6)
    return {name: statistics.median(values) for name, values in runs.items()}


def main() -> None:
    total = 0
    print("file                raw bytes   gzip -9")
    for name, (raw, gz) in sizes().items():
        total += gz
        print(f"{name:18}  {raw:9}   {gz:7}")
    print(f"JS + CSS gzipped: {total} bytes = {total / 1024:.2f} KB "
          f"({total / BUDGET:.0%} of the 6 KB budget)")

    kit_app = app(True)
    response = kit_app.test_client().post("/consent/", data={"action": "reject_all"},
                                          headers={"Origin": "http://localhost"})
    cookie = response.headers["Set-Cookie"].split(";", 1)[0]
    # the same headers for every app; the cookie is sent as a header (no cookie jar)
    plain = {"Accept-Language": "az,en;q=0.5"}
    with_cookie = {**plain, "Cookie": cookie}
    bare = app(False).test_client(use_cookies=False)
    client = kit_app.test_client(use_cookies=False)
    no_banner = app(True, CONSENTKIT_AUTO_INJECT=False).test_client(use_cookies=False)
    t = medians_us({
        "bare": (bare, plain),
        "bare+cookie": (bare, with_cookie),
        "kit, banner off": (no_banner, plain),
        "undecided": (client, plain),
        "decided": (client, with_cookie),
    })
    print("\nSmall HTML page, test client, median µs per request (same run, turns taken):")
    print(f"  bare Flask                        {t['bare']:7.0f}")
    print(f"  extension, banner injection off   {t['kit, banner off']:7.0f}  "
          f"({t['kit, banner off'] / t['bare']:.2f}x bare)")
    print(f"  with banner, undecided visitor    {t['undecided']:7.0f}  "
          f"({t['undecided'] / t['bare']:.2f}x bare; banner itself "
          f"{t['undecided'] - t['kit, banner off']:+.0f} µs)")
    print(f"  with banner, decided visitor      {t['decided']:7.0f}  "
          f"({t['decided'] / t['bare+cookie']:.2f}x bare with the same cookie)")
    print(f"  the banner step alone (render from cache + insert before </body>): "
          f"{inject_us(kit_app):.0f} µs")


def inject_us(kit_app: Flask) -> float:
    """Best-of time of the banner's response processor on a ready HTML response."""
    from flask import Response

    from flask_consentkit.state import request_consent

    ext = kit_app.extensions["consentkit"]
    banner = ext.banner
    with kit_app.test_request_context("/story", headers={"Accept-Language": "az,en;q=0.5"}):
        def step() -> None:
            request_consent().cache.clear()
            banner.inject(Response(PAGE, mimetype="text/html"), ext)

        def response_only() -> None:
            Response(PAGE, mimetype="text/html")

        best = min(timeit.repeat(step, number=300, repeat=7)) / 300
        base = min(timeit.repeat(response_only, number=300, repeat=7)) / 300
    return (best - base) * 1e6


if __name__ == "__main__":
    main()
