"""``flask consent vendors``: the catalogue as the app sees it, filtered, as a table or JSON.

Catalogue keys relied on: ``google-tag``, ``google-analytics``, ``youtube``,
``hotjar``, ``meta-pixel``, ``google-fonts``; the rest of the catalogue is
whatever it is (the tests with exact contents build a catalogue of their own).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask

from flask_consentkit.cli import cli
from flask_consentkit.vendors import VendorRegistry, parse_catalogue
from tests.conftest import make_app

PAYMENTS = {"name": "Payments", "category": "necessary", "hosts": ["js.payments.example"],
            "cookies": ["pay_session"], "purpose": {"en": "Card payments", "az": "Ödəniş"}}


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(cli, ["vendors", *args])


def as_json(app: Flask, *args: str) -> list[dict[str, Any]]:
    result = run(app, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    data: list[dict[str, Any]] = json.loads(result.stdout)
    return data


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_app(tmp_path, CONSENTKIT_SERVICES=["youtube", "google-tag", PAYMENTS])


@pytest.fixture
def small(tmp_path: Path) -> Flask:
    """An app whose registry holds a catalogue of three vendors."""
    app = make_app(tmp_path, CONSENTKIT_SERVICES=[PAYMENTS])
    catalogue = parse_catalogue([("test.json", {"vendors": [
        {"key": "tag-loader", "name": "Tag Loader", "category": "analytics",
         "hosts": ["tags.loader.example"], "shared_with": ["marketing"]},
        {"key": "ad-pixel", "name": "Ad Pixel", "category": "marketing",
         "hosts": ["px.ads.example", "*.ads.example"], "cookies": ["_ap", "_ap_*"],
         "countries": ["US"], "purpose": "Measures ads.", "policy_url": "https://ads.example/p"},
        {"key": "fonts", "name": "Some Fonts", "category": "functional",
         "hosts": ["fonts.example"]},
    ]})])
    ext = app.extensions["consentkit"]
    ext.vendors = VendorRegistry(ext.settings.category_keys, ext.settings.services,
                                             catalogue)
    return app


def test_table(small: Flask) -> None:
    result = run(small)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:5] == [
        "KEY         CATEGORY              NAME        HOSTS  DECLARED",
        "payments    necessary             Payments        1  yes",
        "tag-loader  analytics +marketing  Tag Loader      1",
        "ad-pixel    marketing             Ad Pixel        2",
        "fonts       functional            Some Fonts      1",
    ]
    assert lines[6] == "4 vendor(s), 1 declared in CONSENTKIT_SERVICES."
    assert lines[7].startswith("A vendor not declared is allowed under its category too, but "
                               "the preferences page does not name it")


def test_table_of_the_shipped_catalogue(app: Flask) -> None:
    result = run(app)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header, rows = lines[0], lines[1:lines.index("")]
    # declared first, by category in the app's order, then the catalogue
    assert [r.split()[0] for r in rows[:3]] == ["payments", "google-tag", "youtube"]
    assert [r.endswith("yes") for r in rows[:4]] == [True, True, True, False]
    keys = [r.split()[0] for r in rows]
    assert {"google-analytics", "hotjar", "meta-pixel", "google-fonts"} <= set(keys)
    assert len(keys) == len(set(keys))  # a declared vendor is not listed twice
    # aligned: every column starts where its header does
    category_at, name_at = header.index("CATEGORY"), header.index("NAME")
    hosts_end = header.index("HOSTS") + len("HOSTS")
    for row in rows:
        for start in (category_at, name_at):
            assert row[start - 2:start] == "  " and row[start] != " ", row
        assert row[hosts_end - 1].isdigit() and row[hosts_end:hosts_end + 1] in ("", " "), row
    hotjar = next(r for r in rows if r.startswith("hotjar "))
    assert re.search(r"\banalytics\b.*\bHotjar\b\s+2$", hotjar), hotjar


def test_an_app_that_blocks_undeclared_vendors_still_lists_the_catalogue(
        tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_SERVICES=["hotjar"],
                   CONSENTKIT_UNDECLARED_VENDORS="blocked")
    data = {v["key"]: v["declared"] for v in as_json(app)}
    assert data["hotjar"] is True and data["google-analytics"] is False
    assert list(data)[0] == "hotjar"
    lines = run(app).output.splitlines()
    assert lines[-1] == ('A vendor not declared is allowed for nobody '
                         '(CONSENTKIT_UNDECLARED_VENDORS = "blocked"): declare the ones the site '
                         "uses.")


def test_category_filter(app: Flask) -> None:
    keys = [v["key"] for v in as_json(app, "--category", "analytics")]
    assert {"google-tag", "google-analytics", "hotjar"} <= set(keys)
    assert "youtube" not in keys and "meta-pixel" not in keys and "payments" not in keys
    marketing = as_json(app, "--category", "marketing")
    assert {"youtube", "meta-pixel"} <= {v["key"] for v in marketing}
    # a loader shared with marketing is allowed by a marketing grant: it is listed there too
    tag = next(v for v in marketing if v["key"] == "google-tag")
    assert tag["category"] == "analytics" and tag["shared_with"] == ["marketing"]
    assert all(v["category"] == "marketing" or "marketing" in v["shared_with"]
               for v in marketing)
    assert [v["key"] for v in as_json(app, "--category", "necessary")] == ["payments"]
    text = run(app, "--category", "functional").output
    assert "google-fonts" in text and "youtube" not in text


def test_category_filter_on_a_small_catalogue(small: Flask) -> None:
    assert [v["key"] for v in as_json(small, "--category", "marketing")] == [
        "tag-loader", "ad-pixel"]
    result = run(small, "--category", "performance")
    assert result.exit_code == 0 and result.output == "No vendor under 'performance'.\n"


@pytest.mark.parametrize("category", ["nope", "Analytics", "", "ads"])
def test_unknown_category(app: Flask, category: str) -> None:
    result = run(app, "--category", category)
    assert result.exit_code == 2
    assert (f"Invalid value for '--category': {category!r} is not a category of this app; use "
            "one of necessary, functional, analytics, performance, marketing.") in result.output
    assert "Traceback" not in result.output


def test_a_catalogue_category_the_app_lacks_is_refused(tmp_path: Path) -> None:
    """Its vendors are allowed for nobody here: not listed as if a grant allowed them."""
    app = make_app(tmp_path, CONSENTKIT_CATEGORIES=["necessary", "stats"])
    for fmt in ("table", "json"):
        result = run(app, "--category", "analytics", "--format", fmt)
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert ("Invalid value for '--category': 'analytics' is not a category of this app "
                "(CONSENTKIT_CATEGORIES), so no visitor can grant it and the catalogue's "
                "vendors under it are allowed for nobody; use one of necessary, stats."
                ) in result.output


def test_a_category_of_the_app_only(tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_CATEGORIES=["necessary", "support"],
                   CONSENTKIT_SERVICES=[{"name": "Helpdesk", "category": "support",
                                         "hosts": ["widget.help.example"]}])
    assert [v["key"] for v in as_json(app, "--category", "support")] == ["helpdesk"]
    # a catalogue category this app lacks allows nobody anything: refused, not listed
    assert run(app, "--category", "analytics").exit_code == 2


def test_json_shape(app: Flask) -> None:
    data = as_json(app)
    assert isinstance(data, list)
    fields = {"key", "name", "category", "hosts", "cookies", "countries", "purpose",
              "policy_url", "declared", "shared_with"}
    assert all(set(v) == fields for v in data)
    by_key = {v["key"]: v for v in data}
    assert len(by_key) == len(data)
    assert by_key["payments"] == {
        "key": "payments", "name": "Payments", "category": "necessary",
        "hosts": ["js.payments.example"], "cookies": ["pay_session"], "countries": [],
        "purpose": {"en": "Card payments", "az": "Ödəniş"}, "policy_url": None,
        "declared": True, "shared_with": [],
    }
    ga = by_key["google-analytics"]
    assert ga["declared"] is False and ga["category"] == "analytics"
    assert "*.google-analytics.com" in ga["hosts"] and "_ga" in ga["cookies"]
    assert all(isinstance(h, str) for v in data for h in v["hosts"])
    assert by_key["youtube"]["declared"] is True
    assert [v["key"] for v in data[:3]] == ["payments", "google-tag", "youtube"]


def test_json_shape_on_a_small_catalogue(small: Flask) -> None:
    pixel = next(v for v in as_json(small) if v["key"] == "ad-pixel")
    assert pixel == {
        "key": "ad-pixel", "name": "Ad Pixel", "category": "marketing",
        "hosts": ["px.ads.example", "*.ads.example"], "cookies": ["_ap", "_ap_*"],
        "countries": ["US"], "purpose": "Measures ads.", "policy_url": "https://ads.example/p",
        "declared": False, "shared_with": [],
    }


def test_not_registered() -> None:
    result = Flask(__name__).test_cli_runner().invoke(cli, ["vendors"])
    assert result.exit_code == 1
    assert "flask-consentkit is not registered on this app" in result.output
