"""The banner reaches every whole HTML document, and leaves fragments alone."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, Response, stream_with_context

from flask_consentkit.banner import insertion_point

BANNER = 'id="consentkit-banner"'


@pytest.fixture
def pages(app_factory: Callable[..., Flask]) -> Flask:
    app = app_factory()
    bodies = {
        # flaskr's base.html: a doctype, then no <head>, <body>, </body> or </html>
        "no-body": "<!doctype html>\n<title>Posts - Flaskr</title>\n<nav>x</nav>\n"
                   "<section class=\"content\"><p>post</p></section>\n",
        "html-end": "<!DOCTYPE html><html><title>t</title><p>no body end</p></html>\n",
        "html-tag": "<html lang=en><title>t</title><p>no doctype</p>",
        "comment-first": "\ufeff<!-- generated -->\n  <!DOCTYPE html><title>t</title><p>x",
        "body-only": "<body><p>the quick start's page</p></body>",
        "fragment": "<li class=\"post\">one more post</li>",
        "empty": "",
    }
    for name, body in bodies.items():
        app.add_url_rule(f"/{name}", name, lambda body=body: body)

    @app.get("/streamed")
    def streamed() -> Response:
        return Response(stream_with_context(iter(["<!doctype html><p>", "x</p>"])),
                        mimetype="text/html")

    return app


@pytest.mark.parametrize("path, where", [
    ("/no-body", "end"),
    ("/html-end", "</html>"),
    ("/html-tag", "end"),
    ("/comment-first", "end"),
    ("/body-only", "</body>"),
])
def test_every_whole_document_gets_the_banner(pages: Flask, path: str, where: str) -> None:
    html = pages.test_client().get(path).get_data(as_text=True)
    assert html.count(BANNER) == 1
    banner_end = html.rindex("</div>") + len("</div>")
    if where == "end":
        assert html.endswith(html[html.index('<div id="consentkit"'):banner_end])
    else:
        assert html[banner_end:].startswith(where)


@pytest.mark.parametrize("path, headers", [
    ("/fragment", {}),
    ("/empty", {}),
    ("/no-body", {"HX-Request": "true"}),
    ("/body-only", {"HX-Request": "true"}),
    ("/no-body", {"Turbo-Frame": "posts"}),
])
def test_fragments_are_left_alone(pages: Flask, path: str, headers: dict[str, str]) -> None:
    response = pages.test_client().get(path, headers=headers)
    assert b"consentkit" not in response.get_data()


@pytest.mark.parametrize("headers", [{"HX-Request": "true", "HX-Boosted": "true"},
                                     {"HX-Request": "true",
                                      "HX-History-Restore-Request": "true"}])
def test_htmx_requests_for_whole_pages_get_the_banner(pages: Flask,
                                                      headers: dict[str, str]) -> None:
    html = pages.test_client().get("/no-body", headers=headers).get_data(as_text=True)
    assert html.count(BANNER) == 1


def test_a_page_without_the_banner_is_logged_once_per_endpoint(
        pages: Flask, caplog: pytest.LogCaptureFixture) -> None:
    client = pages.test_client()
    with caplog.at_level(logging.INFO, "flask_consentkit.banner"):
        for _ in range(3):
            client.get("/fragment")
            client.get("/streamed").close()
        client.get("/no-body")
        client.get("/fragment", headers={"HX-Request": "true"})  # a declared partial: no log
    messages = [r.getMessage() for r in caplog.records if r.name == "flask_consentkit.banner"]
    assert len(messages) == 2
    fragment, streamed = sorted(messages, key=lambda m: "streamed" in m)
    assert "GET /fragment (endpoint 'fragment') got no consent banner" in fragment
    assert "<!doctype html>" in fragment
    assert "GET /streamed" in streamed and "consent_banner()" in streamed


def test_a_page_sent_as_a_file_is_logged_as_a_warning(
        app_factory: Callable[..., Flask], tmp_path: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    from flask import send_file

    page = tmp_path / "page.html"
    page.write_text("<!doctype html><p>static</p>")
    app = app_factory()
    app.add_url_rule("/file", "file", lambda: send_file(page, mimetype="text/html"))
    with caplog.at_level(logging.WARNING, "flask_consentkit.banner"):
        app.test_client().get("/file").close()
        app.test_client().get("/file").close()
    warnings = [r for r in caplog.records if r.name == "flask_consentkit.banner"]
    assert len(warnings) == 1 and "send_file" in warnings[0].getMessage()


def test_the_stylesheet_goes_into_the_head_when_there_is_one(client: Any) -> None:
    html = client.get("/").get_data(as_text=True)
    head = html[:html.index("</head>")]
    assert head.endswith('<link rel="stylesheet" href="/consent/static/consentkit.css">')
    assert html.count("consentkit.css") == 1  # the banner leaves its own link out


def test_without_a_head_the_banner_brings_its_stylesheet(pages: Flask) -> None:
    html = pages.test_client().get("/no-body").get_data(as_text=True)
    assert html.count("consentkit.css") == 1
    assert html.index("consentkit.css") > html.index('<div id="consentkit"')


def test_the_head_stylesheet_carries_the_nonce(app_factory: Callable[..., Flask]) -> None:
    from flask import g

    app = app_factory()

    @app.before_request
    def nonce() -> None:
        g.csp_nonce = "n0nce-Value_1"

    html = app.test_client().get("/").get_data(as_text=True)
    head = html[:html.index("</head>")]
    assert head.endswith('<link rel="stylesheet" href="/consent/static/consentkit.css" '
                         'nonce="n0nce-Value_1">')


@pytest.mark.parametrize("body, expected", [
    (b"<html><body></body></html>", 12),
    (b"<html><BODY></Body  ></html>", 12),
    (b"<!doctype html><p>x</p></html>", 23),
    (b"<!doctype html><p>x</p>", 23),
    (b"  <!-- c --> <HTML>", 19),
    (b"<p>x</p>", -1),
    (b"", -1),
    (b"<!-- never closed <html>", -1),
])
def test_insertion_point(body: bytes, expected: int) -> None:
    assert insertion_point(body) == expected


@pytest.mark.parametrize("body, expected", [
    (b"<html><head><title>t</title></head><body></body></html>", 28),
    (b"<HTML><HEAD><TITLE>t</TITLE></HEAD ><BODY></BODY></HTML>", 28),
    (b"<html><head></headline></head><body></body></html>", 23),
    (b"<!doctype html><title>t</title><p>x", -1),
    (b"<html><head>" + b"x" * 70000 + b"</head><body></body></html>", -1),  # past 64 KB
])
def test_where_the_head_ends(body: bytes, expected: int) -> None:
    from flask_consentkit.banner import _head_end

    assert _head_end(body, insertion_point(body)) == expected
