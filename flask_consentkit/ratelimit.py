"""Rate limiting of the data-subject endpoints (export, erase), per visitor.

Fixed windows: at most ``limit`` requests per ``period`` seconds per visitor and
endpoint; past that the answer is ``429`` with ``Retry-After`` (the seconds until
the window ends). A visitor is the consent id of the signed cookie, or, without
one, the anonymised IP (IPv4 /24, IPv6 /48); either is hashed before it is used
as a key.

The counting is the `limits <https://limits.readthedocs.io>`_ library's (the engine
under flask-limiter): its rate strings, its fixed-window strategy and its Redis
storage. Counters live in this process's memory by default
(``CONSENTKIT_RATELIMIT_STORAGE_URL = None``): right for one process, while each
worker of a multi-process server counts on its own. With ``redis://…`` (or
``rediss://``, ``redis+unix://``, ``unix://``) every process and machine shares the
counters. A storage that cannot be reached lets the request through and logs a
warning: a data-subject right is never refused because a counter is down.
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import limits
from limits.storage import RedisStorage, Storage
from limits.strategies import FixedWindowRateLimiter

from .errors import ConsentConfigError, ConsentRateLimited

log = logging.getLogger("flask_consentkit.ratelimit")

REDIS_SCHEMES = ("redis", "rediss", "redis+unix", "unix")
# limits reads "1/0 seconds" as one a second; here a period of zero is an error
_ZERO_PERIOD = re.compile(r"(?:/|per)\s*0+\s*[a-z]", re.IGNORECASE)


@dataclass(frozen=True)
class Rate:
    """``limit`` requests per ``period`` seconds."""

    limit: int
    period: int

    def item(self, namespace: str) -> limits.RateLimitItem:
        """This rate as the ``limits`` library's item, its keys under ``namespace``."""
        return limits.RateLimitItemPerSecond(self.limit, self.period, namespace=namespace)


def parse_rate(key: str, value: Any) -> Rate | None:
    """``"5/minute"``, ``"10 per hour"``, ``"3/30 seconds"`` → :class:`Rate`; ``None`` → off.

    Any one rate the ``limits`` library reads (``second`` to ``year``) is accepted.
    """
    if value is None:
        return None
    try:
        items = limits.parse_many(value) if isinstance(value, str) else []
    except ValueError:
        items = []
    if len(items) != 1:
        raise ConsentConfigError(key, f"{value!r} is not a rate; write it like '5/minute', "
                                 "'10 per hour' or '3/30 seconds', or None for no limit.")
    if items[0].amount < 1 or _ZERO_PERIOD.search(value):
        raise ConsentConfigError(key, f"{value!r} must allow at least one request per period.")
    return Rate(items[0].amount, items[0].get_expiry())


def check_storage_url(key: str, value: Any) -> str | None:
    """``None`` (memory) or a Redis URL; anything else is a configuration error."""
    if value is None or value == "memory://":
        return None
    scheme = value.partition("://")[0] if isinstance(value, str) else ""
    if scheme not in REDIS_SCHEMES:
        raise ConsentConfigError(key, f"{value!r} is not supported; use None (in memory, one "
                                 "process) or a Redis URL such as 'redis://localhost:6379/0'.")
    try:
        _ = urlsplit(value).port  # read as the Redis client reads it
    except ValueError as exc:
        raise ConsentConfigError(key, f"the Redis URL cannot be read ({exc}); write it as "
                                 "'redis://host:6379/0', the port a number.") from None
    try:
        import redis  # noqa: F401
    except ImportError:
        raise ConsentConfigError(key, "a Redis URL needs the 'redis' package: pip install "
                                 "'flask-consentkit[redis]'.") from None
    return str(value)


class MemoryStorage(Storage):
    """Fixed-window counters in this process's memory, as a ``limits`` storage.

    ``limits``' own ``MemoryStorage`` expires counters by scanning all of them
    from a timer thread after a hit — a cost that grows with the number of
    visitors (6 ms of CPU a hit at 80,000 counters). Here expiry times wait in a
    heap: a hit drops only the counters whose time has come, so it costs the same
    with 10 counters or 100,000, and memory holds only live windows.
    """

    def __init__(self) -> None:
        super().__init__()
        self._counts: dict[str, int] = {}
        self._expiries: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    def __len__(self) -> int:
        """The counters held (those that expired may wait for the next hit)."""
        return len(self._counts)

    def _expire(self, now: float) -> None:
        heap, expiries = self._heap, self._expiries
        while heap and heap[0][0] <= now:
            at, key = heapq.heappop(heap)
            if expiries.get(key) == at:  # else cleared, or a newer window of the key
                del expiries[key], self._counts[key]

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with self._lock:
            self._expire(now)
            count = self._counts.get(key)
            if count is None:
                count = 0
                self._expiries[key] = at = now + expiry
                heapq.heappush(self._heap, (at, key))
            count += amount
            self._counts[key] = count
            return count

    def get(self, key: str) -> int:
        with self._lock:
            self._expire(time.time())
            return self._counts.get(key, 0)

    def get_expiry(self, key: str) -> float:
        with self._lock:
            return self._expiries.get(key, time.time())

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            count = len(self._counts)
            self._counts.clear()
            self._expiries.clear()
            self._heap.clear()
            return count

    def clear(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)
            self._expiries.pop(key, None)


def redis_storage(url: str) -> RedisStorage:
    """``limits``' Redis storage for ``url``, answering within a second or failing."""
    return RedisStorage(url, socket_timeout=1, socket_connect_timeout=1)


class RateLimiter:
    """``hit(endpoint, visitor)`` raises :class:`ConsentRateLimited` past the rate.

    The windows are the clock's (``now // period``), so a window's end, and
    ``Retry-After``, is the same in every process; ``limits``' fixed-window
    strategy counts the hits of each.
    """

    def __init__(self, rate: Rate | None, storage: Storage, prefix: str = "consentkit:rl:"
                 ) -> None:
        self.rate = rate
        self.storage = storage
        self.strategy = FixedWindowRateLimiter(storage)
        self._items: dict[str, limits.RateLimitItem] = {}
        self.prefix = prefix

    @classmethod
    def from_config(cls, rate: Rate | None, storage_url: str | None) -> RateLimiter:
        storage: Storage = redis_storage(storage_url) if storage_url else MemoryStorage()
        return cls(rate, storage)

    @property
    def prefix(self) -> str:
        """What every key in a shared storage begins with."""
        return self._prefix

    @prefix.setter
    def prefix(self, value: str) -> None:
        self._prefix = value
        if isinstance(self.storage, RedisStorage):
            self.storage.key_prefix = value.removesuffix(":")

    def hit(self, endpoint: str, visitor: str, now: float | None = None) -> None:
        rate = self.rate
        if rate is None:
            return
        now = time.time() if now is None else now
        window = int(now // rate.period)
        item = self._items.get(endpoint)
        if item is None:
            item = self._items[endpoint] = rate.item(endpoint)
        digest = hashlib.sha256(visitor.encode()).hexdigest()[:32]
        try:
            allowed = self.strategy.hit(item, digest, str(window))
        except Exception as exc:  # noqa: BLE001 - a broken counter never blocks a right
            log.warning("rate-limit storage unavailable (%s); request allowed", exc)
            return
        if not allowed:
            retry_after = max(1, math.ceil((window + 1) * rate.period - now))
            raise ConsentRateLimited(
                f"Too many requests; try again in {retry_after} seconds.",
                retry_after=retry_after,
            )


#: A dotted-quad IPv4 address as :mod:`ipaddress` takes it (no leading zeros); its first
#: three octets. Every receipt with analytics anonymises its visitor's address: this
#: form, by far the most common, is cut without building address objects.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"({_OCTET}\.{_OCTET}\.{_OCTET})\.{_OCTET}")


def anonymise_ip(value: str | None) -> str | None:
    """``"203.0.113.7"`` → ``"203.0.113.0/24"``; IPv6 → its /48; garbage → ``None``."""
    if not value:
        return None
    quad = _IPV4.fullmatch(value.strip())
    if quad is not None:
        return f"{quad.group(1)}.0/24"
    return _anonymise_any(value)


def _anonymise_any(value: str) -> str | None:
    """:func:`anonymise_ip` by :mod:`ipaddress` alone, for any form of address."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
