"""The small response helpers every processor shares: what they tell apart."""

from __future__ import annotations

import pytest
from flask import Flask, Response, jsonify

from flask_consentkit.responses import (
    add_vary,
    content_type_and_cookies,
    first_header,
    is_document_type,
)


@pytest.mark.parametrize(("content_type", "document"), [
    ("text/html; charset=utf-8", True),
    ("text/html", True),
    ("TEXT/HTML; charset=ISO-8859-1", True),
    (" text/html ;charset=utf-8", True),
    ("application/xhtml+xml", True),
    ("image/svg+xml; charset=utf-8", True),
    ("image/svg+xml", True),
    ("application/json", False),
    ("application/json; charset=utf-8", False),
    ("text/plain; charset=utf-8", False),
    ("text/css; charset=utf-8", False),
    ("application/octet-stream", False),
    ("image/png", False),
    ("text/html-sandboxed", False),
    ("", False),
    (None, False),
])
def test_documents_are_told_from_other_answers(content_type: str | None, document: bool) -> None:
    assert is_document_type(content_type) is document


def test_flasks_own_answers_are_read_as_they_are_sent() -> None:
    app = Flask(__name__)
    with app.test_request_context():
        api = jsonify(ok=True)
        page = Response("<p>hi</p>", mimetype="text/html")
    assert content_type_and_cookies(api.headers) == ("application/json", False)
    assert not is_document_type(content_type_and_cookies(api.headers)[0])
    page.set_cookie("_ga", "1")
    assert content_type_and_cookies(page.headers) == ("text/html; charset=utf-8", True)
    assert is_document_type(content_type_and_cookies(page.headers)[0])


def test_header_names_are_matched_in_any_case() -> None:
    response = Response("x")
    response.headers.add("content-ENCODING", "gzip")
    response.headers.add("set-cookie", "a=1")
    assert first_header(response.headers, "Content-Encoding") == "gzip"
    assert first_header(response.headers, "Link") is None
    assert content_type_and_cookies(response.headers)[1] is True


def test_vary_keeps_what_was_there_and_adds_each_token_once() -> None:
    fresh = Response("x")
    add_vary(fresh, "Accept-Language", "Cookie", "Cookie")
    assert fresh.headers.getlist("Vary") == ["Accept-Language, Cookie"]
    assert ("Vary", "Accept-Language, Cookie") in list(fresh.headers.items())  # as spelt
    existing = Response("x", headers={"Vary": "Origin, cookie"})
    add_vary(existing, "Cookie", "Sec-GPC")
    assert existing.headers.getlist("Vary") == ["Origin, cookie, Sec-GPC"]


def test_each_set_of_tokens_gets_its_own_vary_value_however_often_asked() -> None:
    values = []
    for tokens in [("Cookie",), ("Accept-Language",), ("Cookie", "Accept-Language"),
                   ("Accept-Language", "Cookie"), ("Cookie",), ("Cookie", "Cookie")]:
        response = Response("x")
        add_vary(response, *tokens)
        values.append(response.headers["Vary"])
    assert values == ["Cookie", "Accept-Language", "Cookie, Accept-Language",
                      "Accept-Language, Cookie", "Cookie", "Cookie"]
