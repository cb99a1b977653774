"""Vendors' consent defaults from the server: UET, Clarity, Meta and TikTok next to Google's."""

from __future__ import annotations

import json
import re

import pytest
from flask import g, render_template_string

from flask_consentkit.categories import Service
from flask_consentkit.gating.consent_mode import VENDOR_SIGNALS, _vendor_script
from flask_consentkit.state import ConsentState
from flask_consentkit.vendors import load_catalogue

from .conftest import SAME_ORIGIN, make_app

ALL = ["microsoft-uet", "microsoft-clarity", "meta-pixel", "tiktok-pixel"]


@pytest.fixture
def vendor_app(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_SERVICES=ALL)

    @app.get("/shop")
    def shop() -> str:
        return render_template_string(
            "<!doctype html><head>{{ vendor_consent_defaults() }}</head><body></body>")

    return app


def defaults(html: str) -> dict[str, object]:
    """Each vendor's default as the first response carries it (None: no stub)."""
    def find(pattern: str) -> object:
        m = re.search(pattern, html)
        return json.loads(m.group(1)) if m else None

    return {
        "google": find(r"gtag\('consent','default',(\{.*?\})\);"),
        "uet": find(r"w\.uetq\.push\('consent','default',(\{.*?\})\);"),
        "clarity": find(r"w\.clarity\('consentv2',(\{\"ad_Storage\".*?\})\);"),
        "meta": find(r"var M=\"[^\"]*\",fv=(\"\w+\")"),
        "tiktok": find(r"\bK\((\"\w+\")\);"),
    }


def test_every_signalled_vendor_is_in_the_catalogue():
    catalogue = load_catalogue()
    assert all(key in catalogue for key in VENDOR_SIGNALS)


def test_without_a_vendor_with_a_consent_api_only_googles_default_is_sent(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_SERVICES=["youtube", "google-analytics"])
    with app.test_request_context("/"):
        html = render_template_string("{{ vendor_consent_defaults() }}")
    found = defaults(html)
    assert found["google"] is not None
    assert [k for k, v in found.items() if v is not None] == ["google"]
    for name in ("uetq", "clarity", "fbq", "ttq", "consentkit:change"):
        assert name not in html


def test_only_the_vendors_the_app_declares_get_a_stub(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_SERVICES=["microsoft-clarity", "youtube"])
    with app.test_request_context("/"):
        html = render_template_string("{{ vendor_consent_defaults() }}")
    assert "uetq" not in html and "fbq" not in html and "ttq" not in html
    assert defaults(html)["clarity"] == {"ad_Storage": "denied", "analytics_Storage": "denied"}


def test_a_service_declared_as_a_mapping_with_the_catalogue_key_counts(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_SERVICES=[
        {"key": "meta-pixel", "purpose": "Ads on Instagram"}])
    with app.test_request_context("/"):
        html = render_template_string("{{ vendor_consent_defaults() }}")
    assert defaults(html)["meta"] == "revoke"


def test_a_catalogue_vendor_can_be_named_in_the_call(tmp_path):
    app = make_app(tmp_path)
    with app.test_request_context("/"):
        html = render_template_string("{{ vendor_consent_defaults('microsoft-uet') }}")
        assert defaults(html)["uet"] == {"ad_storage": "denied"}
        with pytest.raises(ValueError, match="not a vendor with a consent API"):
            render_template_string("{{ vendor_consent_defaults('linkedin-insight') }}")


def test_consent_mode_defaults_is_the_same_script(vendor_app):
    with vendor_app.test_request_context("/"):
        a = render_template_string("{{ consent_mode_defaults() }}")
        b = render_template_string("{{ vendor_consent_defaults() }}")
    assert a == b and "w.uetq" in a


@pytest.mark.parametrize(("choice", "expected"), [
    (None, {"uet": {"ad_storage": "denied"},
            "clarity": {"ad_Storage": "denied", "analytics_Storage": "denied"},
            "meta": "revoke", "tiktok": "holdConsent"}),
    ({"action": "reject_all"},
     {"uet": {"ad_storage": "denied"},
      "clarity": {"ad_Storage": "denied", "analytics_Storage": "denied"},
      "meta": "revoke", "tiktok": "revokeConsent"}),
    ({"action": "save", "categories": ["analytics"]},
     {"uet": {"ad_storage": "denied"},
      "clarity": {"ad_Storage": "denied", "analytics_Storage": "granted"},
      "meta": "revoke", "tiktok": "revokeConsent"}),
    ({"action": "save", "categories": ["marketing"]},
     {"uet": {"ad_storage": "granted"},
      "clarity": {"ad_Storage": "granted", "analytics_Storage": "denied"},
      "meta": "grant", "tiktok": "grantConsent"}),
    ({"action": "accept_all"},
     {"uet": {"ad_storage": "granted"},
      "clarity": {"ad_Storage": "granted", "analytics_Storage": "granted"},
      "meta": "grant", "tiktok": "grantConsent"}),
], ids=["undecided", "rejected", "analytics", "marketing", "accepted"])
def test_each_default_follows_the_visitors_state(vendor_app, choice, expected):
    client = vendor_app.test_client()
    if choice is not None:
        client.post("/consent/", json=choice, headers=SAME_ORIGIN)
    found = defaults(client.get("/shop").get_data(as_text=True))
    assert {k: found[k] for k in expected} == expected
    # the same mapping as Google's: UET's ad_storage is Google's ad_storage
    google = found["google"]
    assert isinstance(google, dict)
    assert google["ad_storage"] == expected["uet"]["ad_storage"]  # type: ignore[index]


def test_global_privacy_control_keeps_the_ad_signals_off(vendor_app):
    client = vendor_app.test_client()
    client.post("/consent/", json={"action": "accept_all"},
                headers={**SAME_ORIGIN, "Sec-GPC": "1"})
    found = defaults(client.get("/shop", headers={"Sec-GPC": "1"}).get_data(as_text=True))
    assert found["uet"] == {"ad_storage": "denied"}
    assert found["meta"] == "revoke" and found["tiktok"] == "revokeConsent"
    assert found["clarity"] == {"ad_Storage": "denied", "analytics_Storage": "granted"}


def test_one_script_under_the_nonce_that_the_gating_leaves_alone(vendor_app):
    with vendor_app.test_request_context("/"):
        g.csp_nonce = "n0nce"
        html = render_template_string("{{ vendor_consent_defaults() }}")
    assert html.count("<script") == 1
    assert html.startswith('<script nonce="n0nce" data-consent="necessary"')
    client = vendor_app.test_client()
    page = client.get("/shop").get_data(as_text=True)
    tag = re.search(r"<script[^>]*>", page).group()  # type: ignore[union-attr]
    assert 'type="text/plain"' not in tag and "data-consentkit-neutralised" not in tag
    assert "w.uetq.push('consent','default'" in page


def test_the_listener_sends_every_vendor_its_update():
    used = {k: load_catalogue().get(k) for k in ALL}
    js = _vendor_script(used, {"ad_storage": ["marketing"], "analytics_storage": ["analytics"]},
                        ConsentState())  # type: ignore[arg-type]
    listener = js[js.index("consentkit:change"):]
    assert "w.uetq.push('consent','update',{ad_storage:S(A)})" in listener
    assert "w.clarity('consentv2',{ad_Storage:S(A),analytics_Storage:S(B)})" in listener
    assert "w.fbq('consent',fv)" in listener
    assert "K(O(T)?'grantConsent':'revokeConsent')" in listener


def test_hostile_category_names_cannot_leave_the_script():
    hostile = '</script><script>alert("x")</script>\u2028'
    service = Service(name="Pixel", category=hostile, key="meta-pixel")
    tiktok = Service(name="TT", category=hostile, key="tiktok-pixel")
    js = _vendor_script({"meta-pixel": service, "tiktok-pixel": tiktok},
                        {"ad_storage": [hostile], "analytics_storage": []},
                        ConsentState(decided=True, granted=frozenset({hostile})))
    # nothing that ends the element or opens a comment in it; no raw line separator
    assert "</" not in js and "<!--" not in js and "<script" not in js and "\u2028" not in js
    assert js.count('"\\u003c/script\\u003e') == 3  # M, T and A, escaped
