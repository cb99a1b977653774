"""Realistic HTML pages for the gating tests and the benchmark."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def read(name: str) -> bytes:
    """A fixture page from this folder, as bytes."""
    return (HERE / name).read_bytes()


_HEAD = (HERE / "story_head.html").read_text(encoding="utf-8")
#: one chapter; ``{n}`` is its number (braces of the page are doubled)
_CHAPTER = (HERE / "story_chapter.html").read_text(encoding="utf-8")
_EMBED = (HERE / "story_extras.html").read_text(encoding="utf-8")
_TAIL = (HERE / "story_tail.html").read_text(encoding="utf-8")


def realistic_page(size: int = 50_000) -> bytes:
    """A story page of about ``size`` bytes: many scripts, gated and not, trackers, embeds."""
    parts = [_HEAD]
    total = len(_HEAD) + len(_EMBED) + len(_TAIL)
    n = 1
    while total < size:
        chapter = _CHAPTER.format(n=n)
        parts.append(chapter)
        total += len(chapter)
        n += 1
        if n == 4:
            parts.append(_EMBED)
    if n <= 4:
        parts.append(_EMBED)
    parts.append(_TAIL)
    return "".join(parts).encode("utf-8")
