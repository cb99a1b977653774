"""The banner's notices in a real Chromium (issue 15): Global Privacy Control received and
honoured, in four languages; the policy's change and its effective date after a version bump."""

from __future__ import annotations

from typing import Any

import pytest

from .banner_app import banner_app
from .test_notices import CHANGES, EFFECTIVE  # the texts the app is given, and their dates

pytestmark = pytest.mark.browser

LANGUAGES = ("az", "en", "ru", "tr")
#: the California display ("Opt-Out Request Honored") and what the signal keeps off
HONOURED = {"en": ("opt-out request honored", "Marketing"),
            "az": ("imtina sorğusu yerinə yetirildi", "Marketinq"),
            "ru": ("отказ выполнен", "Маркетинговые"),
            "tr": ("vazgeçme talebi uygulandı", "Pazarlama")}


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_gpc_is_said_to_be_received_and_honoured_in_every_language(
        browser: Any, live_server: Any, tmp_path: Any, javascript: bool) -> None:
    server = live_server(banner_app(tmp_path))
    context = browser.new_context(extra_http_headers={"Sec-GPC": "1"},
                                  java_script_enabled=javascript)
    plain = browser.new_context()
    try:
        page = context.new_page()
        for lang in LANGUAGES:
            page.goto(f"{server.url}/page?lang={lang}")
            note = page.locator("#consentkit-banner .ck-gpc")
            assert note.is_visible(), lang
            text = note.inner_text()
            honoured, off = HONOURED[lang]
            assert "Global Privacy Control" in text and honoured in text.lower(), lang
            assert off in text, lang
            page.goto(f"{server.url}/consent/?lang={lang}")
            assert page.locator(".ck-gpc").inner_text() == text, lang
        state = page.request.get(server.url + "/consent/state").json()
        assert state["gpc"] == {"received": True, "honoured": True, "off": ["marketing"],
                                "overridden": []}
        # "Accept all" keeps it so: marketing stays off, and the reopened banner says why
        page.goto(f"{server.url}/page?lang=en")
        page.click("#consentkit-banner [value=accept_all]")  # a form POST without JS
        page.locator("#consentkit-banner").wait_for(state="hidden")
        state = page.request.get(server.url + "/consent/state").json()
        assert "marketing" not in state["granted"] and state["gpc"]["honoured"] is True
        page.goto(f"{server.url}/page?lang=en")
        assert page.locator(".ck-reopen").is_visible()
        assert page.locator(".ck-gpc").count() == 1  # in the reopened banner's markup
        # a browser without the signal is told nothing of it
        other = plain.new_page()
        other.goto(f"{server.url}/page?lang=en")
        assert other.locator(".ck-gpc").count() == 0
    finally:
        context.close()
        plain.close()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_version_bump_asks_again_and_says_what_changed_and_from_when(
        browser: Any, live_server: Any, tmp_path: Any, lang: str) -> None:
    """The visitor chooses under version 1; the site then runs version 2 (the same secret
    key, another port: the browser sends the same cookie)."""
    before = live_server(banner_app(tmp_path / "v1"))
    after = live_server(banner_app(tmp_path / "v2", CONSENTKIT_POLICY_VERSION="2",
                                   CONSENTKIT_POLICY_EFFECTIVE="2026-11-01",
                                   CONSENTKIT_POLICY_CHANGES=CHANGES))
    context = browser.new_context(viewport={"width": 375, "height": 812})
    try:
        page = context.new_page()
        page.goto(f"{before.url}/page?lang={lang}")
        assert page.locator(".ck-changed").count() == 0
        page.click("#consentkit-banner [value=reject_all]")
        page.locator("#consentkit-banner").wait_for(state="hidden")

        page.goto(f"{after.url}/page?lang={lang}")
        banner = page.locator("#consentkit-banner")
        assert banner.is_visible()  # asked again
        news = page.locator("#consentkit-banner .ck-changed")
        assert news.is_visible() and EFFECTIVE[lang] in news.inner_text()
        assert news.get_attribute("href") == "/privacy"  # linked to the policy
        assert CHANGES[lang] in banner.inner_text()
        box = banner.bounding_box()
        assert box is not None and box["height"] <= 0.35 * 812

        page.click("#consentkit-banner [value=reject_all]")
        banner.wait_for(state="hidden")
        page.reload()
        assert page.locator("#consentkit-banner").is_hidden()  # decided for version 2
        page.goto(f"{after.url}/consent/?lang={lang}")
        assert EFFECTIVE[lang] in page.locator(".ck-policy").inner_text()
        assert CHANGES[lang] in page.locator(".ck-policy").inner_text()
        state = page.request.get(after.url + "/consent/state").json()
        assert state["decided"] is True and state["policy_version"] == "2"
    finally:
        context.close()
