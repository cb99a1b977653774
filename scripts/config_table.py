"""Print the README's configuration table, generated from ``flask_consentkit.config.KEYS``.

Usage (from the project root)::

    python scripts/config_table.py           # print the markdown table
    python scripts/config_table.py --write   # rewrite it in README.md, between the markers

One row per key, in the table's order. Adjacent keys with the same doc share a row:
``A / B | a / b`` when their defaults differ, ``A, B | a`` when they agree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from flask_consentkit.config import KEYS, Key

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"


def literal(value: Any) -> str:
    """A default as the README writes it: Python's ``None``/``True``/``False``, else JSON."""
    if value is None or isinstance(value, bool):
        return str(value)
    return json.dumps(value)


def default_cell(key: Key) -> str:
    return key.shown_default.replace("{}", f"`{literal(key.default)}`")


def rows(keys: tuple[Key, ...] = KEYS) -> list[tuple[str, str, str]]:
    """``(keys, default, meaning)`` cells, adjacent keys with the same doc in one row."""
    groups: list[list[Key]] = []
    for key in keys:
        if groups and groups[-1][0].doc == key.doc:
            groups[-1].append(key)
        else:
            groups.append([key])
    out = []
    for group in groups:
        names = [f"`{key.name}`" for key in group]
        defaults = list(dict.fromkeys(default_cell(key) for key in group))
        if len(defaults) == 1:
            out.append((", ".join(names), defaults[0], group[0].doc))
        else:
            out.append((" / ".join(names), " / ".join(defaults), group[0].doc))
    return out


def table(keys: tuple[Key, ...] = KEYS) -> str:
    """The markdown table, ending with a newline."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| {name} | {default} | {doc} |" for name, default, doc in rows(keys)]
    return "\n".join(lines) + "\n"


def section(text: str) -> str:
    """What README ``text`` holds between the markers."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"README.md must hold {START} once, then {END} once.")
    return text.split(START, 1)[1].split(END, 1)[0]


def with_table(text: str) -> str:
    """README ``text`` with the generated table between the markers."""
    section(text)  # checks the markers
    head, rest = text.split(START, 1)
    return f"{head}{START}\n\n{table()}\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--write", action="store_true",
                        help="rewrite the table in README.md between the markers")
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write(table())
        return 0
    text = README.read_text(encoding="utf-8")
    new = with_table(text)
    if new != text:
        README.write_text(new, encoding="utf-8")
        print(f"{README.name}: configuration table rewritten")
    else:
        print(f"{README.name}: configuration table already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
