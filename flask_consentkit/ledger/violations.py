"""What browsers were stopped from reaching: aggregates of the policy's violation reports.

Storage only. :class:`ViolationStore` keeps them in the ledger's database
(table ``consentkit_csp_violations``), where every worker's reports meet and
the CLI reads them; :class:`MemoryViolations` in this process when receipts are
off. Both keep one row per (blocked host, directive, page path without query)
with a count and the first and last time seen — never an IP, user agent,
cookie or query string — and at most ``max_rows`` rows: past that, reports of
a new row are dropped (counted in :attr:`dropped`), those of a known row still
count.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from .schema import violations
from .store import Ledger

#: rows kept at most, by default
MAX_ROWS = 10_000
#: how long the row count is trusted before it is read again (seconds)
_COUNT_TTL = 30.0

Key = tuple[str, str, str]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Violations(Protocol):
    dropped: int

    def add(self, counts: dict[Key, int]) -> None: ...

    def top(self, limit: int = 20) -> list[dict[str, Any]]: ...


def _row(host: str, directive: str, path: str, count: int, first: datetime,
         last: datetime) -> dict[str, Any]:
    return {"host": host, "directive": directive, "path": path, "count": int(count),
            "first_seen": first.replace(tzinfo=UTC).isoformat(timespec="seconds"),
            "last_seen": last.replace(tzinfo=UTC).isoformat(timespec="seconds")}


class MemoryViolations:
    """The aggregates in this process's memory (receipts off)."""

    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self.max_rows = max_rows
        self.dropped = 0
        self._rows: dict[Key, list[Any]] = {}
        self._lock = threading.Lock()

    def add(self, counts: dict[Key, int]) -> None:
        now = _now()
        with self._lock:
            for key, n in counts.items():
                row = self._rows.get(key)
                if row is None:
                    if len(self._rows) >= self.max_rows:
                        self.dropped += n
                        continue
                    self._rows[key] = [n, now, now]
                else:
                    row[0] += n
                    row[2] = now

    def top(self, limit: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            items = sorted(self._rows.items(), key=lambda kv: (-kv[1][0], kv[0]))[:limit]
        return [_row(*key, *row) for key, row in items]


class ViolationStore:
    """The aggregates in the ledger's database (SQLite or PostgreSQL)."""

    def __init__(self, ledger: Ledger, max_rows: int = MAX_ROWS) -> None:
        self.ledger = ledger
        self.max_rows = max_rows
        self.dropped = 0
        self._rows: int | None = None
        self._counted = 0.0
        self._lock = threading.Lock()

    def _row_count(self, conn: Connection) -> int:
        if self._rows is None or time.monotonic() - self._counted > _COUNT_TTL:
            self._rows = int(conn.execute(select(func.count()).select_from(violations))
                             .scalar() or 0)
            self._counted = time.monotonic()
        return self._rows

    def add(self, counts: dict[Key, int]) -> None:
        """Count the reports; one short transaction (an upsert per row)."""
        now = _now()
        dialect = postgresql if self.ledger.dialect == "postgresql" else sqlite
        table = violations
        with self.ledger.engine.connect() as conn, conn.begin():
            for (host, directive, path), n in counts.items():
                done = conn.execute(
                    update(table)
                    .where(table.c.host == host, table.c.directive == directive,
                           table.c.path == path)
                    .values(count=table.c.count + n, last_seen=now)
                ).rowcount
                if done:
                    continue
                with self._lock:
                    full = self._row_count(conn) >= self.max_rows
                    if full:
                        self.dropped += n
                        continue
                    self._rows = (self._rows or 0) + 1
                stmt = dialect.insert(table).values(
                    host=host, directive=directive, path=path, count=n,
                    first_seen=now, last_seen=now)
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=[table.c.host, table.c.directive, table.c.path],
                    set_={"count": table.c.count + n, "last_seen": now}))

    def top(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most reported rows, most first."""
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(
                select(violations.c.host, violations.c.directive, violations.c.path,
                       violations.c.count, violations.c.first_seen, violations.c.last_seen)
                .order_by(violations.c.count.desc(), violations.c.host).limit(limit)
            ).all()
        return [_row(*r) for r in rows]
