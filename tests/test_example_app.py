"""The example storytelling site runs with the extension's defaults."""

from __future__ import annotations

import pytest

from example_app import create_app


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
