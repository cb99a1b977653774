"""The one cache primitive of the response path: :class:`Kept`.

Every cache that keeps outputs between requests (the banner's markup and pages,
the gating's placeholders) is a :class:`Kept`: bounded by a number of entries
and by the bytes its values take, each value charged its size when it goes in.
What an output depends on is its key, written in one place per cache (the table
in ARCHITECTURE.md lists them); a value that depends on anything outside its key
must not be kept.

Reads take no lock: a write replaces the whole dict, so a reader in another
thread sees the old one or the new one. Writes happen on misses, which render
or scan something and cost far more than the copy.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Kept(Generic[K, V]):
    """A bounded, byte-accounted map of kept outputs; the oldest go first when full.

    :param entries: the most values kept.
    :param max_bytes: the most bytes charged to the values kept (``put``'s ``size``);
        a value larger than that is not kept at all.
    """

    __slots__ = ("_data", "_lock", "bytes", "entries", "max_bytes", "name")

    def __init__(self, name: str, entries: int, max_bytes: int = 16 << 20) -> None:
        self.name = name
        self.entries = entries
        self.max_bytes = max_bytes
        #: the bytes charged to the values kept now
        self.bytes = 0
        self._data: dict[K, tuple[V, int]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value kept for ``key``, or ``None``."""
        found = self._data.get(key)
        return found[0] if found is not None else None

    def put(self, key: K, value: V, size: int = 0) -> bool:
        """Keep ``value`` for ``key``, charged ``size`` bytes; False when it is not kept
        (larger than the whole budget). Older values go to make room."""
        if size > self.max_bytes or self.entries <= 0:
            return False
        with self._lock:
            data = dict(self._data)
            old = data.pop(key, None)
            total = self.bytes - (old[1] if old is not None else 0)
            while data and (len(data) >= self.entries or total + size > self.max_bytes):
                oldest = next(iter(data))
                total -= data.pop(oldest)[1]
            data[key] = (value, size)
            self._data = data
            self.bytes = total + size
        return True

    def clear(self) -> None:
        with self._lock:
            self._data = {}
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        """The keys kept now (of one moment's dict: writes do not disturb it)."""
        return iter(self._data)

    def __repr__(self) -> str:
        return (f"<Kept {self.name}: {len(self)}/{self.entries} entries, "
                f"{self.bytes}/{self.max_bytes} bytes>")
