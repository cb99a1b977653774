"""POST /consent/, GET /consent/state and /consent/: forms, JSON, bad input, cross-site writes."""

from __future__ import annotations

import io

import pytest

from .conftest import make_app
from .helpers import SAME_ORIGIN, decide, state


def test_form_post_redirects_303_to_next(client):
    response = client.post("/consent/", data={"action": "accept_all", "next": "/story/x?a=1"},
                           headers=SAME_ORIGIN)
    assert response.status_code == 303
    assert response.headers["Location"] == "/story/x?a=1"
    assert state(client)["granted"] == [
        "analytics", "functional", "marketing", "necessary", "performance"]


def test_form_save_with_repeated_categories(client):
    response = client.post(
        "/consent/",
        data={"action": "save", "categories": ["analytics", "functional"], "next": "/"},
        headers=SAME_ORIGIN,
    )
    assert response.status_code == 303
    result = state(client)
    assert result["granted"] == ["analytics", "functional", "necessary"]
    assert result["source"] == "preferences"


def test_form_from_the_banner_records_its_source(client):
    client.post("/consent/", data={"action": "reject_all", "source": "banner"},
                headers=SAME_ORIGIN)
    assert state(client)["source"] == "banner"


def test_json_post_answers_with_the_new_state(client):
    response = decide(client, "save", categories=["performance", "necessary"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["granted"] == ["necessary", "performance"]
    assert body["decided"] is True and body["source"] == "api"
    assert body["expires_at"] > body["decided_at"]
    assert body == state(client)


def test_reject_all_grants_only_necessary(client):
    decide(client, "accept_all")
    decide(client, "reject_all")
    assert state(client)["granted"] == ["necessary"]
    assert state(client)["decided"] is True


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"json": {"action": "accept_some"}}, 400, "Unknown action"),
        ({"json": {"categories": ["analytics"]}}, 400, "Unknown action"),
        ({"json": {"action": "save", "categories": ["tracking"]}}, 400, "Unknown category"),
        ({"json": {"action": "save", "categories": "analytics"}}, 400, "list of category"),
        ({"json": {"action": "save", "categories": [1]}}, 400, "list of category"),
        ({"json": ["accept_all"]}, 400, "JSON object"),
        ({"json": {"action": "save", "source": "x"}}, 400, "Unknown source"),
        ({"data": "{not json", "content_type": "application/json"}, 400, "not valid JSON"),
        ({"data": b"\xff\xfe", "content_type": "application/json"}, 400, "not valid JSON"),
        ({"data": "action=accept_all", "content_type": "text/plain"}, 400, "form"),
        ({"data": {"action": "delete_everything"}}, 400, "Unknown action"),
        ({"data": {"action": "save", "categories": ["x" * 300]}}, 400, "Unknown category"),
        ({"data": {"action": "save", "categories": ["a"] * 2000}}, 413, "at most 4096 bytes"),
        ({"json": {"action": "save", "categories": ["analytics"] * 1000}}, 413, "at most"),
        ({"data": "x=" + "y" * 5000, "content_type": "application/x-www-form-urlencoded"},
         413, "at most"),
    ],
)
def test_bad_input_is_a_clear_4xx(client, kwargs, status, message):
    response = client.post("/consent/", headers=SAME_ORIGIN, **kwargs)
    assert response.status_code == status
    text = response.get_data(as_text=True)
    assert message in text
    assert "Set-Cookie" not in response.headers
    assert state(client)["decided"] is False


def test_json_errors_are_json(client):
    response = decide(client, "nope")
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "Unknown action 'nope'; use one of: accept_all, reject_all, save.",
        "status": 400,
    }


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded",
                                          "application/json"])
def test_body_without_length_over_the_limit_is_413(client, content_type):
    body = io.BytesIO(b"action=save&" + b"x" * 10_000)
    response = client.post("/consent/", input_stream=body, headers={
        **SAME_ORIGIN, "Content-Type": content_type, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert state(client)["decided"] is False


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"},
        {"Origin": "https://evil.example"},
        {"Origin": "http://localhost.evil.example"},
        {"Origin": "http://localhost:8080"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
        {"Referer": "http://evil.example/http://localhost/"},
    ],
)
def test_cross_site_writes_are_refused(client, headers):
    for kwargs in ({"json": {"action": "accept_all"}},
                   {"data": {"action": "accept_all", "next": "/"}}):
        response = client.post("/consent/", headers=headers, **kwargs)
        assert response.status_code == 403
        assert "Set-Cookie" not in response.headers
    assert state(client)["decided"] is False


def test_https_write_without_origin_or_referer_is_refused(client):
    response = client.post("/consent/", json={"action": "accept_all"},
                           base_url="https://localhost")
    assert response.status_code == 403
    assert "Origin or Referer" in response.get_json()["error"]


def test_same_origin_writes_are_accepted(client):
    for headers in (
        {"Origin": "http://localhost"},
        {"Origin": "HTTP://LOCALHOST"},
        {"Referer": "http://localhost/story/a"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
        {},  # plain HTTP, no Origin or Referer (old browsers, privacy tools)
    ):
        assert decide_with(client, headers).status_code == 200


def decide_with(client, headers):
    return client.post("/consent/", json={"action": "reject_all"}, headers=headers)


def test_trusted_origins_may_write(tmp_path):
    client = make_app(tmp_path, CONSENTKIT_TRUSTED_ORIGINS=["https://www.example.com"]
                      ).test_client()
    assert decide_with(client, {"Origin": "https://www.example.com"}).status_code == 200
    assert decide_with(client, {"Origin": "https://example.com"}).status_code == 403


@pytest.mark.parametrize(
    "next_url",
    [
        "//evil.com",
        "/\\evil.com",
        "\\\\evil.com",
        "https:evil.com",
        "https://evil.com/",
        "%2F%2Fevil.com",
        "/%2F/evil.com",
        "/%5Cevil.com",
        "javascript:alert(1)",
        "/path\r\nSet-Cookie: x=1",
        "/path\nLocation: //evil.com",
        "/%0d%0aSet-Cookie:x=1",
        "evil.com",
        "",
        " /x",
        "/\tevil",
    ],
)
def test_unsafe_next_falls_back_to_root(client, next_url):
    response = client.post("/consent/", data={"action": "accept_all", "next": next_url},
                           headers=SAME_ORIGIN)
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


def test_non_ascii_next_is_encoded(client):
    response = client.post("/consent/", data={"action": "reject_all", "next": "/hekayə/ü"},
                           headers=SAME_ORIGIN)
    assert response.headers["Location"] == "/hekay%C9%99/%C3%BC"


def test_preferences_page_is_served(client):
    response = client.get("/consent/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert b'name="action"' in response.data


def test_gpc_json(client):
    response = client.get("/.well-known/gpc.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {"gpc": True, "lastUpdate": "2026-11-01"}


def test_url_prefix_moves_the_endpoints(tmp_path):
    client = make_app(tmp_path, CONSENTKIT_URL_PREFIX="/privacy/cookies/").test_client()
    assert client.get("/privacy/cookies/state").status_code == 200
    response = client.post("/privacy/cookies/", json={"action": "accept_all"},
                           headers=SAME_ORIGIN)
    assert response.status_code == 200
    assert client.get("/consent/state").status_code == 404


def test_other_methods_are_405(client):
    assert client.put("/consent/", json={"action": "accept_all"}).status_code == 405
    assert client.delete("/consent/").status_code == 405
    assert client.post("/consent/state").status_code == 405
