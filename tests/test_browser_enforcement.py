"""Enforcement in real Chromium, on the example app: nothing tracks before consent.

The example app's self-hosted analytics script beacons to ``/beacon``; its
marketing embed points at ``/embed/trailer`` here, so every load of either is
counted on the server.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from example_app import create_app

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
needs_banner_js = pytest.mark.skipif(
    not (ROOT / "static" / "consentkit.js").exists(),
    reason="the banner's static/consentkit.js (activation without reload) is not on this branch",
)


class Site:
    def __init__(self, app: Flask, url: str) -> None:
        self.app = app
        self.url = url
        self.embed_hits = 0

    @property
    def beacon_requests(self) -> int:
        return int(self.app.extensions["storyforge"]["beacon_requests"])

    @property
    def beacon_recorded(self) -> int:
        return int(self.app.extensions["storyforge"]["beacon_recorded"])


@pytest.fixture
def site(live_server: Callable[[Flask], Any], tmp_path: Path) -> Site:
    app = create_app({"TESTING": True, "CONSENTKIT_LEDGER_URL": None,
                      "STORYFORGE_EMBED_URL": "/embed/trailer"})
    app.instance_path = str(tmp_path)
    holder: dict[str, Site] = {}

    @app.get("/embed/trailer")
    def trailer() -> str:
        holder["site"].embed_hits += 1
        return "<!doctype html><title>Trailer</title><p id=trailer>Trailer playing</p>"

    @app.after_request
    def no_cache(response):  # type: ignore[no-untyped-def]
        if request.path == "/embed/trailer":
            response.headers["Cache-Control"] = "no-store"
        return response

    server = live_server(app)
    holder["site"] = Site(app, server.url)
    return holder["site"]


def browse(page: Any, site: Site) -> None:
    """Visit a few pages the way a reader does, waiting until the network is quiet."""
    for path in ("/", "/story/lighthouse", "/watch", "/about"):
        page.goto(site.url + path, wait_until="networkidle")


def cookie_names(page: Any) -> set[str]:
    return {c["name"] for c in page.context.cookies()}


def test_nothing_tracks_before_consent(site, page):
    browse(page, site)
    assert site.beacon_requests == 0
    assert site.embed_hits == 0
    assert page.evaluate("document.documentElement.dataset.analytics") is None
    page.goto(site.url + "/story/lighthouse", wait_until="networkidle")
    assert page.locator("[data-consent-placeholder=marketing]").is_visible()
    assert page.locator("iframe[data-consent=marketing]").get_attribute("src") is None
    assert "sf_last_story" not in cookie_names(page)


def test_reject_all_keeps_the_beacon_silent(site, page):
    page.goto(site.url + "/story/lighthouse", wait_until="networkidle")
    page.click("#consentkit-banner [value=reject_all]")
    page.wait_for_function("document.getElementById('consentkit-banner').hidden")
    browse(page, site)
    assert site.beacon_requests == 0
    assert site.embed_hits == 0
    assert "sf_last_story" not in cookie_names(page)


@needs_banner_js
def test_accept_all_reloads_under_the_new_policy_keeping_the_scroll_position(site, page):
    page.set_viewport_size({"width": 800, "height": 400})
    page.goto(site.url + "/story/lighthouse", wait_until="networkidle")
    page.evaluate("""() => {
        document.body.style.minHeight = "3000px";
        window.__sameDocument = true;
        document.addEventListener("consentkit:change", (e) =>
            sessionStorage.setItem("changed", JSON.stringify(e.detail.granted)));
    }""")
    page.evaluate("window.scrollTo(0, 900)")
    assert site.beacon_requests == 0
    # the embed's host (marketing) is outside this page's policy: the choice reloads it
    with page.expect_navigation(wait_until="networkidle"):
        page.click("#consentkit-banner [value=accept_all]")
    assert page.evaluate("window.__sameDocument") is None  # a new document
    assert "marketing" in page.evaluate("JSON.parse(sessionStorage.getItem('changed'))")
    page.wait_for_function("window.scrollY > 0")
    assert page.evaluate("document.documentElement.dataset.analytics") == "sent"
    assert page.frame_locator("iframe[data-consent=marketing]").locator("#trailer") \
        .text_content() == "Trailer playing"  # activated by the server this time
    assert page.locator("[data-consent-placeholder]").count() == 0
    assert site.beacon_recorded == site.beacon_requests == 1
    assert site.embed_hits == 1
    page.goto(site.url + "/story/caravan", wait_until="networkidle")
    assert page.evaluate("document.documentElement.dataset.analytics") == "sent"
    assert site.beacon_recorded == 2
    assert {"sf_visitor", "sf_last_story"} <= cookie_names(page)


@needs_banner_js
def test_embed_shows_its_placeholder_until_its_own_category_is_granted(site, page):
    page.goto(site.url + "/story/lighthouse", wait_until="networkidle")
    page.click("#consentkit-banner [data-consentkit-settings]")
    page.check("#consentkit-cat-analytics")
    page.click("#consentkit-preferences button[value=save]")
    page.wait_for_function("document.documentElement.dataset.analytics === 'sent'")
    assert page.locator("[data-consent-placeholder=marketing]").is_visible()
    assert site.embed_hits == 0
    # the placeholder's button opens the choice at the marketing category
    page.click("[data-consentkit-open=marketing]")
    assert page.evaluate("document.activeElement.id") == "consentkit-cat-marketing"


def test_without_javascript_nothing_tracks_and_the_form_post_enables_it(site, nojs_page):
    page = nojs_page
    browse(page, site)
    page.goto(site.url + "/story/lighthouse", wait_until="networkidle")
    assert site.embed_hits == 0 and site.beacon_requests == 0
    assert "sf_last_story" not in cookie_names(page)
    assert page.locator("script[src='/static/analytics.js']").get_attribute("type") == \
        "text/plain"
    # the placeholder is a plain link to the preferences at that category
    page.click("[data-consentkit-open=marketing]")
    assert page.url.startswith(site.url + "/consent/?next=/story/lighthouse")
    page.click("button[value=accept_all]")
    page.wait_for_load_state("networkidle")
    assert page.url == site.url + "/story/lighthouse"
    assert site.embed_hits == 1
    assert page.frame_locator("iframe[data-consent=marketing]").locator("#trailer") \
        .text_content() == "Trailer playing"
    assert page.locator("script[src='/static/analytics.js']").get_attribute("type") is None
    page.reload(wait_until="networkidle")
    assert "sf_last_story" in cookie_names(page)


def test_withdrawal_expires_httponly_analytics_cookies(site, nojs_page):
    page = nojs_page
    page.goto(site.url + "/consent/?next=/story/lighthouse")
    page.click("button[value=accept_all]")
    page.wait_for_load_state("networkidle")
    page.goto(site.url + "/story/lighthouse")
    # no JS, so set the beacon's HttpOnly cookie through a plain request of this browser
    page.context.request.post(site.url + "/beacon", headers={"Origin": site.url})
    assert {"sf_visitor", "sf_last_story"} <= cookie_names(page)
    assert next(c for c in page.context.cookies() if c["name"] == "sf_visitor")["httpOnly"]
    page.goto(site.url + "/consent/?next=/about")
    page.click("button[value=reject_all]")
    page.wait_for_load_state("networkidle")
    assert not {"sf_visitor", "sf_last_story"} & cookie_names(page)


@needs_banner_js
def test_consent_mode_defaults_then_update_on_a_choice(site, page):
    page.goto(site.url + "/story/lighthouse", wait_until="networkidle")
    calls = "window.dataLayer.map(a => Array.from(a))"
    (default,) = [c for c in page.evaluate(calls) if c[:2] == ["consent", "default"]]
    assert default[2]["analytics_storage"] == "denied"
    assert default[2]["security_storage"] == "granted"
    # the choice widens the browser policy, so the page reloads and starts from it
    with page.expect_navigation(wait_until="networkidle"):
        page.click("#consentkit-banner [value=accept_all]")
    (default,) = [c for c in page.evaluate(calls) if c[:2] == ["consent", "default"]]
    assert set(default[2].values()) == {"granted"}
    page.goto(site.url + "/about", wait_until="networkidle")
    (default,) = [c for c in page.evaluate(calls) if c[:2] == ["consent", "default"]]
    assert set(default[2].values()) == {"granted"}
