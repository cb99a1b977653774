"""``ConsentLogFilter``: no full IP address in logs without consent."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterator

import pytest
from flask import Flask, Response, current_app, request
from hypothesis import given
from hypothesis import strategies as st

from flask_consentkit import ConsentLogFilter
from flask_consentkit.collect.logfilter import scrub

from .collect_helpers import grant


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def handler() -> Iterator[ListHandler]:
    h = ListHandler()
    h.addFilter(ConsentLogFilter())
    logger = logging.getLogger("test.access")
    logger.addHandler(h)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield h
    finally:
        logger.removeHandler(h)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("175.16.199.23 - GET /", "175.16.199.0 - GET /"),
        ("from 2001:480:10::1 at 12:30:45", "from 2001:480:10:: at 12:30:45"),
        ("[2001:db8:1:2:3:4:5:6]:443", "[2001:db8:1::]:443"),
        ("mapped ::ffff:175.16.199.23.", "mapped 175.16.199.0."),
        ("client=10.1.2.3,proxy=10.9.9.9", "client=10.1.2.0,proxy=10.9.9.0"),
        ("999.1.1.1 and v1.2.3.4.5 and 1.2.3", "999.1.1.1 and v1.2.3.4.5 and 1.2.3"),
        ("no address here", "no address here"),
        ("fe80::1%eth0 link", "fe80:: link"),
    ],
)
def test_scrub(text: str, expected: str) -> None:
    assert scrub(text) == expected


@given(st.ip_addresses())
def test_scrub_never_leaves_a_full_address(address: ipaddress.IPv4Address |
                                           ipaddress.IPv6Address) -> None:
    out = scrub(f"client {address} done")
    shown = ipaddress.ip_address(out.split()[1])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    assert shown == ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address


@pytest.fixture
def logging_app(app_factory: Callable[..., Flask]) -> Flask:
    app = app_factory()

    @app.get("/log")
    def log_view() -> Response:
        logging.getLogger("test.access").info("%s GET %s", request.remote_addr, request.path)
        # not HTML: an HTML page reads the consent for its browser policy anyway
        return Response("ok", mimetype="text/plain")

    return app


def test_request_without_consent_logs_anonymised(
    logging_app: Flask, handler: ListHandler
) -> None:
    client = logging_app.test_client()
    response = client.get("/log", environ_overrides={"REMOTE_ADDR": "175.16.199.23"})
    assert handler.lines == ["175.16.199.0 GET /log"]
    assert "Cookie" not in response.vary  # logging did not change the response


def test_request_with_analytics_logs_the_full_address(
    logging_app: Flask, handler: ListHandler
) -> None:
    client = logging_app.test_client()
    grant(client, "performance")
    client.get("/log", environ_overrides={"REMOTE_ADDR": "175.16.199.23"})
    grant(client, "analytics")
    client.get("/log", environ_overrides={"REMOTE_ADDR": "175.16.199.23"})
    assert handler.lines == ["175.16.199.0 GET /log", "175.16.199.23 GET /log"]


def test_outside_a_request_addresses_are_anonymised(handler: ListHandler) -> None:
    logging.getLogger("test.access").info('%s - - "GET / HTTP/1.1" 200 -', "2001:480:10::1")
    assert handler.lines == ['2001:480:10:: - - "GET / HTTP/1.1" 200 -']


def test_app_without_the_extension_is_anonymised(handler: ListHandler) -> None:
    app = Flask(__name__)
    with app.test_request_context():
        assert current_app.name
        logging.getLogger("test.access").info("10.20.30.40")
    assert handler.lines == ["10.20.30.0"]


def test_records_without_addresses_are_untouched(handler: ListHandler) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s items", (3,), None)
    assert ConsentLogFilter().filter(record) is True
    assert (record.msg, record.args) == ("%s items", (3,))


def test_broken_format_is_left_to_the_handler() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s %s", ("1.2.3.4",), None)
    assert ConsentLogFilter().filter(record) is True
    assert record.args == ("1.2.3.4",)


def test_category_can_be_chosen(app_factory: Callable[..., Flask], handler: ListHandler) -> None:
    app = app_factory()
    handler.filters[:] = [ConsentLogFilter(category="performance")]

    @app.get("/log")
    def log_view() -> str:
        logging.getLogger("test.access").info("%s", request.remote_addr)
        return "ok"

    client = app.test_client()
    grant(client, "performance")
    client.get("/log", environ_overrides={"REMOTE_ADDR": "175.16.199.23"})
    assert handler.lines == ["175.16.199.23"]
