"""``technical_data()``: every field gated by consent, nothing looked up without it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_consentkit import (
    TechnicalData,
    technical_data,
    technical_data_collected,
)
from flask_consentkit.collect.geo import DatabaseGeo
from flask_consentkit.extension import get_kit_state
from flask_consentkit.state import decide, get_state, request_consent

from .collect_helpers import IPHONE, CountingReader, add_probe, grant, probe

NONE = {f: None for f in TechnicalData.__dataclass_fields__}


@pytest.fixture
def readers() -> list[CountingReader]:
    return []


@pytest.fixture
def geo_app(
    app_factory: Callable[..., Flask], testdata: Path, readers: list[CountingReader]
) -> Callable[..., Flask]:
    """An app whose geo service reads the City test database through a counting reader."""

    def make(**config: Any) -> Flask:
        app = app_factory(**config)
        add_probe(app)

        def opener(path: str) -> CountingReader:
            reader = CountingReader(path)
            readers.append(reader)
            return reader

        ext = get_kit_state(app)
        ext.geo = DatabaseGeo(str(testdata / "GeoIP2-City-Test.mmdb"), opener=opener)
        ext.user_agent.clear()
        return app

    return make


def reads(readers: list[CountingReader]) -> list[str]:
    return [ip for r in readers for ip in r.reads]


def test_without_consent_every_field_is_none_and_nothing_is_looked_up(
    geo_app: Callable[..., Flask], readers: list[CountingReader]
) -> None:
    app = geo_app()
    client = app.test_client()
    parser = get_kit_state(app).user_agent
    received: list[Any] = []
    with technical_data_collected.connected_to(lambda s, **kw: received.append(kw), app):
        assert probe(client, "175.16.199.23") == NONE
        grant(client)  # a decision that refuses everything optional
        assert probe(client, "175.16.199.23") == NONE
    assert reads(readers) == []
    assert parser.cache_info().misses == 0 and parser.cache_info().hits == 0
    assert received == []


def test_analytics_gives_anonymised_ip_and_location_only(
    geo_app: Callable[..., Flask], readers: list[CountingReader]
) -> None:
    app = geo_app()
    client = app.test_client()
    grant(client, "analytics")
    data = probe(client, "175.16.199.23")
    assert data == {**NONE, "ip": "175.16.199.0", "country": "CN", "region": "Jilin Sheng",
                    "city": "Changchun"}
    # the database only ever saw the anonymised address
    assert reads(readers) == ["175.16.199.0"]
    # user-agent data is governed by performance: not parsed at all
    assert get_kit_state(app).user_agent.cache_info().misses == 0


def test_ipv6_is_anonymised_to_48_bits(geo_app: Callable[..., Flask]) -> None:
    client = geo_app().test_client()
    grant(client, "analytics")
    data = probe(client, "2001:480:10::1")
    assert (data["ip"], data["country"], data["city"]) == ("2001:480:10::", "US", "San Diego")


def test_ipv4_mapped_ipv6_is_handled_as_ipv4(geo_app: Callable[..., Flask]) -> None:
    client = geo_app().test_client()
    grant(client, "analytics")
    data = probe(client, "::ffff:175.16.199.23")
    assert (data["ip"], data["country"]) == ("175.16.199.0", "CN")


def test_address_without_record_gives_no_location_and_no_error(
    geo_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    client = geo_app().test_client()
    grant(client, "analytics")
    data = probe(client, "81.2.69.142")
    assert data == {**NONE, "ip": "81.2.69.0"}


@pytest.mark.parametrize("ip", ["10.1.2.3", "192.168.0.7", "127.0.0.1", "::1", "fe80::1",
                                "100.64.1.1", "::ffff:192.168.1.1"])
def test_private_and_loopback_addresses_are_never_looked_up(
    geo_app: Callable[..., Flask], readers: list[CountingReader], ip: str
) -> None:
    client = geo_app().test_client()
    grant(client, "analytics")
    data = probe(client, ip)
    assert data["country"] is None and data["city"] is None and data["ip"] is not None
    assert reads(readers) == []


def test_performance_gives_browser_os_and_device_only(
    geo_app: Callable[..., Flask], readers: list[CountingReader]
) -> None:
    client = geo_app().test_client()
    grant(client, "performance")
    data = probe(client, "175.16.199.23")
    assert data == {**NONE, "browser": "Mobile Safari", "browser_version": "17.1",
                    "os": "iOS", "os_version": "17.1", "device_type": "mobile"}
    assert reads(readers) == []


def test_bot_is_reported_as_bot(geo_app: Callable[..., Flask]) -> None:
    client = geo_app().test_client()
    grant(client, "performance")
    ua = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    assert probe(client, "66.249.66.1", ua=ua)["device_type"] == "bot"


def test_missing_user_agent_gives_none(geo_app: Callable[..., Flask]) -> None:
    client = geo_app().test_client()
    grant(client, "performance")
    response = client.get("/td", environ_overrides={"REMOTE_ADDR": "175.16.199.23"},
                          headers={"User-Agent": ""})
    assert response.get_json() == NONE


def test_anonymisation_can_be_turned_off(
    geo_app: Callable[..., Flask], readers: list[CountingReader]
) -> None:
    client = geo_app(CONSENTKIT_ANONYMIZE_IP=False).test_client()
    grant(client, "analytics")
    assert probe(client, "175.16.199.23")["ip"] == "175.16.199.23"
    assert reads(readers) == ["175.16.199.23"]


def test_collection_rules_choose_the_governing_category(geo_app: Callable[..., Flask]) -> None:
    client = geo_app(CONSENTKIT_COLLECTION_RULES={"ip": "functional", "geo": "marketing"}
                     ).test_client()
    grant(client, "functional")
    data = probe(client, "175.16.199.23")
    assert data["ip"] == "175.16.199.0" and data["country"] is None
    grant(client, "marketing")
    data = probe(client, "175.16.199.23")
    assert data["ip"] is None and data["country"] == "CN"


def test_forwarded_for_is_not_trusted_but_proxyfix_is(geo_app: Callable[..., Flask]) -> None:
    app = geo_app()
    client = app.test_client()
    grant(client, "analytics")
    data = probe(client, "10.0.0.5", **{"X-Forwarded-For": "175.16.199.23"})
    assert data["ip"] == "10.0.0.0" and data["country"] is None
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    data = probe(client, "10.0.0.5", **{"X-Forwarded-For": "175.16.199.23"})
    assert data["ip"] == "175.16.199.0" and data["country"] == "CN"


def test_computed_once_per_request(
    geo_app: Callable[..., Flask], readers: list[CountingReader]
) -> None:
    app = geo_app()
    client = app.test_client()
    grant(client, "analytics", "performance")
    cookie = client.get_cookie("consentkit")
    assert cookie is not None
    parser = get_kit_state(app).user_agent
    with app.test_request_context(environ_base={"REMOTE_ADDR": "175.16.199.40"},
                                  headers={"User-Agent": IPHONE,
                                           "Cookie": f"consentkit={cookie.value}"}):
        first = technical_data()
        assert technical_data() is first
    assert reads(readers) == ["175.16.199.0"]
    assert parser.cache_info().misses == 1


def test_a_decision_in_the_request_is_respected(geo_app: Callable[..., Flask]) -> None:
    app = geo_app()
    with app.test_request_context(environ_base={"REMOTE_ADDR": "175.16.199.40"}):
        assert technical_data() == TechnicalData()
        settings = get_kit_state(app).settings
        request_consent().decision = decide(settings, ["analytics"], previous=get_state(),
                                            source="api")
        assert technical_data().country == "CN"


def test_signal_is_sent_with_the_data(geo_app: Callable[..., Flask]) -> None:
    app = geo_app()
    client = app.test_client()
    grant(client, "analytics")
    received: list[tuple[Any, Any]] = []
    with technical_data_collected.connected_to(
        lambda sender, **kw: received.append((sender, kw["data"])), app
    ):
        probe(client, "175.16.199.23")
    assert len(received) == 1
    sender, data = received[0]
    assert sender is app and isinstance(data, TechnicalData) and data.country == "CN"


def test_service_seam_and_jinja_global(geo_app: Callable[..., Flask]) -> None:
    app = geo_app()
    client = app.test_client()

    @app.get("/seam")
    def seam() -> dict[str, Any]:
        data = get_kit_state().technical_data()
        from flask import render_template_string

        country = render_template_string("{{ technical_data().country }}")
        return {"ip": data.ip, "country": country}

    grant(client, "analytics")
    response = client.get("/seam", environ_overrides={"REMOTE_ADDR": "175.16.199.9"})
    assert response.get_json() == {"ip": "175.16.199.0", "country": "CN"}


def test_without_a_geo_source_location_is_none(
    app_factory: Callable[..., Flask]
) -> None:
    app = app_factory()
    add_probe(app)
    assert get_kit_state(app).geo is None
    client = app.test_client()
    grant(client, "analytics")
    assert probe(client, "175.16.199.23") == {**NONE, "ip": "175.16.199.0"}


def test_technical_data_is_immutable() -> None:
    data = TechnicalData(ip="175.16.199.0")
    with pytest.raises(AttributeError):
        data.ip = "1.2.3.4"  # type: ignore[misc]
    assert data.collected and not TechnicalData().collected


def test_app_without_the_extension_gets_a_clear_error() -> None:
    from flask_consentkit import ConsentKitError

    with Flask(__name__).test_request_context():
        with pytest.raises(ConsentKitError, match="ConsentKit"):
            technical_data()
