"""``ConsentLogFilter``: no full IP address in logs without consent."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterator
from typing import Any

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


# -- addresses as logs write them: with a port, in URLs, after a key, in exceptions, in extra


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7:51234 - GET /", "203.0.113.0:51234 - GET /"),
        ("proxy http://203.0.113.7:8080/ said no", "proxy http://203.0.113.0:8080/ said no"),
        ("remote_addr:203.0.113.7 ok", "remote_addr:203.0.113.0 ok"),
        ("remote_addr:203.0.113.7:51234", "remote_addr:203.0.113.0:51234"),
        ("src:203.0.113.7", "src:203.0.113.0"),
        ("upstream [2001:db8::1]:443", "upstream [2001:db8::]:443"),
        ("http://[2001:db8:1:2::5]:8080/x", "http://[2001:db8:1::]:8080/x"),
        ("remote_addr:2001:db8:1:2::1", "remote_addr:2001:db8:1::"),
        ("ip:::ffff:203.0.113.7", "ip:203.0.113.0"),
        ("peer 2001:db8:1:2::1: reset", "peer 2001:db8:1::: reset"),
        ("at 12:30:45, 2024-01-01T12:30:45.123Z, v1.2.3.4.5", None),
        ("sha deadbeef:cafe:0 and port :443", None),
    ],
)
def test_scrub_addresses_as_logs_write_them(text: str, expected: str | None) -> None:
    assert scrub(text) == (text if expected is None else expected)


@given(st.ip_addresses(), st.integers(0, 65535), st.sampled_from(["remote_addr:", "ip=", "@"]))
def test_scrub_never_leaves_a_full_address_with_a_port_or_key(
        address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int, key: str) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    kept = ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address
    written = f"{address}:{port}" if address.version == 4 else f"[{address}]:{port}"
    for text, shown in ((f"{key}{address}", f"{key}{kept}"),
                        (f"GET http://{written}/ done", f"GET http://{kept}:{port}/ done"
                         if address.version == 4 else f"GET http://[{kept}]:{port}/ done")):
        assert scrub(text) == shown


def _log_lines(fmt: str, emit: Callable[[logging.Logger], None]) -> list[str]:
    """What a handler with the filter writes for the records ``emit`` logs."""
    handler = ListHandler()
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(ConsentLogFilter())
    logger = logging.getLogger("test.logfilter.real")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return handler.lines


def test_messages_with_args_are_scrubbed() -> None:
    lines = _log_lines("%(message)s", lambda log: (
        log.info("%s - %s", "203.0.113.7:51234", "remote_addr:2001:db8:1:2::1"),
        log.info("upstream %(url)s", {"url": "http://203.0.113.7:8080/"}),
        log.info("[%s]:%d", "2001:db8::1", 443),
    ))
    assert lines == ["203.0.113.0:51234 - remote_addr:2001:db8:1::",
                     "upstream http://203.0.113.0:8080/", "[2001:db8::]:443"]


def test_exception_text_is_scrubbed() -> None:
    def emit(log: logging.Logger) -> None:
        try:
            raise ConnectionRefusedError(
                "connect to 203.0.113.7:6379 refused (peer [2001:db8::9]:1)")
        except ConnectionRefusedError:
            log.exception("redis down for client %s", "198.51.100.23")

    (line,) = _log_lines("%(message)s", emit)
    assert line.startswith("redis down for client 198.51.100.0\nTraceback")
    assert "ConnectionRefusedError: connect to 203.0.113.0:6379 refused (peer [2001:db8::]:1)" \
        in line
    for full in ("203.0.113.7", "198.51.100.23", "2001:db8::9"):
        assert full not in line


def test_an_exception_without_addresses_is_left_to_the_formatter() -> None:
    class Short(logging.Formatter):
        def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
            return f"<{ei[0].__name__}>"

    handler = ListHandler()
    handler.setFormatter(Short("%(message)s"))
    handler.addFilter(ConsentLogFilter())
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None,
                               (ValueError, ValueError("no address"), None))
    handler.handle(record)
    assert handler.lines == ["failed\n<ValueError>"]


def test_stack_info_is_scrubbed() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None,
                               sinfo="Stack (most recent call last):\n  peer=203.0.113.7")
    assert ConsentLogFilter().filter(record)
    assert record.stack_info == "Stack (most recent call last):\n  peer=203.0.113.0"


def test_extra_fields_are_scrubbed() -> None:
    lines = _log_lines("%(message)s %(client)s %(peer)s %(hops)s %(meta)s %(count)d",
                       lambda log: log.info("hit", extra={
                           "client": "203.0.113.7:51234",
                           "peer": ipaddress.ip_address("2001:db8::1"),
                           "hops": ["198.51.100.23", "remote_addr:198.51.100.24"],
                           "meta": {"via": ("192.0.2.77",), "n": 3},
                           "count": 7,
                       }))
    assert lines == ["hit 203.0.113.0:51234 2001:db8:: ['198.51.100.0', "
                     "'remote_addr:198.51.100.0'] {'via': ('192.0.2.0',), 'n': 3} 7"]


def test_extra_fields_are_kept_when_the_visitor_allowed_addresses(
        logging_app: Flask) -> None:
    handler = ListHandler()
    handler.setFormatter(logging.Formatter("%(message)s %(client)s"))
    handler.addFilter(ConsentLogFilter())
    logger = logging.getLogger("test.access.extra")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    @logging_app.get("/extra")
    def extra_view() -> Response:
        logger.info("%s", request.remote_addr, extra={"client": f"{request.remote_addr}:1"})
        return Response("ok", mimetype="text/plain")

    try:
        client = logging_app.test_client()
        client.get("/extra", environ_overrides={"REMOTE_ADDR": "175.16.199.23"})
        grant(client, "analytics")
        client.get("/extra", environ_overrides={"REMOTE_ADDR": "175.16.199.23"})
    finally:
        logger.removeHandler(handler)
    assert handler.lines == ["175.16.199.0 175.16.199.0:1", "175.16.199.23 175.16.199.23:1"]
