"""Error pages: Flask serves an ``HTTPException`` as a WSGI app, so its body is an
iterator; the extension reads such a small page whole, so that it is gated and gets
the banner like any page, and is not logged as a stream for every unknown URL."""

from __future__ import annotations

import logging

import pytest
from flask import Flask, abort

from flask_consentkit import ConsentKit


@pytest.fixture
def app() -> Flask:
    app = Flask("errors")
    app.config.update(SECRET_KEY="errors-secret-key-errors-secret-key",
                      CONSENTKIT_LEDGER_URL=None)
    ConsentKit(app)

    @app.get("/gone")
    def gone() -> str:
        abort(410)

    @app.get("/stream")
    def stream():  # type: ignore[no-untyped-def]
        def pages():  # type: ignore[no-untyped-def]
            yield "<!doctype html><html><body>streamed"
            yield "</body></html>"

        return app.response_class(pages(), mimetype="text/html")

    return app


def test_an_unknown_url_and_an_abort_get_the_banner_and_the_policy(app: Flask, caplog) -> None:
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="flask_consentkit"):
        for path, status in (("/no-such-page", 404), ("/another-one", 404), ("/gone", 410)):
            response = client.get(path)
            assert response.status_code == status
            assert b'id="consentkit-banner"' in response.data
            assert "Content-Security-Policy" in response.headers
            assert response.headers["Content-Length"] == str(len(response.data))
    assert not [r for r in caplog.records if "stream" in r.getMessage()]


def test_a_real_stream_is_still_left_alone_and_logged_once(app: Flask, caplog) -> None:
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="flask_consentkit"):
        for _ in range(3):
            assert client.get("/stream").data.endswith(b"streamed</body></html>")
    banner_logs = [r for r in caplog.records if "got no consent banner" in r.getMessage()]
    assert len(banner_logs) == 1
