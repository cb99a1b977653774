"""Values that would only break later — a 500, a lost receipt, a cookie gone wrong — are
refused at ``init_app``, naming the key and the fix."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from flask import Flask, session

from flask_consentkit import ConsentConfigError
from flask_consentkit.cli import cli

from .conftest import SAME_ORIGIN, make_app


def refused(key: str, **config: object) -> str:
    """The message of the ConsentConfigError ``init_app`` raises for ``config``."""
    with pytest.raises(ConsentConfigError) as info:
        make_app(**config)
    assert info.value.key == key
    assert key in str(info.value)
    return str(info.value)


def test_a_choice_cannot_outlast_what_browsers_keep_a_cookie():
    message = refused("CONSENTKIT_MAX_AGE", CONSENTKIT_MAX_AGE=10**12)
    assert "34560000 (400 days)" in message
    refused("CONSENTKIT_MAX_AGE", CONSENTKIT_MAX_AGE=400 * 86400 + 1)
    client = make_app(CONSENTKIT_MAX_AGE=400 * 86400).test_client()
    assert client.post("/consent/", json={"action": "accept_all"},
                       headers=SAME_ORIGIN).status_code == 200
    assert client.get("/consent/state").get_json()["decided"] is True


def test_retention_stays_within_the_calendar(tmp_path: Path):
    message = refused("CONSENTKIT_RETENTION_DAYS", CONSENTKIT_RETENTION_DAYS=10**7)
    assert "36500 (100 years)" in message
    app: Flask = make_app(tmp_path, CONSENTKIT_RETENTION_DAYS=36500,
                          CONSENTKIT_LEDGER_URL=f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    app.test_client().post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    result = app.test_cli_runner().invoke(cli, ["prune"])
    assert result.exit_code == 0, result.output
    assert "deleted 0 receipt(s) older than 36500 days" in result.output


@pytest.mark.parametrize("prefix", ["/a<b>", "/a<int:b>", "/a>b"])
def test_a_url_prefix_cannot_hold_a_url_variable(prefix):
    message = refused("CONSENTKIT_URL_PREFIX", CONSENTKIT_URL_PREFIX=prefix)
    assert "'<'" in message and "such as '/consent'" in message


@pytest.mark.parametrize("domain", ["https://example.com", "a b;c", "x; Secure; Path=/evil", "",
                                    "example.com:8080", "-example.com", "example..com", "."])
def test_cookie_domains_are_domain_names(domain):
    message = refused("CONSENTKIT_COOKIE_DOMAINS", CONSENTKIT_COOKIE_DOMAINS=[domain])
    assert "'.cdn.example.org'" in message and "not a cookie domain" in message


def test_a_cookie_domain_expires_withdrawn_cookies_there():
    app = make_app(CONSENTKIT_COOKIE_DOMAINS=[".cdn.example.org", "Example.COM"],
                   CONSENTKIT_COOKIES={"analytics": ["_ga"]})
    client = app.test_client()
    client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    client.set_cookie("_ga", "1")
    response = client.post("/consent/", json={"action": "reject_all"}, headers=SAME_ORIGIN)
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("_ga=")]
    assert any("Domain=cdn.example.org" in h for h in headers)
    assert any("Domain=Example.COM" in h or "Domain=example.com" in h for h in headers)


SERVICE = {"name": "X", "hosts": ["a.example.com"]}


@pytest.mark.parametrize(("key", "value", "hint"), [
    ("CONSENTKIT_SERVICES", [{**SERVICE, "category": ["analytics"]}], "unknown category"),
    ("CONSENTKIT_SERVICES", [{**SERVICE, "category": "analytics", "countries": 5}],
     "must be a list of ISO 3166-1 codes"),
    ("CONSENTKIT_SERVICES", [{**SERVICE, "category": "analytics", "shared_with": 5}],
     "must be a list of category keys"),
    ("CONSENTKIT_SERVICES", [{**SERVICE, "category": "analytics",
                              "shared_with": [["marketing"]]}], "must be a list of category keys"),
    ("CONSENTKIT_COLLECTION_RULES", {"ip": ["analytics"]}, "one category key"),
    ("CONSENTKIT_RATELIMIT_STORAGE_URL", "redis://localhost:notaport", "the port a number"),
])
def test_values_of_the_wrong_shape_are_configuration_errors(key, value, hint):
    assert hint in refused(key, **{key: value})


@pytest.mark.parametrize(("code", "hint"), [("UK", "the United Kingdom is 'GB'"),
                                            ("XX", "not an ISO 3166-1 alpha-2 country code")])
def test_service_countries_are_iso_codes_the_rules_can_match(code, hint):
    service = {**SERVICE, "category": "analytics", "countries": ["US", code]}
    message = refused("CONSENTKIT_SERVICES", CONSENTKIT_SERVICES=[service],
                      CONSENTKIT_REGIONS={"DE": {"preset": "eu", "forbid_countries": ["UK"]}})
    assert hint in message and repr(code) in message
    app = make_app(CONSENTKIT_SERVICES=[{**service, "countries": ["GB", "EU"]}])
    assert app.extensions["consentkit"].settings.services[0].countries == ("GB", "EU")


def test_the_consent_cookie_is_not_the_session_cookie():
    message = refused("CONSENTKIT_COOKIE_NAME", CONSENTKIT_COOKIE_NAME="session")
    assert "Flask's session cookie (SESSION_COOKIE_NAME)" in message
    refused("CONSENTKIT_COOKIE_NAME", CONSENTKIT_COOKIE_NAME="consentkit",
            SESSION_COOKIE_NAME="consentkit")
    refused("CONSENTKIT_COOKIE_NAME", CONSENTKIT_COOKIE_NAME="s",
            CONSENTKIT_COOKIE_HOST_PREFIX=True, SESSION_COOKIE_NAME="__Host-s")
    # another name: the visitor stays logged in after consenting
    app = make_app(SESSION_COOKIE_NAME="sid")

    @app.get("/login")
    def login() -> str:
        session["user"] = "alice"
        return "ok"

    client = app.test_client()
    client.get("/login")
    client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    with client.session_transaction() as kept:
        assert kept["user"] == "alice"


@pytest.mark.parametrize("origin", ["https://*.example.com", "https://u:p@example.com",
                                    "https://example.com:port", "https://example.com?x=1"])
def test_trusted_origins_are_origins_a_browser_can_send(origin):
    message = refused("CONSENTKIT_TRUSTED_ORIGINS", CONSENTKIT_TRUSTED_ORIGINS=[origin])
    assert "an origin is scheme://host[:port]" in message
    client = make_app(CONSENTKIT_TRUSTED_ORIGINS=["https://shop.example.com"]).test_client()
    assert client.post("/consent/", json={"action": "accept_all"},
                       headers={"Origin": "https://shop.example.com"}).status_code == 200


@pytest.mark.parametrize("day", [20261101, "2026-W01-1", "20261101", "2026-11-01T00:00",
                                 datetime.datetime(2026, 11, 1)])
def test_the_gpc_last_update_is_a_day_as_the_spec_writes_it(day):
    message = refused("CONSENTKIT_GPC_LAST_UPDATE", CONSENTKIT_GPC_LAST_UPDATE=day)
    assert "'YYYY-MM-DD'" in message
    for given in ("2026-12-01", datetime.date(2026, 12, 1)):
        client = make_app(CONSENTKIT_GPC_LAST_UPDATE=given).test_client()
        assert client.get("/.well-known/gpc.json").get_json()["lastUpdate"] == "2026-12-01"
