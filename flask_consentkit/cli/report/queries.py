"""The report's queries, per store (SQLite, PostgreSQL), and running them.

They read the receipts table (:mod:`flask_consentkit.ledger.schema`) and never
pull receipts into Python: every number is a ``COUNT``/``SUM`` computed by the
database. The queries run on two connections at once and read indexes instead
of the table wherever the schema allows (see :class:`Queries`).

What they count, for receipts whose ``created_at`` lies in the window:

- *decisions*: receipts other than erasure tombstones (``action = 'erase'``);
- *visitors* and *categories*: each visitor's **latest** decision in the
  window (by chain order, ``seq``), granted or denied per category. Erased
  visitors (``consent_id`` nulled) are no longer visitors;
- *by period* (day, ISO week starting Monday, or month), *by policy version*,
  *by method* (banner, preferences, api, gpc): decisions;
- *withdrawals*: decisions that took back a category granted before;
  *erasures*: tombstones.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Engine,
    Select,
    and_,
    func,
    literal,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.sql import Subquery

from ...ledger.schema import receipts, visitor_index
from ...ledger.store import no_ledger_tables
from .counts import METHODS, CategoryCount, Report
from .engine import LedgerError, shown_url
from .window import Window

if TYPE_CHECKING:
    from typing import TypeAlias

    #: A SELECT of any number of columns of any type.
    AnySelect: TypeAlias = Select[*tuple[Any, ...]]


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


#: Periods counted per query of :meth:`Queries.by_period` on SQLite: one ``UNION ALL`` term
#: each, and SQLite allows at most 500 terms in a compound SELECT.
CALENDAR_TERMS = 500


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

    def calendar(self) -> list[tuple[str, dt.datetime, dt.datetime]]:
        """``(period, lo, hi)`` of every period of the window, cut to the window."""
        periods = self.window.periods()
        starts = [max(dt.datetime.fromisoformat(p), self.window.start) for p in periods]
        return list(zip(periods, starts, [*starts[1:], self.window.end], strict=True))

    def by_period(self, calendar: Sequence[tuple[str, dt.datetime, dt.datetime]]
                  ) -> AnySelect:
        """SQLite: receipts per period minus erasure tombstones per period, from the indexes.

        SQLite groups by sorting, so instead: receipts per period are range
        counts on the ``created_at`` index; the tombstones (whose
        ``consent_id`` the ledger always leaves empty) are found through the
        ``consent_id`` index and grouped by period. ``calendar`` is a run of
        :meth:`calendar`'s consecutive periods, at most :data:`CALENDAR_TERMS`
        (one ``UNION ALL`` term each): a longer window is counted in runs.
        """
        r = receipts.c
        rows = [
            select(literal(p).label("period"), literal(lo, DateTime()).label("lo"),
                   literal(hi, DateTime()).label("hi"))
            for p, lo, hi in calendar
        ]
        calendar_cte = union_all(*rows).cte("calendar")
        bucket = _bucket(self.dialect, self.window.by)
        erased = (select(bucket.label("period"), func.count().label("n"))
                  .where(r.consent_id.is_(None), r.action == "erase",
                         r.created_at >= calendar[0][1], r.created_at < calendar[-1][2])
                  .group_by(bucket).cte("erased"))
        in_period = (select(func.count())
                     .where(r.created_at >= calendar_cte.c.lo, r.created_at < calendar_cte.c.hi)
                     .scalar_subquery())
        erased_in = (select(erased.c.n).where(erased.c.period == calendar_cte.c.period)
                     .scalar_subquery())
        return select(calendar_cte.c.period,
                      (in_period - func.coalesce(erased_in, 0)).label("n"))

    def has_visitor_index(self) -> AnySelect:
        """PostgreSQL: whether the ledger has :data:`~flask_consentkit.ledger.schema.visitor_index`.

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


def read_report(engine: Engine, window: Window, categories: Sequence[str],
                progress: Callable[[int, int], None] | None = None) -> Report:
    """Run the report's queries on ``engine`` and return the exact counts.

    Two connections work at once. On SQLite one finds each visitor's latest
    decision and counts the periods, the other counts totals and policy
    versions. On PostgreSQL one finds the latest decisions, the other counts
    everything else in a single pass (:meth:`Queries.summary`).

    ``progress(done, total)`` is called after each query.

    :raises LedgerError: the database cannot be reached or cannot be read.
    """
    report = Report.empty(window, categories)
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
            calendar = q.calendar()
            periods: dict[str, int] = {}
            for at in range(0, len(calendar), CALENDAR_TERMS):
                run = calendar[at:at + CALENDAR_TERMS]
                periods.update((str(p.period), int(p.n)) for p in conn.execute(q.by_period(run)))
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
                raise LedgerError(no_ledger_tables(shown_url(engine)))
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
        raise LedgerError(f"Cannot read the ledger at {shown_url(engine)}: "
                          f"{_first_line(e.orig)}") from None
    except SQLAlchemyError as e:
        raise LedgerError(f"Cannot read the ledger at {shown_url(engine)}: {e}") from None

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


def _first_line(error: BaseException | None) -> str:
    text = str(error or "unknown error").strip()
    return text.splitlines()[0] if text else type(error).__name__
