"""Rate limiting of the data-subject endpoints (export, erase), per visitor.

Fixed windows: at most ``limit`` requests per ``period`` seconds per visitor and
endpoint; past that the answer is ``429`` with ``Retry-After`` (the seconds until
the window ends). A visitor is the consent id of the signed cookie, or, without
one, the anonymised IP (IPv4 /24, IPv6 /48); either is hashed before it is used
as a key.

Counters live in this process's memory by default (``CONSENTKIT_RATELIMIT_STORAGE_URL
= None``): right for one process, while each worker of a multi-process server
counts on its own. With ``redis://…`` (or ``rediss://``, ``unix://``) every
process and machine shares the counters. A storage that cannot be reached lets
the request through and logs a warning: a data-subject right is never refused
because a counter is down.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import ConsentConfigError, ConsentRateLimited

log = logging.getLogger("flask_consentkit.ratelimit")

_RATE = re.compile(
    r"^\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*(second|minute|hour|day)s?\s*$", re.IGNORECASE
)
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class Rate:
    """``limit`` requests per ``period`` seconds."""

    limit: int
    period: int


def parse_rate(key: str, value: Any) -> Rate | None:
    """``"5/minute"``, ``"10 per hour"``, ``"3/30 seconds"`` → :class:`Rate`; ``None`` → off."""
    if value is None:
        return None
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConsentConfigError(key, f"{value!r} is not a rate; write it like '5/minute', "
                                 "'10 per hour' or '3/30 seconds', or None for no limit.")
    limit = int(match.group(1))
    period = int(match.group(2) or 1) * _UNITS[match.group(3).lower()]
    if limit < 1 or period < 1:
        raise ConsentConfigError(key, f"{value!r} must allow at least one request per period.")
    return Rate(limit, period)


def check_storage_url(key: str, value: Any) -> str | None:
    """``None`` (memory) or a Redis URL; anything else is a configuration error."""
    if value is None or value == "memory://":
        return None
    scheme = value.partition("://")[0] if isinstance(value, str) else ""
    if scheme not in REDIS_SCHEMES:
        raise ConsentConfigError(key, f"{value!r} is not supported; use None (in memory, one "
                                 "process) or a Redis URL such as 'redis://localhost:6379/0'.")
    try:
        import redis  # noqa: F401
    except ImportError:
        raise ConsentConfigError(key, "a Redis URL needs the 'redis' package: pip install "
                                 "'flask-consentkit[redis]'.") from None
    return str(value)


class Storage(Protocol):
    def hit(self, key: str, period: int) -> int:
        """Count one request under ``key`` (expiring after ``period`` s); return the count."""


class MemoryStorage:
    """Counters in this process's memory."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, period: int) -> int:
        now = time.time()
        with self._lock:
            if len(self._counts) > 10000:
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            count, expires = self._counts.get(key, (0, now + period))
            if expires <= now:
                count, expires = 0, now + period
            count += 1
            self._counts[key] = (count, expires)
            return count


class RedisStorage:
    """Counters in Redis, shared by every process and machine."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)

    def hit(self, key: str, period: int) -> int:
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, period + 1, nx=True)
        count, _ = pipe.execute()
        return int(count)


class RateLimiter:
    """``hit(endpoint, visitor)`` raises :class:`ConsentRateLimited` past the rate."""

    def __init__(self, rate: Rate | None, storage: Storage, prefix: str = "consentkit:rl:"
                 ) -> None:
        self.rate = rate
        self.storage = storage
        self.prefix = prefix

    @classmethod
    def from_config(cls, rate: Rate | None, storage_url: str | None) -> RateLimiter:
        storage: Storage = RedisStorage(storage_url) if storage_url else MemoryStorage()
        return cls(rate, storage)

    def hit(self, endpoint: str, visitor: str, now: float | None = None) -> None:
        rate = self.rate
        if rate is None:
            return
        now = time.time() if now is None else now
        window = int(now // rate.period)
        digest = hashlib.sha256(visitor.encode()).hexdigest()[:32]
        key = f"{self.prefix}{endpoint}:{digest}:{window}"
        try:
            count = self.storage.hit(key, rate.period)
        except Exception as exc:  # noqa: BLE001 - a broken counter never blocks a right
            log.warning("rate-limit storage unavailable (%s); request allowed", exc)
            return
        if count > rate.limit:
            retry_after = max(1, math.ceil((window + 1) * rate.period - now))
            raise ConsentRateLimited(
                f"Too many requests; try again in {retry_after} seconds.",
                retry_after=retry_after,
            )


def anonymise_ip(value: str | None) -> str | None:
    """``"203.0.113.7"`` → ``"203.0.113.0/24"``; IPv6 → its /48; garbage → ``None``."""
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
