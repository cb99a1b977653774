"""The example app's "about your data" page shows what the site knows right now."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app import create_app

from .collect_helpers import IPHONE, grant


@pytest.fixture
def example(testdata: Path) -> Flask:
    return create_app({"TESTING": True, "CONSENTKIT_LEDGER_URL": None,
                       "CONSENTKIT_GEOIP_DATABASE": str(testdata / "GeoIP2-City-Test.mmdb")})


def cells(html: str) -> dict[str, str]:
    rows = re.findall(r'<tr data-field="(\w+)" data-allowed="\w+">.*?<td>(.*?)</td>', html, re.S)
    return {field: re.sub(r"<[^>]+>", "", value).strip() for field, value in rows}


def get(client: FlaskClient, ip: str = "175.16.199.23") -> dict[str, str]:
    response = client.get("/about/data", environ_overrides={"REMOTE_ADDR": ip},
                          headers={"User-Agent": IPHONE})
    assert response.status_code == 200
    return cells(response.get_data(as_text=True))


def test_page_changes_with_consent(example: Flask) -> None:
    client = example.test_client()
    before = get(client)
    assert set(before) == {"ip", "country", "region", "city", "browser", "browser_version",
                           "os", "os_version", "device_type"}
    assert set(before.values()) == {"not collected"}

    grant(client, "analytics")
    after = get(client)
    assert (after["ip"], after["country"], after["city"]) == ("175.16.199.0", "CN", "Changchun")
    assert after["browser"] == "not collected"

    grant(client, "analytics", "performance")
    both = get(client)
    assert (both["browser"], both["device_type"]) == ("Mobile Safari", "mobile")

    grant(client)
    assert set(get(client).values()) == {"not collected"}


def test_page_says_unknown_when_allowed_but_not_known(example: Flask) -> None:
    client = example.test_client()
    grant(client, "analytics")
    page = get(client, ip="127.0.0.1")
    assert page["ip"] == "127.0.0.0" and page["country"] == "unknown"


def test_page_is_linked_from_every_page(example: Flask) -> None:
    html = example.test_client().get("/").get_data(as_text=True)
    assert 'href="/about/data"' in html
