"""The banner's weight and cost: gzipped JS + CSS, and an HTML page with the banner.

    python bench/bench_banner_size.py

Prints the gzipped size of what a browser downloads for the banner (budget:
6 KB for JS + CSS together) and the time of a small HTML page with the banner
injected, for an undecided and a decided visitor, as a ratio to the same page
from a bare Flask app measured in the same run.
"""

from __future__ import annotations

import gzip
import statistics
import sys
import time
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


def app(with_kit: bool) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="bench-secret-key-long-enough", CONSENTKIT_LEDGER_URL=None)
    if with_kit:
        ConsentKit(app)
    app.add_url_rule("/", "page", lambda: PAGE)
    return app


def median_us(client: Any, n: int = 2000, **kwargs: Any) -> float:
    for _ in range(200):
        client.get("/", **kwargs)
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(n // 7):
            client.get("/", **kwargs)
        runs.append((time.perf_counter() - start) / (n // 7) * 1e6)
    return statistics.median(runs)


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
    # the same headers for both apps; the cookie is sent as a header (no cookie jar)
    headers = {"Accept-Language": "az,en;q=0.5"}
    with_cookie = {**headers, "Cookie": cookie}
    bare = app(False).test_client(use_cookies=False)
    client = kit_app.test_client(use_cookies=False)
    t_bare = median_us(bare, headers=headers)
    t_undecided = median_us(client, headers=headers)
    t_bare_cookie = median_us(bare, headers=with_cookie)
    t_decided = median_us(client, headers=with_cookie)
    print(f"\nHTML page (test client, median): bare Flask {t_bare:.0f} µs")
    print(f"  with banner, undecided visitor: {t_undecided:.0f} µs  "
          f"({t_undecided / t_bare:.2f}x bare)")
    print(f"  with banner, decided visitor:   {t_decided:.0f} µs  "
          f"({t_decided / t_bare_cookie:.2f}x bare with the same cookie, {t_bare_cookie:.0f} µs)")


if __name__ == "__main__":
    main()
