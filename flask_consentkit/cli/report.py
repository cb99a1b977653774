"""``flask consent report``: what visitors chose, aggregated in SQL from the ledger.

The report reads the receipts table (:mod:`flask_consentkit.ledger.schema`)
with read-only queries through an engine of its own and never pulls receipts
into Python: every number is a ``COUNT``/``SUM`` computed by the database.
The queries run on two connections at once and read indexes instead of the
table wherever the schema allows (see :class:`Queries`).

What it counts, for receipts whose ``created_at`` lies in the window:

- *decisions*: receipts other than erasure tombstones (``action = 'erase'``);
- *visitors* and *categories*: each visitor's **latest** decision in the
  window (by chain order, ``seq``), granted or denied per category. Erased
  visitors (``consent_id`` nulled) are no longer visitors;
- *by period* (day, ISO week starting Monday, or month), *by policy version*,
  *by method* (banner, preferences, api, gpc): decisions;
- *withdrawals*: decisions that took back a category granted before;
  *erasures*: tombstones.

Small groups are never shown exactly: a count from 1 to ``min_count - 1`` is
withheld — ``null`` in JSON, listed under ``"suppressed"``, ``<5`` in the other
formats — and so is a rate computed from one, so a report cannot single out a
visitor. A count of 0 (an empty day, a method nobody used) singles out nobody
and is shown as 0.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click
from sqlalchemy import (
    ColumnElement,
    DateTime,
    Engine,
    Select,
    and_,
    create_engine,
    event,
    func,
    literal,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.sql import Subquery

from ..ledger.schema import receipts, visitor_index
from . import cli, kit_state

if TYPE_CHECKING:
    from typing import TypeAlias

    #: A SELECT of any number of columns of any type.
    AnySelect: TypeAlias = Select[*tuple[Any, ...]]

PERIODS = ("day", "week", "month")
FORMATS = ("table", "json", "csv", "html")
#: The collection methods a receipt can name (``receipts.method``).
METHODS = ("banner", "preferences", "api", "gpc")
DEFAULT_DAYS = 30
#: Bytes of a SQLite ledger the report maps into memory.
SQLITE_MMAP = 1 << 30
#: Seconds of aggregation after which the table format shows progress.
PROGRESS_AFTER = 1.0


class ReportError(click.ClickException):
    """A report that cannot be made; the message says why and what to do."""


# -- the window ----------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Receipts from ``since`` 00:00 to ``until`` 24:00 UTC (both dates included)."""

    since: dt.date
    until: dt.date
    by: str = "day"

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.since, dt.time())

    @property
    def end(self) -> dt.datetime:
        return dt.datetime.combine(self.until + dt.timedelta(days=1), dt.time())

    @classmethod
    def default(cls, by: str = "day", today: dt.date | None = None) -> Window:
        """The last :data:`DEFAULT_DAYS` days, today included."""
        today = today or dt.datetime.now(dt.UTC).date()
        return cls(today - dt.timedelta(days=DEFAULT_DAYS - 1), today, by)

    def periods(self) -> list[str]:
        """The first day (ISO date) of every period that overlaps the window."""
        out: list[str] = []
        day = _period_start(self.since, self.by)
        while day <= self.until:
            out.append(day.isoformat())
            if self.by == "day":
                day += dt.timedelta(days=1)
            elif self.by == "week":
                day += dt.timedelta(days=7)
            else:
                day = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        return out


def _period_start(day: dt.date, by: str) -> dt.date:
    if by == "week":
        return day - dt.timedelta(days=day.weekday())
    if by == "month":
        return day.replace(day=1)
    return day


# -- the numbers -----------------------------------------------------------------


@dataclass(frozen=True)
class CategoryCount:
    """Visitors whose latest decision granted or denied one category."""

    granted: int
    denied: int


@dataclass
class Report:
    """Exact counts, as the database computed them (suppression happens on output)."""

    window: Window
    decisions: int = 0
    visitors: int = 0
    categories: dict[str, CategoryCount] = field(default_factory=dict)
    #: ``(period start, decisions)`` for every period of the window, in order
    by_period: list[tuple[str, int]] = field(default_factory=list)
    by_policy_version: dict[str, int] = field(default_factory=dict)
    by_method: dict[str, int] = field(default_factory=dict)
    withdrawals: int = 0
    erasures: int = 0
    #: receipts in the ledger: all of them when the window has none, else those in it
    ledger_receipts: int = 0


# -- reading the ledger ------------------------------------------------------------


def open_ledger(url: str) -> Engine:
    """A read-only engine on the ledger at ``url``; :class:`ReportError` when it is unusable."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ReportError(f"CONSENTKIT_LEDGER_URL {url!r} is not an SQLAlchemy URL.") from None
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = parsed.database
        if path and path != ":memory:" and not path.startswith("file:") \
                and not Path(path).is_file():
            raise ReportError(
                f"There is no ledger database at {path}. Check CONSENTKIT_LEDGER_URL, or let "
                "the app record a first decision (it creates the file)."
            )
        connect_args: dict[str, Any] = {"check_same_thread": False}
    elif backend == "postgresql":
        connect_args = {"connect_timeout": 5}
    else:
        raise ReportError(f"The report reads SQLite and PostgreSQL ledgers, not {backend!r} "
                          f"({shown}).")
    try:
        engine = create_engine(parsed, connect_args=connect_args, pool_size=2)
    except (NoSuchModuleError, ImportError) as e:
        raise ReportError(f"Cannot open the ledger at {shown}: {e}. Install the database "
                          "driver (for PostgreSQL: pip install 'flask-consentkit[postgresql]').",
                          ) from None
    _read_only(engine)
    return engine


def _read_only(engine: Engine) -> None:
    """Make every connection of ``engine`` refuse writes."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute("PRAGMA query_only = ON")
            cursor.execute("PRAGMA temp_store = MEMORY")
            # read the file through the OS page cache, not a read() per page
            cursor.execute(f"PRAGMA mmap_size = {SQLITE_MMAP}")
        else:
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            # room to sort and hash a year of receipts in memory; no JIT for one-off queries
            cursor.execute("SET work_mem = '64MB'")
            info = getattr(dbapi_connection, "info", dbapi_connection)
            if getattr(info, "server_version", 0) >= 110000:
                cursor.execute("SET jit = off")
        cursor.close()
        if engine.dialect.name == "postgresql":
            dbapi_connection.commit()


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    """``count(*) FILTER (WHERE condition)`` — SQLite ≥ 3.30 and PostgreSQL."""
    return func.count().filter(condition)


def _sum_if(condition: ColumnElement[bool], value: ColumnElement[int]) -> ColumnElement[int]:
    return func.coalesce(func.sum(value).filter(condition), 0)


def _has(column: ColumnElement[str], key: str) -> ColumnElement[bool]:
    """``column`` (a comma-wrapped list) holds category ``key``."""
    escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(f"%,{escaped},%", escape="\\")


def _bucket(dialect: str, by: str) -> ColumnElement[str]:
    """The first day (``YYYY-MM-DD``) of the period of ``created_at``."""
    created = receipts.c.created_at
    if dialect == "sqlite":
        # SQLAlchemy stores DateTime as ISO text on SQLite
        if by == "day":
            return func.substr(created, 1, 10)
        if by == "week":
            return func.date(created, "weekday 0", "-6 days")
        return func.substr(created, 1, 7).concat("-01")
    return func.to_char(func.date_trunc(by, created), "YYYY-MM-DD")


def _distinct_on(stmt: AnySelect, column: ColumnElement[Any]) -> AnySelect:
    """PostgreSQL's ``SELECT DISTINCT ON (column)`` on SQLAlchemy 2.0 and 2.1."""
    try:
        from sqlalchemy.dialects.postgresql import distinct_on
    except ImportError:  # SQLAlchemy < 2.1
        return stmt.distinct(column)
    return stmt.ext(distinct_on(column))


class Queries:
    """The report's aggregate queries (see the module docstring).

    Each one reads the table at most once. On SQLite, where the schema's
    indexes allow, a query reads an index alone: counts per period come from
    range counts on the ``created_at`` index, the latest decision per visitor
    from the ``consent_id`` index (which holds ``seq``). PostgreSQL reads the
    latest decisions from its visitor index alone (which holds what they
    need) and counts everything else in one pass (:meth:`summary`).
    """

    def __init__(self, dialect: str, window: Window, categories: Sequence[str]) -> None:
        self.dialect = dialect
        self.window = window
        self.categories = tuple(categories)
        r = receipts.c
        self.in_window = and_(r.created_at >= window.start, r.created_at < window.end)
        self.decision = r.action != "erase"

    def bounds(self) -> AnySelect:
        """Whether the window holds receipts, and (SQLite) their chain range.

        On SQLite a pass over the ``created_at`` index alone; on PostgreSQL,
        which does not need the range, the first receipt found is enough.
        """
        r = receipts.c
        if self.dialect == "sqlite":
            return select(func.count(), func.min(r.seq), func.max(r.seq)).where(self.in_window)
        first = select(r.seq).where(self.in_window).limit(1).subquery("first")
        return select(func.count(), func.min(first.c.seq), func.max(first.c.seq))

    def policy_versions(self) -> AnySelect:
        """SQLite: the policy versions in the window, to count them in :meth:`totals`."""
        return select(receipts.c.policy_version).where(self.in_window).distinct()

    def totals(self, versions: Sequence[str]) -> AnySelect:
        """SQLite, one pass: decisions, erasures, withdrawals, per method and per policy version."""
        r = receipts.c
        decision = self.decision
        return select(
            _count_if(decision).label("decisions"),
            _count_if(r.action == "erase").label("erasures"),
            _count_if(and_(decision, r.withdrawn != ",")).label("withdrawals"),
            *(_count_if(and_(decision, r.method == m)).label(f"m{n}")
              for n, m in enumerate(METHODS)),
            *(_count_if(and_(decision, r.policy_version == v)).label(f"v{n}")
              for n, v in enumerate(versions)),
        ).where(self.in_window)

    def summary(self) -> AnySelect:
        """PostgreSQL, one pass over the window: decisions, erasures and withdrawals in
        total, per period, per policy version and per method.

        The receipts are counted per (period, policy version, method) — one hash
        lookup per receipt into a table of a few thousand cells — and the cells
        are then summed along each of them with ``GROUPING SETS``. ``level`` (a
        ``GROUPING()`` bit mask) tells the rows apart: :data:`SUMMARY_LEVELS`.
        """
        r = receipts.c
        decision = self.decision
        start = func.date_trunc(self.window.by, r.created_at).label("start")
        cells = (select(start, r.policy_version, r.method,
                        _count_if(decision).label("decisions"),
                        _count_if(r.action == "erase").label("erasures"),
                        _count_if(and_(decision, r.withdrawn != ",")).label("withdrawals"))
                 .where(self.in_window).group_by(start, r.policy_version, r.method)
                 .subquery("cells"))
        c = cells.c
        return select(
            func.grouping(c.start, c.policy_version, c.method).label("level"),
            func.to_char(c.start, "YYYY-MM-DD").label("period"), c.policy_version, c.method,
            *(func.sum(col).label(col.name) for col in (c.decisions, c.erasures,
                                                        c.withdrawals)),
        ).group_by(func.grouping_sets(tuple_(c.start), tuple_(c.policy_version),
                                      tuple_(c.method), tuple_()))

    def by_period(self) -> AnySelect:
        """SQLite: receipts per period minus erasure tombstones per period, from the indexes.

        SQLite groups by sorting, so instead: receipts per period are range
        counts on the ``created_at`` index; the tombstones (whose
        ``consent_id`` the ledger always leaves empty) are found through the
        ``consent_id`` index and grouped by period.
        """
        r = receipts.c
        periods = self.window.periods()
        bounds = [*(dt.datetime.fromisoformat(p) for p in periods[1:]), None]
        rows = [
            select(literal(p).label("period"),
                   literal(max(dt.datetime.fromisoformat(p), self.window.start),
                           DateTime()).label("lo"),
                   literal(min(b, self.window.end) if b else self.window.end,
                           DateTime()).label("hi"))
            for p, b in zip(periods, bounds, strict=True)
        ]
        calendar = union_all(*rows).cte("calendar")
        bucket = _bucket(self.dialect, self.window.by)
        erased = (select(bucket.label("period"), func.count().label("n"))
                  .where(r.consent_id.is_(None), r.action == "erase", self.in_window)
                  .group_by(bucket).cte("erased"))
        in_period = (select(func.count())
                     .where(r.created_at >= calendar.c.lo, r.created_at < calendar.c.hi)
                     .scalar_subquery())
        erased_in = (select(erased.c.n).where(erased.c.period == calendar.c.period)
                     .scalar_subquery())
        return select(calendar.c.period,
                      (in_period - func.coalesce(erased_in, 0)).label("n"))

    def has_visitor_index(self) -> AnySelect:
        """PostgreSQL: whether the ledger has :data:`~..ledger.schema.visitor_index`.

        Ledgers get it with schema version 2, when the app first opens them.
        """
        return select(func.to_regclass(str(visitor_index.name)).is_not(None))

    def categories_(self, seq_range: tuple[int, int], indexed: bool = False) -> AnySelect:
        """Each visitor's latest decision in the window, granted and denied per category.

        The latest decisions are grouped by their (granted, denied) lists, so
        membership is tested once per distinct pair, not once per visitor.
        ``seq_range`` is for SQLite, ``indexed`` (:meth:`has_visitor_index`)
        for PostgreSQL.
        """
        if self.dialect == "sqlite":
            latest = self._latest_sqlite(seq_range)
        else:
            latest = self._latest_postgresql(indexed)
        pairs = (select(latest.c.granted, latest.c.denied, func.count().label("n"))
                 .group_by(latest.c.granted, latest.c.denied).subquery("pairs"))
        return select(
            func.coalesce(func.sum(pairs.c.n), 0).label("visitors"),
            *(col for n, key in enumerate(self.categories) for col in (
                _sum_if(_has(pairs.c.granted, key), pairs.c.n).label(f"g{n}"),
                _sum_if(_has(pairs.c.denied, key), pairs.c.n).label(f"d{n}"),
            )),
        )

    def _latest_postgresql(self, indexed: bool) -> Subquery:
        """``DISTINCT ON`` the visitor, the latest ``seq`` first.

        With the visitor index PostgreSQL reads the receipts in that order
        from the index alone, which carries the columns needed here; the
        query orders by the index's collation (the database's) to match it.
        Without the index (a ledger the app has not opened since an upgrade)
        the window is sorted instead, byte-wise: bringing equal ids together
        needs no locale rules.
        """
        r = receipts.c
        visitor = r.consent_id if indexed else r.consent_id.collate("C")
        return _distinct_on(
            select(r.granted, r.denied)
            .where(r.consent_id.is_not(None), self.in_window, self.decision)
            .order_by(visitor, r.seq.desc()), visitor,
        ).subquery("latest")

    def _latest_sqlite(self, seq_range: tuple[int, int]) -> Subquery:
        """max(seq) per consent_id, read from the consent_id index alone.

        Receipts are appended in time order, so the window is the chain range
        ``seq_range``; ``seq + 0`` keeps SQLite on the consent_id index (which
        holds seq) instead of the rowid range. SQLite keeps the ids in a sorted
        list, so the latest rows are then read back in chain order, and
        re-checked against the window.
        """
        r = receipts.c
        lo, hi = seq_range
        latest_seq = (select(func.max(r.seq))
                      .where(r.consent_id.is_not(None), (r.seq + 0).between(lo, hi))
                      .group_by(r.consent_id))
        return (select(r.granted, r.denied)
                .where(r.seq.in_(latest_seq), self.in_window, self.decision)
                .subquery("latest"))


#: ``GROUPING(start, policy_version, method)`` of each kind of row of :meth:`Queries.summary`
#: (a bit is set for each column the row is *not* grouped by).
SUMMARY_LEVELS = {"period": 0b011, "policy_version": 0b101, "method": 0b110, "total": 0b111}


@dataclass
class _Counts:
    """Decisions (and, in total, erasures and withdrawals) along each dimension."""

    total: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("decisions", "erasures", "withdrawals"), 0))
    by_period: dict[str, int] = field(default_factory=dict)
    by_policy_version: dict[str, int] = field(default_factory=dict)
    by_method: dict[str, int] = field(default_factory=dict)


def aggregate(engine: Engine, window: Window, categories: Sequence[str],
              progress: Callable[[int, int], None] | None = None) -> Report:
    """Run the report's queries on ``engine`` and return the exact counts.

    Two connections work at once. On SQLite one finds each visitor's latest
    decision and counts the periods, the other counts totals and policy
    versions. On PostgreSQL one finds the latest decisions, the other counts
    everything else in a single pass (:meth:`Queries.summary`).

    :raises ReportError: the database cannot be reached or cannot be read.
    """
    report = Report(
        window=window,
        categories={key: CategoryCount(0, 0) for key in categories},
        by_period=[(p, 0) for p in window.periods()],
        by_method=dict.fromkeys(METHODS, 0),
    )
    q = Queries(engine.dialect.name, window, categories)
    steps = 5 if q.dialect == "sqlite" else 3
    done = 0
    lock = threading.Lock()

    def step() -> None:
        nonlocal done
        with lock:
            done += 1
            if progress is not None:
                progress(done, steps)

    def latest_sqlite(seq_range: tuple[int, int]) -> tuple[Any, dict[str, int]]:
        """``(visitors and categories, decisions per period)``."""
        with engine.connect() as conn:
            row = conn.execute(q.categories_(seq_range)).one()
            step()
            periods = {str(p.period): int(p.n) for p in conn.execute(q.by_period())}
            step()
        return row._mapping, periods

    def counts_sqlite() -> _Counts:
        """Totals, per method and per policy version (periods: :func:`latest_sqlite`)."""
        with engine.connect() as conn:
            names = sorted(str(v) for v in conn.execute(q.policy_versions()).scalars())
            step()
            totals = conn.execute(q.totals(names)).one()._mapping
            step()
        return _Counts(
            total={key: int(totals[key]) for key in ("decisions", "erasures", "withdrawals")},
            by_policy_version={v: int(totals[f"v{n}"]) for n, v in enumerate(names)},
            by_method={m: int(totals[f"m{n}"]) for n, m in enumerate(METHODS)},
        )

    def latest_postgresql(indexed: bool) -> Any:
        """Visitors and categories."""
        with engine.connect() as conn:
            row = conn.execute(q.categories_((0, 0), indexed)).one()
        step()
        return row._mapping

    def counts_postgresql() -> _Counts:
        """Everything but visitors and categories, from the one summary query."""
        with engine.connect() as conn:
            rows = conn.execute(q.summary()).all()
        step()
        counts = _Counts()
        levels = SUMMARY_LEVELS
        for row in rows:  # a few rows per period, version and method; never receipts
            if row.level == levels["total"]:
                # (sums are NULL only if the window emptied since bounds())
                counts.total = {key: int(getattr(row, key) or 0) for key in counts.total}
            elif row.level == levels["period"]:
                counts.by_period[str(row.period)] = int(row.decisions)
            elif row.level == levels["policy_version"]:
                counts.by_policy_version[str(row.policy_version)] = int(row.decisions)
            elif row.level == levels["method"] and row.method in METHODS:
                counts.by_method[str(row.method)] = int(row.decisions)
        return counts

    try:
        with engine.connect() as conn:
            if not engine.dialect.has_table(conn, receipts.name):
                return report
            in_window, lo, hi = conn.execute(q.bounds()).one()
            if not in_window:
                # only needed to tell an empty ledger from an empty window
                report.ledger_receipts = conn.execute(
                    select(func.count()).select_from(receipts)).scalar_one()
                return report
            report.ledger_receipts = in_window
            indexed = q.dialect == "postgresql" and bool(
                conn.execute(q.has_visitor_index()).scalar_one())
        step()
        with ThreadPoolExecutor(max_workers=2) as pool:
            if q.dialect == "sqlite":
                cat_future = pool.submit(latest_sqlite, (lo, hi))
                counts = counts_sqlite()
                cat, counts.by_period = cat_future.result()
            else:
                cat_future = pool.submit(latest_postgresql, indexed)
                counts = counts_postgresql()
                cat = cat_future.result()
                # the bounds query only looked for a first receipt
                report.ledger_receipts = counts.total["decisions"] + counts.total["erasures"]
    except DBAPIError as e:
        raise ReportError(f"Cannot read the ledger at {_shown(engine)}: "
                          f"{_first_line(e.orig)}") from None
    except SQLAlchemyError as e:
        raise ReportError(f"Cannot read the ledger at {_shown(engine)}: {e}") from None

    report.decisions = counts.total["decisions"]
    report.erasures = counts.total["erasures"]
    report.withdrawals = counts.total["withdrawals"]
    report.by_method = {m: counts.by_method.get(m, 0) for m in METHODS}
    report.by_policy_version = {v: n for v, n in sorted(counts.by_policy_version.items()) if n}
    report.by_period = [(p, counts.by_period.get(p, 0)) for p in window.periods()]
    report.visitors = int(cat["visitors"])
    report.categories = {
        key: CategoryCount(int(cat[f"g{n}"]), int(cat[f"d{n}"]))
        for n, key in enumerate(categories)
    }
    return report


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _first_line(error: BaseException | None) -> str:
    text = str(error or "unknown error").strip()
    return text.splitlines()[0] if text else type(error).__name__


# -- progress ----------------------------------------------------------------------


class Progress:
    """Shows, on ``stream``, how far the aggregation is once it takes longer than ``after``.

    Nothing is written for a report that finishes in time. On a terminal the
    line is rewritten in place; elsewhere one line per finished query.
    """

    def __init__(self, stream: IO[str], after: float = PROGRESS_AFTER) -> None:
        self.stream = stream
        self.after = after
        self.started = time.perf_counter()
        self.done = 0
        self.total = 0
        self.shown = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.shown:
            self._write(f"aggregated in {time.perf_counter() - self.started:.1f} s", final=True)

    def __call__(self, done: int, total: int) -> None:
        with self._lock:
            self.done, self.total = done, total
            if self.shown:
                self._write(self._line())

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.started
        if not self.total:
            return f"aggregating receipts … {elapsed:.0f} s"
        return f"aggregating receipts … {self.done}/{self.total} queries, {elapsed:.0f} s"

    def _watch(self) -> None:
        if self._stop.wait(self.after):
            return
        with self._lock:
            self.shown = True
            self._write(self._line())
        while not self._stop.wait(0.5):
            if self._tty:
                with self._lock:
                    self._write(self._line())

    def _write(self, line: str, final: bool = False) -> None:
        if self._tty:
            self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


# -- output ------------------------------------------------------------------------


Cell = int | None


def suppress(value: int, min_count: int) -> Cell:
    """``value``, or ``None`` when it is a small group (from 1 to ``min_count - 1``)."""
    return value if value == 0 or value >= min_count else None


def opt_in_rate(count: CategoryCount, min_count: int) -> float | None:
    """granted / (granted + denied); ``None`` when a part is withheld or there is none."""
    total = count.granted + count.denied
    if not total or suppress(count.granted, min_count) is None \
            or suppress(count.denied, min_count) is None:
        return None
    return round(count.granted / total, 4)


def to_json(report: Report, min_count: int) -> dict[str, Any]:
    """The report as the ``--format json`` document (stable keys).

    A withheld count is ``null``, and ``"suppressed"`` lists where, as JSON
    Pointers (``"/categories/analytics/denied"``, ``"/by_period/3/decisions"``).
    """
    w = report.window
    withheld: list[str] = []

    def c(n: int, *where: str | int) -> Cell:
        value = suppress(n, min_count)
        if value is None:
            withheld.append("/" + "/".join(
                str(p).replace("~", "~0").replace("/", "~1") for p in where))
        return value

    return {
        "window": {"since": w.since.isoformat(), "until": w.until.isoformat(), "by": w.by,
                   "min_count": min_count},
        "decisions": c(report.decisions, "decisions"),
        "visitors": c(report.visitors, "visitors"),
        "categories": {
            key: {"granted": c(n.granted, "categories", key, "granted"),
                  "denied": c(n.denied, "categories", key, "denied"),
                  "opt_in_rate": opt_in_rate(n, min_count)}
            for key, n in report.categories.items()
        },
        "by_period": [{"period": p, "decisions": c(n, "by_period", i, "decisions")}
                      for i, (p, n) in enumerate(report.by_period)],
        "by_policy_version": {v: c(n, "by_policy_version", v)
                              for v, n in report.by_policy_version.items()},
        "by_method": {m: c(n, "by_method", m) for m, n in report.by_method.items()},
        "withdrawals": c(report.withdrawals, "withdrawals"),
        "erasures": c(report.erasures, "erasures"),
        "suppressed": withheld,
    }


def _count(value: Cell, min_count: int) -> str:
    """A count as the table, CSV and HTML formats show it: ``<5`` when withheld."""
    return f"<{min_count}" if value is None else str(value)


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [[str(h) for h in headers], *[[str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:],
                                                                         strict=True)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def render_table(report: Report, min_count: int) -> str:
    """Aligned plain-text tables for a terminal."""
    data = to_json(report, min_count)
    w = report.window

    def n(value: Cell) -> str:
        return _count(value, min_count)

    out = [f"Consent report {w.since} to {w.until} (UTC), by {w.by}"]
    if min_count > 1:
        out.append(f"Counts under {min_count} are shown as <{min_count}.")
    out.append("")
    out += _table(["Total", ""], [
        ("decisions", n(data["decisions"])), ("visitors", n(data["visitors"])),
        ("withdrawals", n(data["withdrawals"])), ("erasures", n(data["erasures"])),
    ])
    out.append("")
    out += _table(["Category", "granted", "denied", "opt-in"], [
        (key, n(v["granted"]), n(v["denied"]), _pct(v["opt_in_rate"]))
        for key, v in data["categories"].items()
    ])
    out.append("")
    out += _table(["Method", "decisions"], [(k, n(v)) for k, v in data["by_method"].items()])
    out.append("")
    out += _table(["Policy version", "decisions"],
                  [(k, n(v)) for k, v in data["by_policy_version"].items()])
    out.append("")
    out += _table([f"{w.by.capitalize()} starting", "decisions"],
                  [(p["period"], n(p["decisions"])) for p in data["by_period"]])
    return "\n".join(out) + "\n"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_safe(value: object) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading ``'``."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def render_csv(report: Report, min_count: int) -> str:
    """Long-format CSV: ``section,key,metric,value,note`` — one number per row.

    A withheld count has an empty ``value`` and ``note`` says why, so that the
    column holds numbers only.
    """
    data = to_json(report, min_count)
    withheld = f"suppressed: under {min_count}"
    rows: list[tuple[object, ...]] = [("section", "key", "metric", "value", "note")]

    def row(section: str, key: str, metric: str, value: object) -> tuple[object, ...]:
        if value is None and metric != "opt_in_rate":
            return (section, key, metric, "", withheld)
        return (section, key, metric, "" if value is None else value, "")

    for key in ("since", "until", "by", "min_count"):
        rows.append(row("window", key, "", data["window"][key]))
    for key in ("decisions", "visitors", "withdrawals", "erasures"):
        rows.append(row("total", key, "count", data[key]))
    for cat, v in data["categories"].items():
        rows += [row("category", cat, "granted", v["granted"]),
                 row("category", cat, "denied", v["denied"]),
                 row("category", cat, "opt_in_rate", v["opt_in_rate"])]
    rows += [row("period", p["period"], "decisions", p["decisions"]) for p in data["by_period"]]
    rows += [row("policy_version", k, "decisions", n)
             for k, n in data["by_policy_version"].items()]
    rows += [row("method", k, "decisions", n) for k, n in data["by_method"].items()]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for line in rows:
        writer.writerow([csv_safe(v) for v in line])
    return buf.getvalue()


def _rate_chart(data: dict[str, Any]) -> dict[str, Any]:
    """Geometry of the horizontal bar chart of opt-in rates (percent of 400 px)."""
    bars = []
    for n, (key, v) in enumerate(data["categories"].items()):
        rate = v["opt_in_rate"]
        bars.append({"label": key, "y": 10 + n * 34, "width": 0 if rate is None else
                     round(rate * 400, 1), "text": _pct(rate) if rate is not None
                     else "withheld (small group)"})
    return {"bars": bars, "height": 20 + 34 * len(bars)}


def _time_chart(data: dict[str, Any]) -> dict[str, Any]:
    """Geometry of the vertical bar chart of decisions per period (600 × 200 px plot)."""
    periods = data["by_period"]
    shown = data["window"]["min_count"]
    values = [p["decisions"] or 0 for p in periods]
    top = max(values, default=0) or 1
    step = 600 / max(len(periods), 1)
    bars = []
    for n, (p, value) in enumerate(zip(periods, values, strict=True)):
        h = round(value / top * 200, 1)
        bars.append({"x": round(60 + n * step, 2), "y": round(220 - h, 1), "height": h,
                     "width": round(max(step * 0.8, 0.5), 2),
                     "title": f"{p['period']}: {_count(p['decisions'], shown)}"})
    return {"bars": bars, "max": top if any(values) else 0,
            "first": periods[0]["period"] if periods else "",
            "last": periods[-1]["period"] if periods else ""}


def render_html(report: Report, min_count: int) -> str:
    """One self-contained HTML page with inline SVG charts; no script, no external URL."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(Path(__file__).parent),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    data = to_json(report, min_count)
    return env.get_template("report.html").render(
        data=data, min_count=min_count, rates=_rate_chart(data), timeline=_time_chart(data),
        pct=_pct, n=lambda value: _count(value, min_count),
    )


RENDERERS: dict[str, Callable[[Report, int], str]] = {
    "table": render_table,
    "json": lambda report, m: json.dumps(to_json(report, m), indent=2) + "\n",
    "csv": render_csv,
    "html": render_html,
}


# -- the command ---------------------------------------------------------------------


@contextmanager
def _maybe_progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    with Progress(sys.stderr) as progress:
        yield progress


@cli.command("report")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="First day (YYYY-MM-DD, UTC). Default: 30 days before --until.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Last day, included (YYYY-MM-DD, UTC). Default: today.")
@click.option("--by", "by", type=click.Choice(PERIODS), default="day", show_default=True,
              help="Period of the decisions-over-time table.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table",
              show_default=True)
@click.option("--min-count", type=click.IntRange(min=0), default=5, show_default=True,
              help="Counts from 1 to N-1 are withheld: '<N', null in JSON (0 and 1 show "
                   "every count).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the report to this file instead of standard output.")
def report_command(since: dt.datetime | None, until: dt.datetime | None, by: str, fmt: str,
                   min_count: int, output: str | None) -> None:
    """Opt-in rates per category and decisions over time, from the ledger."""
    settings = kit_state().settings
    if settings.ledger_url is None:
        raise ReportError("Receipts are turned off (CONSENTKIT_LEDGER_URL is None), so there "
                          "is nothing to report. Set CONSENTKIT_LEDGER_URL to record them.")
    window = Window.default(by, until.date() if until else None)
    if since is not None:
        window = Window(since.date(), window.until, by)
    if window.since > window.until:
        raise click.BadParameter(f"--since {window.since} is after --until {window.until}.",
                                 param_hint="'--since'")

    engine = open_ledger(settings.ledger_url)
    try:
        with _maybe_progress(fmt == "table") as progress:
            report = aggregate(engine, window, settings.optional_keys, progress)
    finally:
        engine.dispose()

    if not report.ledger_receipts:
        note = "The ledger is empty: no decision has been recorded yet."
    elif not report.decisions and not report.erasures:
        note = (f"No receipts between {window.since} and {window.until} "
                f"({report.ledger_receipts} in the ledger); try --since/--until.")
    else:
        note = ""
    if note and fmt == "table":
        click.echo(note)
        return
    if note:
        click.echo(note, err=True)
    text = RENDERERS[fmt](report, min_count)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as e:
        raise ReportError(f"Cannot write {output}: {e.strerror or e}.") from None
    click.echo(f"Report written to {os.path.abspath(output)}.", err=True)
