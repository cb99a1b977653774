"""The numbers a report is made of, exact, as the database computed them.

:mod:`.queries` fills a :class:`Report`; :mod:`.aggregate` withholds its small
counts and :mod:`.render` writes it out. Nothing here knows of SQL or of output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .window import Window

#: The collection methods a receipt can name (``receipts.method``).
METHODS = ("banner", "preferences", "api", "gpc")


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

    @classmethod
    def empty(cls, window: Window, categories: Sequence[str]) -> Report:
        """No receipts: a 0 for every category, period and method."""
        return cls(
            window=window,
            categories={key: CategoryCount(0, 0) for key in categories},
            by_period=[(p, 0) for p in window.periods()],
            by_method=dict.fromkeys(METHODS, 0),
        )
