"""The in-memory rate-limit storage: a hit costs the same with 10 counters or 80,000,
expired windows are dropped, and no thread sweeps the counters behind the requests."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any

import pytest

from flask_consentkit import ratelimit
from flask_consentkit.errors import ConsentConfigError, ConsentRateLimited
from flask_consentkit.ratelimit import MemoryStorage, Rate, RateLimiter


def _filled(n: int) -> MemoryStorage:
    storage = MemoryStorage()
    for i in range(n):
        storage.incr(f"visitor-{i}", 60)
    assert len(storage) == n
    return storage


def _lines_run(work: Callable[[], object]) -> int:
    """How many lines of Python ``work`` runs in flask_consentkit (comprehensions too)."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if frame.f_code.co_filename.startswith(ratelimit.__file__.rsplit("/", 1)[0]):
            if event == "line":
                count += 1
            return tracer
        return None

    sys.settrace(tracer)
    try:
        work()
    finally:
        sys.settrace(None)
    return count


def test_a_hit_runs_the_same_code_with_10_or_80000_counters() -> None:
    small, large = _filled(10), _filled(80_000)
    for storage in (small, large):  # the first hit of a key and a repeated one
        storage.incr("warm", 60)
    hits = [partial(storage.incr, key, 60)
            for storage in (small, large) for key in ("new-key", "new-key")]
    counts = [_lines_run(hit) for hit in hits]
    assert counts[0] == counts[2] and counts[1] == counts[3], counts
    assert counts[0] < 40


def test_a_hit_costs_about_as_much_with_80000_counters_as_with_10() -> None:
    def per_hit(storage: MemoryStorage) -> float:
        limiter = RateLimiter(Rate(5, 60), storage)
        best = float("inf")
        for attempt in range(5):
            start = time.perf_counter()
            for i in range(1000):
                limiter.hit("export", f"id:{attempt}-{i}")
            best = min(best, time.perf_counter() - start)
        return best / 1000

    small, large = per_hit(_filled(10)), per_hit(_filled(80_000))
    # it was ~800x (1.7 ms against 2 us) when each hit rebuilt the dict past 10,000 keys
    assert large < 5 * small + 20e-6, (small, large)


def test_no_thread_sweeps_the_counters() -> None:
    # the threads themselves, not their number: another test's idle ledger writer may
    # end meanwhile
    before = set(threading.enumerate())
    storage = _filled(1000)
    RateLimiter(Rate(1, 60), storage).hit("erase", "ip:203.0.113.0/24")
    time.sleep(0.05)
    assert set(threading.enumerate()) - before == set()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(ratelimit, "time", fake)
    return fake


def test_expired_counters_are_dropped(clock: Clock) -> None:
    storage = _filled(5000)
    clock.now += 30
    storage.incr("late", 60)
    assert len(storage) == 5001
    clock.now += 31  # the first 5000 expired, "late" has 29 s to go
    assert storage.incr("later", 60) == 1
    assert len(storage) == 2
    assert storage.get("visitor-1") == 0 and storage.get("late") == 1
    clock.now += 60
    assert storage.get("later") == 0 and len(storage) == 0


def test_a_window_counts_until_it_expires(clock: Clock) -> None:
    storage = MemoryStorage()
    assert [storage.incr("k", 10) for _ in range(3)] == [1, 2, 3]
    assert storage.get_expiry("k") == clock.now + 10
    clock.now += 10
    assert storage.incr("k", 10) == 1  # a new window


def test_a_cleared_key_starts_afresh(clock: Clock) -> None:
    storage = MemoryStorage()
    storage.incr("k", 60)
    storage.clear("k")
    clock.now += 30
    assert storage.incr("k", 60) == 1
    clock.now += 31  # the first window's expiry passes; the new one has 29 s left
    assert storage.get("k") == 1
    assert storage.reset() == 1 and len(storage) == 0 and storage.check()


def test_the_limiter_counts_through_limits(clock: Clock) -> None:
    limiter = RateLimiter(Rate(2, 60), MemoryStorage())
    limiter.hit("export", "id:a", now=clock.now)
    limiter.hit("export", "id:a", now=clock.now)
    limiter.hit("erase", "id:a", now=clock.now)  # another endpoint, its own budget
    with pytest.raises(ConsentRateLimited) as info:
        limiter.hit("export", "id:a", now=clock.now)
    assert 1 <= info.value.retry_after <= 60


@pytest.mark.parametrize(("text", "rate"), [
    ("2 per minute", Rate(2, 60)), ("7/2 hours", Rate(7, 7200)), ("1/month", Rate(1, 2592000)),
])
def test_more_rates_limits_reads(text: str, rate: Rate) -> None:
    assert ratelimit.parse_rate("CONSENTKIT_RATELIMIT", text) == rate


@pytest.mark.parametrize("text", ["1/0 seconds", "5/minute;10/hour", "5/fortnight", ""])
def test_rates_that_are_refused(text: str) -> None:
    with pytest.raises(ConsentConfigError):
        ratelimit.parse_rate("CONSENTKIT_RATELIMIT", text)
