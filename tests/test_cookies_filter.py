"""Cookies the app sets are filtered by consent and expired on withdrawal."""

from __future__ import annotations

import logging

import pytest
from flask import Response, jsonify

from flask_consentkit import ConsentConfigError

from .conftest import SAME_ORIGIN, make_app

COOKIES = {"analytics": ["_sf_visit", "_ga", "_ga_*"], "functional": ["sf_theme"]}
SERVICES = [{"name": "Pixel", "category": "marketing", "cookies": ["_fbp", "_fbc"]}]


def set_cookies(response: Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.getlist("Set-Cookie")}


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_COOKIES=COOKIES, CONSENTKIT_SERVICES=SERVICES,
                   CONSENTKIT_COOKIE_DOMAINS=[".storyforge.example"],
                   CONSENTKIT_COOKIE_PATHS=["/", "/stories"])

    @app.get("/set")
    def set_view() -> Response:
        response = jsonify(ok=True)
        response.set_cookie("_sf_visit", "v1", httponly=True)
        response.set_cookie("_ga_ABC123", "GA1.1")
        response.set_cookie("_fbp", "fb.1")
        response.set_cookie("sf_theme", "dark")
        response.set_cookie("session_id", "s1", httponly=True)
        response.delete_cookie("_ga")
        return response

    return app


def test_undeclared_and_necessary_cookies_pass_undecided(client):
    cookies = set_cookies(client.get("/set"))
    assert set(cookies) == {"session_id", "_ga"}  # _ga is being deleted: always allowed
    assert "Max-Age=0" in cookies["_ga"] or "Expires=Thu, 01 Jan 1970" in cookies["_ga"]


def test_only_granted_categories_keep_their_cookies(client):
    client.post("/consent/", json={"action": "save", "categories": ["analytics"]},
                headers=SAME_ORIGIN)
    cookies = set_cookies(client.get("/set"))
    assert set(cookies) == {"_sf_visit", "_ga_ABC123", "session_id", "_ga"}
    assert "HttpOnly" in cookies["_sf_visit"]


def test_accept_all_keeps_every_cookie(client):
    client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    assert set(set_cookies(client.get("/set"))) == {
        "_sf_visit", "_ga_ABC123", "_fbp", "sf_theme", "session_id", "_ga"}


def test_filtered_response_varies_on_cookie(client):
    assert "Cookie" in client.get("/set").headers["Vary"]


def test_removed_cookie_is_logged_once(client, caplog):
    with caplog.at_level(logging.WARNING, "flask_consentkit.gating"):
        client.get("/set")
        client.get("/set")
    visit = [r for r in caplog.records if "'_sf_visit'" in r.getMessage()]
    assert len(visit) == 1 and "'analytics'" in visit[0].getMessage()


def test_the_consent_cookie_itself_is_never_filtered(client):
    response = client.post("/consent/", json={"action": "reject_all"}, headers=SAME_ORIGIN)
    assert "consentkit" in set_cookies(response)


def _expired(response: Response) -> list[tuple[str, str, str | None]]:
    """(name, path, domain) of every cookie the response expires."""
    out = []
    for header in response.headers.getlist("Set-Cookie"):
        parts = [p.strip() for p in header.split(";")]
        name = parts[0].split("=", 1)[0]
        attrs = {p.split("=", 1)[0].lower(): (p.split("=", 1) + [""])[1] for p in parts[1:]}
        if attrs.get("max-age") == "0" or "1970" in attrs.get("expires", ""):
            out.append((name, attrs.get("path", ""), attrs.get("domain")))
    return out


def test_withdrawal_expires_the_categorys_cookies_the_browser_sent(client):
    client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    for name in ("_sf_visit", "_ga", "_ga_ABC123", "_fbp", "sf_theme", "session_id", "other"):
        client.set_cookie(name, "x")
    response = client.post("/consent/", json={"action": "save", "categories": ["functional"]},
                           headers=SAME_ORIGIN)
    expired = _expired(response)
    names = {e[0] for e in expired}
    # the prefix matched what was sent; exact names are expired even when not sent (_fbc)
    assert names == {"_sf_visit", "_ga", "_ga_ABC123", "_fbp", "_fbc"}
    # on every configured path, host-only and on the configured domain
    assert {e for e in expired if e[0] == "_sf_visit"} == {
        ("_sf_visit", "/", None), ("_sf_visit", "/", "storyforge.example"),
        ("_sf_visit", "/stories", None), ("_sf_visit", "/stories", "storyforge.example"),
    }
    # and the browser really forgets them, HttpOnly ones included
    assert client.get_cookie("_sf_visit") is None
    assert client.get_cookie("_fbp") is None
    assert client.get_cookie("sf_theme") is not None and client.get_cookie("other") is not None


def test_cookie_on_another_path_is_expired_by_name(client):
    client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    client.set_cookie("_sf_visit", "x", path="/stories")
    response = client.post("/consent/", json={"action": "reject_all"}, headers=SAME_ORIGIN)
    assert ("_sf_visit", "/stories", None) in _expired(response)
    assert client.get_cookie("_sf_visit", path="/stories") is None


def test_no_withdrawal_no_expiry(client):
    client.set_cookie("_sf_visit", "x")
    response = client.post("/consent/", json={"action": "reject_all"}, headers=SAME_ORIGIN)
    # a first decision withdraws nothing: the cookie was never allowed (and is left to expire)
    assert _expired(response) == []


def test_host_prefixed_cookie_is_expired_securely(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_COOKIES={"analytics": ["__Host-sf"]})
    client = app.test_client()
    client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    client.set_cookie("__Host-sf", "x")
    response = client.post("/consent/", json={"action": "reject_all"}, headers=SAME_ORIGIN)
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("__Host-"))
    assert "Secure" in header and "Path=/" in header and "Domain" not in header


@pytest.mark.parametrize(("value", "message"), [
    ("/", "list of strings"),
    ([], "at least one path"),
    (["stories"], "not a cookie path"),
    (["/a;b"], "not a cookie path"),
])
def test_bad_cookie_paths_are_refused(tmp_path, value, message):
    with pytest.raises(ConsentConfigError, match=message):
        make_app(tmp_path, CONSENTKIT_COOKIE_PATHS=value)



# -- cookies nobody declared: the vendor catalogue and the known-cookie table ------------

#: what GA4, the Meta pixel, Yandex Metrica and Hotjar write on the site (none declared)
VENDOR = ("_ga", "_ga_X", "_gid", "_fbp", "_ym_uid", "_hjSessionUser_1")
#: never touched: the consent, language and session cookies, the app's own unknown
#: cookie, generic names the table files under some vendor's own domain, and a
#: "functional" name of the table that is a common platform's session cookie
KEPT = ("consentkit", "consentkit_lang", "session", "theme", "token", "locale", "PHPSESSID")


@pytest.fixture
def bare(tmp_path):
    """The README's quick start: nothing declared."""
    app = make_app(tmp_path)
    app.config["SERVER_NAME"] = None
    return app


def _send(client, names, domain="localhost"):
    for name in names:
        if name != "consentkit":
            client.set_cookie(name, "x", domain=domain)


def test_withdrawal_expires_undeclared_cookies_the_catalogue_and_table_know(bare):
    client = bare.test_client()
    client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    _send(client, VENDOR + KEPT)
    response = client.post("/consent/", json={"action": "reject_all"}, headers=SAME_ORIGIN)
    expired = {e[0] for e in _expired(response)}
    assert expired == set(VENDOR)
    for name in VENDOR:
        assert client.get_cookie(name) is None, name
    for name in KEPT:
        assert client.get_cookie(name) is not None, name


def test_a_category_still_granted_keeps_its_cookies(bare):
    client = bare.test_client()
    client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    _send(client, VENDOR)
    response = client.post("/consent/", json={"action": "save", "categories": ["marketing"]},
                           headers=SAME_ORIGIN)
    expired = {e[0] for e in _expired(response)}
    assert expired == set(VENDOR) - {"_fbp"}  # the Meta pixel is marketing, still granted
    assert client.get_cookie("_fbp") is not None


def test_a_declaration_wins_over_the_catalogue(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_COOKIES={"necessary": ["_ym_uid"],
                                                 "functional": ["_gid"]})
    client = app.test_client()
    client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    _send(client, VENDOR)
    response = client.post("/consent/", json={"action": "save", "categories": ["functional"]},
                           headers=SAME_ORIGIN)
    expired = {e[0] for e in _expired(response)}
    assert "_ym_uid" not in expired  # declared necessary: never expired
    assert "_gid" not in expired  # declared functional, which is still granted
    assert {"_ga", "_ga_X", "_fbp", "_hjSessionUser_1"} <= expired


def test_erasure_expires_the_cookies_of_every_category_granted(bare):
    client = bare.test_client()
    client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    _send(client, VENDOR + ("theme",))
    response = client.post("/consent/erase", headers=SAME_ORIGIN)
    assert {e[0] for e in _expired(response)} >= set(VENDOR)
    assert all(client.get_cookie(name) is None for name in VENDOR)
    assert client.get_cookie("theme") is not None


def test_undeclared_cookies_are_expired_on_the_host_and_its_parent_domains(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_COOKIE_DOMAINS=[".cdn.example.org"])
    client = app.test_client()
    site = "http://www.shop.example.com"
    origin = {"Origin": site}
    client.post(f"{site}/consent/", json={"action": "accept_all"}, headers=origin)
    client.set_cookie("_ga", "x", domain="www.shop.example.com")
    response = client.post(f"{site}/consent/", json={"action": "reject_all"}, headers=origin)
    assert {e for e in _expired(response) if e[0] == "_ga"} == {
        ("_ga", "/", None), ("_ga", "/", "cdn.example.org"), ("_ga", "/", "www.shop.example.com"),
        ("_ga", "/", "shop.example.com"), ("_ga", "/", "example.com"),
    }
    assert client.get_cookie("_ga", domain="www.shop.example.com") is None


def test_an_ip_host_gets_no_parent_domains(tmp_path):
    app = make_app(tmp_path)
    client = app.test_client()
    site = "http://127.0.0.1:5000"
    client.post(f"{site}/consent/", json={"action": "accept_all"}, headers={"Origin": site})
    client.set_cookie("_ga", "x", domain="127.0.0.1")
    response = client.post(f"{site}/consent/", json={"action": "reject_all"},
                           headers={"Origin": site})
    assert [e for e in _expired(response) if e[0] == "_ga"] == [("_ga", "/", None)]
