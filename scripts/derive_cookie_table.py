"""Derive the scanner's known-cookie table from the Open Cookie Database.

Usage (from the project root)::

    python scripts/derive_cookie_table.py [tests/testdata/open-cookie-database.csv]

Writes ``flask_consentkit/cli/known_cookies.json`` and copies the database's
licence (Apache-2.0) next to it as ``known_cookies.LICENSE``. Only facts are
kept — the cookie name or prefix, the platform and the category; none of the
database's prose (descriptions, retention texts, URLs).

Rules:

- ``Wildcard match = 1`` rows are prefixes, as is a name ending in ``*``.
- Surrounding whitespace is stripped; names that cannot be cookie names
  (inner whitespace, control or non-ASCII characters) are dropped.
- A name listed more than once keeps every platform (joined with ``" / "``); when
  the rows disagree on the category, the one that needs more consent wins
  (marketing > analytics > personalization > functional > security > necessary),
  so the scanner errs on the side of reporting a leak.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CSV = ROOT / "tests" / "testdata" / "open-cookie-database.csv"
OUT = ROOT / "flask_consentkit" / "cli" / "known_cookies.json"
LICENSE_OUT = OUT.with_suffix(".LICENSE")

#: Categories of the database, from the one that needs the most consent.
STRICTNESS = ("marketing", "analytics", "personalization", "functional", "security",
              "necessary")
SOURCE = {
    "name": "Open Cookie Database",
    "repository": "https://github.com/jkwakman/Open-Cookie-Database",
    "commit": "0ee5a17fe1cb002943f89370d24fc26a4226061c",
    "license": "Apache-2.0 (see known_cookies.LICENSE)",
    "changes": "Derived by scripts/derive_cookie_table.py: only the cookie name or prefix, "
               "platform and category are kept; names are trimmed, unusable names dropped, "
               "and conflicting categories resolved to the stricter one.",
}


def _usable(name: str) -> bool:
    return bool(name) and name.isascii() and name.isprintable() and " " not in name


def derive(rows: list[dict[str, str]]) -> tuple[dict[str, object], list[str]]:
    """The table and the list of conflicts that were resolved."""
    entries: dict[tuple[str, bool], dict[str, list[str]]] = {}
    for row in rows:
        name = row["Cookie / Data Key name"].strip()
        prefix = row["Wildcard match"].strip() == "1"
        if name.endswith("*"):
            name, prefix = name.rstrip("*"), True
        category = row["Category"].strip().lower()
        if not _usable(name) or category not in STRICTNESS:
            continue
        entry = entries.setdefault((name, prefix), {"platforms": [], "categories": []})
        platform = row["Platform"].strip()
        if platform and platform not in entry["platforms"]:
            entry["platforms"].append(platform)
        entry["categories"].append(category)

    conflicts: list[str] = []
    by_name: dict[str, set[str]] = {}
    for (name, _prefix), entry in entries.items():
        by_name.setdefault(name, set()).update(entry["categories"])
    for name, cats in sorted(by_name.items()):
        if len(cats) > 1:
            winner = min(cats, key=STRICTNESS.index)
            conflicts.append(f"{name}: {' vs '.join(sorted(cats))} -> {winner}")

    cookies: dict[str, list[str]] = {}
    prefixes: list[list[str]] = []
    for (name, prefix), entry in sorted(entries.items()):
        # the stricter category of every row of this name, exact or prefix
        category = min(by_name[name], key=STRICTNESS.index)
        fact = [" / ".join(entry["platforms"]), category]
        if prefix:
            prefixes.append([name, *fact])
        else:
            cookies[name] = fact
    prefixes.sort(key=lambda p: (-len(p[0]), p[0]))  # longest prefix first
    table = {"source": SOURCE, "cookies": cookies, "prefixes": prefixes}
    return table, conflicts


def dump(table: dict[str, object]) -> str:
    """Compact JSON with one cookie per line, so that a change to the table diffs well."""
    def one(value: object) -> str:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"))

    cookies = table["cookies"]
    prefixes = table["prefixes"]
    assert isinstance(cookies, dict) and isinstance(prefixes, list)
    lines = ['{"source":' + one(table["source"]) + ",", '"cookies":{']
    lines += [f"{one(k)}:{one(v)}," for k, v in cookies.items()]
    lines[-1] = lines[-1].rstrip(",")
    lines += ["},", '"prefixes":[']
    lines += [one(p) + "," for p in prefixes]
    lines[-1] = lines[-1].rstrip(",")
    lines += ["]}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_CSV
    with source.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    table, conflicts = derive(rows)
    OUT.write_text(dump(table), encoding="utf-8")
    licence = source.with_name("open-cookie-database.LICENSE")
    if licence.is_file():
        shutil.copyfile(licence, LICENSE_OUT)
    print(f"{len(rows)} rows -> {len(table['cookies'])} names, {len(table['prefixes'])} "
          f"prefixes in {OUT.relative_to(ROOT)}")
    for line in conflicts:
        print(f"conflict resolved: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
