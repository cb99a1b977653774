"""Bounded waits: a silent database or a held lock costs a decision at most the timeout.

``CONSENTKIT_LEDGER_TIMEOUT`` bounds every ledger statement and lock wait, and
how long a request waits for its receipt. Past it the write fails the
documented way: the cookie is still set, the answer is not a 500, the receipt
is logged at ERROR (with its consent id), and the worker is free again. When
the database answers again, writes resume and the chain verifies.
"""
# ruff: noqa: F811  (pytest fixtures imported from ledger_helpers)

from __future__ import annotations

import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from flask_consentkit import ConsentConfigError
from flask_consentkit.cli import cli
from flask_consentkit.ledger.store import GRACE, Ledger, LedgerTimeout, dispose_engines

from .conftest import make_app
from .ledger_helpers import SilentProxy, choose, draft, execute, pg_schema, store_url  # noqa: F401

TIMEOUT = 1.0
#: A decision made this long before the database answers again cannot have been
#: written: its time is up, and the write it is in has at most GRACE (and the
#: slack the database's own bound may take) to report.
CUTOFF = TIMEOUT + GRACE + 0.5
_CONSENT_ID = re.compile(r'"consent_id": "([^"]+)"')


@pytest.mark.parametrize("value", [0, -1, 600.5, "5", True, None, math.nan, math.inf])
def test_the_timeout_is_validated(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConsentConfigError, match="at most 600") as info:
        make_app(tmp_path, CONSENTKIT_LEDGER_TIMEOUT=value)
    assert info.value.key == "CONSENTKIT_LEDGER_TIMEOUT"


@pytest.mark.parametrize("value", [0.25, 5, 600])
def test_the_timeout_reaches_the_ledger(tmp_path: Path, value: float) -> None:
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=f"sqlite:///{tmp_path / 'l.sqlite3'}",
                   CONSENTKIT_LEDGER_TIMEOUT=value)
    state = app.extensions["consentkit"]
    assert state.settings.ledger_timeout == value
    assert state.ledger.timeout == value
    assert make_app(tmp_path).extensions["consentkit"].settings.ledger_timeout == 5.0


@dataclass
class Decision:
    started: float
    elapsed: float
    status: int
    cookie_set: bool
    consent_id: str


class Burst:
    """``clients`` threads deciding as new visitors, one decision after another."""

    def __init__(self, app: Flask, clients: int) -> None:
        self.app = app
        self.done: list[Decision] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def __enter__(self) -> Burst:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            client = self.app.test_client()
            started = time.monotonic()
            response = choose(client, "save", categories=["analytics"])
            elapsed = time.monotonic() - started
            self.done.append(Decision(
                started, elapsed, response.status_code,
                "consentkit=" in response.headers.get("Set-Cookie", ""),
                (response.get_json(silent=True) or {}).get("consent_id", "")))


def check_each_decision(burst: Burst, records: list[logging.LogRecord], url: str
                        ) -> tuple[set[str], set[str]]:
    """Every decision answered in time, with its cookie; recorded or logged, never both.

    Returns the consent ids logged as not recorded, and those whose outcome
    the log calls unknown.
    """
    assert burst.done
    slow = [d.elapsed for d in burst.done if d.elapsed > TIMEOUT + 1]
    assert not slow, f"{len(slow)} decisions took longer than the timeout plus 1 s: {slow[:5]}"
    assert {d.status for d in burst.done} == {200}
    assert all(d.cookie_set and d.consent_id for d in burst.done)
    failed: set[str] = set()
    unknown: set[str] = set()
    for record in records:
        if record.name == "flask_consentkit.ledger" and record.levelno == logging.ERROR:
            message = record.getMessage()
            if message.startswith("export of a visitor's receipts failed"):
                continue
            assert "NOT recorded" in message or "NOT confirmed" in message
            [consent_id] = _CONSENT_ID.findall(message)
            failed.add(consent_id)
            if "NOT confirmed" in message:  # lost during its commit: either way
                unknown.add(consent_id)
    recorded = {r[0] for r in execute(url, "SELECT consent_id FROM consentkit_receipts")}
    for d in burst.done:
        if d.consent_id not in unknown:
            assert (d.consent_id in recorded) != (d.consent_id in failed), d
    return failed, unknown


def after(burst: Burst, moment: float) -> list[Decision]:
    return [d for d in burst.done if d.started > moment]


@pytest.mark.postgres
def test_a_silent_database_costs_each_decision_at_most_the_timeout(
        postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pg_schema(postgres_url) as direct:
        upstream = make_url(direct)
        proxy = SilentProxy(upstream.host or "127.0.0.1", upstream.port or 5432)
        url = proxy.url(direct)
        try:
            app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=url, CONSENTKIT_RATELIMIT=None,
                           CONSENTKIT_LEDGER_TIMEOUT=TIMEOUT)
            client = app.test_client()
            assert choose(client).status_code == 200  # tables made, pool warm
            cookie = client.get_cookie("consentkit")
            assert cookie is not None
            visitor_cookie = cookie.value
            assert client.get("/consent/export").status_code == 200
            with caplog.at_level(logging.ERROR, logger="flask_consentkit.ledger"), \
                    Burst(app, clients=6) as burst:
                time.sleep(0.5)
                silent = time.monotonic()
                proxy.pause()  # mid-burst: nothing goes through, nothing is closed
                time.sleep(0.2)
                started = time.monotonic()  # the visitor's rights are bounded too
                export = app.test_client(use_cookies=False).get("/consent/export", headers={
                    "Cookie": f"consentkit={visitor_cookie}"})
                export_took = time.monotonic() - started
                time.sleep(max(0.0, 4.0 - (time.monotonic() - silent)))
                proxy.resume()
                resumed = time.monotonic()
                time.sleep(2.0)
            assert export.status_code == 503 and export_took < TIMEOUT + 1
            failed, _ = check_each_decision(burst, caplog.records, direct)
            during = [d for d in burst.done if silent + 0.2 < d.started < resumed - CUTOFF]
            assert during and all(d.consent_id in failed for d in during)
            later = after(burst, resumed + 1.0)
            assert later and not {d.consent_id for d in later} & failed  # writes resumed
            staff = make_app(tmp_path, CONSENTKIT_LEDGER_URL=direct)
            verify = staff.test_cli_runner().invoke(cli, ["verify"])
            assert verify.exit_code == 0 and "ledger OK" in verify.output, verify.output
        finally:
            dispose_engines(url)
            proxy.close()


@pytest.mark.postgres
def test_a_database_silent_from_the_start_costs_the_first_decisions_the_timeout(
        postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A worker that starts while the database says nothing: its tables cannot be
    checked, and its first decisions still answer in time; then writes resume."""
    with pg_schema(postgres_url) as direct:
        upstream = make_url(direct)
        proxy = SilentProxy(upstream.host or "127.0.0.1", upstream.port or 5432)
        url = proxy.url(direct)
        try:
            proxy.pause()  # connections are accepted, nothing is answered
            app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=url, CONSENTKIT_RATELIMIT=None,
                           CONSENTKIT_LEDGER_TIMEOUT=TIMEOUT)
            with caplog.at_level(logging.ERROR, logger="flask_consentkit.ledger"):
                for _ in range(2):
                    started = time.monotonic()
                    response = choose(app.test_client(), "save", categories=["analytics"])
                    assert time.monotonic() - started < TIMEOUT + 1
                    assert response.status_code == 200
                    assert "consentkit=" in response.headers["Set-Cookie"]
            logged = [r for r in caplog.records if r.levelno == logging.ERROR
                      and "NOT recorded" in r.getMessage()]
            assert len(logged) == 2
            proxy.resume()
            deadline = time.monotonic() + 10
            while True:  # the writer's attempt in progress may still fail; then it connects
                response = choose(app.test_client())
                consent_id = response.get_json()["consent_id"]
                if execute(direct, "SELECT count(*) FROM consentkit_receipts "
                           "WHERE consent_id = :c", c=consent_id) == [(1,)]:
                    break
                assert time.monotonic() < deadline, "writes did not resume"
        finally:
            dispose_engines(url)
            proxy.close()
        assert Ledger(direct).verify().ok


@contextmanager
def chain_lock_held(url: str) -> Iterator[None]:
    """Another writer holds the chain's lock (an open write transaction)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(make_url(url).database or "", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT value FROM consentkit_meta WHERE key = 'head' FOR UPDATE"))
            yield
            conn.rollback()
    finally:
        engine.dispose()


def test_a_held_lock_costs_each_decision_at_most_the_timeout(
        store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url, CONSENTKIT_RATELIMIT=None,
                   CONSENTKIT_LEDGER_TIMEOUT=TIMEOUT)
    assert choose(app.test_client()).status_code == 200
    with caplog.at_level(logging.ERROR, logger="flask_consentkit.ledger"), \
            Burst(app, clients=4) as burst:
        time.sleep(0.3)
        with chain_lock_held(store_url):
            held = time.monotonic()
            time.sleep(4.0)
        released = time.monotonic()
        time.sleep(1.0)
    failed, _ = check_each_decision(burst, caplog.records, store_url)
    during = [d for d in burst.done if held + 0.1 < d.started < released - CUTOFF]
    assert during and all(d.consent_id in failed for d in during)
    later = after(burst, released + 0.5)
    assert later and not {d.consent_id for d in later} & failed
    result = Ledger(store_url).verify()
    assert result.ok, result.describe()


def test_ledger_calls_raise_a_timeout_and_write_nothing(store_url: str) -> None:
    Ledger(store_url).count()  # the tables, made without a hurry
    ledger = Ledger(store_url, timeout=0.5)
    for _ in range(10):  # its writer's first connection, on a machine that may be busy
        try:
            ledger.append(draft())
            break
        except LedgerTimeout:
            continue
    before = ledger.count()
    with chain_lock_held(store_url):
        started = time.monotonic()
        with pytest.raises(LedgerTimeout, match="CONSENTKIT_LEDGER_TIMEOUT"):
            ledger.append(draft())
        with pytest.raises(LedgerTimeout):
            ledger.erase(draft().consent_id or "", draft(None, action="erase"))
        assert time.monotonic() - started < 2 * (0.5 + 0.6)
    assert ledger.count() == before  # neither the receipt nor the erasure was written
    assert len(ledger.export(draft().consent_id or "")) == before
    ledger.append(draft())
    assert ledger.verify().ok and ledger.count() == before + 1
