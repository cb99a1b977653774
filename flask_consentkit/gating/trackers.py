"""Known trackers, as data: what to neutralise when an author forgot to mark it.

The list lives in ``trackers.json`` next to this module. Each entry names a
vendor, the consent category it needs, a ``kind`` and a regular expression:

- ``"script"`` is matched against a ``<script>``'s ``src`` URL and its inline text;
- ``"iframe"`` is matched against an ``<iframe>``'s ``src`` URL;
- ``"image"`` is matched against an ``<img>``'s ``src`` URL (tracking pixels, which
  the vendors put in ``<noscript>`` for visitors without JavaScript).

An entry may say ``"generic": true``: a pattern that every snippet of a vendor's
tag holds whatever it configures (``gtag('js', …)``). An inline script is
gated under every category of the trackers it holds, a generic one only when
no other tracker is found in it (so a Google Ads snippet, which also calls
``gtag('js', …)``, needs ``marketing`` and not ``analytics`` too).

Patterns are ASCII and matched case-insensitively. To extend the list for one
app, pass more :class:`Tracker` objects to :func:`flask_consentkit.gating.install`
(``extra_trackers``), or add an entry to the JSON file for everyone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

KINDS: frozenset[str] = frozenset({"script", "iframe", "image"})
DATA_FILE = "trackers.json"


@dataclass(frozen=True)
class Tracker:
    """One known tracker: ``name`` of the vendor, the ``category`` it needs,
    the compiled ``pattern`` and the ``kind`` of element it is found in;
    ``generic`` when it only counts where no other tracker is found."""

    name: str
    category: str
    pattern: re.Pattern[str]
    kind: str
    generic: bool = False


def parse_trackers(data: Any) -> tuple[Tracker, ...]:
    """Validate the JSON shape of the tracker list and compile it.

    :raises ValueError: naming the entry and what is wrong with it.
    """
    if not isinstance(data, dict) or not isinstance(data.get("trackers"), list):
        raise ValueError('the tracker data must be an object {"trackers": [...]}')
    out: list[Tracker] = []
    for i, entry in enumerate(data["trackers"]):
        where = f"tracker #{i}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be an object")
        name, category = entry.get("name"), entry.get("category")
        kind, pattern = entry.get("kind"), entry.get("pattern")
        for field_name, value in (("name", name), ("category", category),
                                  ("kind", kind), ("pattern", pattern)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{where} needs a non-empty string {field_name!r}")
        assert isinstance(name, str) and isinstance(category, str)
        assert isinstance(kind, str) and isinstance(pattern, str)
        if kind not in KINDS:
            raise ValueError(f"{where} ({name}): kind {kind!r} must be one of {sorted(KINDS)}")
        if not pattern.isascii():
            raise ValueError(f"{where} ({name}): the pattern must be ASCII")
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as e:
            raise ValueError(f"{where} ({name}): bad pattern: {e}") from e
        if compiled.search(""):
            raise ValueError(f"{where} ({name}): the pattern matches the empty string")
        generic = entry.get("generic", False)
        if not isinstance(generic, bool):
            raise ValueError(f"{where} ({name}): 'generic' must be true or false")
        out.append(Tracker(name=name, category=category, pattern=compiled, kind=kind,
                           generic=generic))
    return tuple(out)


def load_trackers() -> tuple[Tracker, ...]:
    """The trackers shipped with the package."""
    text = resources.files(__package__).joinpath(DATA_FILE).read_text(encoding="utf-8")
    return parse_trackers(json.loads(text))


#: Every known tracker, in the order of the data file.
TRACKERS: tuple[Tracker, ...] = load_trackers()


def find_tracker(
    text: str, kind: str | None = None, trackers: Iterable[Tracker] = TRACKERS
) -> Tracker | None:
    """The first tracker whose pattern occurs in ``text`` (a URL or a script's text).

    :param kind: only trackers of this kind (``"script"``, ``"iframe"`` or ``"image"``);
        all when ``None``.
    """
    for tracker in trackers:
        if (kind is None or tracker.kind == kind) and tracker.pattern.search(text):
            return tracker
    return None
