"""Geo lookups through MaxMind's web service, its failures mocked with ``responses``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import responses
from flask import Flask

from flask_consentkit import ConsentConfigError
from flask_consentkit.collect.geo import GeoRecord, WebServiceGeo
from flask_consentkit.extension import get_kit_state

from .collect_helpers import add_probe, grant, probe

BASE = "https://geoip.maxmind.com/geoip/v2.1/city/"
CITY_JSON = {
    "city": {"geoname_id": 2038180, "names": {"en": "Changchun"}},
    "country": {"geoname_id": 1814991, "iso_code": "CN", "names": {"en": "China"}},
    "subdivisions": [{"geoname_id": 2036500, "iso_code": "22", "names": {"en": "Jilin Sheng"}}],
    "traits": {"ip_address": "175.16.199.0", "network": "175.16.199.0/24"},
}
CITY_TYPE = "application/vnd.maxmind.com-city+json; charset=UTF-8; version=2.1"
ERROR_TYPE = "application/vnd.maxmind.com-error+json; charset=UTF-8; version=2.0"


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def ws_app(app_factory: Callable[..., Flask]) -> Flask:
    app = app_factory(CONSENTKIT_GEOIP_ACCOUNT_ID=42, CONSENTKIT_GEOIP_LICENSE_KEY="key",
                      CONSENTKIT_GEOIP_TIMEOUT=1.5)
    add_probe(app)
    return app


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "flask_consentkit.collect" and r.levelno == logging.WARNING]


def city_ok(mocked: responses.RequestsMock, ip: str = "175.16.199.0") -> None:
    mocked.get(BASE + ip, body=json.dumps(CITY_JSON), content_type=CITY_TYPE)


def test_success_sends_only_the_anonymised_address(
    ws_app: Flask, mocked: responses.RequestsMock
) -> None:
    city_ok(mocked)
    client = ws_app.test_client()
    grant(client, "analytics")
    data = probe(client, "175.16.199.23")
    assert (data["country"], data["region"], data["city"]) == ("CN", "Jilin Sheng", "Changchun")
    assert len(mocked.calls) == 1
    call = mocked.calls[0]
    assert call.request.url == BASE + "175.16.199.0"
    assert "175.16.199.23" not in str(call.request.url)
    assert str(call.request.headers["Authorization"]).startswith("Basic ")
    # cached: a second visit from the same /24 asks nothing
    assert probe(client, "175.16.199.99")["country"] == "CN"
    assert len(mocked.calls) == 1


def test_no_call_without_consent(ws_app: Flask, mocked: responses.RequestsMock) -> None:
    city_ok(mocked)
    client = ws_app.test_client()
    assert probe(client, "175.16.199.23")["country"] is None
    grant(client, "performance")
    assert probe(client, "175.16.199.23")["country"] is None
    assert len(mocked.calls) == 0


def test_timeout_setting_reaches_the_client(ws_app: Flask) -> None:
    geo = get_kit_state(ws_app).geo
    assert isinstance(geo, WebServiceGeo) and geo.timeout == 1.5
    assert geo._client_or_none()._timeout == 1.5


@pytest.mark.parametrize(
    ("status", "body", "content_type", "kind"),
    [
        (401, {"code": "AUTHORIZATION_INVALID", "error": "bad key"}, ERROR_TYPE, "refused"),
        (402, {"code": "OUT_OF_QUERIES", "error": "no queries left"}, ERROR_TYPE,
         "out of queries"),
        (500, "oops", "text/plain", "failed"),
    ],
)
def test_errors_give_none_one_warning_and_a_back_off(
    ws_app: Flask, mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture,
    status: int, body: Any, content_type: str, kind: str,
) -> None:
    mocked.get(BASE + "175.16.199.0", status=status, content_type=content_type,
               body=body if isinstance(body, str) else json.dumps(body))
    client = ws_app.test_client()
    grant(client, "analytics")
    assert probe(client, "175.16.199.23")["country"] is None
    assert probe(client, "175.16.199.23")["country"] is None
    assert len(mocked.calls) == 1  # backing off: the second visit made no request
    logged = warnings_logged(caplog)
    assert len(logged) == 1 and kind in logged[0]


def test_timeout_gives_none_and_one_warning(
    ws_app: Flask, mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    mocked.get(BASE + "175.16.199.0", body=requests.exceptions.ReadTimeout("slow"))
    client = ws_app.test_client()
    grant(client, "analytics")
    assert probe(client, "175.16.199.23")["country"] is None
    assert probe(client, "175.16.199.23")["country"] is None
    logged = warnings_logged(caplog)
    assert len(logged) == 1 and "did not answer within 1.5 s" in logged[0]


def test_connection_error_gives_none(
    ws_app: Flask, mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    mocked.get(BASE + "175.16.199.0", body=requests.exceptions.ConnectionError("down"))
    client = ws_app.test_client()
    grant(client, "analytics")
    assert probe(client, "175.16.199.23")["ip"] == "175.16.199.0"
    assert len(warnings_logged(caplog)) == 1


def test_malformed_json_gives_none_and_one_warning(
    ws_app: Flask, mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    mocked.get(BASE + "175.16.199.0", body="{not json", content_type=CITY_TYPE)
    client = ws_app.test_client()
    grant(client, "analytics")
    assert probe(client, "175.16.199.23")["country"] is None
    assert len(warnings_logged(caplog)) == 1


def test_unexpected_json_shape_gives_none(
    ws_app: Flask, mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    mocked.get(BASE + "175.16.199.0", body='["a list"]', content_type=CITY_TYPE)
    client = ws_app.test_client()
    grant(client, "analytics")
    assert probe(client, "175.16.199.23")["country"] is None
    assert len(warnings_logged(caplog)) == 1


def test_address_not_found_is_cached(mocked: responses.RequestsMock) -> None:
    mocked.get(BASE + "81.2.69.0", status=404, content_type=ERROR_TYPE,
               body=json.dumps({"code": "IP_ADDRESS_NOT_FOUND", "error": "not found"}))
    geo = WebServiceGeo(42, "key")
    assert geo.lookup("81.2.69.0") is None
    assert geo.lookup("81.2.69.0") is None
    assert len(mocked.calls) == 1


def test_private_address_is_never_sent(mocked: responses.RequestsMock) -> None:
    geo = WebServiceGeo(42, "key")
    assert geo.lookup("192.168.1.0", public=False) is None
    assert len(mocked.calls) == 0


def test_cache_entries_expire(mocked: responses.RequestsMock) -> None:
    city_ok(mocked)
    geo = WebServiceGeo(42, "key")
    geo.ttl = 0.0
    assert geo.lookup("175.16.199.0") == GeoRecord("CN", "Jilin Sheng", "Changchun")
    assert geo.lookup("175.16.199.0") is not None
    assert len(mocked.calls) == 2


def test_geolite_host(app_factory: Callable[..., Flask], mocked: responses.RequestsMock) -> None:
    mocked.get("https://geolite.info/geoip/v2.1/city/175.16.199.0", body=json.dumps(CITY_JSON),
               content_type=CITY_TYPE)
    app = app_factory(CONSENTKIT_GEOIP_ACCOUNT_ID="42", CONSENTKIT_GEOIP_LICENSE_KEY="key",
                      CONSENTKIT_GEOIP_HOST="geolite.info")
    assert get_kit_state(app).geo.lookup("175.16.199.0").country == "CN"


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"CONSENTKIT_GEOIP_ACCOUNT_ID": 42}, "CONSENTKIT_GEOIP_LICENSE_KEY"),
        ({"CONSENTKIT_GEOIP_LICENSE_KEY": "k"}, "CONSENTKIT_GEOIP_ACCOUNT_ID"),
        ({"CONSENTKIT_GEOIP_ACCOUNT_ID": "abc", "CONSENTKIT_GEOIP_LICENSE_KEY": "k"},
         "CONSENTKIT_GEOIP_ACCOUNT_ID"),
        ({"CONSENTKIT_GEOIP_ACCOUNT_ID": 42, "CONSENTKIT_GEOIP_LICENSE_KEY": "k",
          "CONSENTKIT_GEOIP_DATABASE": "/x.mmdb"}, "CONSENTKIT_GEOIP_DATABASE"),
        ({"CONSENTKIT_GEOIP_TIMEOUT": 0}, "CONSENTKIT_GEOIP_TIMEOUT"),
        ({"CONSENTKIT_GEOIP_TIMEOUT": "2"}, "CONSENTKIT_GEOIP_TIMEOUT"),
        ({"CONSENTKIT_GEOIP_HOST": "https://geolite.info/"}, "CONSENTKIT_GEOIP_HOST"),
        ({"CONSENTKIT_GEOIP_DATABASE": 7}, "CONSENTKIT_GEOIP_DATABASE"),
        ({"CONSENTKIT_UA_PARSER": "fast"}, "CONSENTKIT_UA_PARSER"),
        ({"CONSENTKIT_COLLECTION_RULES": {"screen": "analytics"}},
         "CONSENTKIT_COLLECTION_RULES"),
    ],
)
def test_bad_collection_config_says_what_to_fix(
    app_factory: Callable[..., Flask], config: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConsentConfigError) as info:
        app_factory(**config)
    assert info.value.key == key
