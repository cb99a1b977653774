"""Rate limits of the data-subject endpoints: per visitor, 429 with Retry-After, in memory
or in Redis shared by every process.

The endpoint tests use hourly windows, so that a window boundary falling between two
requests of one test is practically impossible."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from flask_consentkit import ConsentConfigError
from flask_consentkit.ratelimit import (
    MemoryStorage,
    Rate,
    RateLimiter,
    _anonymise_any,
    anonymise_ip,
    parse_rate,
)

from .conftest import SAME_ORIGIN, make_app
from .ledger_helpers import choose


def test_the_third_export_in_an_hour_gets_429_with_retry_after(tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_RATELIMIT="2/hour")
    client = app.test_client()
    choose(client)
    assert [client.get("/consent/export").status_code for _ in range(2)] == [200, 200]
    limited = client.get("/consent/export", headers={"Accept": "application/json"})
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 3600
    assert "Too many requests" in limited.get_json()["error"]
    # another visitor has a budget of their own; erase counts separately
    other = app.test_client()
    choose(other)
    assert other.get("/consent/export").status_code == 200
    assert client.post("/consent/erase", json={}, headers=SAME_ORIGIN).status_code == 200


def test_visitors_without_a_cookie_are_counted_per_anonymised_ip(tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_RATELIMIT="1/hour")
    near = app.test_client()
    far = app.test_client()
    assert near.get("/consent/export", environ_base={"REMOTE_ADDR": "198.51.100.7"}
                    ).status_code == 200
    same_24 = far.get("/consent/export", environ_base={"REMOTE_ADDR": "198.51.100.200"})
    assert same_24.status_code == 429 and int(same_24.headers["Retry-After"]) <= 3600
    assert far.get("/consent/export", environ_base={"REMOTE_ADDR": "198.51.101.1"}
                   ).status_code == 200


def test_erase_is_limited_too(tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_RATELIMIT="1/hour")
    client = app.test_client()
    assert client.post("/consent/erase", json={}, headers=SAME_ORIGIN).status_code == 200
    response = client.post("/consent/erase", json={}, headers=SAME_ORIGIN)
    assert response.status_code == 429 and "Retry-After" in response.headers


def test_no_limit_when_turned_off(tmp_path: Path) -> None:
    client = make_app(tmp_path, CONSENTKIT_RATELIMIT=None).test_client()
    assert {client.get("/consent/export").status_code for _ in range(20)} == {200}


def test_windows_reset() -> None:
    limiter = RateLimiter(Rate(1, 60), MemoryStorage())
    limiter.hit("export", "v", now=120.0)
    with pytest.raises(Exception, match="Too many") as info:
        limiter.hit("export", "v", now=150.5)
    assert getattr(info.value, "retry_after", None) == 30
    limiter.hit("export", "v", now=180.0)


@pytest.mark.parametrize(("text", "rate"), [
    ("5/minute", Rate(5, 60)), ("10 per hour", Rate(10, 3600)),
    ("3/30 seconds", Rate(3, 30)), ("1/day", Rate(1, 86400)), (None, None),
])
def test_rates_parse(text: str | None, rate: Rate | None) -> None:
    assert parse_rate("CONSENTKIT_RATELIMIT", text) == rate


@pytest.mark.parametrize(("key", "value", "hint"), [
    ("CONSENTKIT_RATELIMIT", "lots", "5/minute"),
    ("CONSENTKIT_RATELIMIT", "0/minute", "at least one"),
    ("CONSENTKIT_RATELIMIT", 5, "5/minute"),
    ("CONSENTKIT_RATELIMIT_STORAGE_URL", "memcached://x", "Redis URL"),
])
def test_bad_rate_limit_settings_say_what_to_fix(tmp_path: Path, key: str, value: Any,
                                                 hint: str) -> None:
    with pytest.raises(ConsentConfigError, match=hint) as info:
        make_app(tmp_path, **{key: value})
    assert info.value.key == key


@pytest.fixture
def redis_apps(redis_url: str, tmp_path: Path) -> Iterator[Callable[[], Flask]]:
    """Apps sharing one Redis limiter (as separate processes or machines would)."""
    import redis

    prefix = f"consentkit-test-{secrets.token_hex(4)}:"

    def build() -> Flask:
        app = make_app(tmp_path, CONSENTKIT_RATELIMIT="2/hour",
                       CONSENTKIT_RATELIMIT_STORAGE_URL=redis_url)
        app.extensions["consentkit"].ratelimiter.prefix = prefix
        return app

    yield build
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_redis_counts_across_apps(redis_apps: Callable[[], Flask], redis_url: str) -> None:
    import redis

    first, second = redis_apps(), redis_apps()
    client = first.test_client()
    choose(client)
    cookie = client.get_cookie("consentkit")
    assert cookie is not None
    elsewhere = second.test_client()
    elsewhere.set_cookie("consentkit", cookie.value)
    assert client.get("/consent/export").status_code == 200
    assert elsewhere.get("/consent/export").status_code == 200
    limited = client.get("/consent/export")
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 3600
    prefix = first.extensions["consentkit"].ratelimiter.prefix
    store = redis.Redis.from_url(redis_url)
    keys = list(store.scan_iter(f"{prefix}*"))
    assert len(keys) == 1 and 0 < store.ttl(keys[0]) <= 3601
    assert cookie.value.encode() not in keys[0]  # the key holds a hash, not the id
    store.close()


def test_an_unreachable_redis_lets_the_request_through(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(tmp_path, CONSENTKIT_RATELIMIT="1/minute",
                   CONSENTKIT_RATELIMIT_STORAGE_URL="redis://127.0.0.1:1/0")
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="flask_consentkit.ratelimit"):
        assert [client.get("/consent/export").status_code for _ in range(3)] == [200] * 3
    assert "rate-limit storage unavailable" in caplog.text


_PARTS = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", "007", "", "-1",
                                                                  "1e2", "٣", " 1", "0x1"]))


@given(st.one_of(
    st.lists(_PARTS, min_size=3, max_size=5).map(".".join),
    st.tuples(st.sampled_from(["", " ", "\t", "\n"]), st.ip_addresses().map(str),
              st.sampled_from(["", " ", "\n", "x", "/24", ":80"])).map("".join),
    st.text(alphabet="0123456789.: abcdef", max_size=20),
))
def test_anonymised_ips_are_what_ipaddress_says(value: str) -> None:
    # the dotted-quad fast path agrees with ipaddress, which every other form goes through
    assert anonymise_ip(value) == _anonymise_any(value)
