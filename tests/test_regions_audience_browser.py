"""Rules per audience in Chromium: the separate information notice for a Turkish visitor,
the "Do Not Sell or Share" opt-out for a Californian one when the app chose that model.

The visitor's address reaches the app as a reverse proxy gives it (``X-Forwarded-For``,
werkzeug's ``ProxyFix``) and is looked up in the MaxMind test database.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_consentkit import ConsentKit

from .conftest import SECRET
from .test_regions import REGIONS, TR, UK, US_CA
from .test_regions_browser import record_elsewhere

pytestmark = pytest.mark.browser

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<script src="https://www.google-analytics.com/analytics.js"></script>
</head><body><p>shop</p></body></html>"""
CONTROLLER = {"name": "Example Stories LLC", "email": "privacy@example.com"}


def make(testdata: Any, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True, CONSENTKIT_LEDGER_URL=None,
                      CONSENTKIT_REGIONS=REGIONS, CONSENTKIT_SERVICES=["google-analytics"],
                      CONSENTKIT_PRIVACY_POLICY_URL="https://example.com/privacy",
                      CONSENTKIT_CONTROLLER=CONTROLLER,
                      CONSENTKIT_GEOIP_DATABASE=str(testdata / "GeoIP2-City-Test.mmdb"))
    app.config.update(config)
    ConsentKit(app)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]

    @app.get("/")
    def home() -> str:
        return PAGE

    return app


def context_for(browser: Any, addr: str, reached: list[str], **options: Any) -> Any:
    headers = {"X-Forwarded-For": addr, **options.pop("headers", {})}
    context = browser.new_context(extra_http_headers=headers, **options)

    record_elsewhere(context, reached)
    return context


def banner_height(browser: Any, server: Any, addr: str, lang: str, width: int,
                  height: int) -> float:
    context = context_for(browser, addr, [], viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        page.goto(f"{server.url}/?lang={lang}", wait_until="load")
        box = page.locator("#consentkit-banner").bounding_box()
        assert box is not None
        return float(box["height"])
    finally:
        context.close()


@pytest.mark.parametrize("width, height, limit", [(375, 812, 0.35), (320, 568, 0.50)])
def test_the_notice_link_takes_no_room_of_its_own(live_server, browser, testdata, width,
                                                  height, limit):
    server = live_server(make(testdata))
    for lang in ("az", "en", "ru", "tr"):
        turkish = banner_height(browser, server, TR, lang, width, height)
        british = banner_height(browser, server, UK, lang, width, height)
        # the link takes the privacy policy's place: no line more than the policy's
        assert turkish <= british + 1, lang
        assert turkish / height <= limit, lang


def test_a_turkish_visitor_reads_the_notice_without_javascript(live_server, browser, testdata):
    server = live_server(make(testdata))
    context = context_for(browser, TR, [], java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(server.url + "/?lang=tr", wait_until="load")
        link = page.locator("#consentkit-banner .ck-notice-link")
        assert link.is_visible() and link.inner_text() == "Aydınlatma Metni"
        with page.expect_navigation():
            link.click()
        assert urlsplit(page.url).path == "/consent/notice"
        text = page.locator("main").inner_text()
        assert "Example Stories LLC" in text and "privacy@example.com" in text
        assert "Yurt dışına aktarım" in text and "Google Analytics 4: US" in text
        assert "gün saklanır" in text
        # the notice leads to the settings, where transfers abroad are a line of their own
        with page.expect_navigation():
            page.click("#consentkit-notice-revoke a")
        assert page.locator("#consentkit-transfers").count() == 1
    finally:
        context.close()


def test_a_californian_opts_out_with_the_link(live_server, browser, testdata):
    server = live_server(make(testdata, CONSENTKIT_REGIONS={
        **REGIONS, "US-CA": {"preset": "us-ca", "model": "opt-out"}}))
    reached: list[str] = []
    context = context_for(browser, US_CA, reached)
    try:
        page = context.new_page()
        page.goto(server.url + "/", wait_until="load")
        assert not page.locator("#consentkit-banner").is_visible()  # nothing to opt into
        assert "www.google-analytics.com" in reached  # on until the visitor opts out
        link = page.locator(".ck-optout")
        assert link.is_visible()
        assert link.inner_text() == "Do Not Sell or Share My Personal Information"
        assert page.locator(".ck-reopen").is_visible()
        with page.expect_navigation():
            link.click()
        with page.expect_navigation():
            page.click("button[value=save]")
        assert "Opt-Out Request Honored" in page.locator("main").inner_text()
        state = page.evaluate("fetch('/consent/state').then(r => r.json())")
        assert state["decided"] and "marketing" not in state["granted"]
    finally:
        context.close()


def test_a_californian_with_gpc_is_opted_out_and_told(live_server, browser, testdata):
    server = live_server(make(testdata, CONSENTKIT_REGIONS={
        **REGIONS, "US-CA": {"preset": "us-ca", "model": "opt-out"}}))
    context = context_for(browser, US_CA, [], java_script_enabled=False,
                          headers={"Sec-GPC": "1"})
    try:
        page = context.new_page()
        page.goto(server.url + "/consent/opt-out", wait_until="load")
        text = page.locator("main").inner_text()
        assert "Global Privacy Control" in text and "Opt-Out Request Honored" in text
    finally:
        context.close()
