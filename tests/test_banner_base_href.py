"""A page with ``<base href>``: the banner's URLs stay on the site.

A ``<base href>`` resolves every relative URL of the page against its own address,
root-relative ones included (HTML, "document base URL"): a page whose base is its
CDN (``https://cdn.example-static.net/assets/``) would post the visitor's choice to
the CDN, and fetch the banner's script and stylesheet from there. On such a page the
banner's URLs carry the request's scheme and host.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from .conftest import SECRET

CDN = "cdn.example-static.net"


def base_app(base: str = f"https://{CDN}/assets/") -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True, CONSENTKIT_LEDGER_URL=None,
                      CONSENTKIT_SERVICES=[{"name": "Site CDN", "category": "necessary",
                                            "hosts": [CDN]}])
    from flask_consentkit import ConsentKit

    ConsentKit(app)

    @app.get("/based")
    def based() -> str:
        return (f'<!doctype html><html><head><BASE HREF="{base}"><title>t</title></head>'
                '<body><img src="logo.png" alt=""></body></html>')

    @app.get("/plain")
    def plain() -> str:
        return '<!doctype html><html><head><title>t</title></head><body><p>hi</p></body></html>'

    return app


def urls(html: str) -> list[str]:
    return re.findall(r'\s(?:action|formaction|href|src)="([^"]*)"', html)


@pytest.mark.parametrize("base", [f"https://{CDN}/assets/", "/static/"])
def test_on_a_page_with_a_base_every_url_of_the_banner_is_absolute(base: str) -> None:
    client = base_app(base).test_client()
    for _ in range(2):  # the second time from the kept page output
        html = client.get("/based", base_url="https://shop.example").get_data(as_text=True)
        banner_urls = [u for u in urls(html) if "consent" in u]
        assert banner_urls and all(u.startswith("https://shop.example/consent/")
                                   for u in banner_urls), banner_urls


def test_the_absolute_urls_follow_the_request_host() -> None:
    client = base_app().test_client()
    one = client.get("/based", base_url="https://one.example").get_data(as_text=True)
    two = client.get("/based", base_url="http://two.example:8080").get_data(as_text=True)
    assert 'action="https://one.example/consent/' in one
    assert 'action="http://two.example:8080/consent/' in two
    assert "one.example" not in two


def test_a_page_without_a_base_keeps_root_relative_urls() -> None:
    html = base_app().test_client().get("/plain").get_data(as_text=True)
    assert 'action="/consent/' in html
    assert not any(u.startswith("http") for u in urls(html))


@pytest.mark.browser
@pytest.mark.parametrize("javascript", [False, True])
def test_accept_all_on_a_page_based_on_its_cdn_is_kept_and_nothing_goes_to_the_cdn(
        browser: Any, live_server: Any, javascript: bool) -> None:
    server = live_server(base_app())
    context = browser.new_context(java_script_enabled=javascript)
    try:
        sent: list[str] = []

        def cdn(route: Any) -> None:
            sent.append(f"{route.request.method} {route.request.url}")
            route.fulfill(status=404, body="not here")

        context.route(f"https://{CDN}/**", cdn)
        page = context.new_page()
        page.goto(server.url + "/based")
        page.click("#consentkit-banner [value=accept_all]")
        for _ in range(30):  # up to 3 s for the choice's answer
            if "consentkit" in {c["name"] for c in context.cookies()}:
                break
            page.wait_for_timeout(100)
        else:
            pytest.fail(f"no consent cookie; sent to the CDN: {sent}")
        state = page.request.get(server.url + "/consent/state").json()
        assert state["decided"] is True
        assert [s for s in sent if "consent" in s] == []
    finally:
        context.close()
