"""The example storytelling site runs with the extension's defaults."""

from __future__ import annotations

import json

import pytest

from example_app import create_app
from flask_consentkit.cli import cli


@pytest.fixture
def example(tmp_path):
    app = create_app({"TESTING": True, "CONSENTKIT_LEDGER_URL": f"sqlite:///{tmp_path}/l.db"})
    return app.test_client()


@pytest.mark.parametrize("path", ["/", "/story/lighthouse", "/story/caravan", "/about",
                                  "/consent/"])
def test_pages_render(example, path):
    response = example.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"


def test_unknown_story_is_404(example):
    assert example.get("/story/nope").status_code == 404


def test_choice_round_trip(example):
    response = example.post("/consent/", data={"action": "save", "categories": ["analytics"],
                                                "next": "/about"},
                            headers={"Origin": "http://localhost"})
    assert response.status_code == 303 and response.headers["Location"] == "/about"
    assert b"analytics, necessary" in example.get("/about").data


def test_your_data_page_offers_the_visitors_records(example):
    html = example.get("/about/data").get_data(as_text=True)
    assert 'id="consentkit-records"' in html and "keeps no record" in html
    example.post("/consent/", data={"action": "reject_all", "next": "/about/data"},
                 headers={"Origin": "http://localhost"})
    html = example.get("/about/data").get_data(as_text=True)
    assert '<a href="/consent/export" download="consent-records.json">' in html
    assert 'href="/consent/?next=/about/data&amp;lang=en&amp;erase=confirm#consentkit-records"' \
        in html
    confirm = example.get("/consent/?next=/about/data&lang=en&erase=confirm")
    assert b'action="/consent/erase?lang=en"' in confirm.data
    response = example.post("/consent/erase?lang=en", headers={"Origin": "http://localhost"},
                            data={"next": "/consent/?next=/about/data&lang=en&erased=1"})
    assert response.status_code == 303
    assert "have been erased" in example.get(response.headers["Location"]).get_data(
        as_text=True)


def test_the_example_app_passes_its_own_scan(tmp_path):
    # the example is what a user copies: its pages, its sitemap's stories and its embed
    app = create_app({"TESTING": True, "CONSENTKIT_LEDGER_URL": f"sqlite:///{tmp_path}/l.db"})
    result = app.test_cli_runner().invoke(cli, ["scan", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and not report["unvisited"]
    assert {"/story/lighthouse", "/story/caravan"} <= set(report["paths"])
