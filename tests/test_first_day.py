"""A real app's first day: Flask's tutorial app (flaskr), its templates as their owner wrote
them (no ``<body>``), GA4, GTM, Yandex Metrica, the Meta pixel and a YouTube embed pasted in,
and the README's quick start applied. The server's side; the browser's is
``test_first_day_browser.py``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask

from .conftest import SAME_ORIGIN
from .thirdparty.flaskr.app import VENDOR_COOKIES, create_app

PAGES = ["/", "/auth/register", "/auth/login", "/create", "/1/update", "/privacy"]


@pytest.fixture
def flaskr(tmp_path: Path) -> Flask:
    return create_app(tmp_path)


@pytest.mark.parametrize("path", PAGES)
def test_every_page_gets_the_banner_and_keeps_its_trackers_inert(flaskr: Flask,
                                                                  path: str) -> None:
    html = flaskr.test_client().get(path).get_data(as_text=True)
    assert "</body>" not in html.split('<div id="consentkit"')[0]  # flaskr has none
    assert html.count('id="consentkit-banner"') == 1
    assert html.rstrip().endswith("</div>")  # at the end of the document
    # the Google tag is kept inert; the frame and the pixels lose what they would fetch
    assert re.search(r'<script (?![^>]*type="text/plain")[^>]*googletagmanager', html) is None
    tag = re.search(r"<script [^>]*googletagmanager\.com/gtag/js[^>]*>", html)
    assert tag is not None and 'type="text/plain"' in tag.group(0)
    for fetched in ("https://www.googletagmanager.com/ns.html", "https://www.facebook.com/tr",
                    "https://mc.yandex.ru/watch"):
        assert re.search(rf'\ssrc="{re.escape(fetched)}', html) is None, fetched


def test_only_the_visible_embed_gets_a_placeholder(flaskr: Flask) -> None:
    html = flaskr.test_client().get("/").get_data(as_text=True)
    # GTM's invisible <noscript> frame gets none; the YouTube embed gets one
    assert html.count('class="consentkit-placeholder"') == 1
    assert 'data-consent-placeholder="marketing" role="group" aria-label="YouTube video player"' \
        in html


def test_accept_all_then_withdrawal_expires_what_the_vendors_set(flaskr: Flask) -> None:
    client = flaskr.test_client()
    client.get("/")  # the app's own session cookie
    client.post("/consent/", data={"action": "accept_all", "next": "/"}, headers=SAME_ORIGIN)
    html = client.get("/").get_data(as_text=True)
    assert 'src="https://www.googletagmanager.com/gtag/js?id=G-TEST000001"' in html
    assert 'src="https://www.youtube.com/embed/aqz-KE-bpKQ?si=flaskrTest"' in html
    client.get("/_vendors/cookies")
    assert all(client.get_cookie(name) is not None for name in VENDOR_COOKIES)
    response = client.post("/consent/", data={"action": "reject_all", "next": "/"},
                           headers=SAME_ORIGIN)
    assert response.status_code == 303
    for name in VENDOR_COOKIES:
        assert client.get_cookie(name) is None, name
    for name in ("session", "theme", "consentkit"):
        assert client.get_cookie(name) is not None, name
