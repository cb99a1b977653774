"""``flask consent report --format table|json|csv|html`` and ``--output``."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_consentkit.cli.report import Progress, csv_safe
from tests.test_report import WINDOW, Ledger, report, sqlite_ledger  # noqa: F401


@pytest.fixture
def filled(sqlite_ledger: Ledger, tmp_path: Path) -> Flask:  # noqa: F811
    from tests.conftest import make_app

    for _ in range(7):
        sqlite_ledger.visitor("accept_all")
    for _ in range(5):
        sqlite_ledger.visitor("reject_all", method="preferences")
    for _ in range(6):
        sqlite_ledger.visitor("save", ["analytics"], method="api",
                              policy_version='=HYPERLINK("http://evil.example","x")')
    sqlite_ledger.visitor("save", ["analytics"], method="gpc", policy_version="<b>v3</b>")
    return make_app(tmp_path, CONSENTKIT_LEDGER_URL=sqlite_ledger.url)


def test_table_is_aligned(filled: Flask) -> None:
    result = report(filled, *WINDOW)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "Consent report 2026-11-01 to 2026-11-30 (UTC), by day"
    header = next(n for n, line in enumerate(lines) if line.startswith("Category"))
    rows = lines[header:header + 6]
    assert rows[2].split() == ["functional", "7", "12", "36.8", "%"]
    assert rows[3].split() == ["analytics", "14", "5", "73.7", "%"]
    # right-aligned numbers end in the same column
    assert len({len(row) for row in rows[2:6]}) == 1


def test_json_has_stable_keys(filled: Flask) -> None:
    data = json.loads(report(filled, *WINDOW, "--format", "json").stdout)
    assert list(data) == ["window", "decisions", "visitors", "categories", "by_period",
                          "by_policy_version", "by_method", "withdrawals", "erasures",
                          "suppressed"]
    assert data["categories"]["analytics"] == {"granted": 14, "denied": 5,
                                               "opt_in_rate": round(14 / 19, 4)}
    assert data["by_policy_version"] == {"1": 12, "<b>v3</b>": None,
                                         '=HYPERLINK("http://evil.example","x")': 6}
    # every count is a number or null; the nulls are listed as JSON Pointers
    assert "/by_policy_version/<b>v3<~1b>" in data["suppressed"]  # "/" is "~1" in a pointer
    assert "/by_method/gpc" in data["suppressed"]
    assert data["erasures"] == 0 and data["withdrawals"] == 0
    counts = [data["decisions"], data["visitors"], *data["by_method"].values(),
              *(p["decisions"] for p in data["by_period"])]
    assert all(n is None or type(n) is int for n in counts)
    assert all(p["decisions"] == 0 for p in data["by_period"] if p["period"] != "2026-11-02")


def test_csv_reads_back_and_is_safe_in_a_spreadsheet(filled: Flask) -> None:
    result = report(filled, *WINDOW, "--format", "csv")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    values = {(r["section"], r["key"], r["metric"]): r["value"] for r in rows}
    assert values[("total", "decisions", "count")] == "19"
    assert values[("category", "analytics", "granted")] == "14"
    assert values[("category", "analytics", "opt_in_rate")] == str(round(14 / 19, 4))
    assert values[("method", "gpc", "decisions")] == ""  # withheld: no number, a note
    notes = {(r["section"], r["key"], r["metric"]): r["note"] for r in rows}
    assert notes[("method", "gpc", "decisions")] == "suppressed: under 5"
    assert notes[("method", "api", "decisions")] == ""
    assert values[("period", "2026-11-01", "decisions")] == "0"
    assert values[("period", "2026-11-02", "decisions")] == "19"
    versions = [r["key"] for r in rows if r["section"] == "policy_version"]
    assert "'=HYPERLINK(\"http://evil.example\",\"x\")" in versions
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r.values())


@pytest.mark.parametrize("value, shown", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("2026-11-01", "2026-11-01"), ("<5", "<5"), (7, "7"),
])
def test_csv_safe(value: object, shown: str) -> None:
    assert csv_safe(value) == shown


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_html_is_self_contained_with_charts(filled: Flask, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = report(filled, *WINDOW, "--format", "html", "--output", str(out))
    assert result.exit_code == 0
    assert f"Report written to {out}" in result.output
    html = out.read_text()
    parser = _Collect()
    parser.feed(html)
    tags = parser.tags
    svgs = [attrs.get("id") for tag, attrs in tags if tag == "svg"]
    assert svgs == ["chart-opt-in", "chart-over-time"]
    # one bar per category, its width the opt-in rate of 400 px
    bars = [a for t, a in tags if t == "rect" and a.get("class") == "bar"]
    assert bars[1]["width"] == str(round(14 / 19 * 400, 1))
    assert len(bars) == 4 + 30
    # nothing is fetched: no script, no external URL, a CSP that forbids it
    assert not any(tag in ("script", "img", "link", "iframe") for tag, _ in tags)
    assert "http://" not in html.replace("http://evil.example", "")
    assert "https://" not in html and "//" not in re.sub(r"http://evil\.example", "", html)
    assert "default-src 'none'" in html
    # text from the ledger is escaped
    assert "<b>v3</b>" not in html and "&lt;b&gt;v3&lt;/b&gt;" in html


def test_html_withheld_rate(sqlite_ledger: Ledger, tmp_path: Path) -> None:  # noqa: F811
    from tests.conftest import make_app

    sqlite_ledger.visitor("accept_all")
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=sqlite_ledger.url)
    html = report(app, *WINDOW, "--format", "html").stdout
    assert "withheld (small group)" in html


def test_output_to_an_unwritable_place(filled: Flask, tmp_path: Path) -> None:
    result = report(filled, *WINDOW, "--format", "json", "--output",
                    str(tmp_path / "no" / "such" / "dir.json"))
    assert result.exit_code == 1
    assert "Cannot write" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("fmt, check", [
    ("json", lambda text: json.loads(text)["decisions"] == 19),
    ("csv", lambda text: next(csv.reader(io.StringIO(text))) == ["section", "key", "metric",
                                                                 "value", "note"]),
    ("table", lambda text: text.startswith("Consent report")),
])
def test_output_file_every_format(filled: Flask, tmp_path: Path, fmt: str,
                                  check: Callable[[str], bool]) -> None:
    out = tmp_path / f"r.{fmt}"
    assert report(filled, *WINDOW, "--format", fmt, "-o", str(out)).exit_code == 0
    assert check(out.read_text())


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_only_when_slow() -> None:
    quick = _Stream(tty=False)
    with Progress(quick, after=0.5) as progress:
        progress(1, 2)
        progress(2, 2)
    assert quick.getvalue() == ""

    slow = _Stream(tty=False)
    with Progress(slow, after=0.05) as progress:
        time.sleep(0.2)
        progress(1, 4)
    lines = slow.getvalue().splitlines()
    assert lines[0].startswith("aggregating receipts")
    assert lines[1].startswith("aggregating receipts … 1/4 queries")
    assert lines[-1].startswith("aggregated in")

    tty = _Stream(tty=True)
    with Progress(tty, after=0.05) as progress:
        time.sleep(0.1)
        progress(3, 4)
    assert "\r\x1b[K" in tty.getvalue() and "3/4 queries" in tty.getvalue()


@pytest.mark.browser
def test_html_opens_in_a_browser_without_network(filled: Flask, tmp_path: Path,
                                                 page: object) -> None:
    out = tmp_path / "report.html"
    assert report(filled, *WINDOW, "--format", "html", "-o", str(out)).exit_code == 0
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))  # type: ignore[attr-defined]
    page.goto(out.as_uri())  # type: ignore[attr-defined]
    assert requests == [out.as_uri()]
    boxes = [page.locator(f"#{chart}").bounding_box()  # type: ignore[attr-defined]
             for chart in ("chart-opt-in", "chart-over-time")]
    assert all(box is not None and box["width"] > 300 and box["height"] > 100 for box in boxes)
    bar = page.locator("#chart-opt-in rect.bar").nth(1).bounding_box()  # type: ignore[attr-defined]
    assert bar is not None and bar["width"] > 250  # analytics: 73.7 % of 400 px


@pytest.mark.browser
@pytest.mark.parametrize("scheme, background", [("light", "rgb(255, 255, 255)"),
                                                ("dark", "rgb(24, 24, 28)")])
def test_html_follows_the_colour_scheme_and_fits_a_small_phone(
        filled: Flask, tmp_path: Path, browser: Any, axe_source: str, scheme: str,
        background: str) -> None:
    out = tmp_path / "report.html"
    assert report(filled, *WINDOW, "--format", "html", "-o", str(out)).exit_code == 0
    context = browser.new_context(viewport={"width": 320, "height": 568}, color_scheme=scheme)
    try:
        page = context.new_page()
        page.goto(out.as_uri())
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == background
        text = page.evaluate("getComputedStyle(document.querySelector('svg text')).fill")
        assert text == ("rgb(27, 27, 27)" if scheme == "light" else "rgb(236, 236, 239)")
        # nothing wider than the screen: no sideways scrolling of the page
        assert page.evaluate("document.documentElement.scrollWidth") <= 320
        # withheld counts read "<5"; empty days read 0
        assert "<5" in page.locator("table[aria-label='Collection method']").inner_text()
        assert "2026-11-01\t0" in page.locator("table[aria-label='Decisions over time']"
                                             ).inner_text()
        page.evaluate(axe_source)
        result = page.evaluate("axe.run(document, {runOnly: ['color-contrast']})")
        assert result["violations"] == []
    finally:
        context.close()
