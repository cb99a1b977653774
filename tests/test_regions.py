"""Rules per audience (``CONSENTKIT_REGIONS``) with the MaxMind test databases.

Addresses are looked up after anonymisation (IPv4 /24, IPv6 /48); each one below
was checked to resolve in ``GeoIP2-City-Test.mmdb`` once anonymised:
``2a02:d0c0::/29`` Russia, ``2a02:ecc0::/29`` Azerbaijan, ``2a02:d980::/29`` Turkey,
``2.2.3.0/24`` the UK, ``149.101.100.0/28`` the US (no subdivision),
``214.78.120.0/22`` and ``2001:480:10::/48`` the US, California.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_consentkit.categories import Service
from flask_consentkit.errors import ConsentConfigError
from flask_consentkit.regions import (
    DEFAULT_TABLE,
    PRESETS,
    Regions,
    Rule,
    current_rule,
    parse_regions,
)

from .conftest import SAME_ORIGIN, make_app

RU = "2a02:d0c0::1"
AZ = "2a02:ecc0::1"
TR = "2a02:d980::1"
UK = "2.2.3.5"
US = "149.101.100.5"
US_CA = "214.78.120.5"
US_CA6 = "2001:480:10::1"
PRIVATE = "10.1.2.3"

REGIONS = {"EU": "eu", "UK": "eu", "RU": "ru", "TR": "tr", "AZ": "az", "US-CA": "us-ca",
           "*": "opt-in"}
PAGE = ('<!doctype html><html><head><title>p</title></head><body>'
        '<script src="https://www.google-analytics.com/analytics.js"></script>'
        '<script src="https://mc.yandex.ru/metrika/tag.js"></script>'
        '<p>page</p></body></html>')


def city(testdata: Path) -> str:
    return str(testdata / "GeoIP2-City-Test.mmdb")


def regions_app(tmp_path: Path, **config: Any) -> Flask:
    config.setdefault("CONSENTKIT_REGIONS", REGIONS)
    config.setdefault("CONSENTKIT_SERVICES", ["google-analytics", "yandex-metrica"])
    app = make_app(tmp_path, **config)

    @app.get("/page")
    def page() -> str:
        return PAGE

    @app.get("/rule")
    def rule() -> dict[str, str]:
        return {"rule": current_rule().name}

    return app


def offered(html: str) -> str:
    """``html`` without the preferences' line naming the services not offered here."""
    return re.sub(r'<p class="ck-text ck-not-offered">.*?</p>', "", html, flags=re.DOTALL)


def accept_all(client: Any, addr: str) -> None:
    response = client.post("/consent/", data={"action": "accept_all", "source": "banner"},
                           headers=SAME_ORIGIN, environ_base={"REMOTE_ADDR": addr})
    assert response.status_code == 303


class CountingRegions:
    """Counts the geo lookups made for rules."""

    def __init__(self, app: Flask) -> None:
        self.calls: list[str] = []
        regions: Regions = app.extensions["consentkit"].regions
        original = regions.locate

        def locate(environ: Any) -> Any:
            self.calls.append(environ.get("REMOTE_ADDR"))
            return original(environ)

        regions.locate = locate  # type: ignore[method-assign]


# -- configuration ------------------------------------------------------------------


def test_unset_is_opt_in_everywhere_as_before(tmp_path):
    app = make_app(tmp_path)
    settings = app.extensions["consentkit"].settings
    assert settings.regions is DEFAULT_TABLE
    assert not settings.regions.configured
    with app.test_request_context(environ_base={"REMOTE_ADDR": RU}):
        assert current_rule() is PRESETS["opt-in"]


def test_presets_and_groups_are_expanded():
    table = parse_regions(REGIONS)
    assert table.countries["DE"].name == "eu"
    assert table.countries["GB"].name == "eu"
    assert table.countries["RU"].name == "ru"
    assert "NO" not in table.countries  # EEA was not named
    assert table.subdivisions["US-CA"].name == "us-ca"
    assert table.rule_for("US").name == "opt-in"
    assert table.rule_for("US", "CA").name == "us-ca"
    assert table.rule_for(None) is None
    # a country named on its own wins over its group
    table = parse_regions({"EEA": "eu", "NO": "opt-in"})
    assert table.countries["NO"].name == "opt-in" and table.countries["IS"].name == "eu"
    assert table.default.name == "opt-in"  # no "*": opt-in for everyone else


def test_every_preset_names_its_legal_source():
    for name in ("eu", "ru", "tr", "az", "us-ca"):
        assert PRESETS[name].source
    assert "152-FZ" in PRESETS["ru"].source and "18(5)" in PRESETS["ru"].source
    assert "7499" in PRESETS["tr"].source and "998-IIIQ" in PRESETS["az"].source
    assert "5(3)" in PRESETS["eu"].source and "7025" in PRESETS["us-ca"].source


def test_a_mapping_rule():
    table = parse_regions({"CN": {"preset": "eu", "forbid_countries": ["US", "EU"]},
                           "*": {"name": "home", "forbid_outside": ["EEA"]}})
    rule = table.countries["CN"]
    assert rule.name == "eu+custom" and "US" in rule.forbid_countries
    assert "DE" in rule.forbid_countries and "EU" in rule.forbid_countries
    assert table.default.name == "home" and "NO" in table.default.forbid_outside


@pytest.mark.parametrize(("value", "message"), [
    ({"RU": "russia"}, r"'russia' is not a preset; use one of opt-in, eu, ru"),
    ({"XX": "eu"}, r"'XX' is not a country code"),
    ({"ru": "ru"}, r"did you mean 'RU'\?"),
    ({"EURO": "eu"}, r"'EURO' is not a country code"),
    ({"US-ZZ": "us-ca"}, r"'ZZ' is not a US state"),
    ({"US-C@": "us-ca"}, r"not an ISO 3166-2 subdivision"),
    ({"RU": {"preset": "ru", "forbid": ["US"]}}, r"unknown field\(s\) \['forbid'\]"),
    ({"RU": {"forbid_countries": "US"}}, r"must be a list of ISO 3166-1 codes"),
    ({"RU": {"forbid_countries": ["USA"]}}, r"'USA' in 'RU', 'forbid_countries' is not"),
    ({"RU": {"forbid_outside": []}}, r"list the countries data may go to"),
    ({"RU": {"name": "has space", "preset": "ru"}}, r"must be 1 to 32 ASCII"),
    ({"RU": 3}, r"a rule is a preset's name"),
    ({1: "eu"}, r"the key 1 must be a string"),
    ({"EU": "eu", "EEA": "opt-in"}, r"AT is in both 'EU' and 'EEA' with different rules"),
    ({"UK": "eu", "GB": "opt-in"}, r"'UK' and 'GB' are the same country"),
    ({"RU": {"name": "eu", "preset": "ru"}, "DE": "eu"}, r"two different rules are named 'eu'"),
    ({}, r"must map countries"),
    (["RU"], r"must map countries"),
])
def test_mistakes_say_what_to_fix(tmp_path, value, message):
    with pytest.raises(ConsentConfigError, match=message) as info:
        make_app(tmp_path, CONSENTKIT_REGIONS=value)
    assert "CONSENTKIT_REGIONS" in str(info.value)


def test_forbids_by_destination_country():
    ru = PRESETS["ru"]
    us = Service("US thing", "analytics", countries=("US",))
    both = Service("RU and EU", "analytics", countries=("RU", "EU"))
    home = Service("RU only", "analytics", countries=("RU",))
    own = Service("ours", "functional")
    assert ru.forbids(us) and ru.forbids(both)
    assert not ru.forbids(home)
    assert not ru.forbids(own)  # no countries declared: never forbidden
    no_de = parse_regions({"*": {"forbid_countries": ["DE"]}}).default
    assert no_de.forbids(both)  # "somewhere in the EU" may be Germany
    assert not no_de.forbids(us)
    assert not PRESETS["eu"].forbids(us)


# -- which rule -------------------------------------------------------------------------


@pytest.mark.parametrize(("addr", "rule"), [
    (RU, "ru"), (AZ, "az"), (TR, "tr"), (UK, "eu"), (US, "opt-in"), (US_CA, "us-ca"),
    (US_CA6, "us-ca"),
])
def test_the_rule_of_the_visitors_country(tmp_path, testdata, addr, rule):
    app = regions_app(tmp_path, CONSENTKIT_GEOIP_DATABASE=city(testdata))
    response = app.test_client().get("/rule", environ_base={"REMOTE_ADDR": addr})
    assert response.json == {"rule": rule}


def test_without_analytics_consent_and_from_the_anonymised_address(tmp_path, testdata):
    app = regions_app(tmp_path, CONSENTKIT_GEOIP_DATABASE=city(testdata),
                      CONSENTKIT_ANONYMIZE_IP=False)
    geo = app.extensions["consentkit"].geo
    seen: list[str] = []
    original = geo.lookup
    geo.lookup = lambda address, public=True: (seen.append(address), original(address, public))[1]
    with app.test_request_context(environ_base={"REMOTE_ADDR": RU}):
        assert current_rule().name == "ru"  # the visitor has decided nothing
    assert seen == ["2a02:d0c0::"]


@pytest.mark.parametrize("addr", [PRIVATE, "127.0.0.1", "192.0.2.1", "not an address"])
def test_an_unknown_or_private_address_gets_the_strictest_rule(tmp_path, testdata, addr):
    app = regions_app(tmp_path, CONSENTKIT_GEOIP_DATABASE=city(testdata))
    response = app.test_client().get("/rule", environ_base={"REMOTE_ADDR": addr})
    assert response.json == {"rule": "ru"}


def test_without_a_database_the_strictest_rule(tmp_path):
    app = regions_app(tmp_path)
    client = app.test_client()
    assert client.get("/rule", environ_base={"REMOTE_ADDR": UK}).json == {"rule": "ru"}
    # and the strictest rule is applied in full: the forbidden service is not loaded
    accept_all(client, UK)
    response = client.get("/page", environ_base={"REMOTE_ADDR": UK})
    assert "google-analytics" not in response.headers["Content-Security-Policy"]
    assert "mc.yandex.ru" in response.headers["Content-Security-Policy"]


def test_the_strictest_rule_is_the_one_that_forbids_most(tmp_path):
    app = regions_app(tmp_path, CONSENTKIT_REGIONS={
        "CN": {"name": "no-cn", "forbid_countries": ["CN"]}, "RU": "ru", "EU": "eu"})
    regions = app.extensions["consentkit"].regions
    assert regions.strictest.name == "ru"
    app = regions_app(tmp_path, CONSENTKIT_REGIONS={"EU": "eu", "*": "opt-in"})
    assert app.extensions["consentkit"].regions.strictest.name == "eu"


def test_looked_up_once_per_request_and_only_when_asked(tmp_path, testdata):
    app = regions_app(tmp_path, CONSENTKIT_GEOIP_DATABASE=city(testdata))
    counting = CountingRegions(app)
    client = app.test_client()
    with app.test_request_context(environ_base={"REMOTE_ADDR": RU}):
        current_rule()
        current_rule()
    assert counting.calls == [RU]
    counting.calls.clear()
    # JSON routes never look it up: nor the state, nor an app's own JSON
    assert client.get("/api", environ_base={"REMOTE_ADDR": RU}).status_code == 200
    assert client.get("/consent/state", environ_base={"REMOTE_ADDR": RU}).status_code == 200
    assert counting.calls == []
    # a page asks once, for its gating, its policy and its banner together
    client.get("/page", environ_base={"REMOTE_ADDR": RU})
    assert counting.calls == [RU]


def test_no_lookup_when_no_rule_changes_what_is_shown(tmp_path, testdata):
    # no rule forbids services, asks for a notice or a transfers line, or is opt-out
    app = regions_app(tmp_path, CONSENTKIT_GEOIP_DATABASE=city(testdata),
                      CONSENTKIT_REGIONS={"EU": "eu", "US-CA": "us-ca", "*": "opt-in"})
    counting = CountingRegions(app)
    client = app.test_client()
    client.get("/page", environ_base={"REMOTE_ADDR": RU})
    client.get("/consent/", environ_base={"REMOTE_ADDR": RU})
    assert counting.calls == []
    assert client.get("/rule", environ_base={"REMOTE_ADDR": US_CA}).json == {"rule": "us-ca"}


# -- forbidden services -------------------------------------------------------------


def test_a_forbidden_service_is_not_offered_loaded_or_allowed_for_a_russian_visitor(
        tmp_path, testdata):
    app = regions_app(tmp_path, CONSENTKIT_GEOIP_DATABASE=city(testdata))
    client = app.test_client()
    accept_all(client, RU)  # whatever they choose

    prefs = client.get("/consent/", environ_base={"REMOTE_ADDR": RU}).get_data(as_text=True)
    # one line says it is not offered here; the categories do not offer it
    assert "Not offered in your region: Google Analytics 4." in prefs
    prefs = offered(prefs)
    assert "Google Analytics" not in prefs and "google-analytics.com" not in prefs
    assert "Yandex Metrica" in prefs

    response = client.get("/page", environ_base={"REMOTE_ADDR": RU})
    html = response.get_data(as_text=True)
    assert '<script src="https://mc.yandex.ru/metrika/tag.js">' in html
    assert '<script src="https://www.google-analytics.com' not in html
    assert 'type="text/plain" data-consentkit-neutralised' in html
    policy = response.headers["Content-Security-Policy"]
    assert "google-analytics.com" not in policy and "googletagmanager" not in policy
    assert "mc.yandex.ru" in policy
    # the banner's second layer on the page does not offer it either
    assert "Google Analytics" not in html


def test_the_same_choice_elsewhere_loads_it(tmp_path, testdata):
    app = regions_app(tmp_path, CONSENTKIT_GEOIP_DATABASE=city(testdata))
    client = app.test_client()
    accept_all(client, UK)
    assert "Google Analytics" in client.get(
        "/consent/", environ_base={"REMOTE_ADDR": UK}).get_data(as_text=True)
    response = client.get("/page", environ_base={"REMOTE_ADDR": UK})
    assert '<script src="https://www.google-analytics.com/analytics.js">' in response.get_data(
        as_text=True)
    assert "*.google-analytics.com" in response.headers["Content-Security-Policy"]


def test_the_policy_cache_is_keyed_by_the_rule(tmp_path, testdata):
    app = regions_app(tmp_path, CONSENTKIT_GEOIP_DATABASE=city(testdata))
    client = app.test_client()
    accept_all(client, RU)
    ru = client.get("/page", environ_base={"REMOTE_ADDR": RU}).headers["Content-Security-Policy"]
    uk = client.get("/page", environ_base={"REMOTE_ADDR": UK}).headers["Content-Security-Policy"]
    ru_again = client.get("/page", environ_base={"REMOTE_ADDR": RU}).headers[
        "Content-Security-Policy"]
    assert ru != uk and ru == ru_again
    policy = app.extensions["consentkit"].policy
    assert {key[2] for key in policy._values} == {"ru", ""}


def test_a_declared_service_with_countries_of_its_own(tmp_path, testdata):
    app = regions_app(tmp_path, CONSENTKIT_GEOIP_DATABASE=city(testdata), CONSENTKIT_SERVICES=[
        {"name": "Our CDN", "category": "functional", "hosts": ["cdn.example.ru"],
         "countries": ["RU"]},
        {"name": "Their CDN", "category": "functional", "hosts": ["cdn.example.com"],
         "countries": ["US"]},
    ])
    client = app.test_client()
    accept_all(client, RU)
    policy = client.get("/page", environ_base={"REMOTE_ADDR": RU}).headers[
        "Content-Security-Policy"]
    assert "cdn.example.ru" in policy and "cdn.example.com" not in policy
    prefs = client.get("/consent/", environ_base={"REMOTE_ADDR": RU}).get_data(as_text=True)
    assert "Not offered in your region: Their CDN." in prefs
    prefs = offered(prefs)
    assert "Our CDN" in prefs and "Their CDN" not in prefs


def test_rule_objects_are_plain_data():
    assert Rule("x") == Rule("x")
    assert not Rule("x").forbids_any
