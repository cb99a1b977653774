"""The report's time window: whole UTC days, cut into periods of a day, a week or a month."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

PERIODS = ("day", "week", "month")
DEFAULT_DAYS = 30


class WindowError(ValueError):
    """Options that make no window (``--since`` after ``--until``)."""


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

    @classmethod
    def from_options(cls, since: dt.date | None, until: dt.date | None,
                     by: str = "day") -> Window:
        """The window of ``--since``, ``--until`` and ``--by``.

        ``until`` defaults to today (UTC), ``since`` to :data:`DEFAULT_DAYS` days
        ending on ``until``.

        :raises WindowError: ``since`` is after ``until``.
        """
        window = cls.default(by, until)
        if since is not None:
            window = cls(since, window.until, by)
        if window.since > window.until:
            raise WindowError(f"--since {window.since} is after --until {window.until}.")
        return window

    def periods(self) -> list[str]:
        """The first day (ISO date) of every period that overlaps the window."""
        out: list[str] = []
        day = period_start(self.since, self.by)
        while day <= self.until:
            out.append(day.isoformat())
            if self.by == "day":
                day += dt.timedelta(days=1)
            elif self.by == "week":
                day += dt.timedelta(days=7)
            else:
                day = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        return out


def period_start(day: dt.date, by: str) -> dt.date:
    """The first day of the period (``by``: day, ISO week from Monday, month) holding ``day``."""
    if by == "week":
        return day - dt.timedelta(days=day.weekday())
    if by == "month":
        return day.replace(day=1)
    return day
