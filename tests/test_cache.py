"""The one cache primitive of the response path: bounded by entries and by bytes."""

from __future__ import annotations

import threading

from flask_consentkit.cache import Kept


def test_a_value_is_kept_under_its_key_and_replaced_by_a_new_one() -> None:
    kept: Kept[str, bytes] = Kept("t", 4, 100)
    assert kept.get("a") is None
    assert kept.put("a", b"x" * 10, 10)
    assert kept.get("a") == b"x" * 10 and "a" in kept
    assert kept.put("a", b"y" * 30, 30)  # charged anew, not twice
    assert kept.get("a") == b"y" * 30 and kept.bytes == 30 and len(kept) == 1


def test_the_oldest_go_first_when_the_entries_are_full() -> None:
    kept: Kept[int, int] = Kept("t", 3, 1000)
    for key in range(5):
        kept.put(key, key, 1)
    assert [k for k in range(5) if k in kept] == [2, 3, 4]
    assert len(kept) == 3 and kept.bytes == 3


def test_the_bytes_charged_never_pass_the_budget() -> None:
    kept: Kept[int, bytes] = Kept("t", 100, 100)
    for key in range(50):
        assert kept.put(key, b"z" * 30, 30)
        assert kept.bytes <= 100
    assert len(kept) == 3  # 3 × 30 fit; the fourth pushes the oldest out
    assert not kept.put(99, b"z" * 101, 101)  # larger than the whole budget: not kept
    assert 99 not in kept and kept.bytes == 90


def test_clear_empties_it_and_its_account() -> None:
    kept: Kept[int, int] = Kept("t", 10, 10)
    kept.put(1, 1, 5)
    kept.clear()
    assert len(kept) == 0 and kept.bytes == 0 and kept.get(1) is None
    assert "0/10 entries" in repr(kept)


def test_readers_and_writers_in_threads_see_whole_values_and_a_true_account() -> None:
    kept: Kept[int, tuple[int, bytes]] = Kept("t", 64, 64 * 40)
    errors: list[str] = []

    def write(base: int) -> None:
        for i in range(2000):
            key = (base * 7 + i) % 200
            kept.put(key, (key, bytes([key % 256]) * 40), 40)

    def read() -> None:
        for i in range(20000):
            found = kept.get(i % 200)
            if found is not None and (found[1] != bytes([found[0] % 256]) * 40
                                      or found[0] != i % 200):
                errors.append(f"key {i % 200} holds {found[0]}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert kept.bytes == 40 * len(kept) <= 64 * 40
