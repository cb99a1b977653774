"""The browser's policy: one Content-Security-Policy per set of granted categories."""

from __future__ import annotations

import logging
import time

import pytest
from flask import Response

from flask_consentkit import ConsentConfigError
from flask_consentkit.csp import filter_link_header, split_link_header
from flask_consentkit.urls import network_target

from .conftest import make_app
from .helpers import decide, forge, payload

CDN = {"name": "Our CDN", "category": "necessary", "hosts": ["cdn.example-own.net"]}
STATS = {"name": "Stats", "category": "analytics", "hosts": ["*.stats.example.org"]}
ADS = {"name": "Ads", "category": "marketing", "hosts": ["ads.example.com/px/"]}


def policy(response: Response, header: str = "Content-Security-Policy") -> str:
    values = response.headers.getlist(header)
    assert len(values) == 1, values
    return values[0]


def sources(value: str) -> list[str]:
    (default,) = [d for d in value.split(";") if d.strip().startswith("default-src ")]
    return default.split()[1:]


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path, CONSENTKIT_SERVICES=[CDN, STATS, ADS])


def test_an_undecided_visitor_may_reach_only_the_site_and_necessary_hosts(app):
    response = app.test_client().get("/")
    value = policy(response)
    assert sources(value) == ["'self'", "'unsafe-inline'", "'unsafe-eval'",
                              "'wasm-unsafe-eval'", "data:", "blob:", "cdn.example-own.net"]
    assert "report-uri /consent/csp-report" in value
    assert "report-to consentkit-csp" in value
    assert response.headers["Reporting-Endpoints"] == 'consentkit-csp="/consent/csp-report"'
    assert "Cookie" in response.vary


def test_granted_categories_add_their_declared_and_catalogue_hosts(app):
    client = app.test_client()
    decide(client, "save", categories=["analytics"])
    allowed = sources(policy(client.get("/")))
    assert "*.stats.example.org" in allowed and "cdn.example-own.net" in allowed
    assert "ads.example.com/px/" not in allowed
    # an undeclared catalogue vendor follows its catalogue category
    assert "*.google-analytics.com" in allowed  # google-analytics: analytics
    assert "*.youtube.com" not in allowed  # youtube: marketing
    decide(client, "accept_all")
    allowed = sources(policy(client.get("/")))
    assert {"ads.example.com/px/", "*.youtube.com", "*.stats.example.org"} <= set(allowed)


def test_the_google_tag_loader_serves_analytics_or_marketing(app):
    client = app.test_client()
    assert "www.googletagmanager.com" not in sources(policy(client.get("/")))
    for granted in (["analytics"], ["marketing"]):
        decide(client, "save", categories=granted)
        assert "www.googletagmanager.com" in sources(policy(client.get("/")))
    decide(client, "save", categories=["analytics"])
    allowed = sources(policy(client.get("/")))
    assert "googleads.g.doubleclick.net" not in " ".join(allowed)  # ads hosts: marketing


@pytest.mark.parametrize("cookie", [
    "not-a-token",
    forge(payload(g=["analytics", "marketing"]))[:-2] + "xx",
    forge(payload(g=["analytics"], t=int(time.time()) - 200 * 86400),
          signed_at=time.time() - 200 * 86400),
    forge(payload(g=["analytics"], v="0")),
], ids=["malformed", "tampered", "expired", "other-policy"])
def test_a_bad_cookie_means_necessary_only(app, cookie):
    client = app.test_client()
    client.set_cookie("consentkit", cookie)
    assert sources(policy(client.get("/")))[6:] == ["cdn.example-own.net"]


def test_non_html_responses_get_no_policy(app):
    response = app.test_client().get("/api")
    assert "Content-Security-Policy" not in response.headers


def test_report_only_sends_the_same_policy_under_the_report_only_header(tmp_path):
    enforce = make_app(tmp_path, CONSENTKIT_SERVICES=[CDN]).test_client().get("/")
    report = make_app(tmp_path, CONSENTKIT_SERVICES=[CDN], CONSENTKIT_CSP="report-only") \
        .test_client().get("/")
    assert "Content-Security-Policy" not in report.headers
    assert policy(report, "Content-Security-Policy-Report-Only") == policy(enforce)


def test_csp_false_sends_no_policy(tmp_path):
    response = make_app(tmp_path, CONSENTKIT_CSP=False).test_client().get("/")
    assert "Content-Security-Policy" not in response.headers
    assert "Reporting-Endpoints" not in response.headers


@pytest.mark.parametrize("value", [True, "yes", "Enforce", 0, None, ["enforce"]])
def test_a_wrong_mode_is_a_config_error(tmp_path, value):
    with pytest.raises(ConsentConfigError, match="CONSENTKIT_CSP.*'report-only'"):
        make_app(tmp_path, CONSENTKIT_CSP=value)


def test_the_apps_own_policy_stays_even_when_set_after_ours(tmp_path):
    app = make_app(tmp_path)

    @app.after_request
    def own_policy(response: Response) -> Response:
        # as Flask-Talisman does: it *sets* the header, replacing any of that name
        response.headers["Content-Security-Policy"] = "script-src 'nonce-abc'"
        return response

    values = app.test_client().get("/").headers.getlist("Content-Security-Policy")
    assert values[0] == "script-src 'nonce-abc'"
    assert values[1].startswith("default-src 'self'")


def test_the_header_is_built_once_per_set_of_granted_categories(app):
    policy_ = app.extensions["consentkit"].policy
    first = policy_.value(frozenset({"necessary", "analytics"}))
    assert policy_.value(frozenset({"necessary", "analytics"})) is first
    assert policy_.value(frozenset({"necessary"})) != first


def test_the_report_path_follows_the_script_root(app):
    response = app.test_client().get("/", environ_overrides={"SCRIPT_NAME": "/app"})
    assert "report-uri /app/consent/csp-report" in policy(response)
    assert response.headers["Reporting-Endpoints"] == 'consentkit-csp="/app/consent/csp-report"'


# -- Link headers -------------------------------------------------------------------


def test_link_headers_to_hosts_the_visitor_does_not_allow_are_dropped(app):
    @app.get("/hinted")
    def hinted() -> Response:
        response = Response("<!doctype html><p>x</p>", mimetype="text/html")
        response.headers.add("Link", "<https://www.youtube.com>; rel=preconnect, "
                                     "</static/a.css>; rel=preload; as=style")
        response.headers.add("Link", '<https://cdn.example-own.net/f.woff2>; rel="preload"; '
                                     "as=font, <https://unknown.example/x>; rel=dns-prefetch")
        response.headers.add("Link", "<https://other.example/page>; rel=canonical")
        return response

    client = app.test_client()
    links = client.get("/hinted").headers.getlist("Link")
    assert links == ["</static/a.css>; rel=preload; as=style",
                     '<https://cdn.example-own.net/f.woff2>; rel="preload"; as=font',
                     "<https://other.example/page>; rel=canonical"]
    decide(client, "accept_all")
    links = client.get("/hinted").headers.getlist("Link")
    assert "<https://www.youtube.com>; rel=preconnect" in links[0]
    assert not any("unknown.example" in link for link in links)  # allowed for nobody


def test_link_header_parsing_keeps_commas_inside_urls_and_quotes():
    assert split_link_header('<https://a.example/x,y>; rel="preload a,b", <b>; rel=x') == [
        '<https://a.example/x,y>; rel="preload a,b"', "<b>; rel=x"]
    value = "<https://t.example/x>; rel=PreConnect"
    assert filter_link_header(value, lambda target: False, "http://localhost/") is None


# -- URLs read as a browser reads them ---------------------------------------------


@pytest.mark.parametrize("url", [
    "https://www.googletagmanager.com/gtm.js",
    "https://www.googletagmanager%2Ecom/gtm.js",
    "https://www.googletagmanager.com./gtm.js",
    "https://www.googletagmanager.com:443/gtm.js",
    "https:\\\\www.googletagmanager.com\\gtm.js",
    "//www.google\ttagmanager.com/gtm.js".replace("google\t", "google"),
    "  //WWW.GoogleTagManager.COM/gtm.js",
    "https://www.googletag\nmanager.com/gtm.js",
])
def test_urls_are_read_as_a_browser_reads_them(url):
    target = network_target(url, "http://localhost/page")
    assert target is not None and target.host == "www.googletagmanager.com"
    assert target.path == "/gtm.js"


@pytest.mark.parametrize("url", ["/static/a.js", "a.js", "data:text/plain,x", "blob:x",
                                 "javascript:alert(1)", "http://localhost/x", "about:blank",
                                 "http://[::1"])
def test_urls_that_stay_on_the_page_are_not_targets(url):
    assert network_target(url, "http://localhost/page") is None


# -- undeclared hosts --------------------------------------------------------------


def test_each_undeclared_host_is_logged_once_with_the_line_that_declares_it(app, caplog):
    seen = app.extensions["consentkit"].undeclared_hosts
    with caplog.at_level(logging.WARNING, "flask_consentkit.csp"):
        seen.saw("www.youtube.com", "/story", "embeds a frame from")
        seen.saw("www.youtube.com", "/other", "embeds a frame from")
        seen.saw("cdn.unknown-vendor.example", "/story", "loads a script from")
        seen.saw("cdn.example-own.net", "/story", "loads a script from")  # declared
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "www.youtube.com" in messages[0] and "/story" in messages[0]
    assert "(marketing)" in messages[0] and "YouTube" in messages[0]
    assert 'CONSENTKIT_SERVICES = [..., "youtube"]' in messages[0]
    assert "cdn.unknown-vendor.example" in messages[1]
    assert '"hosts": ["cdn.unknown-vendor.example"]' in messages[1]
