"""What a report may show: small counts withheld, opt-in rates, one row per period.

Small groups are never shown exactly: a count from 1 to ``min_count - 1`` is
withheld — ``null`` in JSON, listed under ``"suppressed"``, ``<5`` in the other
formats — and so is a rate computed from one, so a report cannot single out a
visitor. A count of 0 (an empty day, a method nobody used) singles out nobody
and is shown as 0.

:func:`to_json` is the one place this happens; every format renders its document.
"""

from __future__ import annotations

from typing import Any

from .counts import CategoryCount, Report

#: A count as a report shows it: ``None`` when withheld.
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
