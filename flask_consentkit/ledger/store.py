"""The receipts store (SQLAlchemy Core 2.x): append, erase, export, verify, prune.

One :class:`Ledger` per app, kept in ``ext.services["ledger"]``. It connects
lazily: the engine is created once per process and URL (a forked or spawned
worker makes its own) and the tables are created on first use, with the schema
version recorded in ``consentkit_meta``.

Writers keep one linear chain, whatever the number of threads, processes or
machines: every write runs in one transaction that first takes the chain's
lock — ``BEGIN IMMEDIATE`` on SQLite (one writer at a time per database file),
``SELECT … FOR UPDATE`` of the ``head`` row in ``consentkit_meta`` elsewhere
(PostgreSQL) — then reads the head, assigns ``seq = head + 1``, inserts the
receipt and moves the head. SQLite runs in WAL mode with ``synchronous=FULL``,
so a committed receipt survives the process being killed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
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
from werkzeug.exceptions import ServiceUnavailable

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

#: Seconds to wait for a PostgreSQL connection (unless the URL sets ``connect_timeout``).
CONNECT_TIMEOUT = 5

ACTIONS = frozenset({"accept_all", "reject_all", "save", "erase"})
METHODS = frozenset({"banner", "preferences", "api", "gpc"})


class LedgerError(ConsentKitError):
    """The ledger cannot be used as asked (for example a schema from a newer version)."""


class LedgerUnavailable(ConsentKitError, ServiceUnavailable):
    """The ledger could not be reached for a visitor's request (503)."""


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
        where = (f"receipt {self.bad_receipt_id} (seq {self.bad_seq})"
                 if self.bad_receipt_id else f"seq {self.bad_seq}")
        return f"ledger BROKEN at {where}: {self.reason}"


# statements built once (SQLAlchemy caches their compiled form)
_HEAD_FOR_UPDATE = select(meta.c.value).where(meta.c.key == "head").with_for_update()
_SET_HEAD = update(meta).where(meta.c.key == "head").values(value=bindparam("link"))
_INSERT = insert(receipts)
_LAST_OF = (
    select(receipts.c.receipt_id)
    .where(receipts.c.consent_id == bindparam("consent_id"))
    .order_by(receipts.c.seq.desc())
    .limit(1)
)


# -- engines: one per process and URL -------------------------------------------

_engines: dict[tuple[str, int], Engine] = {}
_engines_lock = threading.Lock()


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("consentkit_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def get_engine(url: str) -> Engine:
    """The engine for ``url`` in this process, created on first use."""
    key = (url, os.getpid())
    engine = _engines.get(key)
    if engine is not None:
        return engine
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            parsed = make_url(url)
            if parsed.get_backend_name() == "sqlite":
                engine = _sqlite_engine(url)
            else:
                connect_args: dict[str, Any] = {}
                if parsed.get_backend_name() == "postgresql" \
                        and "connect_timeout" not in parsed.query:
                    # an unreachable server must not hold a visitor's request for minutes
                    connect_args["connect_timeout"] = CONNECT_TIMEOUT
                engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
            _engines[key] = engine
        return engine


def dispose_engines(url: str | None = None) -> None:
    """Close the pooled connections of this process (of ``url`` only, if given)."""
    with _engines_lock:
        for key in [k for k in _engines if url is None or k[0] == url]:
            engine = _engines.pop(key)
            if key[1] == os.getpid():
                engine.dispose()


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
        "receipt_id": row["receipt_id"],
        "seq": row["seq"],
        "created_at": chain.timestamp(row["created_at"]) + "Z",
        "action": row["action"],
        "granted": decode_categories(row["granted"]),
        "denied": decode_categories(row["denied"]),
        "withdrawn": decode_categories(row["withdrawn"]),
        "policy_version": row["policy_version"],
        "banner_hash": row["banner_hash"],
        "language": row["language"],
        "method": row["method"],
        "page_path": row["page_path"],
        "previous_receipt_id": row["previous_receipt_id"],
        "ip_prefix": row["ip_prefix"],
        "country": row["country"],
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
    """

    def __init__(self, url: str) -> None:
        self.url = url
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
        engine = get_engine(self.url)
        pid = os.getpid()
        if pid not in self._ready:
            with self._lock:
                if pid not in self._ready:
                    self._setup(engine)
                    self._ready.add(pid)
        return engine

    # -- schema ---------------------------------------------------------------

    def _setup(self, engine: Engine) -> None:
        with engine.connect() as conn:
            conn.execution_options(consentkit_write=True)
            with conn.begin():
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
                        f"the receipts tables at {self!r} have schema version {version!r}, "
                        f"newer than this flask-consentkit understands ({SCHEMA_VERSION}); "
                        "upgrade flask-consentkit."
                    )
                elif int(version) < SCHEMA_VERSION:
                    migrate(conn, int(version))
                if "head" not in rows:
                    last = conn.execute(
                        select(receipts.c.seq, receipts.c.digest)
                        .order_by(receipts.c.seq.desc()).limit(1)
                    ).first()
                    head = (last[0], last[1]) if last else (0, chain.GENESIS)
                    conn.execute(insert(meta).values(key="head", value=chain.encode_link(*head)))

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A transaction holding the chain's write lock."""
        with self.engine.connect() as conn:
            conn.execution_options(consentkit_write=True)
            with conn.begin():
                yield conn

    def _lock_head(self, conn: Connection) -> tuple[int, str]:
        value = conn.execute(_HEAD_FOR_UPDATE).scalar()
        head = chain.decode_link(value)
        if head is None:
            raise LedgerError("the ledger's head row is missing or garbled; run "
                              "'flask consent verify' and restore the ledger from a backup.")
        return head

    # -- writing ----------------------------------------------------------------

    def _insert(
        self,
        conn: Connection,
        draft: Draft,
        *,
        previous_receipt_id: str | None,
        created_at: datetime | None,
    ) -> dict[str, Any]:
        seq, prev_digest = self._lock_head(conn)
        row: dict[str, Any] = {
            "seq": seq + 1,
            "receipt_id": str(uuid.uuid4()),
            "consent_id": draft.consent_id,
            "created_at": _as_naive_utc(created_at) if created_at else _now(),
            "action": draft.action,
            "granted": encode_categories(draft.granted),
            "denied": encode_categories(draft.denied),
            "withdrawn": encode_categories(draft.withdrawn),
            "policy_version": draft.policy_version,
            "banner_hash": draft.banner_hash,
            "language": draft.language,
            "method": draft.method,
            "page_path": draft.page_path,
            "previous_receipt_id": previous_receipt_id,
            "ip_prefix": draft.ip_prefix,
            "country": draft.country,
            "erased_at": None,
            "personal_salt": chain.new_salt(),
            "prev_digest": prev_digest,
        }
        row["personal_digest"] = chain.personal_digest(row)
        row["digest"] = chain.receipt_digest(row)
        conn.execute(_INSERT, row)
        conn.execute(_SET_HEAD, {"link": chain.encode_link(row["seq"], row["digest"])})
        return row

    @staticmethod
    def _last_receipt_id(conn: Connection, consent_id: str) -> str | None:
        value = conn.execute(_LAST_OF, {"consent_id": consent_id}).scalar()
        return str(value) if value is not None else None

    def append(self, draft: Draft, *, created_at: datetime | None = None) -> dict[str, Any]:
        """Append one receipt and return it (as stored) once it is committed.

        ``previous_receipt_id`` links it to the same consent id's latest
        receipt. ``created_at`` (UTC) defaults to now; give it only to import
        receipts recorded elsewhere.
        """
        with self._write() as conn:
            previous = (self._last_receipt_id(conn, draft.consent_id)
                        if draft.consent_id else None)
            return self._insert(conn, draft, previous_receipt_id=previous,
                                created_at=created_at)

    def erase(self, consent_id: str, tombstone: Draft) -> tuple[int, dict[str, Any]]:
        """Erase one consent id's receipts; return ``(count, tombstone receipt)``.

        Nothing is deleted: the personal columns and their salt are nulled,
        ``erased_at`` is set and a tombstone (``tombstone``, whose consent id
        must be ``None``) is appended, linked to the visitor's last receipt.
        """
        if tombstone.action != "erase" or tombstone.consent_id is not None:
            raise ValueError("a tombstone has action 'erase' and no consent id")
        with self._write() as conn:
            last = self._last_receipt_id(conn, consent_id)
            now = _now()
            result = conn.execute(
                update(receipts)
                .where(receipts.c.consent_id == consent_id)
                .values({**{c: None for c in chain.PERSONAL_COLUMNS}, "erased_at": now})
            )
            row = self._insert(conn, tombstone, previous_receipt_id=last, created_at=now)
            return result.rowcount, row

    # -- reading ----------------------------------------------------------------

    def export(self, consent_id: str) -> list[dict[str, Any]]:
        """Every receipt of ``consent_id``, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(receipts).where(receipts.c.consent_id == consent_id)
                .order_by(receipts.c.seq)
            ).mappings().all()
        return [public(r) for r in rows]

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
            if head is None:
                return VerifyResult(False, 0, reason="the head row of consentkit_meta is "
                                    "missing or garbled")
            expect_seq, expect_prev = anchor
            checked = 0
            scan = _Scan()
            while True:
                rows = conn.execute(
                    select(receipts).where(receipts.c.seq > expect_seq)
                    .order_by(receipts.c.seq).limit(batch_size)
                ).mappings().all()
                for row in rows:
                    problem = self._check(row, expect_seq + 1, expect_prev, scan)
                    if problem is not None:
                        return VerifyResult(False, checked, row["seq"], row["receipt_id"],
                                            problem, head)
                    checked += 1
                    expect_seq, expect_prev = row["seq"], row["digest"]
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
                self._lock_head(conn)
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


#: ``version → step`` that upgrades tables of that version by one.
MIGRATIONS: dict[int, Any] = {1: _covering_indexes}
