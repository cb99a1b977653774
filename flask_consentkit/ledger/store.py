"""The receipts store (SQLAlchemy Core 2.x): append, erase, export, verify, prune.

One :class:`Ledger` per app, kept in ``ext.ledger``. It connects
lazily: the engines are created once per process and URL (a forked or spawned
worker makes its own) and the tables are created on first use, with the schema
version recorded in ``consentkit_meta``.

**One line, whatever the number of writers.** Every write runs in one
transaction that *first* takes the chain's lock — ``BEGIN IMMEDIATE`` on
SQLite (one writer at a time per database file), ``SELECT … FOR UPDATE`` of the
``head`` row in ``consentkit_meta`` on PostgreSQL — and only then reads what it
depends on: the head, each visitor's latest receipt (its
``previous_receipt_id``), the receipts an erasure nulls. So two decisions sent
at once with one cookie link one after the other, and an erasure nulls every
receipt of its consent id committed before its tombstone, on every machine.
SQLite runs in WAL mode with ``synchronous=FULL``, so a committed receipt
survives the process being killed.

**Group commit.** Appends and erasures of a process do not each open their own
transaction: they are handed to the process's *writer* for that URL, one
thread (started on first use, gone after a minute without work) that loops:

1. take every queued job (at most :data:`MAX_BATCH`) — when several decide at
   the same moment (more than one queued, or in the last batch), after
   :data:`GATHER` seconds more, so that those about to arrive share the commit
   too (a lone decision is written at once);
2. in one transaction, take the lock, then write them in arrival order — each
   receipt's ``seq`` and ``prev_digest`` follow the one before it, a visitor's
   receipts link through the batch, an erasure first writes what precedes it;
3. commit once (one fsync for the whole batch);
4. wake each waiting request with its receipt — or with the error, when the
   transaction failed: every receipt of the batch then fails the documented
   way (the recorder logs it at ERROR and the choice goes on). A failure that
   is not the database's availability (a value the database refuses, say) is
   retried one job per transaction, so it costs only its own receipt.

A request is answered only after the commit that holds its receipt, so nothing
acknowledged is lost; while one batch commits, the next one gathers, so the
writer's throughput grows with the number of decisions that arrive together.

**A writer alone writes in one go.** A writer whose last batch found the head
where it had left it guesses what the reads of step 2 would find — that head,
and for each visitor the latest receipt it wrote for them (none for a visitor
it has not seen) — and sends the batch planned from the guess together with the
database's check of it, made under the lock: on SQLite one ``INSERT`` (a
transaction of its own, which takes the lock before it reads) checked row by
row by TEMP triggers of the writer's connection, on PostgreSQL one round trip
(the lock, a guard statement, the writes, the ``COMMIT``). A wrong guess writes
nothing, and the batch is written as in step 2 (see :class:`_Guess`). Each
statement the writer runs waits for the interpreter's lock again behind the
request threads: this is one wait per batch instead of five on SQLite.

**Bounded waits** (``timeout``, ``CONSENTKIT_LEDGER_TIMEOUT``). A request waits
at most ``timeout`` seconds for its receipt. A job still queued (or taken but
not yet sent) then is withdrawn: nothing is written. A job already in a
transaction is in one bounded by the earliest deadline of its jobs, so its
outcome is known a moment later; the request waits :data:`GRACE` more for it,
and past that reports the outcome as unknown. Each transaction is bounded on
three levels:

- the server's own bounds: on PostgreSQL ``statement_timeout``,
  ``lock_timeout`` and ``idle_in_transaction_session_timeout`` (session
  settings of the writer's own connection, equal to the timeout, tightened
  with ``SET LOCAL`` by a transaction that has less time left; ``SET LOCAL``
  in every transaction of a pooled connection), on SQLite ``busy_timeout``;
- the client's: a watchdog thread that shuts the connection's socket down
  (SQLite: interrupts the statement) when the time is up. It is what frees a
  connection to a server that accepted it and then says nothing: the peer's
  kernel still acknowledges every packet, so neither TCP keepalives nor
  ``tcp_user_timeout`` ever fire, and the server's bounds cannot reach us;
- the socket's: libpq's ``tcp_user_timeout`` and keepalives (about the
  timeout) for a peer that is gone (packets dropped), idle pooled connections
  included, and ``connect_timeout`` for connecting.

Pooled connections are pinged on checkout under the same watchdog (instead of
``pool_pre_ping``, which a silent server would hold forever). Checking (and
creating) the tables on a process's first use is bounded the same way; for a
write the writer does it, so that it counts in the receipt's timeout. Only a
migration itself is not bounded (it takes as long as it takes). Connecting is
bounded by ``connect_timeout`` (``CONSENTKIT_LEDGER_TIMEOUT`` rounded up, 2 s
at least: libpq's smallest); the writer's connecting, like all its work, is
waited for at most the timeout.
The staff's commands (``verify``, ``report``, ``prune``'s reads) are not bound
by the timeout: they read as much as there is.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import logging
import math
import operator
import os
import re
import select as _select
import socket
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.pool import NullPool

from ..errors import ConsentKitError
from . import chain
from .schema import (
    SCHEMA_VERSION,
    created_at_index,
    encode_categories,
    meta,
    metadata,
    receipts,
    visitor_index,
)

log = logging.getLogger("flask_consentkit.ledger")

#: Receipts read per query by :meth:`Ledger.verify`.
BATCH_SIZE = 5000
#: Receipts deleted per transaction by :meth:`Ledger.prune`, and the pause
#: between two of them in which waiting writers take the lock.
PRUNE_BATCH = 1000
PRUNE_PAUSE = 0.02

#: Seconds any ledger statement or lock wait may take, and a request may wait
#: for its receipt (``CONSENTKIT_LEDGER_TIMEOUT``).
LEDGER_TIMEOUT = 5.0
#: At most this many seconds to connect to PostgreSQL (unless the URL sets
#: ``connect_timeout``; libpq's smallest is 2).
CONNECT_TIMEOUT = 5
#: Jobs written in one transaction at most.
MAX_BATCH = 256
#: How long a request whose time is up still waits for the transaction it is in.
GRACE = 0.75
#: A job with less time than this left is failed rather than started.
MIN_BUDGET = 0.01
#: Seconds by which a batch's time left may fall short of the timeout before
#: its transaction gets bounds of its own (the session's are the timeout).
SLACK = 0.2
#: A writer thread without work for this long closes its connection and ends.
WRITER_IDLE = 60.0
#: Seconds a writer that finds several jobs waiting waits for more before it writes
#: them, again while more keep arriving, up to :data:`GATHER_MAX` in all: on a busy
#: server, fewer and larger commits cost less per receipt, in the writer and in the
#: database (at 32 clients on 2 cores: batches of about 10 instead of 5), for at most
#: 20 ms of latency; a writer whose last batch was one job writes the next at once.
GATHER = 0.002
GATHER_MAX = 0.02
#: Jobs waiting (or in the last batch) from which the writer gathers more. A trade:
#: over HTTP on 2 cores, gathering from 8 instead of 2 gave 0.08-0.19 more of the
#: ledger-off rate at 8 clients and up to 0.10 less at 32 (interleaved runs).
GATHER_FROM = 2

ACTIONS = frozenset({"accept_all", "reject_all", "save", "erase"})
METHODS = frozenset({"banner", "preferences", "api", "gpc"})

#: PostgreSQL's "query canceled", "lock not available" and "idle in transaction
#: session timeout".
_TIMEOUT_SQLSTATES = frozenset({"57014", "55P03", "25P03"})


class LedgerError(ConsentKitError):
    """The ledger cannot be used as asked (for example a schema from a newer version)."""


@dataclass(frozen=True)
class Draft:
    """What a decision contributes to a receipt; the ledger adds id, time, seq and links.

    A *withdrawal* is a decision whose ``withdrawn`` is non-empty: categories
    granted before and denied now. ``action`` stays the visitor's action.
    """

    action: str
    consent_id: str | None
    granted: frozenset[str]
    denied: frozenset[str]
    policy_version: str
    method: str
    withdrawn: frozenset[str] = frozenset()
    banner_hash: str | None = None
    language: str | None = None
    page_path: str | None = None
    ip_prefix: str | None = None
    country: str | None = None
    #: the rule per audience applied (``CONSENTKIT_REGIONS``), e.g. ``"ru"``
    rule: str | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown receipt action {self.action!r}")
        if self.method not in METHODS:
            raise ValueError(f"unknown collection method {self.method!r}")

    def as_log(self) -> dict[str, Any]:
        """A JSON-ready copy, for the error log when a write fails."""
        out = asdict(self)
        for key in ("granted", "denied", "withdrawn"):
            out[key] = sorted(out[key])
        return out


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :meth:`Ledger.verify`."""

    ok: bool
    #: receipts checked
    checked: int
    #: the first bad receipt (``None`` when the chain holds or none can be named)
    bad_seq: int | None = None
    bad_receipt_id: str | None = None
    reason: str | None = None
    head: tuple[int, str] | None = None
    erased: int = 0

    def describe(self) -> str:
        if self.ok:
            return f"ledger OK: {self.checked} receipts, chain intact"
        if self.bad_seq is None:
            return f"ledger BROKEN: {self.reason}"
        where = (f"receipt {self.bad_receipt_id} (seq {self.bad_seq})"
                 if self.bad_receipt_id else f"seq {self.bad_seq}")
        return f"ledger BROKEN at {where}: {self.reason}"


#: the ``consentkit_meta`` row that says the head was found missing and rebuilt (its
#: value: the link it was rebuilt from), kept as evidence for ``verify``
HEAD_REBUILT = "head_rebuilt"


class LedgerMissing(LedgerError):
    """A read-only :class:`Ledger` found no ledger at its URL (and created none)."""


def no_ledger_file(path: object) -> str:
    """What to say of a SQLite ledger URL whose file is not there."""
    return (f"There is no ledger database at {path}. Check CONSENTKIT_LEDGER_URL, or let the "
            "app record a first decision (it creates the file).")


def no_ledger_tables(shown_url: str) -> str:
    """What to say of a database without the ledger's tables (``shown_url``: no password)."""
    return (f"There is no ledger at {shown_url}: it has no consentkit_receipts table. Check "
            "CONSENTKIT_LEDGER_URL, or let the app record a first decision (it creates the "
            "tables).")


class LedgerWriteError(LedgerError):
    """A receipt (or an erasure) was not written; the cause is chained."""


class LedgerTimeout(LedgerWriteError):
    """The ledger did not answer within ``CONSENTKIT_LEDGER_TIMEOUT``."""


class LedgerOutcomeUnknown(LedgerTimeout):
    """The connection failed during the commit: the write may or may not be in the ledger."""


# statements built once (SQLAlchemy caches their compiled form)
_HEAD_FOR_UPDATE = select(meta.c.value).where(meta.c.key == "head").with_for_update()

#: The message of the SQLite writer's guard (:attr:`_Sql.guards`) when a batch does
#: not follow what the ledger holds.
GUESS_FAILED = "consentkit: the batch does not follow the ledger"
_GUARD, _MOVE_HEAD = "consentkit_guard", "consentkit_move_head"
#: SQLite's primary result codes of a statement that did not run: busy, locked, interrupted
_NOT_RUN = frozenset({5, 6, 9})
#: PostgreSQL's ``division_by_zero``: the guard of a guessed batch (:meth:`_Sql.guard`)
_GUARD_SQLSTATE = "22012"
#: Seconds before the request's deadline at which the server ends a guessed round trip's
#: lock wait itself (its own ``statement_timeout`` and ``lock_timeout``), so that the
#: watchdog, which cannot tell whether the ``COMMIT`` ran, need not; and the least time
#: left for which a batch is guessed on PostgreSQL at all
GUESS_MARGIN = 0.1
GUESS_MIN = 0.25
#: statement, lock and idle-in-transaction bounds; ``local``: this transaction only
_PG_LIMITS = text(
    "SELECT set_config('statement_timeout', :ms, :local), "
    "set_config('lock_timeout', :ms, :local), "
    "set_config('idle_in_transaction_session_timeout', :ms, :local)"
)


# -- the watchdog: one thread per process that aborts overdue connections -------


def _abort(dbapi_connection: Any) -> None:
    """Make the statement running on ``dbapi_connection`` fail now, from another thread."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.interrupt()
        return
    # shutting the socket down wakes the thread blocked on it (EOF); the driver
    # then reports a broken connection, which the pool discards
    sock = socket.socket(fileno=os.dup(dbapi_connection.fileno()))
    try:
        sock.shutdown(socket.SHUT_RDWR)
    finally:
        sock.close()


class _Watchdog:
    """Aborts each watched connection still watched at its deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watched: dict[int, tuple[float, Any]] = {}
        self._aborted: set[int] = set()
        self._tokens = itertools.count(1)
        self._wake = math.inf
        self._thread: threading.Thread | None = None

    def watch(self, dbapi_connection: Any, deadline: float) -> int:
        with self._cond:
            token = next(self._tokens)
            self._watched[token] = (deadline, dbapi_connection)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="consentkit-ledger-watchdog")
                self._thread.start()
            elif deadline < self._wake:
                self._cond.notify()
            return token

    def unwatch(self, token: int) -> bool:
        """Stop watching; ``True`` when the connection was aborted meanwhile."""
        with self._cond:
            self._watched.pop(token, None)
            if token in self._aborted:
                self._aborted.discard(token)
                return True
            return False

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token, (deadline, conn) in list(self._watched.items()):
                    if deadline <= now:
                        del self._watched[token]
                        self._aborted.add(token)
                        try:
                            _abort(conn)
                        except Exception as exc:  # noqa: BLE001 - already closed, say
                            log.debug("could not abort an overdue ledger connection: %s", exc)
                        else:
                            log.warning("the ledger did not answer in time; the statement "
                                        "waiting for it was aborted")
                self._wake = min((d for d, _ in self._watched.values()), default=math.inf)
                self._cond.wait(None if self._wake == math.inf else self._wake - now)


_watchdogs: dict[int, _Watchdog] = {}


def _watchdog() -> _Watchdog:
    pid = os.getpid()
    dog = _watchdogs.get(pid)
    if dog is None:
        with _engines_lock:
            dog = _watchdogs.setdefault(pid, _Watchdog())
    return dog


@contextmanager
def _watched(conn: Connection, deadline: float) -> Iterator[list[bool]]:
    """Abort ``conn`` at ``deadline``; yields a one-item list set to whether it was."""
    dog = _watchdog()
    token = dog.watch(conn.connection.dbapi_connection, deadline)
    aborted = [False]
    try:
        yield aborted
    finally:
        aborted[0] = dog.unwatch(token)


def _limit(conn: Connection, deadline: float, *, local: bool = True) -> None:
    """Bound the server side of ``conn``'s current transaction (or session) by the time left."""
    if conn.dialect.name == "postgresql":
        ms = str(max(1, int((deadline - time.monotonic()) * 1000)))
        conn.execute(_PG_LIMITS, {"ms": ms, "local": local})


def _is_timeout(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "sqlstate", None) in _TIMEOUT_SQLSTATES:
        return True
    if isinstance(orig, sqlite3.OperationalError):
        message = str(orig)
        return "locked" in message or "busy" in message or "interrupted" in message
    return False


def _broken(conn: Connection, exc: BaseException) -> bool:
    return conn.invalidated or bool(getattr(exc, "connection_invalidated", False))


# -- engines: one per process, URL and timeout ----------------------------------

_engines: dict[tuple[str, int, float, bool, bool], Engine] = {}
_engines_lock = threading.Lock()


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (``None``: in memory or a ``file:`` URI)."""
    database = make_url(url).database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        return Path(database).expanduser()
    return None


def _sqlite_engine(url: str, timeout: float, writer: bool, read_only: bool = False) -> Engine:
    path = sqlite_file(url)
    if path is not None and not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": timeout}, hide_parameters=True,
                           **({"poolclass": NullPool} if writer else {}))

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        else:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("consentkit_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _postgresql_args(query: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """libpq's socket-level bounds, unless the URL sets them."""
    wanted: dict[str, Any] = {
        # an unreachable server must not hold a visitor's request for minutes
        "connect_timeout": max(2, math.ceil(min(CONNECT_TIMEOUT, timeout))),
        # a peer that is gone (packets dropped): unacknowledged data, and idle
        # pooled connections, fail within about the timeout
        "tcp_user_timeout": max(1, int(timeout * 1000)),
        "keepalives": 1,
        "keepalives_idle": max(1, math.ceil(timeout)),
        "keepalives_interval": max(1, math.ceil(timeout / 3)),
        "keepalives_count": 3,
    }
    return {k: v for k, v in wanted.items() if k not in query}


def _bounded_ping(engine: Engine, timeout: float) -> None:
    """``pool_pre_ping``, but under the watchdog: a silent server cannot hold a checkout."""

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["consentkit_fresh"] = True

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.info.pop("consentkit_fresh", False):
            return
        dog = _watchdog()
        token = dog.watch(dbapi_connection, time.monotonic() + timeout)
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - any failure: take another connection
            if dog.unwatch(token):  # the server is silent: no point connecting again
                raise LedgerTimeout(f"the ledger did not answer a ping within "
                                    f"CONSENTKIT_LEDGER_TIMEOUT ({timeout:g} s)") from exc
            raise DisconnectionError(f"a pooled ledger connection is gone ({exc})") from exc
        dog.unwatch(token)


def get_engine(url: str, timeout: float = LEDGER_TIMEOUT, *, writer: bool = False,
               read_only: bool = False) -> Engine:
    """The engine for ``url`` in this process, created on first use.

    ``writer=True``: the engine of the process's writer thread (no pool: it
    keeps one connection open while it has work). ``read_only=True``: every
    connection refuses writes (SQLite ``query_only``, PostgreSQL ``READ ONLY``
    sessions), and a SQLite file's folder is not created.
    """
    key = (url, os.getpid(), float(timeout), writer, read_only)
    engine = _engines.get(key)
    if engine is not None:
        return engine
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            parsed = make_url(url)
            backend = parsed.get_backend_name()
            if backend == "sqlite":
                engine = _sqlite_engine(url, timeout, writer, read_only)
            else:
                connect_args = (_postgresql_args(parsed.query, timeout)
                                if backend == "postgresql" else {})
                pool: dict[str, Any] = {"poolclass": NullPool} if writer else {}
                engine = create_engine(url, connect_args=connect_args, hide_parameters=True,
                                       **pool)
                if read_only and backend == "postgresql":
                    _pg_read_only(engine)  # before the ping, whose connection the pool keeps
                if not writer:
                    _bounded_ping(engine, timeout)
            _engines[key] = engine
        return engine


def _pg_read_only(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        cursor.close()
        dbapi_connection.commit()


def dispose_engines(url: str | None = None) -> None:
    """Close the writers and pooled connections of this process (of ``url`` only, if given).

    A writer first finishes the jobs it was given.
    """
    pid = os.getpid()
    with _engines_lock:
        writers = [w for k, w in _writers.items()
                   if k[1] == pid and (url is None or k[0] == url)]
    for writer in writers:
        writer.stop()
    with _engines_lock:
        for key in [k for k in _engines if url is None or k[0] == url]:
            engine = _engines.pop(key)
            if key[1] == pid:
                engine.dispose()


atexit.register(dispose_engines)


def _after_fork() -> None:
    """In a forked child: locks another thread may have held at the fork start afresh."""
    global _engines_lock
    _engines_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


# -- the writer: one thread per process and URL, one transaction per batch --------

#: A job's life: queued; taken by the writer; sent (its transaction started);
#: done (finished, or taken back by its request when its time was up).
_QUEUED, _TAKEN, _SENT, _DONE = 0, 1, 2, 3


class _Job:
    """One append or erasure, and the request thread waiting for it."""

    __slots__ = ("ledger", "draft", "erase_id", "created_at", "timeout", "deadline", "state",
                 "result", "error", "_done")

    def __init__(self, ledger: Ledger, draft: Draft, *, erase_id: str | None = None,
                 created_at: datetime | None = None) -> None:
        self.ledger = ledger
        self.draft = draft
        self.erase_id = erase_id
        self.created_at = created_at
        self.timeout = ledger.timeout
        self.deadline = time.monotonic() + ledger.timeout
        self.state = _QUEUED
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = threading.Lock()
        self._done.acquire()

    def wait(self, seconds: float) -> bool:
        return self._done.acquire(timeout=max(0.0, seconds))

    def outcome(self) -> Any:
        error = self.error
        if error is None:
            return self.result
        # one error may fail a whole batch: each waiter raises its own exception
        if isinstance(error, LedgerError):
            raise type(error)(*error.args) from error.__cause__
        raise LedgerWriteError(f"{type(error).__name__}: {error}") from error


def _late(job: _Job, what: str) -> LedgerTimeout:
    return LedgerTimeout(f"the ledger did not answer within CONSENTKIT_LEDGER_TIMEOUT "
                         f"({job.timeout:g} s); {what}")


Outcome = tuple[_Job, Any, BaseException | None]


#: Visitors whose latest receipt a writer remembers (see :class:`_Guess`).
GUESSES = 4096


class _Guess:
    """What a writer expects to find under the chain's lock when it writes its next
    batch: the head it wrote last, and the latest receipt of the visitors it wrote for.

    A guess, never trusted: a batch planned from it is written in the same round trip
    as the checks that the guess still holds, which the database makes under the lock,
    in the statement or transaction that writes (SQLite: triggers of the writer's own
    connection, :attr:`_Sql.guards`; PostgreSQL: a statement after the lock,
    :meth:`_Sql.guard`). When one fails, nothing is written and the batch is planned
    again from what is read under the lock, as without a guess. So what the ledger
    holds never depends on it; only the number of round trips does (SQLite: one
    statement instead of five, each of which waits for the interpreter's lock again;
    PostgreSQL: one round trip instead of two). A visitor it does not remember is
    guessed to have no receipt yet: most decisions are a visitor's first.

    It is tried after a batch that found the head where this writer had left it (no
    other process wrote in between); a writer that shares the ledger with busy
    others reads under the lock, as before. At most :data:`GUESSES` visitors, the
    least recently written forgotten first.
    """

    __slots__ = ("head", "trusted", "latest", "armed")

    def __init__(self) -> None:
        #: the head this writer committed last (``None``: unknown)
        self.head: str | None = None
        #: the last batch found the head where this writer had left it: guess the next
        self.trusted = False
        #: consent id -> its latest receipt id (``None``: no receipt), as last written
        self.latest: OrderedDict[str, str | None] = OrderedDict()
        #: the SQLite connection whose triggers are made (:attr:`_Sql.guards`)
        self.armed: Any = None

    def applies(self, jobs: list[_Job]) -> bool:
        """Plan ``jobs`` from the guess? When it is trusted and none of them erases."""
        return self.head is not None and self.trusted \
            and all(job.erase_id is None for job in jobs)

    def last(self, ids: list[str]) -> dict[str, str]:
        """The guessed latest receipts of ``ids``, as :func:`_plan` takes them."""
        latest = self.latest
        return {c: r for c in ids if (r := latest.get(c)) is not None}

    def expected(self, ids: list[str]) -> list[str | None]:
        """The latest receipt of each of ``ids`` before the batch, as guessed, in order."""
        latest = self.latest
        return [latest.get(c) for c in ids]

    def learn(self, head: str, ids: list[str], last: dict[str, str], *,
              trusted: bool) -> None:
        """A batch over ``ids`` was committed: the head and their latest receipts now
        (``last``, as :func:`_plan` left it); ``trusted``: guess the next batch."""
        self.head, self.trusted = head, trusted
        latest = self.latest
        for cid in ids:
            latest[cid] = last.get(cid)
            latest.move_to_end(cid)
        while len(latest) > GUESSES:
            latest.popitem(last=False)

    def forget(self) -> None:
        """The write failed: whatever happened, read under the lock next time."""
        self.head, self.trusted = None, False


class _Writer:
    """Takes every queued job, writes them in one transaction, commits once, wakes each."""

    def __init__(self, key: tuple[str, int, float], url: str, timeout: float) -> None:
        self.key = key
        self.url = url
        self.timeout = timeout
        self._cond = threading.Condition()
        self._queue: list[_Job] = []
        self.stopping = False
        self._idle = False
        self.gather = GATHER
        self._last = 0  # jobs in the last batch
        self._conn: Connection | None = None
        self._busy_ms = 0
        self._guess = _Guess()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="consentkit-ledger-writer")
        self._thread.start()

    # -- the requests' side -----------------------------------------------------

    def submit(self, job: _Job) -> bool:
        """Queue ``job``; ``False`` when this writer is ending (ask for a new one)."""
        with self._cond:
            if self.stopping:
                return False
            self._queue.append(job)
            if self._idle:  # a busy writer takes it with the next batch
                self._cond.notify()
            return True

    def run(self, job: _Job) -> Any:
        """Wait for ``job`` (queued already), at most its timeout (plus :data:`GRACE`)."""
        if job.wait(job.deadline - time.monotonic()):
            return job.outcome()
        with self._cond:
            if job.state in (_QUEUED, _TAKEN):  # not started: take it back
                if job.state == _QUEUED:
                    self._queue.remove(job)
                job.state = _DONE
                raise _late(job, "nothing was written")
        # in a transaction bounded by the earliest deadline of its jobs: wait for it
        if job.wait(GRACE):
            return job.outcome()
        raise LedgerOutcomeUnknown(f"the ledger did not answer within "
                                   f"CONSENTKIT_LEDGER_TIMEOUT ({job.timeout:g} s); the write "
                                   "was in progress and its outcome is unknown")

    def stop(self) -> None:
        """End the thread once the queue is empty; wait for it (bounded)."""
        with self._cond:
            self.stopping = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(self.timeout + GRACE + 1)

    # -- the writer thread ------------------------------------------------------

    def _finish(self, outcomes: list[Outcome]) -> None:
        with self._cond:
            for job, result, error in outcomes:
                if job.state != _DONE:  # its request may have taken it back
                    job.result, job.error, job.state = result, error, _DONE
                    job._done.release()

    def _claim(self, jobs: list[_Job]) -> list[_Job]:
        """The jobs still wanted, marked sent: their requests now wait for the outcome."""
        with self._cond:
            claimed = [job for job in jobs if job.state != _DONE]
            for job in claimed:
                job.state = _SENT
            return claimed

    def _unclaim(self, jobs: list[_Job]) -> None:
        """The jobs not written after all, taken but not sent: their requests may take
        them back at their deadline, nothing of them having reached the database."""
        with self._cond:
            for job in jobs:
                if job.state == _SENT:
                    job.state = _TAKEN

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue:
                        if self.stopping:
                            return
                        self._idle = True
                        self._last = 0  # work after a pause: no one to wait for
                        try:
                            woken = self._cond.wait(WRITER_IDLE)
                        finally:
                            self._idle = False
                        if not woken and not self._queue:
                            self.stopping = True
                            return
                    if self.gather and max(len(self._queue), self._last) >= GATHER_FROM:
                        # others decide at the same moment: those about to arrive
                        # join this commit rather than wait for the next one
                        self._gather()
                    batch = self._queue[:MAX_BATCH]
                    del self._queue[:MAX_BATCH]
                    self._last = len(batch)
                    for job in batch:
                        job.state = _TAKEN
                try:
                    self._commit(batch)
                except BaseException as exc:  # never leave a request waiting
                    self._finish([(job, None, exc) for job in batch])
                    if not isinstance(exc, Exception):
                        raise
                    log.exception("the ledger's writer failed")
        finally:
            self._close()
            with _engines_lock:
                if _writers.get(self.key) is self:
                    del _writers[self.key]

    def _gather(self) -> None:
        """Wait, holding the condition, while jobs keep arriving (see :data:`GATHER`)."""
        end = time.monotonic() + GATHER_MAX
        seen = 0
        while seen < len(self._queue) < MAX_BATCH:
            seen = len(self._queue)
            left = end - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(min(self.gather, left))

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # noqa: BLE001 - it is being thrown away
                log.debug("closing the ledger writer's connection failed: %s", exc)

    def _commit(self, batch: list[_Job]) -> None:
        now = time.monotonic()
        live: list[_Job] = []
        failed: list[Outcome] = []
        for job in batch:
            if job.deadline - now < MIN_BUDGET:
                failed.append((job, None, _late(job, "nothing was written")))
            else:
                live.append(job)
        ready: list[_Job] = []
        pid = os.getpid()
        if all(pid in job.ledger._ready for job in live):
            ready = live  # the usual case: every ledger's tables were checked already
        else:
            for ledger in dict.fromkeys(job.ledger for job in live):  # tables, once each
                mine = [job for job in live if job.ledger is ledger]
                try:
                    ledger._ready_engine()
                except Exception as exc:  # noqa: BLE001 - reported to each of its jobs
                    failed.extend((job, None, exc) for job in mine)
                else:
                    ready.extend(mine)
        self._finish(failed)
        if not ready:
            return
        try:
            done = self._transaction(ready)
        except Exception as exc:  # noqa: BLE001 - reported to each job
            if len(ready) > 1 and not isinstance(exc, LedgerError | OperationalError):
                # not the database's availability: maybe one job's values; one at a time
                for job in ready:
                    self._commit_alone(job)
                return
            self._finish([(job, None, exc) for job in ready])
            return
        self._finish([(job, result, None) for job, result in done])

    def _commit_alone(self, job: _Job) -> None:
        if job.deadline - time.monotonic() < MIN_BUDGET:
            self._finish([(job, None, _late(job, "nothing was written"))])
            return
        try:
            done = self._transaction([job])
        except Exception as exc:  # noqa: BLE001 - reported to the job
            self._finish([(job, None, exc)])
        else:
            self._finish([(j, result, None) for j, result in done])

    def _connection(self) -> Connection:
        """The writer's own connection, bounded for the whole session by the timeout.

        A batch with less time left than that (by more than :data:`SLACK`)
        tightens the bounds for its transaction only. On PostgreSQL the
        session reads committed data (``READ COMMITTED``, whatever the
        server's default): each statement sees what was committed before it
        started, so the reads that follow the lock see the previous holder's
        receipts.
        """
        if self._conn is None:
            conn = get_engine(self.url, self.timeout, writer=True).connect()
            conn.execution_options(consentkit_write=True)
            if conn.dialect.name == "postgresql":
                try:
                    with _watched(conn, time.monotonic() + self.timeout), conn.begin():
                        _limit(conn, time.monotonic() + self.timeout, local=False)
                    dbapi: Any = conn.connection.dbapi_connection
                    # our own BEGIN (READ COMMITTED) starts each transaction
                    dbapi.autocommit = True
                    # every query is new (its values are literals): psycopg need not count
                    # them to prepare the frequent ones, hashing each query string twice
                    dbapi.prepare_threshold = None
                except BaseException:
                    conn.close()
                    raise
            self._busy_ms = int(self.timeout * 1000)  # set when SQLite connects
            self._conn = conn
        return self._conn

    def _bound(self, conn: Connection, deadline: float) -> str | None:
        """Bound this transaction by ``deadline`` where the session's bound is too loose.

        SQLite: sets ``busy_timeout`` (before ``BEGIN IMMEDIATE`` waits);
        PostgreSQL: returns the milliseconds left for :func:`_write_batch` to
        set for this transaction only (``None``: the session's bounds hold).
        """
        left = deadline - time.monotonic()
        tight = left < self.timeout - SLACK
        if conn.dialect.name == "postgresql":
            return str(max(1, int(left * 1000))) if tight else None
        if conn.dialect.name == "sqlite":
            ms = int((left if tight else self.timeout) * 1000)
            if abs(ms - self._busy_ms) > SLACK * 1000:
                dbapi = conn.connection.dbapi_connection
                dbapi.execute(f"PRAGMA busy_timeout={max(1, ms)}")  # type: ignore[union-attr]
                self._busy_ms = ms
        return None

    def _transaction(self, jobs: list[_Job]) -> list[tuple[_Job, Any]]:
        """Write ``jobs`` in one transaction; retried once on a connection found dead."""
        for attempt in (1, 2):
            conn = self._connection()
            jobs = self._claim(jobs)
            if not jobs:
                return []
            deadline = min(job.deadline for job in jobs)
            if deadline - time.monotonic() < MIN_BUDGET:
                raise _late(jobs[0], "nothing was written")
            committing: list[bool] = []
            error: Exception | None = None
            results: list[Any] = []
            with _watched(conn, deadline) as aborted:
                try:
                    limit_ms = self._bound(conn, deadline)
                    results = _write_batch(conn, jobs, limit_ms, committing, self._guess,
                                           deadline, functools.partial(self._bound, conn,
                                                                       deadline))
                except Exception as exc:  # noqa: BLE001 - sorted out below
                    error = exc
            if aborted[0] or (error is not None and _broken(conn, error)):
                self._close()
            if error is None:
                return list(zip(jobs, results, strict=True))
            if committing and (aborted[0] or _broken(conn, error)):
                raise LedgerOutcomeUnknown(
                    f"the connection to the ledger failed during the commit "
                    f"({type(error).__name__}); the write may or may not be in the ledger"
                ) from error
            if aborted[0] or _is_timeout(error):
                raise _late(jobs[0], "nothing was written") from error
            if attempt == 1 and _broken(conn, error) \
                    and deadline - time.monotonic() > MIN_BUDGET:
                log.info("the ledger writer's connection was gone (%s); retrying on a new one",
                         type(error).__name__)
                self._unclaim(jobs)  # not sent while the writer connects again
                continue  # a connection that died while idle (a server restart, say)
            raise error
        raise AssertionError("unreachable")  # pragma: no cover


def _rollback(tx: Any) -> None:
    try:
        tx.rollback()
    except Exception as exc:  # noqa: BLE001 - the connection is gone; so is the transaction
        log.debug("rolling back a ledger transaction failed: %s", exc)


_writers: dict[tuple[str, int, float], _Writer] = {}


def _writer(url: str, timeout: float) -> _Writer:
    key = (url, os.getpid(), float(timeout))
    writer = _writers.get(key)
    if writer is None or writer.stopping:
        with _engines_lock:
            writer = _writers.get(key)
            if writer is None or writer.stopping:
                writer = _writers[key] = _Writer(key, url, timeout)
    return writer


def _submit(job: _Job) -> Any:
    """Hand ``job`` to this process's writer and wait for its outcome."""
    while True:
        writer = _writer(job.ledger.url, job.ledger.timeout)
        if writer.submit(job):
            return writer.run(job)


# -- the writing itself (in the writer thread, under the chain's lock) ------------


_encoded = functools.lru_cache(maxsize=512)(encode_categories)


def _categories(keys: frozenset[str]) -> str:
    """:func:`~.schema.encode_categories`, remembered for the few sets there are."""
    try:
        return _encoded(keys)
    except TypeError:  # not hashable after all
        return encode_categories(keys)


def _receipt(draft: Draft, seq: int, prev_digest: str, previous_receipt_id: str | None,
             created_at: datetime | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "seq": seq,
        "receipt_id": str(uuid.uuid4()),
        "consent_id": draft.consent_id,
        "created_at": _as_naive_utc(created_at) if created_at else _now(),
        "action": draft.action,
        "granted": _categories(draft.granted),
        "denied": _categories(draft.denied),
        "withdrawn": _categories(draft.withdrawn),
        "policy_version": draft.policy_version,
        "banner_hash": draft.banner_hash,
        "language": draft.language,
        "method": draft.method,
        "page_path": draft.page_path,
        "previous_receipt_id": previous_receipt_id,
        "ip_prefix": draft.ip_prefix,
        "country": draft.country,
        "rule": draft.rule,
        "erased_at": None,
        "personal_salt": chain.new_salt(),
        "prev_digest": prev_digest,
    }
    row["personal_digest"] = chain.personal_digest(row)
    row["digest"] = chain.receipt_digest(row)
    return row


def _lock_head(conn: Connection) -> tuple[int, str]:
    value = conn.execute(_HEAD_FOR_UPDATE).scalar()
    head = chain.decode_link(value)
    if head is None:
        raise LedgerError("the ledger's head row is missing or garbled; run "
                          "'flask consent verify' and restore the ledger from a backup.")
    return head


class _Sql:
    """The writer's statements in the driver's own SQL, for one dialect.

    Cheaper per call than SQLAlchemy Core (no compilation, no per-row
    parameter processing beyond the types' own bind processors), which is
    what the writer runs for every batch; the rows are the same.
    """

    _cache: dict[tuple[str, str], _Sql] = {}

    def __init__(self, dialect: Any) -> None:
        p = "?" if dialect.paramstyle == "qmark" else "%s"
        self.p = p
        self.postgresql = dialect.name == "postgresql"
        self.sqlite = dialect.name == "sqlite"
        table, head = receipts.name, meta.name
        self.columns = [c.name for c in receipts.columns]
        self._values = operator.itemgetter(*self.columns)  # a row's values, in order
        #: (position, bind processor) of the columns whose values the driver
        #: does not take as they are (SQLite: the times)
        self._processors = [
            (i, process) for i, c in enumerate(receipts.columns)
            if (process := c.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        ]
        self.erased_at = receipts.c.erased_at.type.dialect_impl(dialect) \
            .bind_processor(dialect)
        self.head = f"SELECT value FROM {head} WHERE key = 'head'" + \
            (" FOR UPDATE" if self.postgresql else "")
        self.set_head = f"UPDATE {head} SET value = {p} WHERE key = 'head'"
        #: PostgreSQL's statement, lock and idle bounds, for this transaction only
        self.limits = (f"SELECT set_config('statement_timeout', {p}, true), "
                       f"set_config('lock_timeout', {p}, true), "
                       f"set_config('idle_in_transaction_session_timeout', {p}, true)")
        nulls = ", ".join(f"{c} = NULL" for c in chain.PERSONAL_COLUMNS)
        self.erase = f"UPDATE {table} SET {nulls}, erased_at = {p} WHERE consent_id = {p}"
        # one index probe per visitor (the newest entry of the visitor's index), not
        # every receipt the visitor ever had, as an IN (...) GROUP BY reads; and all in
        # one row, which SQLite steps once (each step lets other threads run first)
        self._probe = (f"(SELECT r.receipt_id FROM {table} r WHERE r.consent_id = {p} "
                       "ORDER BY r.seq DESC LIMIT 1)")
        self._head = f"(SELECT value FROM {head} WHERE key = 'head')"
        self._insert = f"INSERT INTO {table} ({', '.join(self.columns)}) VALUES "
        self.insert_head = self._insert
        self._row = "(" + ", ".join([p] * len(self.columns)) + ")"
        # a batch planned from the writer's guess (see _Guess)
        self._guessed = f"INSERT INTO {table} ({', '.join(self.columns)}) SELECT * FROM (VALUES "
        #: SQLite: the writer connection's triggers, made for a guessed batch and dropped
        #: before a batch is written from the reads (which must not depend on them).
        #: Before each row: its ``seq`` and ``prev_digest`` follow the head (read as
        #: :func:`chain.decode_link` reads it), its ``previous_receipt_id`` is its
        #: visitor's latest receipt (a consent id that is not empty, as :func:`_plan`
        #: links them), else the statement fails (:data:`GUESS_FAILED`); after it, the
        #: head moves to it. TEMP: on this connection only, gone with it
        self.guards = (
            f"CREATE TEMP TRIGGER IF NOT EXISTS {_GUARD} BEFORE INSERT ON main.{table} "
            f"WHEN NOT EXISTS (SELECT 1 FROM main.{head} h WHERE h.key = 'head' "
            f"AND instr(h.value, ':') > 1 "
            f"AND substr(h.value, 1, instr(h.value, ':') - 1) NOT GLOB '*[^0-9]*' "
            f"AND CAST(substr(h.value, 1, instr(h.value, ':') - 1) AS INTEGER) = NEW.seq - 1 "
            f"AND substr(h.value, instr(h.value, ':') + 1) = NEW.prev_digest) "
            f"OR (NEW.consent_id <> '' AND NEW.previous_receipt_id IS NOT "
            f"(SELECT r.receipt_id FROM main.{table} r WHERE r.consent_id = NEW.consent_id "
            f"ORDER BY r.seq DESC LIMIT 1)) "
            f"BEGIN SELECT RAISE(ABORT, '{GUESS_FAILED}'); END",
            f"CREATE TEMP TRIGGER IF NOT EXISTS {_MOVE_HEAD} AFTER INSERT ON main.{table} "
            f"BEGIN UPDATE {head} SET value = NEW.seq || ':' || NEW.digest "
            f"WHERE key = 'head'; END",
        )
        self.unguard = tuple(f"DROP TRIGGER IF EXISTS temp.{name}"
                             for name in (_GUARD, _MOVE_HEAD))
        # no row at all where the triggers are gone (a table made anew under the writer)
        self._armed = (") WHERE (SELECT count(*) FROM sqlite_temp_master WHERE type = "
                       f"'trigger' AND name IN ('{_GUARD}', '{_MOVE_HEAD}')) = 2")

    @classmethod
    def of(cls, dialect: Any) -> _Sql:
        key = (dialect.name, dialect.paramstyle)
        sql = cls._cache.get(key)
        if sql is None:
            sql = cls._cache[key] = cls(dialect)
        return sql

    def latest(self, count: int) -> str:
        """The latest receipt of each of ``count`` consent ids, in one row: a receipt id
        per consent id, in their order, ``NULL`` for a visitor without receipts."""
        return "SELECT " + ", ".join([self._probe] * count)

    def head_and_latest(self, count: int) -> str:
        """The head, then :meth:`latest`'s columns, in one row; only where the lock is
        held already."""
        return "SELECT " + ", ".join([self._head] + [self._probe] * count)

    def insert(self, rows: list[dict[str, Any]]) -> tuple[str, Any]:
        """The INSERT of ``rows`` (one multi-row statement) and its parameters, for
        SQLite (PostgreSQL's writes quote their values: see :func:`_write_batch_pg`)."""
        params: list[Any] = []
        for row in rows:
            values = self._values(row)
            if self._processors:
                values = list(values)
                for i, process in self._processors:
                    if values[i] is not None:
                        values[i] = process(values[i])
            params.extend(values)
        return self._insert + ", ".join([self._row] * len(rows)), params

    def guessed_insert(self, rows: list[dict[str, Any]]) -> tuple[str, Any]:
        """SQLite: :meth:`insert` of a batch planned from the writer's guess, which its
        :attr:`guards` check row by row; it writes no row when they are not there."""
        _, params = self.insert(rows)
        return self._guessed + ", ".join([self._row] * len(rows)) + self._armed, params

    def guard(self, head: str, ids: list[str], expected: list[str | None],
              literal: Callable[[Any], str]) -> str:
        """PostgreSQL: a statement that fails (``division_by_zero``) unless the head is
        ``head`` and the latest receipt of each of ``ids`` is the one ``expected``; run
        once the lock is held, in the transaction that writes what was planned from them."""
        checks = [f"{self._head} = {literal(head)}"]
        checks.extend(self._probe.replace("%s", literal(cid)) + " IS NOT DISTINCT FROM "
                      + ("NULL" if receipt is None else literal(receipt))
                      for cid, receipt in zip(ids, expected, strict=True))
        return f"SELECT 1 / coalesce({' AND '.join(checks)}, false)::int"

    def values(self, row: dict[str, Any]) -> tuple[Any, ...]:
        """``row``'s values in the order of :attr:`columns`."""
        values: tuple[Any, ...] = self._values(row)
        return values

    def erase_params(self, consent_id: str, now: datetime) -> tuple[Any, ...]:
        return (self.erased_at(now) if self.erased_at else now, consent_id)


#: What a batch does once the head and the visitors' latest receipts are known:
#: ``("insert", rows)``, ``("erase", consent_id, time, index in results)``,
#: ``("head", link)``, in this order.
Step = tuple[Any, ...]


def _plan(jobs: list[_Job], head_value: Any, last: dict[str, str]
          ) -> tuple[list[Any], list[Step]]:
    """The receipts of ``jobs`` chained after ``head_value``, and the steps that store them."""
    head = chain.decode_link(head_value)
    if head is None:
        raise LedgerError("the ledger's head row is missing or garbled; run "
                          "'flask consent verify' and restore the ledger from a backup.")
    seq, prev = head
    pending: list[dict[str, Any]] = []
    steps: list[Step] = []
    results: list[Any] = []
    for job in jobs:
        if job.erase_id is None:
            consent_id = job.draft.consent_id
            row = _receipt(job.draft, seq + 1, prev,
                           last.get(consent_id) if consent_id else None, job.created_at)
            if consent_id:
                last[consent_id] = row["receipt_id"]
            results.append(row)
        else:
            if pending:  # the receipts before the erasure are erased with the others
                steps.append(("insert", pending))
                pending = []
            now = _now()
            row = _receipt(job.draft, seq + 1, prev, last.pop(job.erase_id, None), now)
            steps.append(("erase", job.erase_id, now, len(results)))
            results.append((0, row))
        pending.append(row)
        seq, prev = row["seq"], row["digest"]
    if pending:
        steps.append(("insert", pending))
    steps.append(("head", chain.encode_link(seq, prev)))
    return results, steps


def _write_batch(conn: Connection, jobs: list[_Job], limit_ms: str | None,
                 committing: list[bool], guess: _Guess | None = None,
                 deadline: float | None = None,
                 rebound: Callable[[], str | None] | None = None) -> list[Any]:
    """Append and erase ``jobs`` in order, in one transaction; commit it.

    The lock is taken before anything is read. Statements, in order: take the
    lock and read the head; read the latest receipt of each consent id of the
    batch; insert the receipts (an erasure first inserts those before it,
    then nulls every receipt of its consent id); move the head; commit.

    They run on the driver's connection itself, not through SQLAlchemy's
    :class:`~sqlalchemy.engine.Connection`: the writer runs them for every
    batch, and each layer costs the Python time that the requests waiting for
    the commit need too. On SQLite the two reads are one statement (``BEGIN
    IMMEDIATE`` holds the lock already); on PostgreSQL everything goes in two
    round trips (the server runs the statements of each one after the other,
    so the lookup runs once the lock is held; the writes and the ``COMMIT``
    go together). ``limit_ms``: PostgreSQL's bounds
    for this transaction (``SET LOCAL``), when tighter than the session's.
    ``committing`` gets an item once the ``COMMIT`` may have reached the
    server. A driver error is raised as SQLAlchemy's (``OperationalError``,
    ``IntegrityError`` …), with the connection invalidated when it is gone.

    With the writer's ``guess`` (:class:`_Guess`) of what the reads would find,
    a batch without an erasure is first written in one go, checked by the
    database under the lock: on SQLite one ``INSERT``, a transaction of its own;
    on PostgreSQL one round trip. When the guess was wrong nothing of it is
    written, and the batch is written as above, with ``rebound()`` (the writer's bounds
    for the time left before ``deadline``: PostgreSQL's ``limit_ms``, SQLite's
    ``busy_timeout``) first, so that the two attempts together wait no longer than one.
    """
    sql = _Sql.of(conn.dialect)
    ids = sorted({cid for job in jobs if (cid := job.erase_id or job.draft.consent_id)})
    dbapi: Any = conn.connection.dbapi_connection
    guess = guess if guess is not None else _Guess()
    try:
        if sql.postgresql:
            return _write_batch_pg(dbapi, jobs, sql, ids, limit_ms, committing, guess,
                                   deadline, rebound)
        return _write_batch_sqlite(dbapi, jobs, sql, ids, committing, guess, deadline, rebound)
    except conn.dialect.loaded_dbapi.Error as exc:
        # what SQLAlchemy does for the statements it runs itself
        disconnect = bool(getattr(dbapi, "broken", False)) \
            or conn.dialect.is_disconnect(exc, dbapi, None)
        if disconnect:
            conn.invalidate(exc)
        raise DBAPIError.instance(None, None, exc, conn.dialect.loaded_dbapi.Error,
                                  connection_invalidated=disconnect) from exc


def _write_batch_sqlite(dbapi: sqlite3.Connection, jobs: list[_Job], sql: _Sql,
                        ids: list[str], committing: list[bool], guess: _Guess,
                        deadline: float | None,
                        rebound: Callable[[], str | None] | None) -> list[Any]:
    """:func:`_write_batch` on SQLite (the connection is in autocommit mode: we BEGIN)."""
    cursor = dbapi.cursor()
    try:
        if guess.applies(jobs):
            done = _guessed_sqlite(cursor, dbapi, jobs, sql, ids, committing, guess)
            if done is not None:
                return done
            _after_guess(jobs, deadline, rebound)
        if guess.armed is dbapi:  # what is written from the reads owes nothing to them
            for statement in sql.unguard:
                cursor.execute(statement)
            guess.armed = None
        cursor.execute("BEGIN IMMEDIATE")  # the lock: one writer per database file
        head_value, *found = cursor.execute(sql.head_and_latest(len(ids)), ids).fetchone()
        last = {c: str(r) for c, r in zip(ids, found, strict=True) if r is not None}
        quiet = head_value == guess.head  # no other writer since this one's last batch
        results, steps = _plan(jobs, head_value, last)
        for step in steps:
            if step[0] == "insert":
                cursor.execute(*sql.insert(step[1]))
            elif step[0] == "erase":
                _, consent_id, now, index = step
                count = cursor.execute(sql.erase, sql.erase_params(consent_id, now)).rowcount
                results[index] = (count, results[index][1])
            else:
                cursor.execute(sql.set_head, (step[1],))
        committing.append(True)
        cursor.execute("COMMIT")
        guess.learn(steps[-1][1], ids, last, trusted=quiet)
        return results
    except BaseException:
        guess.forget()
        if dbapi.in_transaction:
            try:
                dbapi.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.debug("rolling back a ledger transaction failed: %s", exc)
        raise
    finally:
        cursor.close()


def _guessed_sqlite(cursor: sqlite3.Cursor, dbapi: sqlite3.Connection, jobs: list[_Job],
                    sql: _Sql, ids: list[str], committing: list[bool],
                    guess: _Guess) -> list[Any] | None:
    """The batch planned from ``guess`` in one ``INSERT`` (autocommit: a transaction of
    its own, which takes the lock before it reads), checked row by row by the
    connection's triggers; ``None`` when the guess was wrong and nothing was written."""
    assert guess.head is not None
    if guess.armed is not dbapi:
        for statement in sql.guards:
            cursor.execute(statement)
        guess.armed = dbapi
    last = guess.last(ids)
    results, steps = _plan(jobs, guess.head, last)
    (_, rows), (_, head) = steps  # ("insert", rows), ("head", link): no erasure
    committing.append(True)
    try:
        written = cursor.execute(*sql.guessed_insert(rows)).rowcount
    except sqlite3.Error as exc:
        if str(exc) != GUESS_FAILED:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _NOT_RUN:
                committing.pop()  # busy, locked or interrupted: it never ran
            raise
        written = 0  # a row does not follow the ledger: another writer, or a visitor
        # whose receipts the guess does not know
    # no row and no error: a trigger is gone (a table made anew); the reads' path drops
    # what is left of them (guess.armed is still this connection), the next guess makes both
    if written != len(rows):
        if written:  # one statement writes all of its rows or none
            raise LedgerError(f"the ledger wrote {written} of a batch of {len(rows)}")
        committing.pop()
        guess.trusted = False
        return None
    guess.learn(head, ids, last, trusted=True)
    return results


#: what PostgreSQL's literals escape (a quote, a backslash) or cannot hold (NUL)
_ESCAPED = re.compile(r"['\\\x00]")


def _pg_literal(dbapi: Any) -> Callable[[Any], str]:
    """A value as a literal of PostgreSQL's SQL, quoted by libpq's ``PQescapeLiteral``
    (``NULL``, an integer, a timestamp's text, text), on the psycopg connection ``dbapi``.

    ASCII text without a quote, a backslash or a NUL, most of a receipt's
    values, is quoted without asking libpq: it gives such text back in quotes,
    unchanged (``tests/test_ledger_sql.py`` compares the two).
    """
    from psycopg import pq

    encoding = dbapi.info.encoding
    escape = pq.Escaping(dbapi.pgconn).escape_literal
    escaped = _ESCAPED.search

    def literal(value: Any) -> str:
        if type(value) is str and value.isascii() and not escaped(value):
            return f"'{value}'"
        if value is None:
            return "NULL"
        if isinstance(value, int):
            return str(int(value))
        if isinstance(value, datetime):
            value = value.isoformat(sep=" ")
        return str(escape(str(value).encode(encoding)).decode(encoding))

    return literal


def _write_batch_pg(dbapi: Any, jobs: list[_Job], sql: _Sql, ids: list[str],
                    limit_ms: str | None, committing: list[bool], guess: _Guess,
                    deadline: float | None,
                    rebound: Callable[[], str | None] | None) -> list[Any]:
    """:func:`_write_batch` on psycopg, in two round trips (see there), or one when the
    writer's guess holds.

    Each round trip is one query string of several statements (PostgreSQL's
    simple query protocol, values written as literals by :func:`_pg_literal`):
    ``BEGIN``, the bounds, the lock and the reads; then the writes and the
    ``COMMIT``. The writer's connection is in autocommit mode, so that psycopg
    adds no ``BEGIN`` of its own (a round trip more). A guessed batch sends
    ``BEGIN``, the bounds, the lock, the guard (:meth:`_Sql.guard`), the writes
    and the ``COMMIT`` at once; a guard that fails stops the rest. Its bounds are
    always its own, ending the lock wait :data:`GUESS_MARGIN` before ``deadline``, so
    that a timeout is the server's ("nothing was written") rather than the watchdog's
    ("unknown"); it is not tried with less than :data:`GUESS_MIN` left, nor on a
    connection that the server has written to while it was idle (a restart, a
    terminated backend: found by the reads' round trip, which may be sent again).
    """
    import psycopg
    from psycopg import pq

    literal = _pg_literal(dbapi)
    cursor = dbapi.cursor()

    def begin(limit_ms: str | None) -> list[str]:
        statements = ["BEGIN ISOLATION LEVEL READ COMMITTED"]
        if limit_ms is not None:  # this transaction has less time than the session's
            statements.append(sql.limits.replace("%s", literal(limit_ms)))
        statements.append(sql.head)  # FOR UPDATE: the lock, before anything is read
        return statements

    try:
        left = deadline - time.monotonic() if deadline is not None else 0.0
        guessed: list[str] = []  # the guard and the writes of a batch planned from the guess
        if guess.applies(jobs) and left >= GUESS_MIN and _quiet(dbapi):
            assert guess.head is not None  # applies() says so
            expected = guess.expected(ids)
            last = guess.last(ids)
            results, steps = _plan(jobs, guess.head, last)
            guessed = [sql.guard(guess.head, ids, expected, literal),
                       *_pg_writes(steps, sql, literal)[0]]
            left = deadline - time.monotonic() if deadline is not None else 0.0
        if guessed and left >= GUESS_MIN:  # still, once planned (the bound is from now)
            committing.append(True)
            try:
                cursor.execute("; ".join(
                    [*begin(str(int((left - GUESS_MARGIN) * 1000))), *guessed]))
            except psycopg.Error as exc:
                if exc.sqlstate != _GUARD_SQLSTATE:
                    raise
                committing.pop()  # nothing after the guard ran: no COMMIT
                dbapi.execute("ROLLBACK")
                guess.trusted = False
                limit_ms = _after_guess(jobs, deadline, rebound, limit_ms)
            else:
                guess.learn(steps[-1][1], ids, last, trusted=True)
                return results
        reads = begin(limit_ms)
        if ids:
            reads.append(sql.latest(len(ids)).replace("%s", "{}").format(
                *(literal(i) for i in ids)))
        cursor.execute("; ".join(reads))
        for _ in range(len(reads) - (2 if ids else 1)):
            cursor.nextset()
        row = cursor.fetchone()  # the head
        last = {}
        if ids and cursor.nextset():
            found = cursor.fetchone()
            last = {c: str(r) for c, r in zip(ids, found, strict=True) if r is not None}
        head_value = row[0] if row else None
        quiet = head_value == guess.head  # no other writer since this one's last batch
        results, steps = _plan(jobs, head_value, last)
        writes, erased = _pg_writes(steps, sql, literal)
        committing.append(True)
        cursor.execute("; ".join(writes))
        counts = [cursor.rowcount]
        while cursor.nextset():
            counts.append(cursor.rowcount)
        for statement, index in erased:
            results[index] = (counts[statement], results[index][1])
        guess.learn(steps[-1][1], ids, last, trusted=quiet)
        return results
    except BaseException:
        guess.forget()
        if not dbapi.broken and not dbapi.closed \
                and dbapi.info.transaction_status != pq.TransactionStatus.IDLE:
            try:
                dbapi.execute("ROLLBACK")
            except Exception as exc:  # noqa: BLE001 - the transaction is gone either way
                log.debug("rolling back a ledger transaction failed: %s", exc)
        raise
    finally:
        cursor.close()


def _after_guess(jobs: list[_Job], deadline: float | None,
                 rebound: Callable[[], str | None] | None,
                 limit_ms: str | None = None) -> str | None:
    """Before the reads that follow a wrong guess: fail the batch (nothing was written)
    when too little time is left, else tighten the bounds to what is left; PostgreSQL's
    ``limit_ms`` for the reads' transaction."""
    if deadline is not None and deadline - time.monotonic() < MIN_BUDGET:
        raise _late(jobs[0], "nothing was written")
    return rebound() if rebound is not None else limit_ms


def _quiet(dbapi: Any) -> bool:
    """The psycopg connection ``dbapi`` has nothing to read: the server did not write to
    it while it was idle (it does before it ends a session: a restart, a terminated
    backend)."""
    try:
        fd = dbapi.pgconn.socket
        if hasattr(_select, "poll"):  # any descriptor (select() stops at 1024)
            poller = _select.poll()
            poller.register(fd, _select.POLLIN)
            return not poller.poll(0)
        readable, _, _ = _select.select([fd], [], [], 0)
    except (OSError, ValueError, AttributeError):  # closed, or not a socket we can poll
        return False
    return not readable


def _pg_writes(steps: list[Step], sql: _Sql, literal: Callable[[Any], str]
               ) -> tuple[list[str], list[tuple[int, int]]]:
    """The statements of ``steps`` and the ``COMMIT``, and for each erasure the index of
    its statement and of its result."""
    writes: list[str] = []
    erased: list[tuple[int, int]] = []  # (statement, index in results)
    for step in steps:
        if step[0] == "insert":
            values = ", ".join(["(" + ", ".join(map(literal, sql.values(r))) + ")"
                                for r in step[1]])
            writes.append(sql.insert_head + values)
        elif step[0] == "erase":
            _, consent_id, now, index = step
            erased.append((len(writes), index))
            writes.append(sql.erase.replace("%s", "{}").format(literal(now),
                                                             literal(consent_id)))
        else:
            writes.append(sql.set_head.replace("%s", literal(step[1])))
    writes.append("COMMIT")
    return writes, erased


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _as_naive_utc(value: datetime) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def public(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A receipt as the visitor and staff see it (export)."""
    from .schema import decode_categories

    return {
        "schema_version": SCHEMA_VERSION,
        "receipt_id": row["receipt_id"],
        "seq": row["seq"],
        "created_at": chain.timestamp(row["created_at"]) + "Z",
        "action": row["action"],
        "granted": decode_categories(row["granted"]),
        "denied": decode_categories(row["denied"]),
        "withdrawn": decode_categories(row["withdrawn"]),
        "policy_version": row["policy_version"],
        "banner_hash": row["banner_hash"],
        # the notice the visitor decided under (``flask consent notice ID``)
        "notice_id": row["banner_hash"],
        "language": row["language"],
        "method": row["method"],
        "page_path": row["page_path"],
        "previous_receipt_id": row["previous_receipt_id"],
        "ip_prefix": row["ip_prefix"],
        "country": row["country"],
        "rule": row.get("rule"),
        "digest": row["digest"],
        "prev_digest": row["prev_digest"],
    }


@dataclass
class _Scan:
    """Bookkeeping of :meth:`Ledger.verify` for the erasure cross-check."""

    erased_prev: dict[str, str | None] = field(default_factory=dict)
    erased_seq: dict[str, int] = field(default_factory=dict)
    tombstone_links: list[str] = field(default_factory=list)


class Ledger:
    """The append-only receipts ledger of one app.

    :param url: an SQLAlchemy URL (``sqlite:///…`` or ``postgresql+psycopg://…``).
    :param timeout: seconds a statement, a lock wait or a write may take
        (``CONSENTKIT_LEDGER_TIMEOUT``).
    :param read_only: for the staff's read-only commands: the ledger must exist
        already (:class:`LedgerMissing` otherwise) and is never written — no file,
        folder or table is created, no migration run, no head row rebuilt.
    """

    def __init__(self, url: str, timeout: float = LEDGER_TIMEOUT, *,
                 read_only: bool = False) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
                or not 0 < timeout <= 600:
            raise ValueError(f"timeout must be a number of seconds in (0, 600], not {timeout!r}")
        self.url = url
        self.timeout = float(timeout)
        self.read_only = read_only
        self._ready: set[int] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Ledger {make_url(self.url).render_as_string(hide_password=True)}>"

    @property
    def dialect(self) -> str:
        return make_url(self.url).get_backend_name()

    @property
    def engine(self) -> Engine:
        """The engine, with the tables created and the schema version checked."""
        pid = os.getpid()
        if self.read_only and pid not in self._ready:
            path = sqlite_file(self.url) if self.dialect == "sqlite" else None
            if path is not None and not path.is_file():
                raise LedgerMissing(no_ledger_file(path))
        engine = get_engine(self.url, self.timeout, read_only=self.read_only)
        if pid not in self._ready:
            with self._lock:
                if pid not in self._ready:
                    if self.read_only:
                        self._check_tables(engine)
                    else:
                        self._setup(engine)
                    self._ready.add(pid)
        return engine

    def _ready_engine(self) -> None:
        """:attr:`engine`'s first-use work, skipped cheaply once done in this process."""
        if os.getpid() not in self._ready:
            self.engine  # noqa: B018 - creates the tables on first use

    # -- schema ---------------------------------------------------------------

    def _setup(self, engine: Engine) -> None:
        """Create the tables (if missing), check the schema version, migrate.

        Bounded by the timeout like any write (a server that accepted the
        connection and then says nothing fails it with :class:`LedgerTimeout`,
        and the next use tries again) — except a migration itself, which takes
        as long as it takes.
        """
        deadline = time.monotonic() + self.timeout
        dog = _watchdog()
        with engine.connect() as conn:
            conn.execution_options(consentkit_write=True)
            token: int | None = dog.watch(conn.connection.dbapi_connection, deadline)
            try:
                with conn.begin():
                    _limit(conn, deadline)
                    if conn.dialect.name == "postgresql":
                        conn.execute(text(
                            "SELECT pg_advisory_xact_lock(hashtext(current_schema() "
                            "|| '.consentkit_schema'))"
                        ))
                    metadata.create_all(conn, checkfirst=True)
                    rows = self._meta(conn)
                    version = rows.get("schema_version")
                    if version is None:
                        conn.execute(insert(meta).values(key="schema_version",
                                                         value=str(SCHEMA_VERSION)))
                    elif not version.isdigit() or int(version) > SCHEMA_VERSION:
                        raise LedgerError(
                            f"the receipts tables at {self!r} have schema version "
                            f"{version!r}, newer than this flask-consentkit understands "
                            f"({SCHEMA_VERSION}); upgrade flask-consentkit."
                        )
                    elif int(version) < SCHEMA_VERSION:
                        if token is not None:
                            dog.unwatch(token)  # a migration is not bounded
                        token = None
                        if conn.dialect.name == "postgresql":
                            conn.execute(_PG_LIMITS, {"ms": "0", "local": True})
                        migrate(conn, int(version))
                    if "head" not in rows:
                        last = conn.execute(
                            select(receipts.c.seq, receipts.c.digest)
                            .order_by(receipts.c.seq.desc()).limit(1)
                        ).first()
                        head = (last[0], last[1]) if last else (0, chain.GENESIS)
                        conn.execute(insert(meta).values(key="head",
                                                         value=chain.encode_link(*head)))
                        if last is not None and HEAD_REBUILT not in rows:
                            # the tables are made with their head: receipts without one
                            # mean the row was deleted, maybe with the newest receipts.
                            # Recording goes on; verify keeps saying so.
                            conn.execute(insert(meta).values(
                                key=HEAD_REBUILT, value=chain.encode_link(*head)))
                            log.error("flask-consentkit: the ledger's head row was missing; "
                                      "rebuilt from the newest receipt (seq %d). Receipts "
                                      "after it may have been deleted: flask consent verify "
                                      "reports the ledger as broken from now on.", head[0])
            except (DBAPIError, LedgerTimeout) as exc:
                aborted = token is not None and dog.unwatch(token)
                token = None
                if aborted or _is_timeout(exc):
                    raise LedgerTimeout(
                        f"the ledger did not answer within CONSENTKIT_LEDGER_TIMEOUT "
                        f"({self.timeout:g} s) while its tables were checked") from exc
                raise
            finally:
                if token is not None:
                    dog.unwatch(token)

    def _check_tables(self, engine: Engine) -> None:
        """A read-only ledger's first use: the tables are there, of this schema version."""
        with engine.connect() as conn:
            if not all(engine.dialect.has_table(conn, t.name) for t in (receipts, meta)):
                shown = make_url(self.url).render_as_string(hide_password=True)
                raise LedgerMissing(no_ledger_tables(shown))
            version = self._meta(conn).get("schema_version", "0")
        if not version.isdigit() or int(version) > SCHEMA_VERSION:
            raise LedgerError(
                f"the receipts tables at {self!r} have schema version {version!r}, newer "
                f"than this flask-consentkit understands ({SCHEMA_VERSION}); upgrade "
                "flask-consentkit.")
        if int(version) < SCHEMA_VERSION:
            raise LedgerError(
                f"the receipts tables at {self!r} have schema version {version}, older than "
                f"this flask-consentkit's ({SCHEMA_VERSION}); the app upgrades them when it "
                "next starts recording decisions: run this again after that.")

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A transaction holding the chain's write lock, bounded by the timeout."""
        deadline = time.monotonic() + self.timeout
        with self.engine.connect() as conn:
            conn.execution_options(consentkit_write=True)
            with _watched(conn, deadline):
                with conn.begin():
                    _limit(conn, deadline)
                    _lock_head(conn)
                    yield conn

    # -- writing ----------------------------------------------------------------

    def append(self, draft: Draft, *, created_at: datetime | None = None) -> dict[str, Any]:
        """Append one receipt and return it (as stored) once it is committed.

        ``previous_receipt_id`` links it to the same consent id's latest
        receipt. ``created_at`` (UTC) defaults to now; give it only to import
        receipts recorded elsewhere. Raises :class:`LedgerWriteError`
        (:class:`LedgerTimeout` past the timeout) when it was not written.
        """
        # the writer checks the tables on first use, within this receipt's timeout
        result: dict[str, Any] = _submit(_Job(self, draft, created_at=created_at))
        return result

    def erase(self, consent_id: str, tombstone: Draft) -> tuple[int, dict[str, Any]]:
        """Erase one consent id's receipts; return ``(count, tombstone receipt)``.

        Nothing is deleted: the personal columns and their salt are nulled,
        ``erased_at`` is set and a tombstone (``tombstone``, whose consent id
        must be ``None``) is appended, linked to the visitor's last receipt.
        Every receipt of ``consent_id`` committed before the tombstone is erased.
        """
        if tombstone.action != "erase" or tombstone.consent_id is not None:
            raise ValueError("a tombstone has action 'erase' and no consent id")
        if not consent_id:
            raise ValueError("erase needs a consent id")
        result: tuple[int, dict[str, Any]] = _submit(_Job(self, tombstone, erase_id=consent_id))
        return result

    # -- reading ----------------------------------------------------------------

    def export(self, consent_id: str) -> list[dict[str, Any]]:
        """Every receipt of ``consent_id``, oldest first (bounded by the timeout)."""
        deadline = time.monotonic() + self.timeout
        with self.engine.connect() as conn, _watched(conn, deadline), conn.begin():
            _limit(conn, deadline)
            rows = conn.execute(
                select(receipts).where(receipts.c.consent_id == consent_id)
                .order_by(receipts.c.seq)
            ).mappings().all()
        return [public(r) for r in rows]

    def receipt(self, receipt_id: str) -> dict[str, Any] | None:
        """The receipt ``receipt_id``, or ``None`` (bounded by the timeout)."""
        deadline = time.monotonic() + self.timeout
        with self.engine.connect() as conn, _watched(conn, deadline), conn.begin():
            _limit(conn, deadline)
            row = conn.execute(
                select(receipts).where(receipts.c.receipt_id == receipt_id)
            ).mappings().first()
        return public(row) if row is not None else None

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(receipts)).scalar() or 0)

    @staticmethod
    def _meta(conn: Connection) -> dict[str, str]:
        return {str(k): str(v) for k, v in conn.execute(select(meta.c.key, meta.c.value))}


    def verify(self, batch_size: int = BATCH_SIZE) -> VerifyResult:
        """Walk the whole chain; the result names the first bad receipt.

        It reads one snapshot (one transaction; ``REPEATABLE READ`` on
        PostgreSQL), so receipts appended meanwhile are not mistaken for damage.
        """
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            info = self._meta(conn)
            anchor = chain.decode_link(info.get("anchor")) or (0, chain.GENESIS)
            head = chain.decode_link(info.get("head"))
            if head is None and "head" not in info and "anchor" not in info \
                    and conn.execute(select(receipts.c.seq).limit(1)).first() is None:
                head = (0, chain.GENESIS)  # tables made, nothing recorded yet
            if head is None:
                return VerifyResult(False, 0, reason="the head row of consentkit_meta is "
                                    "missing or garbled")
            rebuilt = chain.decode_link(info.get(HEAD_REBUILT)) if HEAD_REBUILT in info else None
            if HEAD_REBUILT in info:
                at = f"seq {rebuilt[0]}" if rebuilt is not None else "a receipt"
                return VerifyResult(False, 0, reason=(
                    "the head row of consentkit_meta was missing when the app opened the "
                    f"ledger and was rebuilt from its newest receipt then ({at}): receipts "
                    "after it may have been deleted"), head=head)
            expect_seq, expect_prev = anchor
            checked = 0
            scan = _Scan()
            while True:
                rows, unreadable = self._batch(conn, expect_seq, batch_size)
                for row in rows:
                    problem = self._check(row, expect_seq + 1, expect_prev, scan)
                    if problem is not None:
                        return VerifyResult(False, checked, row["seq"], row["receipt_id"],
                                            problem, head)
                    checked += 1
                    expect_seq, expect_prev = row["seq"], row["digest"]
                if unreadable is not None:
                    seq, receipt_id, error = unreadable
                    return VerifyResult(False, checked, seq, receipt_id,
                                        f"a stored value cannot be read ({error})", head)
                if len(rows) < batch_size:
                    break
        if (expect_seq, expect_prev) != head:
            if expect_seq < head[0]:
                reason = (f"the ledger's head is seq {head[0]} but the last receipt is seq "
                          f"{expect_seq}: the newest receipts were deleted")
            else:
                reason = "the last receipt does not match the ledger's head row"
            return VerifyResult(False, checked, expect_seq + 1, None, reason, head)
        return self._check_erasures(scan, checked, head)

    @staticmethod
    def _batch(conn: Connection, after: int, size: int
               ) -> tuple[list[Mapping[Any, Any]], tuple[int, str, Exception] | None]:
        """Up to ``size`` receipts after seq ``after``, and the first one that cannot be
        read (a value its column's type cannot parse: SQLite stores any text), if any,
        with the receipts before it."""
        try:
            rows = conn.execute(select(receipts).where(receipts.c.seq > after)
                                .order_by(receipts.c.seq).limit(size)).mappings().all()
            return list(rows), None
        except (ValueError, TypeError):
            pass
        found: list[Mapping[Any, Any]] = []
        for seq, receipt_id in conn.execute(
                select(receipts.c.seq, receipts.c.receipt_id).where(receipts.c.seq > after)
                .order_by(receipts.c.seq).limit(size)).all():
            try:
                found.append(conn.execute(select(receipts).where(receipts.c.seq == seq))
                             .mappings().one())
            except (ValueError, TypeError) as e:
                return found, (int(seq), str(receipt_id), e)
        return found, None

    @staticmethod
    def _check(row: Mapping[Any, Any], seq: int, prev: str, scan: _Scan) -> str | None:
        if row["seq"] != seq:
            return (f"receipt(s) seq {seq}–{row['seq'] - 1} before it are missing "
                    "(deleted or reordered)")
        if row["prev_digest"] != prev:
            return ("its link does not match the receipt before it: that receipt was "
                    "changed or removed, or this link was edited")
        if row["erased_at"] is None:
            if row["personal_salt"] is None or chain.personal_digest(row) != \
                    row["personal_digest"]:
                return "its personal columns (consent id, page, IP prefix, country) were changed"
        else:
            if any(row[c] is not None for c in chain.PERSONAL_COLUMNS):
                return "it is marked erased but still holds personal data"
            scan.erased_prev[row["receipt_id"]] = row["previous_receipt_id"]
            scan.erased_seq[row["receipt_id"]] = row["seq"]
        if chain.receipt_digest(row) != row["digest"]:
            return "its content was changed (digest mismatch)"
        if row["action"] == "erase" and row["consent_id"] is None \
                and row["previous_receipt_id"]:
            scan.tombstone_links.append(row["previous_receipt_id"])
        return None

    @staticmethod
    def _check_erasures(scan: _Scan, checked: int, head: tuple[int, str]) -> VerifyResult:
        """Every erased receipt must be reachable from a tombstone's link."""
        covered: set[str] = set()
        for start in scan.tombstone_links:
            current: str | None = start
            while current is not None and current in scan.erased_prev \
                    and current not in covered:
                covered.add(current)
                current = scan.erased_prev[current]
        orphans = sorted((seq, rid) for rid, seq in scan.erased_seq.items()
                         if rid not in covered)
        if orphans:
            seq, rid = orphans[0]
            return VerifyResult(False, checked, seq, rid, "it was erased without a tombstone "
                                "receipt recording the erasure", head)
        return VerifyResult(True, checked, head=head, erased=len(scan.erased_seq))

    # -- retention --------------------------------------------------------------

    def prune(
        self,
        before: datetime,
        *,
        dry_run: bool = False,
        batch_size: int = PRUNE_BATCH,
        pause: float = PRUNE_PAUSE,
    ) -> int:
        """Delete the receipts older than ``before`` (UTC); return how many.

        Only the oldest contiguous run of receipts is removed (the chain stays
        one unbroken suffix), ``batch_size`` receipts per transaction, so that
        writers wait at most one short batch. The digest of the last removed
        receipt becomes the chain's ``anchor``. Between batches the pruner
        sleeps ``pause`` seconds, so that writers waiting for the lock get it
        rather than the next batch.
        """
        before = _as_naive_utc(before)
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":  # the reads below: one snapshot
                conn.execution_options(isolation_level="REPEATABLE READ")
            anchor = chain.decode_link(self._meta(conn).get("anchor")) or (0, chain.GENESIS)
            first_kept = conn.execute(
                select(func.min(receipts.c.seq)).where(receipts.c.created_at >= before)
            ).scalar()
            if first_kept is None:
                first_kept = (conn.execute(select(func.max(receipts.c.seq))).scalar() or 0) + 1
            upto = int(first_kept) - 1
            total = int(conn.execute(
                select(func.count()).select_from(receipts)
                .where(receipts.c.seq > anchor[0], receipts.c.seq <= upto)
            ).scalar() or 0)
        if dry_run or total == 0:
            return total
        removed = 0
        while True:
            if removed:
                time.sleep(pause)
            with self._write() as conn:
                info = self._meta(conn)
                low = (chain.decode_link(info.get("anchor")) or (0, chain.GENESIS))[0]
                if low >= upto:
                    break
                last = conn.execute(
                    select(receipts.c.seq, receipts.c.digest)
                    .where(receipts.c.seq > low, receipts.c.seq <= min(low + batch_size, upto))
                    .order_by(receipts.c.seq.desc()).limit(1)
                ).first()
                if last is None:
                    break
                result = conn.execute(delete(receipts).where(receipts.c.seq <= last[0]))
                removed += result.rowcount
                link = chain.encode_link(last[0], last[1])
                if "anchor" in info:
                    conn.execute(update(meta).where(meta.c.key == "anchor").values(value=link))
                else:
                    conn.execute(insert(meta).values(key="anchor", value=link))
        log.info("pruned %d receipts older than %s", removed, before.isoformat())
        return removed


def migrate(conn: Connection, version: int) -> None:
    """Bring tables of schema ``version`` up to :data:`SCHEMA_VERSION`.

    Each step ``n → n + 1`` is one entry of :data:`MIGRATIONS`; the recorded
    version is updated after the last step, in the same transaction.
    """
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise LedgerError(f"no migration from receipts schema version {version}")
        step(conn)
        version += 1
    conn.execute(update(meta).where(meta.c.key == "schema_version")
                 .values(value=str(SCHEMA_VERSION)))


def _covering_indexes(conn: Connection) -> None:
    """1 → 2: on PostgreSQL, indexes that hold what ``flask consent report`` reads.

    :data:`~.schema.visitor_index` replaces the ``consent_id`` index, and the
    ``created_at`` index is rebuilt as :data:`~.schema.created_at_index`.
    Building them holds writes to the receipts for a moment (about 3 s per
    million receipts). SQLite keeps its indexes.
    """
    if conn.dialect.name != "postgresql":
        return
    conn.execute(text("DROP INDEX IF EXISTS ix_consentkit_receipts_consent_id"))
    conn.execute(text("DROP INDEX IF EXISTS ix_consentkit_receipts_created_at"))
    visitor_index.create(conn, checkfirst=True)
    created_at_index.create(conn)


def _rule_column(conn: Connection) -> None:
    """2 → 3: the ``rule`` column (the rule per audience applied), ``NULL`` for the
    receipts before it, whose digests do not cover it (see :mod:`.chain`)."""
    from sqlalchemy import inspect as inspect_schema

    columns = {c["name"] for c in inspect_schema(conn).get_columns("consentkit_receipts")}
    if "rule" not in columns:
        conn.execute(text("ALTER TABLE consentkit_receipts ADD COLUMN rule VARCHAR(32)"))


#: ``version → step`` that upgrades tables of that version by one.
MIGRATIONS: dict[int, Any] = {1: _covering_indexes, 2: _rule_column}
