"""Visitor inputs at the edges of what servers and proxies pass on: a query string of
raw bytes, a script root from a proxy's header, a media type in capitals, the ``DNT``
signal. Each answers as documented, never a 500, and says in ``Vary`` what it read."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_consentkit import ConsentKit

from .conftest import SECRET, make_app

GEO = str(Path(__file__).parent / "testdata" / "GeoIP2-City-Test.mmdb")
CALIFORNIA = {"REMOTE_ADDR": "214.78.120.5"}  # US-CA in MaxMind's test database
TRACKER = "https://www.google-analytics.com/analytics.js"
PAGE = ('<!doctype html><html><head><title>t</title>'
        f'<script src="{TRACKER}"></script></head>'
        '<body><iframe src="https://www.youtube.com/embed/x" title="v"></iframe></body></html>')


def page_app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True, CONSENTKIT_LEDGER_URL=None, **config)
    ConsentKit(app)

    @app.get("/")
    def index() -> str:
        return PAGE

    @app.get("/capitals")
    def capitals() -> tuple[str, dict[str, str]]:
        return PAGE, {"Content-Type": "Text/HTML; Charset=UTF-8"}

    return app


# -- a query string of raw bytes (PEP 3333: latin-1 decoded; werkzeug cannot read it)

@pytest.mark.parametrize("query", ["lang=\xff", "q=\xe9%20", "next=%2F&\xff=1"])
def test_a_page_with_a_query_of_raw_bytes_gets_its_banner_not_a_500(query):
    client = make_app().test_client()
    response = client.get("/", environ_overrides={"QUERY_STRING": query})
    assert response.status_code == 200
    assert b'id="consentkit-banner"' in response.data


@pytest.mark.parametrize("path", ["/consent/", "/consent/notice", "/consent/opt-out"])
def test_the_extensions_pages_answer_400_to_a_query_of_raw_bytes(path):
    client = make_app().test_client()
    response = client.get(path, environ_overrides={"QUERY_STRING": "next=\xe9"})
    assert response.status_code == 400
    assert b"not valid UTF-8" in response.data
    assert client.get(path, query_string={"next": "/caf\u00e9"}).status_code == 200


# -- the script root, from a proxy's X-Forwarded-Prefix, in the policy's report URL

def behind_proxy() -> Flask:
    app = make_app()
    app.wsgi_app = ProxyFix(app.wsgi_app, x_prefix=1)  # type: ignore[method-assign]
    return app


def test_a_script_root_cannot_add_directives_to_the_policy():
    client = behind_proxy().test_client()
    prefix = "/x; script-src * 'unsafe-inline'; y"
    response = client.get("/", headers={"X-Forwarded-Prefix": prefix})
    policy = response.headers["Content-Security-Policy"]
    directives = [d.split()[0] for d in policy.split(";")]
    assert directives == ["default-src", "report-uri", "report-to"]
    assert "report-uri /x%3B%20script-src%20*%20%27unsafe-inline%27%3B%20y/consent/csp-report" \
        in policy
    endpoints = response.headers["Reporting-Endpoints"]
    assert endpoints.count('"') == 2 and endpoints.endswith('/consent/csp-report"')


def test_a_script_root_with_a_space_gives_a_report_url_the_browser_can_post_to():
    client = behind_proxy().test_client()
    response = client.get("/", headers={"X-Forwarded-Prefix": "/my app"})
    assert "report-uri /my%20app/consent/csp-report;" in response.headers["Content-Security-Policy"]
    endpoints = response.headers["Reporting-Endpoints"]
    assert endpoints == 'consentkit-csp="/my%20app/consent/csp-report"'
    plain = client.get("/", headers={"X-Forwarded-Prefix": "/shop"})
    assert "report-uri /shop/consent/csp-report;" in plain.headers["Content-Security-Policy"]


# -- a media type written in capitals is the same media type (RFC 9110, 8.3.1)

def test_a_page_whose_media_type_is_in_capitals_is_gated_and_gets_the_banner():
    response = page_app(CONSENTKIT_CSP="report-only").test_client().get("/capitals")
    body = response.get_data(as_text=True)
    assert f'<script src="{TRACKER}">' not in body
    assert 'id="consentkit-banner"' in body


# -- DNT, when honoured, is named in Vary wherever it changed the response

def test_a_page_and_the_state_vary_by_dnt_when_it_is_honoured():
    app = page_app(CONSENTKIT_HONOR_DNT=True, CONSENTKIT_SERVICES=["youtube"])
    client = app.test_client()
    plain, with_dnt = client.get("/"), client.get("/", headers={"DNT": "1"})
    assert plain.data != with_dnt.data  # "Accept all" keeps marketing off under DNT
    for response in (plain, with_dnt, client.get("/consent/state")):
        assert "DNT" in [v.strip() for v in response.headers["Vary"].split(",")]
    unhonoured = page_app().test_client().get("/")
    assert "DNT" not in unhonoured.headers["Vary"]


def test_under_the_opt_out_model_a_page_without_banner_varies_by_the_signals():
    app = page_app(CONSENTKIT_HONOR_DNT=True, CONSENTKIT_SERVICES=["youtube"],
                   CONSENTKIT_GEOIP_DATABASE=GEO,
                   CONSENTKIT_REGIONS={"US-CA": {"preset": "us-ca", "model": "opt-out"},
                                       "*": "opt-in"})

    @app.get("/frame")
    def frame() -> str:  # a fragment: no banner, but the rewrite reads the default state
        return '<iframe src="https://www.youtube.com/embed/x" title="v"></iframe>'

    client = app.test_client()
    plain = client.get("/frame", environ_base=CALIFORNIA)
    with_dnt = client.get("/frame", headers={"DNT": "1"}, environ_base=CALIFORNIA)
    assert b'<iframe src="https://www.youtube.com/embed/x"' in plain.data
    assert b'<iframe src="https://www.youtube.com/embed/x"' not in with_dnt.data
    for response in (plain, with_dnt):
        vary = [v.strip() for v in response.headers["Vary"].split(",")]
        assert {"Sec-GPC", "DNT", "Cookie"} <= set(vary)
