"""The scanner's data: the known-cookie table and the tracker matching on a page."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from flask_consentkit.cli.scan import _deleting, find_trackers, lookup_known
from flask_consentkit.gating.trackers import TRACKERS

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "flask_consentkit" / "cli" / "known_cookies.json"


def _derive_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "derive_cookie_table", ROOT / "scripts" / "derive_cookie_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_table_is_derived_from_the_database(testdata: Path) -> None:
    derive = _derive_module()
    with (testdata / "open-cookie-database.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    table, conflicts = derive.derive(rows)
    assert derive.dump(table) == TABLE.read_text(encoding="utf-8")
    assert conflicts == [
        "chk: functional vs marketing -> marketing",
        "dc: functional vs marketing -> marketing",
        "euconsent: functional vs marketing -> marketing",
        "token: functional vs marketing -> marketing",
    ]
    # facts only: none of the database's prose ships
    text = TABLE.read_text(encoding="utf-8")
    for row in rows[:200]:
        if len(row["Description"]) > 30:
            assert row["Description"] not in text
        if row["Retention period"] not in ("", "session") and len(row["Retention period"]) > 8:
            assert row["Retention period"] not in text
    data = json.loads(text)
    assert "Apache-2.0" in data["source"]["license"]
    assert (TABLE.with_suffix(".LICENSE")).read_text().lstrip().startswith("Apache License")


@pytest.mark.parametrize("name, platform, category, prefix", [
    ("_ga", "Google Analytics", "analytics", False),
    ("_ga_ABC123", "Google Analytics", "analytics", True),
    ("_fbp", "Facebook", "marketing", False),
    ("token", "Adform / Xandr", "marketing", False),  # a resolved conflict
    ("XSRF-TOKEN", None, "security", False),
    ("ce_need_secure_cookie", None, None, False),  # trimmed in the table
])
def test_lookup_known(name: str, platform: str | None, category: str | None,
                      prefix: bool) -> None:
    entry = lookup_known(name)
    assert entry is not None
    if platform is not None:
        assert entry.platform == platform
    if category is not None:
        assert entry.category == category
    assert entry.prefix is prefix


def test_unknown_cookie() -> None:
    assert lookup_known("zz_visitor") is None


def test_trackers_on_a_page() -> None:
    html = """
    <script async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>
    <script>!function(f,b,e,v,n,t,s){}; fbq('init', '123');</script>
    <script type="text/plain" data-consent="analytics"
            src="https://static.hotjar.com/c/hotjar-1.js"></script>
    <script type="module" src="https://cdn.segment.com/analytics.js/v1/x/analytics.min.js">
    </script>
    <iframe src="https://www.youtube.com/embed/abc"></iframe>
    <iframe data-consent="marketing" data-consent-src="https://player.vimeo.com/video/1"></iframe>
    <img src="https://www.facebook.com/tr?id=1&amp;ev=PageView">
    <img src="/static/cover.jpg">
    """
    found = [(t.name, element) for t, element, _ in find_trackers(html, TRACKERS)]
    assert found == [
        ("Google Tag Manager", "<script>"),
        ("Meta Pixel", "<script>"),
        ("Segment", "<script>"),
        ("YouTube embed", "<iframe>"),
        ("Meta Pixel (noscript image)", "<img>"),
    ]


@pytest.mark.parametrize("header, deleting", [
    ("a=1; Path=/", False),
    ("a=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/", True),
    ("a=1; Max-Age=0", True),
    ("a=1; Max-Age=3600", False),
    ("a=1; Expires=Thu, 01 Jan 2099 00:00:00 GMT", False),
    ("a=1; Expires=not a date", False),
])
def test_deleting(header: str, deleting: bool) -> None:
    assert _deleting(header) is deleting
