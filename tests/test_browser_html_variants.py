"""Every HTML variant of ``tests/pages/variants/`` in a real Chromium: no third-party
request before consent, with JavaScript on and off.

Every request that leaves the loopback interface is aborted and recorded (the
test machine reaches no other host anyway). Each page is served by an app with
``ConsentKit(app)`` defaults — the browser's policy and the rewrite together —
and by one with ``CONSENTKIT_CSP = False``, where the rewrite alone has to
stop the request. Served by bare Flask, each page does make the request: the
variants are real ways to leak.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask, Response

from flask_consentkit import ConsentKit

from .conftest import SECRET, LiveServer

pytestmark = pytest.mark.browser

VARIANTS = Path(__file__).resolve().parent / "pages" / "variants"
PAGES = sorted(p.stem for p in VARIANTS.glob("*.html"))
#: what no request shows (a connection, a name looked up), checked in the unit tests
SILENT = {"link_preconnect"}
#: pages whose tracker only a browser without JavaScript fetches
NO_JS_ONLY = {"noscript_pixel", "gtm_noscript"}
#: pages whose tracker only a browser with JavaScript fetches (the raw-text reading)
JS_ONLY = {"noscript_breakout"}


def make_app(with_kit: bool, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True, CONSENTKIT_LEDGER_URL=None)
    app.config.update(config)
    if with_kit:
        ConsentKit(app)

    @app.get("/v/<name>")
    def variant(name: str) -> Response:
        if name not in PAGES:
            return Response("no such page", status=404)
        return Response((VARIANTS / f"{name}.html").read_bytes(), mimetype="text/html")

    return app


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, LiveServer]]:
    started = {
        "defaults": LiveServer(make_app(True)),
        "rewrite only": LiveServer(make_app(True, CONSENTKIT_CSP=False)),
        "bare": LiveServer(make_app(False)),
    }
    yield started
    for server in started.values():
        server.stop()


def third_party_requests(page: Any) -> list[str]:
    """Abort and record every request that would leave the loopback interface."""
    hits: list[str] = []

    def handle(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            hits.append(url)
            route.abort()

    page.route("**/*", handle)
    return hits


def visit(page: Any, url: str) -> list[str]:
    hits = third_party_requests(page)
    page.goto(url, wait_until="networkidle")
    page.wait_for_timeout(150)  # media and lazily started fetches
    return hits


@pytest.fixture(params=["js", "nojs"])
def any_page(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("page" if request.param == "js" else "nojs_page")


@pytest.mark.parametrize("name", PAGES)
@pytest.mark.parametrize("app", ["defaults", "rewrite only"])
def test_no_third_party_request_before_consent(servers: dict[str, LiveServer], any_page: Any,
                                               app: str, name: str) -> None:
    hits = visit(any_page, f"{servers[app].url}/v/{name}")
    assert hits == [], (app, name)


@pytest.mark.parametrize("name", sorted(set(PAGES) - SILENT))
def test_served_bare_the_variant_makes_the_request(
        servers: dict[str, LiveServer], browser: Any, name: str) -> None:
    """Without the extension Chromium does fetch from the tracker: the variant is real."""
    fetched = []
    for js in (True, False):
        if (js and name in NO_JS_ONLY) or (not js and name in JS_ONLY):
            continue
        context = browser.new_context(java_script_enabled=js)
        try:
            fetched += visit(context.new_page(), f"{servers['bare'].url}/v/{name}")
        finally:
            context.close()
    assert fetched, name


def test_the_neutralised_links_keep_no_href_in_the_browser(
        servers: dict[str, LiveServer], page: Any) -> None:
    """preconnect and dns-prefetch make no request to see: their href is gone in the DOM."""
    visit(page, f"{servers['rewrite only'].url}/v/link_preconnect")
    assert page.evaluate("[...document.querySelectorAll('link[data-tracker]')]"
                         ".map(l => l.getAttribute('href'))") == [None, None]


def test_the_unknown_embed_shows_a_placeholder_and_the_invisible_ones_none(
        servers: dict[str, LiveServer], page: Any, live_server: Callable[..., Any]) -> None:
    visit(page, f"{servers['defaults'].url}/v/iframe_unknown_host")
    placeholder = page.locator(".consentkit-placeholder")
    assert placeholder.count() == 1 and placeholder.is_visible()
    assert "has not declared" in placeholder.inner_text()
    visit(page, f"{servers['defaults'].url}/v/iframe_invisible")
    assert page.locator(".consentkit-placeholder").count() == 0
