"""The vendor catalogue and ``CONSENTKIT_SERVICES`` entries that name it."""

from __future__ import annotations

import re

import pytest

from flask_consentkit import ConsentConfigError
from flask_consentkit.urls import Target
from flask_consentkit.vendors import load_catalogue, parse_catalogue, parse_host

from .conftest import make_app

#: the vendors the first user's audiences meet (Azerbaijan, Russia, Turkey) and the ones
#: the measured leaks named
REQUIRED = [
    "google-tag", "google-analytics", "google-ads", "google-floodlight", "meta-pixel",
    "youtube", "vimeo", "hotjar", "microsoft-clarity", "yandex-metrica", "yandex-ads",
    "vk-pixel", "mailru-top", "liveinternet", "admatic", "gemius", "sketchfab",
    "sketchfab-viewer-api", "google-fonts", "google-maps", "spotify", "disqus",
    "facebook-plugins", "amplitude", "heap", "segment", "hubspot", "intercom",
    "zendesk-web-widget", "tawk-to", "drift", "criteo", "taboola", "reddit-pixel",
    "snap-pixel", "new-relic", "datadog-rum", "sentry", "plausible", "fathom", "umami",
    "cloudflare-web-analytics", "matomo-tag-manager", "google-recaptcha", "hcaptcha",
    "cloudflare-turnstile", "addtoany", "sharethis",
]


def test_the_catalogue_is_large_valid_and_never_necessary():
    catalogue = load_catalogue()
    assert len(catalogue) >= 150
    missing = [key for key in REQUIRED if key not in catalogue]
    assert missing == []
    for vendor in catalogue.vendors:
        assert vendor.category != "necessary", vendor.key
        assert vendor.hosts and vendor.name and vendor.policy_url, vendor.key
        assert not vendor.declared


def test_every_host_is_a_valid_csp_source_and_no_wildcard_covers_a_shared_giant():
    source = re.compile(r"^(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)+(/[A-Za-z0-9._~@+/-]*/)?$")
    giants = {"*.google.com", "*.yandex.ru", "*.facebook.com", "*.microsoft.com", "*.com",
              "*.googleapis.com", "*.cloudfront.net", "*.amazonaws.com", "*.gstatic.com",
              "*.mail.ru", "*.vk.com", "*.yastatic.net", "*.azureedge.net", "*.akamaihd.net"}
    for vendor in load_catalogue().vendors:
        for host in vendor.hosts:
            assert source.match(str(host)), (vendor.key, str(host))
            assert str(host) not in giants, (vendor.key, str(host))


def test_the_google_tag_serves_analytics_or_marketing_and_ads_hosts_are_marketing():
    catalogue = load_catalogue()
    tag = catalogue.get("google-tag")
    assert tag is not None and tag.categories == {"analytics", "marketing"}
    assert catalogue.find(Target("www.googletagmanager.com", "/gtag/js")) is tag
    ads = catalogue.find(Target("googleads.g.doubleclick.net", "/pagead/viewthroughconversion/1/"))
    assert ads is not None and ads.category == "marketing"
    ga = catalogue.find(Target("region1.google-analytics.com", "/g/collect"))
    assert ga is not None and ga.key == "google-analytics"


@pytest.mark.parametrize("data, message", [
    ({}, "must be an object"),
    ({"vendors": [{"key": "Bad Key"}]}, "kebab-case"),
    ({"vendors": [{"key": "a", "name": "A", "category": "necessary", "hosts": ["a.example"]}]},
     "'category' must be one of"),
    ({"vendors": [{"key": "a", "name": "A", "category": "analytics", "hosts": []}]},
     "'hosts' must be a non-empty list"),
    ({"vendors": [{"key": "a", "name": "A", "category": "analytics",
                   "hosts": ["https://a.example"]}]}, "is not a host"),
    ({"vendors": [{"key": "a", "name": "A", "category": "analytics", "hosts": ["a.example"],
                   "colour": "red"}]}, "unknown field"),
    ({"vendors": [{"key": "a", "name": "A", "category": "analytics", "hosts": ["a.example"]},
                  {"key": "a", "name": "A", "category": "analytics", "hosts": ["a.example"]}]},
     "also in"),
])
def test_a_malformed_catalogue_says_what_is_wrong(data, message):
    with pytest.raises(ValueError, match=message):
        parse_catalogue([("test.json", data)])


@pytest.mark.parametrize("text, host, path", [
    ("cdn.example.com", "cdn.example.com", ""),
    ("*.example.com", "*.example.com", ""),
    ("www.google.com/recaptcha/", "www.google.com", "/recaptcha/"),
])
def test_hosts_are_parsed(text, host, path):
    pattern = parse_host(text)
    assert (pattern.host, pattern.path) == (host, path)


def test_host_patterns_match_as_csp_does():
    wild, path = parse_host("*.example.com"), parse_host("www.google.com/recaptcha/")
    assert wild.matches("a.b.example.com") and not wild.matches("example.com")
    assert not wild.matches("badexample.com")
    assert path.matches("www.google.com", "/recaptcha/api.js")
    assert not path.matches("www.google.com", "/maps/embed")


# -- CONSENTKIT_SERVICES -------------------------------------------------------------


def registry(tmp_path, services):
    app = make_app(tmp_path, CONSENTKIT_SERVICES=services)
    return app.extensions["consentkit"].vendors


def test_a_catalogue_key_declares_that_vendor(tmp_path):
    vendors = registry(tmp_path, ["youtube"])
    (youtube,) = vendors.declared
    assert youtube.key == "youtube" and youtube.declared and youtube.category == "marketing"
    assert youtube.hosts == load_catalogue().get("youtube").hosts
    assert "youtube" not in {v.key for v in vendors.undeclared}


def test_a_mapping_with_a_key_overrides_the_catalogue(tmp_path):
    vendors = registry(tmp_path, [{"key": "google-fonts", "category": "necessary",
                                   "purpose": {"en": "Our typeface", "az": "Şriftimiz"}}])
    (fonts,) = vendors.declared
    assert fonts.category == "necessary" and fonts.name == load_catalogue().get(
        "google-fonts").name
    assert vendors.allows(Target("fonts.gstatic.com", "/s/x.woff2"), frozenset())


def test_a_full_mapping_declares_a_vendor_of_the_apps_own(tmp_path):
    vendors = registry(tmp_path, [{"name": "Story CDN", "category": "necessary",
                                   "hosts": ["media.storyforge-cdn.example"],
                                   "countries": ["AZ"]}])
    (cdn,) = vendors.declared
    assert cdn.key == "story-cdn" and cdn.countries == ("AZ",)
    assert vendors.allows(Target("media.storyforge-cdn.example", "/a.glb"), frozenset())


def test_an_unknown_host_is_allowed_for_nobody(tmp_path):
    vendors = registry(tmp_path, [])
    everything = frozenset({"functional", "analytics", "performance", "marketing"})
    assert not vendors.allows(Target("cdn.unknown-vendor.example", "/a.js"), everything)


def test_a_catalogue_vendor_whose_category_the_app_lacks_is_allowed_for_nobody(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_CATEGORIES=["necessary", "analytics"])
    vendors = app.extensions["consentkit"].vendors
    target = Target("www.youtube.com", "/embed/x")
    assert not vendors.allows(target, frozenset({"analytics", "marketing"}))


@pytest.mark.parametrize("services, message", [
    (["no-such-vendor"], "'no-such-vendor' is not a key of the vendor catalogue"),
    ([{"name": "X", "category": "analytics", "hosts": "x.example"}], "must be a list"),
    ([{"name": "X", "category": "analytics", "hosts": ["https://x.example/"]}],
     "is not a host"),
    ([{"name": "X", "category": "nope", "hosts": ["x.example"]}], "unknown category"),
    ([{"name": "X", "category": "analytics", "colour": "red"}], "unknown field"),
    ([{"category": "analytics"}], "needs a 'name'"),
    (["youtube", {"key": "youtube"}], "declared twice"),
    ([{"name": "X", "category": "analytics", "countries": ["usa"]}], "ISO 3166-1"),
    ("youtube", "must be a list"),
    ([42], "must be a catalogue key or a mapping"),
])
def test_bad_services_are_config_errors_that_say_what_to_fix(tmp_path, services, message):
    with pytest.raises(ConsentConfigError, match=re.escape(message)):
        make_app(tmp_path, CONSENTKIT_SERVICES=services)


def test_a_catalogue_vendor_under_a_category_the_app_lacks_says_how_to_declare_it(tmp_path):
    with pytest.raises(ConsentConfigError, match="which this app does not have"):
        make_app(tmp_path, CONSENTKIT_CATEGORIES=["necessary", "analytics"],
                 CONSENTKIT_SERVICES=["youtube"])


def test_the_preferences_page_shows_what_the_catalogue_knows(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_SERVICES=["youtube"])
    page = app.test_client().get("/consent/").get_data(as_text=True)
    youtube = load_catalogue().get("youtube")
    assert youtube.name in page and youtube.policy_url in page
    assert str(youtube.hosts[0]) in page


def test_blocked_undeclared_vendors_leave_only_declared_services(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_UNDECLARED_VENDORS="blocked",
                   CONSENTKIT_SERVICES=["youtube"])
    vendors = app.extensions["consentkit"].vendors
    everything = frozenset({"functional", "analytics", "performance", "marketing"})
    assert vendors.allows(Target("www.youtube.com", "/embed/x"), everything)
    assert not vendors.allows(Target("www.googletagmanager.com", "/gtm.js"), everything)
    assert vendors.widening(frozenset({"necessary"})) == ("marketing",)


@pytest.mark.parametrize("value", ["all", True, None])
def test_a_wrong_undeclared_vendors_value_is_a_config_error(tmp_path, value):
    with pytest.raises(ConsentConfigError, match="CONSENTKIT_UNDECLARED_VENDORS.*'blocked'"):
        make_app(tmp_path, CONSENTKIT_UNDECLARED_VENDORS=value)


def test_the_policy_lists_no_host_another_source_already_allows():
    from flask_consentkit.vendors import covering

    patterns = [parse_host(h) for h in (
        "*.example.com", "a.example.com", "*.b.example.com", "example.com", "www.google.com",
        "www.google.com/recaptcha/", "maps.other.net/x/", "maps.other.net/y/", "*.example.com")]
    assert [str(p) for p in covering(patterns)] == [
        "*.example.com", "example.com", "www.google.com", "maps.other.net/x/",
        "maps.other.net/y/"]
