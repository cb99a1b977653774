"""The "about your data" page in real Chromium, JavaScript off: it follows the choice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from example_app import create_app

pytestmark = pytest.mark.browser


def value(page: Any, field: str) -> str:
    return str(page.text_content(f'tr[data-field="{field}"] td')).strip()


def choose(page: Any, base: str, *categories: str) -> None:
    page.goto(base + "/consent/?next=/about/data")
    for box in page.query_selector_all('input[name="categories"]:not([disabled])'):
        if box.get_attribute("value") in categories:
            box.check()
        else:
            box.uncheck()
    page.click('button[name="action"][value="save"]')
    page.wait_for_url(base + "/about/data")


def test_about_your_data_follows_the_choice(
    live_server: Any, nojs_page: Any, testdata: Path
) -> None:
    app = create_app({"CONSENTKIT_LEDGER_URL": None,
                      "CONSENTKIT_GEOIP_DATABASE": str(testdata / "GeoIP2-City-Test.mmdb")})
    server = live_server(app)
    page = nojs_page
    page.goto(server.url + "/about/data")
    assert value(page, "ip") == "not collected"
    assert value(page, "browser") == "not collected"

    choose(page, server.url, "analytics")
    assert value(page, "ip") == "127.0.0.0"  # the loopback address, shortened
    assert value(page, "country") == "unknown"  # loopback has no location; never looked up
    assert value(page, "browser") == "not collected"

    choose(page, server.url, "performance")
    assert value(page, "ip") == "not collected"
    assert "Chrome" in value(page, "browser")
    assert value(page, "device_type") == "desktop"
