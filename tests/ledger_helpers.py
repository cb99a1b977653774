"""Fixtures and helpers of the ledger tests: a real SQLite file or a real PostgreSQL schema."""

from __future__ import annotations

import multiprocessing
import secrets
import select
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from flask_consentkit.ledger.store import Draft, Ledger, dispose_engines

from .conftest import SAME_ORIGIN, make_app

CONSENT_ID = "visitor-0000000000000001"


@contextmanager
def pg_schema(base_url: str) -> Iterator[str]:
    """A fresh schema ``ck_<random>``; yields a URL whose ``search_path`` is that schema."""
    name = "ck_" + secrets.token_hex(6)
    admin = create_engine(base_url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {name}"))
        sep = "&" if "?" in base_url else "?"
        url = f"{base_url}{sep}options=-csearch_path%3D{name}"
        try:
            yield url
        finally:
            dispose_engines(url)
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty ledger: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        yield url
        dispose_engines(url)
    else:
        with pg_schema(request.getfixturevalue("postgres_url")) as url:
            yield url


@pytest.fixture
def ledger(store_url: str) -> Ledger:
    return Ledger(store_url)


@pytest.fixture
def ledger_app(store_url: str, tmp_path: Path) -> Flask:
    """An app whose receipts go to ``store_url``; no rate limit."""
    return make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url, CONSENTKIT_RATELIMIT=None)


def draft(consent_id: str | None = CONSENT_ID, action: str = "save", **kw: Any) -> Draft:
    fields: dict[str, Any] = {
        "action": action,
        "consent_id": consent_id,
        "granted": frozenset({"necessary", "analytics"}),
        "denied": frozenset({"functional", "performance", "marketing"}),
        "policy_version": "1",
        "method": "api",
        "page_path": "/story/lighthouse",
    }
    fields.update(kw)
    return Draft(**fields)


def execute(url: str, sql: str, **params: Any) -> Any:
    """Run raw SQL against the store, the way someone tampering with it would."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return result.fetchall() if result.returns_rows else result.rowcount
    finally:
        engine.dispose()


def choose(client: Any, action: str = "accept_all", **kw: Any) -> Any:
    """POST a JSON choice as the app's own page would."""
    headers = {**SAME_ORIGIN, **kw.pop("headers", {})}
    return client.post("/consent/", json={"action": action, **kw}, headers=headers)


AppFactory = Callable[..., Flask]


ACTIONS = ("accept_all", "reject_all", "save")


def decide_many(url: str, instance: str, n: int, dispose: bool = False) -> int:
    """Make ``n`` decisions as one visitor through the real endpoint; return the 200s.

    Runs in worker threads and in spawned processes (it is importable).
    """
    app = make_app(Path(instance), CONSENTKIT_LEDGER_URL=url, CONSENTKIT_RATELIMIT=None)
    ok = decide_as_one_visitor(app, n)
    if dispose:  # a worker process closes its connections before it exits
        dispose_engines(url)
    return ok


def decide_as_one_visitor(app: Flask, n: int) -> int:
    """``n`` decisions of one visitor (a client of its own) on ``app``; return the 200s."""
    client = app.test_client()
    ok = 0
    for i in range(n):
        action = ACTIONS[i % 3]
        response = choose(client, action, categories=["analytics"] if action == "save" else [])
        ok += response.status_code == 200
    return ok


def one_decision(app: Flask, cookie: str, i: int) -> int:
    """The ``i``-th decision (accept, reject, save in turn) sent with ``cookie``; its status."""
    action = ACTIONS[i % 3]
    body: dict[str, Any] = {"action": action}
    if action == "save":
        body["categories"] = ["analytics"]
    client = app.test_client(use_cookies=False)
    return int(client.post("/consent/", json=body,
                           headers={**SAME_ORIGIN, "Cookie": cookie}).status_code)


def race_worker(url: str, instance: str, cookies: list[str], tabs: int, erase: bool,
                barrier: Any, out: Any) -> None:
    """One app server (a process of its own, with its own connections) of a race.

    For each cookie in turn it waits for the other processes at ``barrier``,
    then sends ``tabs`` decisions at once with that cookie (threads), or, with
    ``erase``, erases it; it puts ``(round, what it got)`` on ``out``.
    """
    app = make_app(Path(instance), CONSENTKIT_LEDGER_URL=url, CONSENTKIT_RATELIMIT=None)
    try:
        # warm: tables checked, connections open, so that the rounds race for real
        choose(app.test_client())
        with ThreadPoolExecutor(max(tabs, 1)) as pool:
            for n, cookie in enumerate(cookies):
                barrier.wait(60)
                if erase:
                    client = app.test_client(use_cookies=False)
                    response = client.post("/consent/erase", json={},
                                           headers={**SAME_ORIGIN, "Cookie": cookie})
                    out.put((n, (response.status_code, response.get_json(silent=True))))
                else:
                    out.put((n, list(pool.map(one_decision, [app] * tabs, [cookie] * tabs,
                                              range(tabs)))))
    except BaseException as exc:
        out.put((-1, repr(exc)))
        barrier.abort()
        raise
    finally:
        dispose_engines(url)


def race(url: str, instance: Path, cookies: list[str], processes: int, tabs: int,
         erasers: int = 0) -> list[list[Any]]:
    """``processes`` app servers (the last ``erasers`` of them erase) race on each cookie.

    Returns, per cookie, what each process got (eraser last).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.ledger_helpers"])
    barrier = context.Barrier(processes)
    out = context.Queue()
    workers = [context.Process(target=race_worker, daemon=True, args=(
        url, str(instance), cookies, tabs, n >= processes - erasers, barrier, out))
        for n in range(processes)]
    for worker in workers:
        worker.start()
    got: list[list[Any]] = [[] for _ in cookies]
    try:
        for _ in range(processes * len(cookies)):
            n, value = out.get(timeout=120)
            assert n >= 0, f"a racing process failed: {value}"
            got[n].append(value)
    finally:
        for worker in workers:
            worker.join(30)
            if worker.is_alive():
                worker.kill()
        out.close()
    for values in got:  # decisions first, the erasure's answer (a tuple) last
        values.sort(key=lambda v: isinstance(v, tuple))
    return got


class SilentProxy:
    """A TCP proxy on 127.0.0.1 that can go silent: it stops forwarding, in both
    directions, without closing anything — a server that accepted the connection
    and then says nothing (a frozen host, a black-holed route)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's."""
        return make_url(url).set(host="127.0.0.1", port=self.port) \
            .render_as_string(hide_password=False)

    def pause(self) -> None:
        self._forwarding.clear()

    def resume(self) -> None:
        self._forwarding.set()

    def close(self) -> None:
        self._closed.set()
        self._forwarding.set()
        self.listener.close()
        for thread in self._threads:
            thread.join(5)
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        self.listener.settimeout(0.05)
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(self.upstream)
            self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pump, args=(src, dst), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while not self._closed.is_set():
            if not self._forwarding.wait(0.05):
                continue
            try:
                readable, _, _ = select.select([src], [], [], 0.05)
                if not readable or not self._forwarding.is_set():
                    continue
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return
