"""Google Consent Mode v2 defaults from the visitor's current state."""

from __future__ import annotations

import json
import re

import pytest
from flask import g, render_template_string

from flask_consentkit import ConsentConfigError, ConsentKit
from flask_consentkit.extension import get_kit_state

from .conftest import SAME_ORIGIN, make_app

TYPES = {"ad_storage", "ad_user_data", "ad_personalization", "analytics_storage",
         "functionality_storage", "personalization_storage", "security_storage"}


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)

    @app.get("/tagged")
    def tagged() -> str:
        return render_template_string(
            "<!doctype html><head>{{ consent_mode_defaults() }}</head><body></body>")

    return app


def defaults(html: str) -> dict[str, str]:
    m = re.search(r"gtag\('consent','default',(\{.*?\})\);", html)
    assert m is not None, html
    return json.loads(m.group(1))


def test_undecided_visitor_gets_everything_denied_but_security(client):
    html = client.get("/tagged").get_data(as_text=True)
    values = defaults(html)
    assert set(values) == TYPES
    assert {k for k, v in values.items() if v == "granted"} == {"security_storage"}
    assert "wait_for_update" not in html
    assert "gtag('set','ads_data_redaction',true);" in html


def test_returning_visitor_state_is_known_before_any_tag(client):
    client.post("/consent/", json={"action": "save", "categories": ["analytics"]},
                headers=SAME_ORIGIN)
    values = defaults(client.get("/tagged").get_data(as_text=True))
    assert values["analytics_storage"] == "granted"
    assert values["ad_storage"] == values["ad_user_data"] == "denied"
    client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    html = client.get("/tagged").get_data(as_text=True)
    assert set(defaults(html).values()) == {"granted"}
    assert "ads_data_redaction" not in html


def test_defaults_script_runs_and_is_never_neutralised(client):
    html = client.get("/tagged").get_data(as_text=True)
    tag = re.search(r"<script[^>]*>", html).group()
    assert 'type="text/plain"' not in tag and 'data-consent="necessary"' in tag


def test_defaults_carry_the_csp_nonce(app):
    with app.test_request_context("/"):
        g.csp_nonce = "abc123"
        html = render_template_string("{{ consent_mode_defaults() }}")
    assert html.startswith('<script nonce="abc123" data-consent="necessary"')


def test_nonce_getter_of_the_extension_is_used(tmp_path):
    from flask import Flask

    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, CONSENTKIT_LEDGER_URL=None)
    ConsentKit(app, nonce_getter=lambda: 'n"1')
    with app.test_request_context("/"):
        html = render_template_string("{{ consent_mode_defaults() }}")
    assert html.startswith('<script nonce="n&#34;1"')


def test_mapping_is_configurable_and_shared_with_the_banner(tmp_path):
    mapping = {"analytics": ["analytics_storage", "ad_user_data"], "performance":
               ["analytics_storage"]}
    app = make_app(tmp_path, CONSENTKIT_CONSENT_MODE=mapping)
    assert get_kit_state(app).consent_mode == mapping
    client = app.test_client()
    client.post("/consent/", json={"action": "save", "categories": ["analytics"]},
                headers=SAME_ORIGIN)
    with app.test_request_context("/", headers={"Cookie": _cookie(client)}):
        html = render_template_string("{{ consent_mode_defaults() }}")
    values = defaults(html)
    # analytics_storage needs both analytics and performance: fail closed
    assert values["analytics_storage"] == "denied"
    assert values["ad_user_data"] == "granted"
    assert values["security_storage"] == "denied"  # not mapped any more
    assert "data-consentkit-consent-mode=" in html


def _cookie(client) -> str:
    cookie = client.get_cookie("consentkit")
    return f"consentkit={cookie.value}"


def test_default_mapping_drops_categories_the_app_does_not_have(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_CATEGORIES=["necessary", "analytics"],
                   CONSENTKIT_COLLECTION_RULES={"user_agent": "analytics"})
    assert get_kit_state(app).consent_mode == {
        "necessary": ["security_storage"], "analytics": ["analytics_storage"]}


@pytest.mark.parametrize(("value", "message"), [
    (["analytics_storage"], "must map a category"),
    ({"statistics": ["analytics_storage"]}, "unknown category 'statistics'"),
    ({"analytics": "analytics_storage"}, "must be a list"),
    ({"analytics": ["analytics_cookies"]}, "not a Consent Mode v2 type"),
])
def test_bad_mapping_is_refused_with_the_fix(tmp_path, value, message):
    with pytest.raises(ConsentConfigError, match=message):
        make_app(tmp_path, CONSENTKIT_CONSENT_MODE=value)
