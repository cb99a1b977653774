"""``flask consent report``: what visitors chose, aggregated in SQL from the ledger.

The command reads its options into a :class:`~.window.Window`, opens the ledger
read-only (:mod:`.engine`), has the database count (:mod:`.queries`), withholds
small counts (:mod:`.aggregate`) and writes the result out (:mod:`.render`). The
imports go one way, from the command to those modules: the queries know nothing
of click or of output, the rendering nothing of SQL.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from .. import cli, kit_state
from .counts import METHODS, Report
from .engine import LedgerError, open_ledger
from .progress import Progress
from .queries import Queries, read_report
from .render import FORMATS, RENDERERS, csv_safe
from .window import PERIODS, Window, WindowError

# the names the report's tests and other callers import from here
__all__ = ["METHODS", "Progress", "Queries", "ReportError", "Window", "csv_safe",
           "report_command"]


class ReportError(click.ClickException):
    """A report that cannot be made; the message says why and what to do."""


#: The days ``--since`` and ``--until`` may name: no receipt is older than the first, and
#: the window ends the day after ``--until``, which the calendar must still hold.
FIRST_DAY = dt.date(1970, 1, 1)
LAST_DAY = dt.date.max - dt.timedelta(days=1)


def _day(_ctx: click.Context, _param: click.Parameter, value: dt.datetime | None
         ) -> dt.date | None:
    if value is None:
        return None
    if not FIRST_DAY <= value.date() <= LAST_DAY:
        raise click.BadParameter(f"{value.date()} is not a day a report can cover: give one "
                                 f"from {FIRST_DAY} to {LAST_DAY}.")
    return value.date()


@contextmanager
def _maybe_progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    with Progress(sys.stderr) as progress:
        yield progress


@cli.command("report")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), default=None, callback=_day,
              help="First day (YYYY-MM-DD, UTC). Default: 30 days before --until.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), default=None, callback=_day,
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
def report_command(since: dt.date | None, until: dt.date | None, by: str, fmt: str,
                   min_count: int, output: str | None) -> None:
    """Opt-in rates per category and decisions over time, from the ledger."""
    settings = kit_state().settings
    if settings.ledger_url is None:
        raise ReportError("Receipts are turned off (CONSENTKIT_LEDGER_URL is None), so there "
                          "is nothing to report. Set CONSENTKIT_LEDGER_URL to record them.")
    try:
        window = Window.from_options(since, until, by)
    except WindowError as e:
        raise click.BadParameter(str(e), param_hint="'--since'") from None

    try:
        engine = open_ledger(settings.ledger_url)
        try:
            with _maybe_progress(fmt == "table") as progress:
                report = read_report(engine, window, settings.optional_keys, progress)
        finally:
            engine.dispose()
    except LedgerError as e:
        raise ReportError(str(e)) from None

    note = _note(report)
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


def _note(report: Report) -> str:
    """Why a report holds nothing (``""`` when it holds something)."""
    if not report.ledger_receipts:
        return "The ledger is empty: no decision has been recorded yet."
    if not report.decisions and not report.erasures:
        w = report.window
        return (f"No receipts between {w.since} and {w.until} "
                f"({report.ledger_receipts} in the ledger); try --since/--until.")
    return ""
