"""@requires_consent: the view runs only with consent."""

from __future__ import annotations

import pytest
from flask import jsonify

from flask_consentkit import ConsentConfigError, requires_consent

from .conftest import make_app
from .helpers import decide


@pytest.fixture
def beacon_app(tmp_path):
    app = make_app(tmp_path)
    app.hits = []

    @app.post("/beacon")
    @requires_consent("analytics")
    def beacon():
        app.hits.append(1)
        return {"ok": True}

    @app.get("/teapot")
    @requires_consent("marketing", status=418)
    def teapot():
        return "never without consent"

    @app.get("/custom")
    @requires_consent("marketing", on_denied=lambda: (jsonify(why="no consent"), 451))
    def custom():
        return "ok"

    @app.get("/typo")
    @requires_consent("analytcs")
    def typo():
        return "ok"

    return app


def test_without_consent_the_view_is_not_called(beacon_app):
    client = beacon_app.test_client()
    response = client.post("/beacon")
    assert response.status_code == 204
    assert response.data == b""
    assert "Cookie" in response.headers["Vary"]
    assert beacon_app.hits == []
    decide(client, "reject_all")
    assert client.post("/beacon").status_code == 204
    assert beacon_app.hits == []


def test_with_consent_the_view_runs(beacon_app):
    client = beacon_app.test_client()
    decide(client, "save", categories=["analytics"])
    response = client.post("/beacon")
    assert response.status_code == 200 and response.get_json() == {"ok": True}
    assert beacon_app.hits == [1]


def test_the_denied_response_is_configurable(beacon_app):
    client = beacon_app.test_client()
    response = client.get("/teapot")
    assert response.status_code == 418
    assert "marketing" in response.get_json()["error"]
    response = client.get("/custom")
    assert response.status_code == 451 and response.get_json() == {"why": "no consent"}
    decide(client, "accept_all")
    assert client.get("/teapot").data == b"never without consent"


def test_app_wide_denied_status(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_DENIED_STATUS=403)

    @app.get("/x")
    @requires_consent("analytics")
    def x():
        return "ok"

    assert app.test_client().get("/x").status_code == 403


def test_unknown_category_is_a_developer_error(beacon_app):
    beacon_app.testing = True
    with pytest.raises(ConsentConfigError, match="analytcs"):
        beacon_app.test_client().get("/typo")
