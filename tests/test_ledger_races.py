"""One visitor, many requests at once: decisions form a line and an erasure misses nothing.

Two tabs (or a double click) send decisions with the same cookie at the same
moment, to one app server or to several (processes with connections of their
own, as behind gunicorn); an erasure may race them. Every append and every
erase takes the chain's lock before it reads anything it depends on, so on
both stores:

- the receipts of one consent id link in ``seq`` order, each to the one before
  (no two name the same ``previous_receipt_id``);
- an erasure nulls every receipt of its consent id committed before its
  tombstone, and ``verify`` passes afterwards.

Within one process the writes of a moment share one transaction (group
commit); across processes they meet at the database's lock, which is what the
process tests race for.
"""
# ruff: noqa: F811  (pytest fixtures imported from ledger_helpers)

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flask import Flask

from flask_consentkit.ledger.store import Ledger

from .conftest import SAME_ORIGIN, make_app
from .ledger_helpers import execute, one_decision, race, store_url  # noqa: F401

TABS = 16


def visitor_cookie(app: Flask) -> tuple[str, str]:
    """A first decision; ``(consent id, Cookie header)`` of the visitor it made."""
    client = app.test_client()
    response = client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    assert response.status_code == 200
    consent_id = response.get_json()["consent_id"]
    name = app.extensions["consentkit"].settings.cookie_name
    cookie = client.get_cookie(name)
    assert cookie is not None
    return consent_id, f"{name}={cookie.value}"


def at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` in threads released together by a barrier; their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def decision(app: Flask, cookie: str, i: int) -> Callable[[], int]:
    return lambda: one_decision(app, cookie, i)


def erasure(app: Flask, cookie: str) -> Callable[[], Any]:
    def call() -> Any:
        client = app.test_client(use_cookies=False)
        response = client.post("/consent/erase", json={},
                               headers={**SAME_ORIGIN, "Cookie": cookie})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    return call


def receipts_of(url: str, consent_id: str) -> list[tuple[int, str, str | None]]:
    return [tuple(r) for r in execute(
        url, "SELECT seq, receipt_id, previous_receipt_id FROM consentkit_receipts "
        "WHERE consent_id = :c ORDER BY seq", c=consent_id)]


def forks(rows: list[tuple[int, str, str | None]]) -> int:
    """How many receipts do not name the one before them (the first names none)."""
    previous: str | None = None
    count = 0
    for _, receipt_id, link in rows:
        count += link != previous
        previous = receipt_id
    return count


def seq_of(url: str, receipt_id: str) -> int:
    [(seq,)] = execute(url, "SELECT seq FROM consentkit_receipts WHERE receipt_id = :r",
                       r=receipt_id)
    return int(seq)


def check_erased(url: str, consent_id: str, expected: int, body: dict[str, Any]) -> None:
    assert body["erased"] == expected
    assert receipts_of(url, consent_id) == []
    result = Ledger(url).verify()
    assert result.ok, result.describe()


def test_two_tabs_deciding_at_once_form_one_line_and_erase_cleanly(
        store_url: str, tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url, CONSENTKIT_RATELIMIT=None)
    consent_id, cookie = visitor_cookie(app)
    for _ in range(4):  # repeated under load: 4 bursts of 16 decisions with one cookie
        codes = at_once([decision(app, cookie, i) for i in range(TABS)])
        assert codes == [200] * TABS
    rows = receipts_of(store_url, consent_id)
    assert len(rows) == 1 + 4 * TABS
    forked = forks(rows)
    check_erased(store_url, consent_id, len(rows), erasure(app, cookie)())
    assert forked == 0, f"{forked} of {len(rows)} receipts do not link to the one before them"


def test_two_tabs_on_four_app_servers_form_one_line(store_url: str, tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url, CONSENTKIT_RATELIMIT=None)
    consent_id, cookie = visitor_cookie(app)
    # 4 bursts; in each, 4 processes send 4 decisions at once with the one cookie
    got = race(store_url, tmp_path, [cookie] * 4, processes=4, tabs=4)
    assert all(codes == [200] * 4 for burst in got for codes in burst), got
    rows = receipts_of(store_url, consent_id)
    assert len(rows) == 1 + 4 * 16
    forked = forks(rows)
    check_erased(store_url, consent_id, len(rows), erasure(app, cookie)())
    assert forked == 0, f"{forked} of {len(rows)} receipts do not link to the one before them"


def test_an_erase_racing_decisions_erases_every_receipt_before_its_tombstone(
        store_url: str, tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url, CONSENTKIT_RATELIMIT=None)
    left_behind = forked = 0
    for _ in range(15):  # 15 rounds of 4 decisions and 1 erase sent together
        consent_id, cookie = visitor_cookie(app)
        calls = [decision(app, cookie, i) for i in range(4)]
        calls.insert(2, erasure(app, cookie))
        results = at_once(calls)
        erased = results.pop(2)
        assert results == [200] * 4
        tombstone = seq_of(store_url, erased["receipt_id"])
        rows = receipts_of(store_url, consent_id)
        left_behind += sum(1 for seq, _, _ in rows if seq < tombstone)
        forked += forks(rows)  # the decisions after the erasure start a new line
    assert left_behind == 0, f"{left_behind} receipts older than their tombstone kept the id"
    result = Ledger(store_url).verify()
    assert result.ok, result.describe()
    assert forked == 0, f"{forked} decisions after an erasure do not link in order"


def test_an_erase_racing_decisions_on_other_app_servers_misses_nothing(
        store_url: str, tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url, CONSENTKIT_RATELIMIT=None)
    visitors = [visitor_cookie(app) for _ in range(15)]
    # 15 rounds; in each, 4 processes decide (2 tabs each) while a fifth erases
    got = race(store_url, tmp_path, [cookie for _, cookie in visitors], processes=5, tabs=2,
               erasers=1)
    left_behind = forked = 0
    for (consent_id, _), answers in zip(visitors, got, strict=True):
        *decided, (status, body) = answers
        assert decided == [[200, 200]] * 4 and status == 200, answers
        tombstone = seq_of(store_url, body["receipt_id"])
        rows = receipts_of(store_url, consent_id)
        left_behind += sum(1 for seq, _, _ in rows if seq < tombstone)
        forked += forks(rows)
        assert body["erased"] >= 1  # the visitor's first decision, at least
    assert left_behind == 0, f"{left_behind} receipts older than their tombstone kept the id"
    result = Ledger(store_url).verify()
    assert result.ok, result.describe()
    assert forked == 0, f"{forked} decisions after an erasure do not link in order"
