"""Rules per audience, the rest of them: the separate information notice (Turkey,
Azerbaijan), the separate consent to transfers abroad recorded in the receipt, and the
opt-out model with its "Do Not Sell or Share" link (California, when the app asks for it).

Addresses resolve in the MaxMind test database once anonymised (see ``test_regions``).
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, render_template_string, request

from flask_consentkit import consent_changed, consent_given, consent_withdrawn
from flask_consentkit.errors import ConsentConfigError
from flask_consentkit.gating import add_trackers
from flask_consentkit.gating.trackers import TRACKERS
from flask_consentkit.ledger.store import dispose_engines
from flask_consentkit.regions import TRANSFERS, parse_regions

from .conftest import SAME_ORIGIN
from .test_regions import (
    AZ,
    PAGE,
    REGIONS,
    RU,
    TR,
    UK,
    US_CA,
    accept_all,
    city,
    regions_app,
)

CONTROLLER = {"name": "Example Stories LLC", "address": "1 Main St, Istanbul",
              "email": "privacy@example.com", "phone": "+90 212 000 00 00",
              "url": "https://example.com"}
POLICY = "https://example.com/privacy"
OPT_OUT = {**REGIONS, "US-CA": {"preset": "us-ca", "model": "opt-out"}}


def app_for(tmp_path: Path, testdata: Path, **config: Any) -> Flask:
    config.setdefault("CONSENTKIT_PRIVACY_POLICY_URL", POLICY)
    return regions_app(tmp_path, CONSENTKIT_GEOIP_DATABASE=city(testdata), **config)


def get(client: Any, path: str, addr: str, **headers: str) -> Any:
    return client.get(path, environ_base={"REMOTE_ADDR": addr}, headers=headers)


def post(client: Any, addr: str, **data: Any) -> Any:
    data.setdefault("source", "preferences")
    response = client.post("/consent/", data=data, headers=SAME_ORIGIN,
                           environ_base={"REMOTE_ADDR": addr})
    assert response.status_code == 303, response.get_data(as_text=True)
    return response


def first_layer(html: str) -> str:
    start = html.index('<section class="ck-banner"')
    return html[start:html.index("</section>", start)]


# -- (a) the separate information notice ---------------------------------------------


@pytest.mark.parametrize("addr", [TR, AZ])
def test_the_first_layer_links_the_notice_in_place_of_the_policy(tmp_path, testdata, addr):
    client = app_for(tmp_path, testdata, CONSENTKIT_CONTROLLER=CONTROLLER).test_client()
    layer = first_layer(get(client, "/page", addr).get_data(as_text=True))
    assert 'class="ck-notice-link">Information notice</a>' in layer
    assert 'href="/consent/notice?next=/page&amp;lang=en"' in layer
    assert POLICY not in layer  # replaced, not added: the first layer keeps its size


def test_a_british_visitor_gets_the_policy_link(tmp_path, testdata):
    client = app_for(tmp_path, testdata).test_client()
    layer = first_layer(get(client, "/page", UK).get_data(as_text=True))
    assert POLICY in layer and "ck-notice-link" not in layer


def test_the_notice_says_what_the_law_asks(tmp_path, testdata):
    client = app_for(tmp_path, testdata, CONSENTKIT_CONTROLLER=CONTROLLER,
                     CONSENTKIT_MAX_AGE=180 * 86400).test_client()
    response = get(client, "/consent/notice?next=/page", TR)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for value in CONTROLLER.values():  # who the controller is
        assert value in html
    assert "Visit statistics" in html or "Analytics" in html  # purposes per category
    assert "Google Analytics 4" in html and "Yandex Metrica" in html  # data and services
    assert "<code>*.google-analytics.com</code>" in html and "<code>mc.yandex.ru</code>" in html
    assert "Transfers abroad" in html and "<strong>Google Analytics 4</strong>: US" in html
    assert "<strong>Yandex Metrica (incl. Webvisor)</strong>: RU" in html
    assert "kept for 180 days" in html  # how long consent lasts
    assert 'href="/consent/?next=/page&amp;lang=en">Cookie settings</a>' in html  # revoke
    assert "How your data is deleted" in html
    assert "separate consent to transfers abroad" in html
    assert POLICY in html and 'href="/page">Back to the site' in html
    assert "<script" not in html  # a page that needs no JavaScript


@pytest.mark.parametrize("lang, title", [("az", "Məlumatlandırma bildirişi"),
                                         ("ru", "Уведомление об обработке персональных данных"),
                                         ("tr", "Aydınlatma Metni")])
def test_the_notice_in_every_language(tmp_path, testdata, lang, title):
    client = app_for(tmp_path, testdata).test_client()
    html = get(client, f"/consent/notice?lang={lang}", TR).get_data(as_text=True)
    assert f"<h1 class=\"ck-title\" id=\"consentkit-notice-title\">{title}</h1>" in html
    layer = first_layer(get(client, f"/page?lang={lang}", TR).get_data(as_text=True))
    assert "ck-notice-link" in layer


def test_without_a_controller_the_notice_says_so_and_init_warns_once(
        tmp_path, testdata, caplog):
    with caplog.at_level(logging.WARNING, "flask_consentkit.regions"):
        client = app_for(tmp_path, testdata).test_client()
        get(client, "/page", TR)
        get(client, "/page", AZ)
    warnings = [r for r in caplog.records if "CONSENTKIT_CONTROLLER" in r.getMessage()]
    assert len(warnings) == 1 and "tr, az" in warnings[0].getMessage()
    html = get(client, "/consent/notice", TR).get_data(as_text=True)
    assert "This site has not named its controller here." in html


def test_no_warning_when_no_rule_asks_for_the_notice(tmp_path, testdata, caplog):
    with caplog.at_level(logging.WARNING, "flask_consentkit.regions"):
        app_for(tmp_path, testdata, CONSENTKIT_REGIONS={"EU": "eu", "*": "opt-in"})
    assert not [r for r in caplog.records if "CONSENTKIT_CONTROLLER" in r.getMessage()]


def test_the_preferences_page_links_the_notice(tmp_path, testdata):
    client = app_for(tmp_path, testdata).test_client()
    assert "ck-notice-link" in get(client, "/consent/", TR).get_data(as_text=True)
    assert "ck-notice-link" not in get(client, "/consent/", UK).get_data(as_text=True)


def test_rule_options_are_validated():
    table = parse_regions({"TR": {"preset": "tr", "separate_notice": False}})
    assert not table.countries["TR"].separate_notice
    assert table.countries["TR"].transfer_consent and table.countries["TR"].name == "tr+custom"
    with pytest.raises(ConsentConfigError, match="'separate_notice' must be True or False"):
        parse_regions({"TR": {"preset": "tr", "separate_notice": "yes"}})
    with pytest.raises(ConsentConfigError, match="transfer_consent"):
        parse_regions({"TR": {"preset": "tr", "transfer_consent": 1}})


# -- (b) the separate consent to transfers abroad --------------------------------------


def test_transfers_abroad_need_their_own_consent(tmp_path, testdata):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    app = app_for(tmp_path, testdata, CONSENTKIT_LEDGER_URL=url)
    client = app.test_client()
    prefs = get(client, "/consent/", TR).get_data(as_text=True)
    assert f'name="categories" value="{TRANSFERS}"' in prefs  # a line of its own
    assert "Google Analytics 4, Yandex Metrica" in prefs and "(RU, US)" in prefs

    accept_all(client, TR)  # "Accept all" is no consent to transfers abroad
    response = get(client, "/page", TR)
    html, policy = response.get_data(as_text=True), response.headers["Content-Security-Policy"]
    assert '<script src="https://www.google-analytics.com' not in html
    assert '<script src="https://mc.yandex.ru' not in html
    assert "google-analytics.com" not in policy and "mc.yandex.ru" not in policy
    assert client.get("/consent/state").json["granted"] == [
        "analytics", "functional", "marketing", "necessary", "performance"]

    post(client, TR, action="save", categories=["analytics", TRANSFERS])
    response = get(client, "/page", TR)
    assert '<script src="https://www.google-analytics.com' in response.get_data(as_text=True)
    assert "google-analytics.com" in response.headers["Content-Security-Policy"]
    accept_all(client, TR)  # nor does it take the consent back
    assert TRANSFERS in client.get("/consent/state").json["granted"]
    post(client, TR, action="save", categories=["analytics"])  # taken back
    assert '<script src="https://www.google-analytics.com' not in get(
        client, "/page", TR).get_data(as_text=True)

    ledger = app.extensions["consentkit"].ledger
    consent_id = client.get("/consent/state").json["consent_id"]
    rows = ledger.export(consent_id)
    assert [TRANSFERS in r["denied"] for r in rows] == [True, False, False, True]
    assert [TRANSFERS in r["granted"] for r in rows] == [False, True, True, False]
    assert TRANSFERS in rows[-1]["withdrawn"]
    assert ledger.verify().ok
    dispose_engines(url)


def test_a_british_visitor_needs_no_transfers_consent(tmp_path, testdata):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    app = app_for(tmp_path, testdata, CONSENTKIT_LEDGER_URL=url)
    client = app.test_client()
    assert TRANSFERS not in get(client, "/consent/", UK).get_data(as_text=True)
    accept_all(client, UK)
    html = get(client, "/page", UK).get_data(as_text=True)
    assert '<script src="https://www.google-analytics.com' in html
    rows = app.extensions["consentkit"].ledger.export(
        client.get("/consent/state").json["consent_id"])
    assert TRANSFERS not in rows[0]["granted"] and TRANSFERS not in rows[0]["denied"]
    dispose_engines(url)


def test_a_service_of_the_visitors_own_country_needs_no_transfers_consent(tmp_path, testdata):
    app = app_for(tmp_path, testdata, CONSENTKIT_SERVICES=[
        {"name": "Yerel CDN", "category": "functional", "hosts": ["cdn.example.com.tr"],
         "countries": ["TR"]},
        {"name": "Foreign CDN", "category": "functional", "hosts": ["cdn.example.com"],
         "countries": ["US"]}])
    client = app.test_client()
    accept_all(client, TR)
    policy = get(client, "/page", TR).headers["Content-Security-Policy"]
    assert "cdn.example.com.tr" in policy and "cdn.example.com " not in policy + " "
    assert "Foreign CDN" in get(client, "/consent/", TR).get_data(as_text=True)  # offered


def test_a_category_named_like_the_transfers_line_is_refused(tmp_path, testdata):
    with pytest.raises(ConsentConfigError, match="transfers_abroad"):
        app_for(tmp_path, testdata, CONSENTKIT_CATEGORIES=["necessary", TRANSFERS],
                CONSENTKIT_SERVICES=[])


# -- (c) the opt-out model ------------------------------------------------------------


def test_the_opt_out_model_is_validated():
    rule = parse_regions(OPT_OUT).subdivisions["US-CA"]
    assert rule.opt_out and rule.name == "us-ca+opt-out"
    assert not parse_regions(REGIONS).subdivisions["US-CA"].opt_out  # opt-in by default
    with pytest.raises(ConsentConfigError, match="the preset 'eu' asks for opt-in"):
        parse_regions({"EU": {"preset": "eu", "model": "opt-out"}})
    with pytest.raises(ConsentConfigError, match="'sometimes' is not one of opt-in, opt-out"):
        parse_regions({"US-CA": {"preset": "us-ca", "model": "sometimes"}})


def test_a_californian_under_the_opt_out_model(tmp_path, testdata):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    app = app_for(tmp_path, testdata, CONSENTKIT_REGIONS=OPT_OUT, CONSENTKIT_LEDGER_URL=url)
    client = app.test_client()
    html = get(client, "/page", US_CA).get_data(as_text=True)
    # on until the visitor opts out: loaded, no first layer, the link to opt out
    assert '<script src="https://www.google-analytics.com' in html
    assert '<section class="ck-banner" id="consentkit-banner" aria-labelledby="consentkit-title"' \
           ' tabindex="-1" hidden>' in html
    assert ('<a class="ck-optout" href="/consent/opt-out?next=/page&amp;lang=en">'
            "Do Not Sell or Share My Personal Information</a>") in html
    state = client.get("/consent/state", environ_base={"REMOTE_ADDR": US_CA}).json
    assert not state["decided"] and "marketing" in state["granted"]
    assert state["source"] == "opt-out"

    page = get(client, "/consent/opt-out", US_CA).get_data(as_text=True)
    assert 'value="save">Opt out of the sale and sharing</button>' in page
    assert 'name="categories" value="analytics"' in page
    assert 'name="categories" value="marketing"' not in page
    form = {"action": "save", "categories": ["analytics", "functional", "performance"],
            "next": "/consent/opt-out"}
    post(client, US_CA, **form)
    assert "Opt-Out Request Honored" in get(client, "/consent/opt-out", US_CA).get_data(
        as_text=True)
    state = client.get("/consent/state", environ_base={"REMOTE_ADDR": US_CA}).json
    assert state["decided"] and "marketing" not in state["granted"]
    rows = app.extensions["consentkit"].ledger.export(state["consent_id"])
    assert rows[-1]["rule"] == "us-ca+opt-out" and "marketing" in rows[-1]["denied"]
    dispose_engines(url)


def pixel_app(tmp_path: Path, testdata: Path) -> Flask:
    """California under the opt-out model, a marketing cookie the browser may hold, a ledger."""
    return app_for(tmp_path, testdata, CONSENTKIT_REGIONS=OPT_OUT,
                   CONSENTKIT_SERVICES=["google-analytics", "meta-pixel"],
                   CONSENTKIT_COOKIES={"marketing": ["_fbp"]},
                   CONSENTKIT_LEDGER_URL=f"sqlite:///{tmp_path / 'ledger.sqlite3'}")


def opt_out_of_marketing(app: Flask, addr: str, **headers: str) -> tuple[Any, list[Any]]:
    """Press "Do Not Sell or Share" with ``_fbp`` in the browser; the response and the
    signals sent, as ``(name, previous, state)``."""
    client = app.test_client()
    client.set_cookie("_fbp", "fb.1.2.3")
    sent: list[Any] = []
    with ExitStack() as stack:
        for name, signal in (("given", consent_given), ("changed", consent_changed),
                             ("withdrawn", consent_withdrawn)):
            def receiver(sender: Flask, *, state: Any, previous: Any, _name: str = name) -> None:
                sent.append((_name, previous, state))
            stack.enter_context(signal.connected_to(receiver, sender=app))
        response = client.post("/consent/", headers={**SAME_ORIGIN, **headers},
                               environ_base={"REMOTE_ADDR": addr},
                               data={"action": "save", "source": "preferences", "next": "/page",
                                     "categories": ["analytics", "functional", "performance"]})
    assert response.status_code == 303
    return response, sent


def expired_cookies(response: Any) -> set[str]:
    return {h.split("=", 1)[0] for h in response.headers.getlist("Set-Cookie")
            if h.split("=", 1)[1].startswith(";") and "Max-Age=0" in h}


def test_do_not_sell_withdraws_the_marketing_the_visitor_had(tmp_path, testdata):
    app = pixel_app(tmp_path, testdata)
    response, sent = opt_out_of_marketing(app, US_CA)
    # marketing was on by default: its cookies go, as on any withdrawal
    assert "_fbp" in expired_cookies(response)
    assert [name for name, _, _ in sent] == ["changed", "withdrawn"]  # nothing newly given
    _, previous, state = sent[-1]
    assert not previous.decided and previous.source == "opt-out"
    assert "marketing" in previous.granted and "marketing" not in state.granted
    # and the receipt says it was taken back
    consent_id = state.consent_id
    row = app.extensions["consentkit"].ledger.export(consent_id)[-1]
    assert "marketing" in row["withdrawn"] and "marketing" in row["denied"]
    assert "analytics" not in row["withdrawn"]
    dispose_engines(app.config["CONSENTKIT_LEDGER_URL"])


def test_do_not_sell_after_gpc_withdraws_nothing(tmp_path, testdata):
    # the signal kept marketing off already: nothing is taken back
    app = pixel_app(tmp_path, testdata)
    response, sent = opt_out_of_marketing(app, US_CA, **{"Sec-GPC": "1"})
    assert "_fbp" not in expired_cookies(response)
    assert [name for name, _, _ in sent] == ["changed"]
    dispose_engines(app.config["CONSENTKIT_LEDGER_URL"])


def test_under_opt_in_a_first_choice_still_withdraws_nothing(tmp_path, testdata):
    app = pixel_app(tmp_path, testdata)
    response, sent = opt_out_of_marketing(app, UK)  # asked first: marketing was never on
    assert "_fbp" not in expired_cookies(response)
    assert [name for name, _, _ in sent] == ["given", "changed"]
    row = app.extensions["consentkit"].ledger.export(sent[-1][2].consent_id)[-1]
    assert "marketing" not in row["withdrawn"]
    # after "Accept all", the same choice takes marketing back, as before
    client = app.test_client()
    accept_all(client, UK)
    client.set_cookie("_fbp", "fb.1.2.3")
    with consent_withdrawn.connected_to(lambda sender, **kw: sent.append("withdrawn"),
                                        sender=app):
        response = post(client, UK, action="save",
                        categories=["analytics", "functional", "performance"])
    assert "_fbp" in expired_cookies(response) and sent[-1] == "withdrawn"
    dispose_engines(app.config["CONSENTKIT_LEDGER_URL"])


def test_gpc_is_the_opt_out(tmp_path, testdata):
    client = app_for(tmp_path, testdata, CONSENTKIT_REGIONS=OPT_OUT,
                     CONSENTKIT_SERVICES=["google-analytics", "meta-pixel"]).test_client()
    state = client.get("/consent/state", environ_base={"REMOTE_ADDR": US_CA},
                       headers={"Sec-GPC": "1"}).json
    assert "marketing" not in state["granted"] and "analytics" in state["granted"]
    assert state["gpc"]["honoured"]
    page = get(client, "/consent/opt-out", US_CA, **{"Sec-GPC": "1"}).get_data(as_text=True)
    assert "Opt-Out Request Honored" in page and "Global Privacy Control" in page


def test_the_opt_out_link_in_every_language(tmp_path, testdata):
    client = app_for(tmp_path, testdata, CONSENTKIT_REGIONS=OPT_OUT).test_client()
    links = {"az": "Şəxsi Məlumatlarımı Satmayın və Paylaşmayın",
             "ru": "Не продавать и не передавать мои персональные данные",
             "tr": "Kişisel Bilgilerimi Satma veya Paylaşma",
             "en": "Do Not Sell or Share My Personal Information"}
    for lang, text in links.items():
        assert f">{text}</a>" in get(client, f"/page?lang={lang}", US_CA).get_data(as_text=True)
        assert f">{text}</a>" in get(client, f"/consent/?lang={lang}", US_CA).get_data(
            as_text=True)


def test_the_opt_out_model_only_for_its_audience(tmp_path, testdata):
    client = app_for(tmp_path, testdata, CONSENTKIT_REGIONS=OPT_OUT).test_client()
    html = get(client, "/page", UK).get_data(as_text=True)
    assert "ck-optout" not in html and '<script src="https://www.google-analytics.com' not in html
    assert 'tabindex="-1">' in html  # the first layer asks
    # without "model": "opt-out", California is opt-in as before
    client = app_for(tmp_path, testdata).test_client()
    html = get(client, "/page", US_CA).get_data(as_text=True)
    assert "ck-optout" not in html and '<script src="https://www.google-analytics.com' not in html


# -- shared caches: a page chosen by the address is private ---------------------------


def cached_app(tmp_path: Path, testdata: Path, **config: Any) -> Flask:
    app = app_for(tmp_path, testdata, CONSENTKIT_REGIONS=OPT_OUT, **config)

    @app.get("/cached")
    def cached() -> Any:
        # a page the app marks for shared caches, as it was before rules per audience
        return PAGE, {"Cache-Control": request.args["cc"]} if "cc" in request.args else {}

    @app.get("/plain.json")
    def plain_json() -> Any:
        return {"ok": True}, {"Cache-Control": "public, max-age=60"}

    return app


def vary(response):
    return {token.strip() for token in response.headers["Vary"].split(",")}


def test_a_page_shaped_by_the_address_is_kept_from_shared_caches(tmp_path, testdata):
    client = cached_app(tmp_path, testdata).test_client()
    for _ in range(2):  # the second time from the kept page output
        california, uk = (get(client, "/cached", addr) for addr in (US_CA, UK))
        # the same URL and the same Vary, yet a tracker live for one and not for the other
        assert "google-analytics.com" in california.headers["Content-Security-Policy"]
        assert "google-analytics.com" not in uk.headers["Content-Security-Policy"]
        assert '<script src="https://www.google-analytics.com' in california.get_data(as_text=True)
        assert vary(california) == vary(uk)
        # so no shared cache may keep either
        assert california.headers["Cache-Control"] == uk.headers["Cache-Control"] == "private"
    # the rule of the request read in a JSON view: private too
    assert get(client, "/rule", US_CA).headers["Cache-Control"] == "private"


@pytest.mark.parametrize(("app_says", "sent"), [
    ("public, max-age=600", "private, max-age=600"),
    ("max-age=60, S-MaxAge=3600, Public", "private, max-age=60"),
    ('private="Set-Cookie", max-age=60', "private, max-age=60"),  # would let the body be kept
    ('no-cache="Set-Cookie, Vary", must-revalidate',
     'private, no-cache="Set-Cookie, Vary", must-revalidate'),
    ("private, max-age=30", "private, max-age=30"),
    ("no-store", "no-store"),  # stricter: as the app said
    ("public, no-store", "public, no-store"),
])
def test_private_wins_over_the_apps_shared_caching(tmp_path, testdata, app_says, sent):
    client = cached_app(tmp_path, testdata).test_client()
    for addr in (US_CA, UK):
        response = client.get("/cached", query_string={"cc": app_says},
                              environ_base={"REMOTE_ADDR": addr})
        assert response.headers.getlist("Cache-Control") == [sent]


def test_a_response_that_never_read_the_rule_is_left_alone(tmp_path, testdata):
    client = cached_app(tmp_path, testdata).test_client()
    for addr in (US_CA, UK):
        assert get(client, "/plain.json", addr).headers["Cache-Control"] == "public, max-age=60"
        assert get(client, "/api", addr).headers.get("Cache-Control") is None
        gpc = get(client, "/.well-known/gpc.json", addr)
        assert gpc.headers["Cache-Control"] == "public, max-age=86400"


def test_without_a_geo_source_the_page_is_the_same_for_everyone(tmp_path):
    # every visitor gets the strictest rule: the address changes nothing
    app = regions_app(tmp_path, CONSENTKIT_REGIONS=OPT_OUT)
    response = app.test_client().get("/page", environ_base={"REMOTE_ADDR": US_CA})
    assert '<script src="https://www.google-analytics.com' not in response.get_data(as_text=True)
    assert "Cache-Control" not in response.headers


# -- (d) leftovers --------------------------------------------------------------------


def test_a_forbidden_vendor_gets_no_consent_stub(tmp_path, testdata):
    app = app_for(tmp_path, testdata, CONSENTKIT_SERVICES=["microsoft-clarity"])

    @app.get("/signals")
    def signals() -> str:
        return render_template_string(
            "<!doctype html><html><head>{{ vendor_consent_defaults() }}</head>"
            "<body></body></html>")

    client = app.test_client()
    assert "consentv2" in get(client, "/signals", UK).get_data(as_text=True)
    assert "consentv2" not in get(client, "/signals", RU).get_data(as_text=True)


def test_add_trackers_forgets_the_rules_scans(tmp_path, testdata):
    app = app_for(tmp_path, testdata)
    client = app.test_client()
    get(client, "/page", RU)  # makes the Russian rule's view and scans the page
    views = app.extensions["consentkit"].regions.views()
    assert views
    before = [v.scans for v in views]
    add_trackers(app, TRACKERS[:1])
    assert all(v.scans is not b for v, b in zip(views, before, strict=True))
