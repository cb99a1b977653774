"""``flask consent report``: the numbers, the window, small groups, and every bad input."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import Engine, Index, create_engine, insert, text
from sqlalchemy.engine import make_url

from flask_consentkit.cli import cli
from flask_consentkit.cli.report import METHODS, Queries, Window
from flask_consentkit.ledger.schema import (
    created_at_index,
    encode_categories,
    metadata,
    receipts,
    visitor_index,
)
from tests.conftest import make_app

OPTIONAL = ("functional", "analytics", "performance", "marketing")
DAY = dt.datetime(2026, 11, 2, 10, 0)  # a Monday


class Ledger:
    """A real receipts table, filled row by row the way the ledger would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url)
        metadata.create_all(self.engine)
        self.seq = 0

    def add(self, consent_id: str | None, action: str, granted: Sequence[str] = (),
            when: dt.datetime = DAY, method: str = "banner", policy_version: str = "1",
            withdrawn: Sequence[str] = ()) -> None:
        self.seq += 1
        if action == "accept_all":
            granted = OPTIONAL
        elif action in ("reject_all", "erase"):
            granted = ()
        denied = () if action == "erase" else [c for c in OPTIONAL if c not in granted]
        with self.engine.begin() as conn:
            conn.execute(insert(receipts), {
                "seq": self.seq,
                "receipt_id": f"{self.seq:08d}-0000-4000-8000-000000000000",
                "consent_id": consent_id,
                "created_at": when,
                "action": action,
                "granted": encode_categories(["necessary", *granted] if action != "erase"
                                             else []),
                "denied": encode_categories(denied),
                "withdrawn": encode_categories(withdrawn),
                "policy_version": policy_version,
                "banner_hash": "b" * 64,
                "language": "en",
                "method": method,
                "page_path": "/",
                "personal_digest": "p" * 64,
                "digest": f"{self.seq:064x}",
                "prev_digest": f"{self.seq - 1:064x}",
            })

    def visitor(self, action: str, granted: Sequence[str] = (), **kw: Any) -> str:
        consent_id = secrets.token_urlsafe(16)
        self.add(consent_id, action, granted, **kw)
        return consent_id


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    yield ledger
    ledger.engine.dispose()


@pytest.fixture
def pg_ledger(postgres_url: str) -> Iterator[Ledger]:
    """The receipts table in a schema of its own, dropped afterwards."""
    schema = f"ck_report_{secrets.token_hex(4)}"
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    ledger = Ledger(url.render_as_string(hide_password=False))
    try:
        yield ledger
    finally:
        ledger.engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest) -> Ledger:
    """The same tests on both stores."""
    name = "sqlite_ledger" if request.param == "sqlite" else "pg_ledger"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def report(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(cli, ["report", *args])


def report_json(app: Flask, *args: str) -> dict[str, Any]:
    result = report(app, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


WINDOW = ("--since", "2026-11-01", "--until", "2026-11-30")


@pytest.fixture
def app_for(tmp_path: Path) -> Callable[[Ledger], Flask]:
    def factory(ledger: Ledger) -> Flask:
        return make_app(tmp_path, CONSENTKIT_LEDGER_URL=ledger.url)

    return factory


def test_counts_equal_the_decisions(ledger: Ledger, app_for: Callable[[Ledger], Flask]) -> None:
    for _ in range(3):
        ledger.visitor("accept_all")
    for _ in range(2):
        ledger.visitor("reject_all", method="preferences")
    ledger.visitor("save", ["analytics"], method="api", policy_version="2")

    data = report_json(app_for(ledger), *WINDOW, "--min-count", "0")

    assert data["decisions"] == 6
    assert data["visitors"] == 6
    assert data["categories"]["analytics"] == {"granted": 4, "denied": 2,
                                               "opt_in_rate": round(4 / 6, 4)}
    assert data["categories"]["marketing"] == {"granted": 3, "denied": 3, "opt_in_rate": 0.5}
    assert list(data["categories"]) == list(OPTIONAL)
    assert data["by_method"] == {"banner": 3, "preferences": 2, "api": 1, "gpc": 0}
    assert data["by_policy_version"] == {"1": 5, "2": 1}
    assert data["withdrawals"] == 0 and data["erasures"] == 0
    assert data["window"] == {"since": "2026-11-01", "until": "2026-11-30", "by": "day",
                              "min_count": 0}


def test_only_each_visitors_latest_decision_counts(ledger: Ledger,
                                                   app_for: Callable[[Ledger], Flask]) -> None:
    changer = ledger.visitor("accept_all", when=DAY)
    ledger.add(changer, "save", ["analytics"], when=DAY + dt.timedelta(days=1),
               method="preferences", withdrawn=["functional", "marketing", "performance"])
    ledger.add(changer, "reject_all", when=DAY + dt.timedelta(days=2), method="preferences",
               withdrawn=["analytics"])
    ledger.visitor("accept_all", when=DAY)

    data = report_json(app_for(ledger), *WINDOW, "--min-count", "0")

    assert data["decisions"] == 4
    assert data["visitors"] == 2
    assert data["categories"]["analytics"]["granted"] == 1
    assert data["categories"]["analytics"]["denied"] == 1
    assert data["withdrawals"] == 2


def test_latest_decision_is_the_latest_inside_the_window(
        ledger: Ledger, app_for: Callable[[Ledger], Flask]) -> None:
    visitor = ledger.visitor("accept_all", when=dt.datetime(2026, 11, 30, 23, 59))
    ledger.add(visitor, "reject_all", when=dt.datetime(2026, 12, 1, 0, 1))
    ledger.visitor("reject_all", when=dt.datetime(2026, 10, 31, 23, 59))

    data = report_json(app_for(ledger), *WINDOW, "--min-count", "0")

    assert data["decisions"] == 1
    assert data["categories"]["analytics"] == {"granted": 1, "denied": 0, "opt_in_rate": 1.0}


def test_erasures_and_erased_visitors(ledger: Ledger,
                                      app_for: Callable[[Ledger], Flask]) -> None:
    ledger.visitor("accept_all")
    ledger.add(None, "accept_all")  # a decision whose visitor was erased later
    ledger.add(None, "erase", when=DAY + dt.timedelta(hours=1))

    data = report_json(app_for(ledger), *WINDOW, "--min-count", "0")

    assert data["erasures"] == 1
    assert data["decisions"] == 2
    assert data["visitors"] == 1


def test_decisions_per_day_week_and_month(ledger: Ledger,
                                          app_for: Callable[[Ledger], Flask]) -> None:
    # 2026-11-02 is a Monday; 11-08 a Sunday; 11-09 the next Monday
    for day, n in ((2, 2), (8, 1), (9, 3), (30, 1)):
        for _ in range(n):
            ledger.visitor("accept_all", when=dt.datetime(2026, 11, day, 12))
    ledger.visitor("accept_all", when=dt.datetime(2026, 12, 1, 0, 0))
    app = app_for(ledger)

    days = report_json(app, *WINDOW, "--min-count", "0")["by_period"]
    assert len(days) == 30
    assert {p["period"]: p["decisions"] for p in days if p["decisions"]} == {
        "2026-11-02": 2, "2026-11-08": 1, "2026-11-09": 3, "2026-11-30": 1}

    weeks = report_json(app, *WINDOW, "--by", "week", "--min-count", "0")["by_period"]
    assert [(p["period"], p["decisions"]) for p in weeks] == [
        ("2026-10-26", 0), ("2026-11-02", 3), ("2026-11-09", 3), ("2026-11-16", 0),
        ("2026-11-23", 0), ("2026-11-30", 1)]

    months = report_json(app, "--since", "2026-10-15", "--until", "2026-12-01", "--by", "month",
                         "--min-count", "0")["by_period"]
    assert months == [{"period": "2026-10-01", "decisions": 0},
                      {"period": "2026-11-01", "decisions": 7},
                      {"period": "2026-12-01", "decisions": 1}]


@pytest.mark.parametrize("by, since, periods", [
    ("day", "2025-07-19", 501),      # one day more than SQLite's 500 terms of a compound SELECT
    ("day", "2024-03-07", 1000),     # two runs of 500 exactly
    ("week", "2016-11-28", 523),     # about ten years of weeks
])
def test_a_window_of_more_than_500_periods(ledger: Ledger, app_for: Callable[[Ledger], Flask],
                                           by: str, since: str, periods: int) -> None:
    first = dt.datetime.fromisoformat(since)
    until = dt.date(2026, 12, 1)
    when = [first, first + dt.timedelta(days=499, hours=23), first + dt.timedelta(days=500),
            first + dt.timedelta(days=1000), dt.datetime(2026, 12, 1, 23, 59)]
    for at in when:
        if at.date() <= until:
            ledger.visitor("accept_all", when=at)
    ledger.add(None, "erase", when=first + dt.timedelta(days=500, hours=1))
    result = report(app_for(ledger), "--since", since, "--until", str(until), "--by", by,
                    "--format", "json", "--min-count", "0")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["by_period"]
    assert len(rows) == periods and rows[0]["period"] <= since
    expected: dict[str, int] = {}
    for at in when:
        if at.date() <= until:
            start = at.date() - dt.timedelta(days=at.weekday() if by == "week" else 0)
            expected[str(start)] = expected.get(str(start), 0) + 1
    assert {p["period"]: p["decisions"] for p in rows if p["decisions"]} == expected


def test_small_groups_are_not_shown_exactly(ledger: Ledger,
                                            app_for: Callable[[Ledger], Flask]) -> None:
    for _ in range(6):
        ledger.visitor("accept_all")
    for _ in range(2):
        ledger.visitor("reject_all", method="gpc")
    app = app_for(ledger)

    data = report_json(app, *WINDOW)  # default --min-count 5
    assert data["window"]["min_count"] == 5
    assert data["decisions"] == 8
    # a small group is withheld: null, never a string among the numbers, and listed
    assert data["categories"]["analytics"] == {"granted": 6, "denied": None,
                                               "opt_in_rate": None}
    assert data["by_method"]["gpc"] is None
    assert data["by_method"]["banner"] == 6
    assert data["suppressed"] == ["/categories/functional/denied",
                                  "/categories/analytics/denied",
                                  "/categories/performance/denied",
                                  "/categories/marketing/denied", "/by_method/gpc"]
    # nobody is singled out by a zero: empty groups and empty days are 0
    assert data["erasures"] == 0 and data["withdrawals"] == 0
    assert data["by_method"]["api"] == 0
    assert data["by_period"][0] == {"period": "2026-11-01", "decisions": 0}
    assert all(isinstance(p["decisions"], int) or f"/by_period/{n}/decisions"
               in data["suppressed"] for n, p in enumerate(data["by_period"]))

    data = report_json(app, *WINDOW, "--min-count", "2")
    assert data["categories"]["analytics"] == {"granted": 6, "denied": 2, "opt_in_rate": 0.75}
    assert data["erasures"] == 0 and data["suppressed"] == []

    table = report(app, *WINDOW).stdout
    assert "<5" in table
    assert "Counts under 5 are shown as <5." in table
    assert not any(line.split()[-2:] == ["2"] for line in table.splitlines())
    erasures = next(line for line in table.splitlines() if line.startswith("erasures"))
    assert erasures.split() == ["erasures", "0"]


def test_min_count_must_be_a_whole_number(ledger: Ledger,
                                          app_for: Callable[[Ledger], Flask]) -> None:
    result = report(app_for(ledger), "--min-count", "-1")
    assert result.exit_code == 2
    assert "--min-count" in result.output
    assert "Traceback" not in result.output


def test_default_window_is_the_last_30_days(ledger: Ledger,
                                            app_for: Callable[[Ledger], Flask]) -> None:
    today = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    ledger.visitor("accept_all", when=today)
    ledger.visitor("accept_all", when=today - dt.timedelta(days=29))
    ledger.visitor("accept_all", when=today - dt.timedelta(days=31))

    data = report_json(app_for(ledger), "--min-count", "0")

    assert data["window"]["until"] == today.date().isoformat()
    assert data["window"]["since"] == (today.date() - dt.timedelta(days=29)).isoformat()
    assert len(data["by_period"]) == 30
    assert data["decisions"] == 2


def _mixed_history(ledger: Ledger) -> None:
    """Visitors who changed their minds, an erased visitor, receipts around the window."""
    for n in range(12):
        visitor = ledger.visitor(("accept_all", "reject_all", "save")[n % 3], ["analytics"],
                                 when=DAY + dt.timedelta(hours=n), method=METHODS[n % 4])
        if n % 2:
            ledger.add(visitor, "save", ["performance"], when=DAY + dt.timedelta(days=n),
                       method="preferences", withdrawn=["analytics"], policy_version="2")
        if n % 5 == 0:
            ledger.add(visitor, "reject_all", when=dt.datetime(2026, 12, 1, 0, 0))
    ledger.add(None, "accept_all")
    ledger.add(None, "erase", when=DAY + dt.timedelta(days=3))
    ledger.visitor("accept_all", when=dt.datetime(2026, 10, 31, 23, 59))


@pytest.mark.postgres
def test_postgresql_ledger_without_the_visitor_index(
        pg_ledger: Ledger, app_for: Callable[[Ledger], Flask]) -> None:
    """A ledger the app has not opened since the upgrade (schema 1) gives the same report."""
    _mixed_history(pg_ledger)
    app = app_for(pg_ledger)
    runs = [("--by", by) for by in ("day", "week", "month")]
    with_index = [report_json(app, *WINDOW, *run, "--min-count", "0") for run in runs]
    assert with_index[0]["visitors"] == 12 and with_index[0]["decisions"] == 19

    with pg_ledger.engine.begin() as conn:
        conn.execute(text(f"DROP INDEX {visitor_index.name}"))
        conn.execute(text("CREATE INDEX ix_consentkit_receipts_consent_id "
                          "ON consentkit_receipts (consent_id)"))

    assert [report_json(app, *WINDOW, *run, "--min-count", "0") for run in runs] == with_index


@pytest.mark.postgres
@pytest.mark.parametrize("query, index", [
    ("categories", visitor_index), ("summary", created_at_index)])
def test_postgresql_reads_indexes_alone(pg_ledger: Ledger, query: str, index: Index) -> None:
    """Every column a query needs is in its index: no table access, no sort.

    (A column added to a query but not to its index would quietly bring back
    a read of the table, or a sort of the whole window.)
    """
    _mixed_history(pg_ledger)
    q = Queries("postgresql", Window(dt.date(2026, 11, 1), dt.date(2026, 11, 30)), OPTIONAL)
    stmt = q.categories_((0, 0), indexed=True) if query == "categories" else q.summary()
    with pg_ledger.engine.begin() as conn:
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_indexscan",
                        "enable_sort"):
            conn.execute(text(f"SET LOCAL {setting} = off"))
        compiled = stmt.compile(conn)
        plan = "\n".join(row[0] for row in conn.exec_driver_sql(
            f"EXPLAIN {compiled}", compiled.params))
    assert f"Index Only Scan using {index.name}" in plan
    assert "Sort" not in plan and "Seq Scan" not in plan and "Index Scan" not in plan


# -- messages instead of tracebacks -------------------------------------------------


def test_empty_ledger(ledger: Ledger, app_for: Callable[[Ledger], Flask]) -> None:
    result = report(app_for(ledger), *WINDOW)
    assert result.exit_code == 0
    assert "The ledger is empty" in result.output


def test_ledger_file_without_a_receipts_table(tmp_path: Path) -> None:
    """A database that is not (yet) a ledger is said to be none, as a missing file is."""
    path = tmp_path / "other.sqlite3"
    sqlite3.connect(path).close()
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=f"sqlite:///{path}")
    result = report(app, "--format", "json")
    assert result.exit_code == 1
    assert result.output == (f"Error: There is no ledger at sqlite:///{path}: it has no "
                             "consentkit_receipts table. Check CONSENTKIT_LEDGER_URL, or let "
                             "the app record a first decision (it creates the tables).\n")


def test_window_without_data(ledger: Ledger, app_for: Callable[[Ledger], Flask]) -> None:
    ledger.visitor("accept_all")
    app = app_for(ledger)

    result = report(app, "--since", "2020-01-01", "--until", "2020-01-31")
    assert result.exit_code == 0
    assert "No receipts between 2020-01-01 and 2020-01-31 (1 in the ledger)" in result.output

    result = report(app, "--since", "2020-01-01", "--until", "2020-01-31", "--format", "json",
                    "--min-count", "0")
    assert result.exit_code == 0
    assert "No receipts between" in result.stderr
    data = json.loads(result.stdout)
    assert data["decisions"] == 0 and data["categories"]["analytics"]["opt_in_rate"] is None


@pytest.mark.parametrize("args, message", [
    (("--since", "2026-13-01"), "Invalid value for '--since'"),
    (("--until", "yesterday"), "Invalid value for '--until'"),
    (("--since", "2026-11-30", "--until", "2026-11-01"), "--since 2026-11-30 is after --until"),
    (("--by", "year"), "Invalid value for '--by'"),
    (("--until", "9999-12-31"), "Invalid value for '--until': 9999-12-31 is not a day a report "
                                "can cover: give one from 1970-01-01 to 9999-12-30."),
    (("--since", "1969-12-31"), "Invalid value for '--since': 1969-12-31 is not a day a report "
                                "can cover: give one from 1970-01-01 to 9999-12-30."),
    (("--format", "xml"), "Invalid value for '--format'"),
])
def test_bad_input(ledger: Ledger, app_for: Callable[[Ledger], Flask], args: tuple[str, ...],
                   message: str) -> None:
    result = report(app_for(ledger), *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_unreachable_database(tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=(
        "postgresql+psycopg://report:s3cret@127.0.0.1:1/nowhere"))
    result = report(app)
    assert result.exit_code == 1
    assert "Cannot read the ledger at postgresql+psycopg://report:***@127.0.0.1:1/nowhere" \
        in result.output
    assert "s3cret" not in result.output
    assert "Traceback" not in result.output


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "ledger.sqlite3"
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=f"sqlite:///{path}")
    result = report(app)
    assert result.exit_code == 1
    assert f"There is no ledger database at {path}" in result.output
    assert not path.exists()


def test_receipts_turned_off(tmp_path: Path) -> None:
    result = report(make_app(tmp_path))
    assert result.exit_code == 1
    assert "Receipts are turned off (CONSENTKIT_LEDGER_URL is None)" in result.output


def test_unsupported_store(tmp_path: Path) -> None:
    # refused by init_app already, so no command, the report included, ever reads it
    from flask_consentkit import ConsentConfigError

    with pytest.raises(ConsentConfigError, match="SQLite or PostgreSQL only"):
        make_app(tmp_path, CONSENTKIT_LEDGER_URL="mysql://u@localhost/db")


def test_report_never_writes(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    sqlite_ledger.visitor("accept_all")
    path = make_url(sqlite_ledger.url).database
    assert path is not None
    before = Path(path).read_bytes()
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=sqlite_ledger.url)
    assert report(app, *WINDOW).exit_code == 0
    assert Path(path).read_bytes() == before
