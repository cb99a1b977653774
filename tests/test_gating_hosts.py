"""Host-based decisions: any third-party URL of a fetching element is decided by the
app's vendor registry (here one built from small data, not the shipped catalogue)."""

from __future__ import annotations

import logging
import re

import pytest

from flask_consentkit.categories import DEFAULT_CATEGORIES, HostPattern, Service
from flask_consentkit.gating.html import HostRules, ScanCache, Site, rewrite, scan
from flask_consentkit.vendors import VendorRegistry, parse_catalogue

#: the vendors these tests know (a catalogue of their own: the shipped one is data
#: that others maintain)
CATALOGUE = {"vendors": [
    {"key": "google-tag", "name": "Google tag", "category": "analytics",
     "shared_with": ["marketing"], "hosts": ["www.googletagmanager.com"]},
    {"key": "google-analytics", "name": "Google Analytics", "category": "analytics",
     "hosts": ["*.google-analytics.com", "*.analytics.google.com"]},
    {"key": "meta-pixel", "name": "Meta Pixel", "category": "marketing",
     "hosts": ["connect.facebook.net", "www.facebook.com"]},
    {"key": "youtube", "name": "YouTube", "category": "marketing",
     "hosts": ["www.youtube.com", "www.youtube-nocookie.com"]},
    {"key": "vimeo", "name": "Vimeo", "category": "marketing", "hosts": ["player.vimeo.com"]},
    {"key": "linkedin-insight", "name": "LinkedIn Insight", "category": "marketing",
     "hosts": ["snap.licdn.com", "px.ads.linkedin.com"]},
    {"key": "yandex-metrica", "name": "Yandex Metrica", "category": "analytics",
     "hosts": ["mc.yandex.ru"]},
    {"key": "hotjar", "name": "Hotjar", "category": "analytics", "hosts": ["*.hotjar.com"]},
    {"key": "clarity", "name": "Clarity", "category": "analytics", "hosts": ["*.clarity.ms"]},
    {"key": "tiktok", "name": "TikTok", "category": "marketing",
     "hosts": ["analytics.tiktok.com"]},
    {"key": "tracker", "name": "Tracker", "category": "marketing",
     "hosts": ["cdn.tracker.example", "*.tracker.example"]},
    {"key": "maps", "name": "Maps", "category": "functional", "hosts": ["maps.example.net"]},
]}
OWN = "example.com"


def registry() -> VendorRegistry:
    """Default categories; one declared service (a necessary CDN), the rest from the data."""
    cdn = Service(name="Our CDN", category="necessary", key="our-cdn",
                  hosts=(HostPattern("cdn.ours.example"),), declared=True)
    return VendorRegistry(DEFAULT_CATEGORIES, [cdn], parse_catalogue([("test.json", CATALOGUE)]))


HOSTS = HostRules(registry())


class Gate:
    """A fixed set of granted categories; placeholders name their category."""

    def __init__(self, *granted: str) -> None:
        self.granted = {"necessary", *granted}
        self.reports: dict[str, str] = {}

    def allows(self, category: str) -> bool:
        return category in self.granted

    def placeholder(self, category: str, title: str | None) -> bytes:
        return b"<div data-ph='%s'></div>" % category.encode()

    def report(self, key: str, message: str) -> None:
        self.reports.setdefault(key, message)


def run(html: str, *granted: str, **kw: object) -> str:
    out, _ = rewrite(html.encode(), Gate(*granted), hosts=HOSTS, own=OWN, **kw)  # type: ignore[arg-type]
    return out.decode()


def sites(html: str) -> list[Site]:
    return scan(html.encode(), hosts=HOSTS, own=OWN)[0]


# -- the categories a site carries ----------------------------------------------------


def test_a_site_carries_the_categories_of_its_hosts_service():
    [site] = sites('<img src="https://cdn.tracker.example/p.gif">')
    assert site.categories == frozenset({"marketing"}) and site.category == "marketing"
    [site] = sites('<script src="https://www.googletagmanager.com/gtm.js?id=GTM-1"></script>')
    assert site.needs == (frozenset({"analytics"}),)  # the tracker's category, in the host's


def test_an_undeclared_unknown_host_is_allowed_for_nobody():
    html = '<img src="https://unknown.example/p.gif" alt="">'
    [site] = sites(html)
    assert site.categories == frozenset() and site.category == ""
    for granted in ((), ("analytics", "marketing", "functional", "performance")):
        assert run(html, *granted) == ('<img data-consent-src="https://unknown.example/p.gif" '
                                       'data-consentkit-neutralised data-consentkit-undeclared '
                                       'alt="">')


def test_the_page_and_necessary_hosts_need_nothing():
    html = ('<script src="https://cdn.ours.example/app.js"></script>'
            '<img src="https://example.com/logo.png"><img src="//EXAMPLE.com./x.png">'
            '<img src="/static/a.png" srcset="/a.png 2x"><link rel=preconnect href=/x>'
            '<img src="data:image/gif;base64,R0lGOD"><a href="https://unknown.example/">x</a>')
    assert sites(html) == []
    assert run(html) == html


def test_a_page_seen_before_is_decided_for_each_granted_set_from_one_scan():
    cache = ScanCache()
    page = (b'<iframe src="https://maps.example.net/embed" title="Map"></iframe>'
            b'<img src="https://cdn.tracker.example/p.gif">')
    expected = {granted: rewrite(page, Gate(*granted), hosts=HOSTS, own=OWN)[0]
                for granted in ((), ("functional",), ("marketing",), ("functional", "marketing"))}
    for _ in range(2):
        for granted, out in expected.items():
            assert rewrite(page, Gate(*granted), cache=cache, hosts=HOSTS, own=OWN)[0] == out
    assert len(cache) == 1
    assert b"<div data-ph='functional'>" in expected[("marketing",)]
    assert expected[("functional", "marketing")] == page


def test_a_page_is_kept_per_own_host():
    cache = ScanCache()
    page = b'<img src="https://example.com/logo.png">'
    assert rewrite(page, Gate(), cache=cache, hosts=HOSTS, own="example.com")[0] == page
    other = rewrite(page, Gate(), cache=cache, hosts=HOSTS, own="example.org")[0]
    assert b"data-consentkit-undeclared" in other
    assert len(cache) == 2


# -- embeds --------------------------------------------------------------------------


def test_an_iframe_of_a_host_not_allowed_gets_the_placeholder():
    html = '<iframe src="https://maps.example.net/embed?x=1" title="Map" width="600"></iframe>'
    assert run(html) == ("<div data-ph='functional'></div>"
                         '<iframe data-consent="functional" data-consent-src="https://maps.'
                         'example.net/embed?x=1" data-consentkit-neutralised title="Map" '
                         'width="600"></iframe>')
    assert run(html, "functional") == html


def test_an_iframe_of_an_undeclared_host_says_so_in_its_placeholder():
    out = run('<iframe src="https://unknown.example/embed" title="X"></iframe>')
    assert out.startswith("<div data-ph=''></div><iframe data-consent-src=")


@pytest.mark.parametrize("attrs", [
    'width="0" height="0"', 'width="1" height="1"', "height=0", "width='1px'", "hidden",
    'style="display:none"', 'style="visibility : hidden"', 'style="DISPLAY: NONE;"',
    'aria-hidden="true" width="0"',
    'height="0" width="0" style="display:none;visibility:hidden"',
])
def test_an_invisible_iframe_is_neutralised_without_a_placeholder(attrs):
    html = f'<iframe src="https://cdn.tracker.example/sync" {attrs}></iframe>'
    out = run(html)
    assert "data-ph" not in out
    assert ' src="' not in out.replace("data-consent-src", "")
    assert "data-consentkit-neutralised" in out


def test_gtms_noscript_frame_gets_no_placeholder():
    html = ('<noscript><iframe src="https://www.googletagmanager.com/ns.html?id=GTM-X" '
            'height="0" width="0" style="display:none;visibility:hidden"></iframe></noscript>')
    out = run(html)
    assert "data-ph" not in out and 'data-consent-src="https://www.googletagmanager.com/ns' in out
    assert run(html, "analytics") == html


def test_a_marked_iframe_needs_its_host_too():
    html = ('<iframe data-consent="marketing" data-consent-src="https://unknown.example/v" '
            'title="V"></iframe>')
    [site] = sites(html)
    assert site.categories == frozenset()  # its host is nobody's: it never loads
    assert run(html, "marketing").startswith("<div data-ph=''>")


# -- what a policy cannot stop -------------------------------------------------------


@pytest.mark.parametrize("rel", ["preconnect", "dns-prefetch", "prerender", "preload", "prefetch",
                                 "modulepreload", "stylesheet", "icon", "shortcut icon",
                                 "manifest", "PreConnect"])
def test_a_link_to_a_host_not_allowed_loses_its_href(rel):
    html = f'<link rel="{rel}" href="https://cdn.tracker.example/x" crossorigin>'
    assert run(html) == ('<link data-consent="marketing" data-consent-href="https://cdn.tracker'
                         f'.example/x" data-consentkit-neutralised rel="{rel}" crossorigin>')
    assert run(html, "marketing") == html


@pytest.mark.parametrize("rel", ["canonical", "alternate", "author", "next"])
def test_a_link_that_fetches_nothing_keeps_its_href(rel):
    html = f'<link rel="{rel}" href="https://cdn.tracker.example/x">'
    assert run(html) == html


# -- the Google tag ------------------------------------------------------------------

ADS = '<script async src="https://www.googletagmanager.com/gtag/js?id=AW-123"></script>'
GA4 = '<script async src="https://www.googletagmanager.com/gtag/js?id=G-123"></script>'
ADS_INLINE = ("<script>window.dataLayer = window.dataLayer || []; function gtag(){dataLayer."
              "push(arguments);} gtag('js', new Date()); gtag('config', 'AW-123');</script>")
GA4_INLINE = ADS_INLINE.replace("AW-123", "G-123")


@pytest.mark.parametrize("html", [ADS, ADS_INLINE, ADS.replace("AW-", "DC-"),
                                  ADS.replace("?id=", "?l=dataLayer&id="),
                                  "<script>gtag('event', 'conversion', {'send_to': 'AW-1/x'})"
                                  "</script>"])
def test_a_google_ads_or_floodlight_tag_needs_marketing(html):
    assert 'type="text/plain" data-consent="marketing"' in run(html, "analytics")
    assert run(html, "marketing") == html


@pytest.mark.parametrize("html", [GA4, GA4_INLINE, "<script>gtag('event', 'x')</script>"])
def test_a_google_analytics_tag_needs_analytics(html):
    assert 'type="text/plain" data-consent="analytics"' in run(html, "marketing")
    assert run(html, "analytics") == html


def test_the_loader_is_allowed_by_analytics_or_marketing():
    assert HOSTS.decide(HOSTS.target("https://www.googletagmanager.com/gtm.js")  # type: ignore[arg-type]
                        )[0] == frozenset({"analytics", "marketing"})
    both = GA4_INLINE + ADS_INLINE
    out = run(both, "analytics")
    assert out.count('type="text/plain"') == 1 and "'AW-123'" in out.split("</script>")[1]


# -- the undeclared hosts are told once per page scan -----------------------------------


def test_every_third_party_host_is_told_when_the_page_is_scanned():
    seen: list[tuple[str, str]] = []
    page = (b'<script src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>'
            b'<img srcset="https://a.unknown.example/1.png 1x, https://b.unknown.example/2.png">'
            b'<link rel=dns-prefetch href="//c.unknown.example"><a href="https://d.example/">d</a>'
            b'<div style="background:url(https://e.unknown.example/bg.png)"></div>'
            b'<img src="/own.png">')
    cache = ScanCache()
    for _ in range(3):
        rewrite(page, Gate(), cache=cache, hosts=HOSTS, own=OWN,
                saw=lambda host, how: seen.append((host, how)))
    assert seen == [("www.googletagmanager.com", "loads a script from"),
                    ("a.unknown.example", "loads an image from"),
                    ("b.unknown.example", "loads an image from"),
                    ("c.unknown.example", "looks up early"),
                    ("e.unknown.example", "loads a style's images or fonts from")]


def test_the_app_logs_each_undeclared_host_once_with_the_line_that_declares_it(
        tmp_path, caplog):
    from flask import Response

    from .conftest import make_app

    app = make_app(tmp_path, CONSENTKIT_AUTO_INJECT=False)

    @app.get("/p")
    def page() -> Response:
        return Response(b'<img src="https://nowhere.unknown.example/p.gif"><p>x</p>',
                        mimetype="text/html")

    client = app.test_client()
    with caplog.at_level(logging.WARNING, "flask_consentkit"):
        for _ in range(3):
            body = client.get("/p").get_data()
    assert b"data-consentkit-undeclared" in body
    logged = [r.getMessage() for r in caplog.records if "nowhere.unknown.example" in
              r.getMessage()]
    assert len(logged) == 1
    assert re.search(r"/p loads an image from an undeclared host, nowhere\.unknown\.example; "
                     r".*CONSENTKIT_SERVICES", logged[0])
