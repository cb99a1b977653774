"""Rules per audience in Chromium: a forbidden service stays off for a Russian visitor.

The visitor's address reaches the app as a reverse proxy gives it (werkzeug's
``ProxyFix``, ``X-Forwarded-For``), and is looked up in the MaxMind test database.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_consentkit import ConsentKit

from .conftest import SECRET
from .test_regions import REGIONS, RU, UK, offered

pytestmark = pytest.mark.browser

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<script src="https://www.google-analytics.com/analytics.js"></script>
<script src="https://mc.yandex.ru/metrika/tag.js"></script>
</head><body><p>shop</p>
<script>
  /* built at run time: the server's rewrite cannot see these, only the policy stops them */
  window.later = function () {
    new Image().src = "https://www.google-" + "analytics.com/collect?v=1";
    new Image().src = "https://mc.yan" + "dex.ru/watch/1";
  };
</script>
</body></html>"""


def make(testdata: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True, CONSENTKIT_LEDGER_URL=None,
                      CONSENTKIT_REGIONS=REGIONS,
                      CONSENTKIT_SERVICES=["google-analytics", "yandex-metrica"],
                      CONSENTKIT_GEOIP_DATABASE=str(testdata / "GeoIP2-City-Test.mmdb"))
    ConsentKit(app)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]

    @app.get("/")
    def home() -> str:
        return PAGE

    return app


def record_elsewhere(context: Any, reached: list[str]) -> None:
    """Requests of ``context`` to any host but 127.0.0.1: noted in ``reached`` and answered
    empty, never sent."""

    def route(r: Any) -> None:
        host = urlsplit(r.request.url).hostname
        if host == "127.0.0.1":
            r.continue_()
        else:  # never the network: note it and answer empty
            reached.append(str(host))
            r.fulfill(status=200, body="", content_type="text/javascript")

    context.route("**/*", route)


def visit(browser: Any, server: Any, addr: str) -> tuple[list[str], str]:
    """Accept everything, come back, let the page reach out: the hosts it reached."""
    context = browser.new_context(extra_http_headers={"X-Forwarded-For": addr})
    reached: list[str] = []

    record_elsewhere(context, reached)
    try:
        page = context.new_page()
        page.goto(server.url + "/", wait_until="load")
        page.click("#consentkit-banner [value=accept_all]")
        # the banner's script reloads the page when the choice widens its policy
        page.wait_for_timeout(500)
        page.wait_for_load_state("load")
        page.goto(server.url + "/", wait_until="load")
        page.evaluate("window.later()")
        page.wait_for_timeout(300)
        prefs = page.goto(server.url + "/consent/", wait_until="load")
        assert prefs is not None
        text = page.content()  # the services are in closed <details>
        return reached, text
    finally:
        context.close()


def test_a_russian_visitor_never_reaches_the_forbidden_service(live_server, browser, testdata):
    server = live_server(make(testdata))
    reached, prefs = visit(browser, server, RU)
    assert "mc.yandex.ru" in reached
    assert not [h for h in reached if "google" in h], reached
    assert "Not offered in your region: Google Analytics 4." in prefs
    prefs = offered(prefs)
    assert "Yandex Metrica" in prefs and "Google Analytics" not in prefs


def test_a_british_visitor_reaches_both(live_server, browser, testdata):
    server = live_server(make(testdata))
    reached, prefs = visit(browser, server, UK)
    assert "mc.yandex.ru" in reached and "www.google-analytics.com" in reached
    assert "Google Analytics" in prefs
