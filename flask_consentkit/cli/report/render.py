"""The report written out: a terminal table, JSON, CSV or one HTML page.

Every format renders the document of :func:`.aggregate.to_json`, so what is
withheld is withheld alike in all of them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .aggregate import Cell, to_json
from .counts import Report


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


def render_json(report: Report, min_count: int) -> str:
    """The document of :func:`.aggregate.to_json`, indented."""
    return json.dumps(to_json(report, min_count), indent=2) + "\n"


#: The ``--format`` choices, in the order ``--help`` lists them.
RENDERERS: dict[str, Callable[[Report, int], str]] = {
    "table": render_table,
    "json": render_json,
    "csv": render_csv,
    "html": render_html,
}
FORMATS = tuple(RENDERERS)
