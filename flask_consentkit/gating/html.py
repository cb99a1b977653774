"""Find and switch gated ``<script>`` and ``<iframe>`` tags in an HTML document.

This is a careful scan, not a parse-and-serialise: the document is read the
way a browser's tokenizer reads it (comments, raw-text elements such as
``<style>``, ``<textarea>`` and ``<title>``, quoted attribute values, the
script-data escape states), and only the start tags that must change are
rewritten. Every other byte of the document stays exactly as it was.

The rules, for each element found:

- ``<script type="text/plain" data-consent="CAT">`` becomes runnable when
  ``CAT`` is granted: its ``type`` is replaced by ``data-type`` if given, else
  removed (a classic script). Otherwise it stays inert.
- A script marked ``data-consent="CAT"`` with a runnable type (the author
  forgot ``type="text/plain"``) is made inert while ``CAT`` is not granted.
- ``<iframe data-consent="CAT" data-consent-src="URL">`` gets ``src="URL"``
  when ``CAT`` is granted; otherwise any ``src`` is taken away and a
  placeholder is put in front of it.
- An unmarked runnable script or an iframe whose URL (or inline text) matches
  a known tracker is neutralised into the same inert form, plus
  ``data-consentkit-neutralised``, while the tracker's category is not granted.

Decisions are asked of a :class:`Gate`, and only for elements that need one,
so a page without gated markup never resolves the visitor's consent.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator
from re import _constants as _c  # type: ignore[attr-defined]
from re import _parser as _sre_parser  # type: ignore[attr-defined]
from typing import Any, Protocol

from .trackers import TRACKERS, Tracker

__all__ = ["Gate", "TrackerMatcher", "could_need_gating", "gate_stream", "rewrite"]

# -- the tokenizer's pieces (all matched against the lower-cased document) -----

_WS = rb"\t\n\f\r "
#: The attributes of a start tag, exactly as the HTML tokenizer splits them.
_ATTRS = (
    rb"(?:[\t\n\f\r /]++"
    rb"|[^\t\n\f\r />][^\t\n\f\r />=]*+"
    rb"(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+(?:\"[^\"]*+\"|'[^']*+'|[^\t\n\f\r >]*+))?+)*+"
)
#: Elements whose content is not markup, plus the two we gate.
_SPECIAL = rb"script|iframe|style|textarea|title|xmp|noembed|noframes|plaintext"

#: Everything that needs no attention: text, ordinary tags, end tags, bogus
#: comments, a lone ``<``. Stops at a comment, a special element or an
#: incomplete tag at the end of the input.
_SKIP = re.compile(
    rb"(?:[^<]++"
    rb"|<(?!(?:" + _SPECIAL + rb")[\t\n\f\r />])[a-z][^\t\n\f\r />]*+" + _ATTRS + rb">"
    rb"|</[a-z][^\t\n\f\r />]*+" + _ATTRS + rb">"
    rb"|<(?:/(?![a-z])|!(?!--)|\?)[^>]*+>"
    rb"|<(?![a-z/!?])"
    rb")*+"
)
_SPECIAL_TAG = re.compile(
    rb"<(" + _SPECIAL + rb")(?=[\t\n\f\r />])(" + _ATTRS + rb")>"
)
_ATTR = re.compile(
    rb"([^\t\n\f\r />][^\t\n\f\r />=]*+)"
    rb"(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+(\"[^\"]*+\"|'[^']*+'|[^\t\n\f\r >]*+))?+"
)
_END_TAG_REST = re.compile(_ATTRS + rb">")
_COMMENT_END = re.compile(rb"--!?>")
_SCRIPT_DATA = re.compile(rb"</script(?=[\t\n\f\r />])|<!--")
_SCRIPT_ESCAPED = re.compile(rb"</script(?=[\t\n\f\r />])|<script(?=[\t\n\f\r />])|-->")
_SCRIPT_DOUBLE = re.compile(rb"</script(?=[\t\n\f\r />])|-->")
_RAW_END = {
    name: re.compile(rb"</" + name + rb"(?=[\t\n\f\r />])")
    for name in (b"iframe", b"style", b"textarea", b"title", b"xmp", b"noembed", b"noframes")
}

#: ``type`` values under which a browser runs a script (compared lower-cased,
#: parameters ignored so that we rather gate too much than too little).
_RUNNABLE_TYPES = frozenset({
    b"", b"module", b"application/ecmascript", b"application/javascript",
    b"application/x-ecmascript", b"application/x-javascript", b"text/ecmascript",
    b"text/javascript", b"text/javascript1.0", b"text/javascript1.1", b"text/javascript1.2",
    b"text/javascript1.3", b"text/javascript1.4", b"text/javascript1.5", b"text/jscript",
    b"text/livescript", b"text/x-ecmascript", b"text/x-javascript",
})
_ANY_CASE = re.compile(rb"<(?i:script|iframe)")


class Gate(Protocol):
    """What the rewrite asks about one document."""

    def allows(self, category: str) -> bool:
        """True when ``category`` is granted."""

    def placeholder(self, category: str, title: str | None) -> bytes:
        """The markup put in front of a blocked iframe (already encoded)."""

    def report(self, key: str, message: str) -> None:
        """Tell the developer about something the markup should fix (once per ``key``)."""


class TrackerMatcher:
    """The known trackers, prepared for fast matching on bytes.

    Python's regular expressions are slow on a long alternation, so each
    tracker's pattern only runs when the text contains one of the literal
    strings every match of it must contain (derived from the pattern). Answers
    are remembered for texts up to :attr:`cache_limit` bytes: a template
    renders the same inline scripts on every request.
    """

    cache_size = 2048
    cache_limit = 16384

    def __init__(self, trackers: Iterable[Tracker] = TRACKERS) -> None:
        self.trackers = tuple(trackers)
        self.script = [self._prepare(t) for t in self.trackers if t.kind == "script"]
        self.iframe = [self._prepare(t) for t in self.trackers if t.kind == "iframe"]
        self._cache: dict[tuple[bool, bytes], Tracker | None] = {}

    @staticmethod
    def _prepare(tracker: Tracker) -> tuple[Tracker, re.Pattern[bytes], tuple[bytes, ...]]:
        source = tracker.pattern.pattern.encode("ascii")
        needles = required_literals(tracker.pattern.pattern)
        lowered = tuple(n.lower().encode("ascii") for n in needles) if needles else ()
        return tracker, re.compile(source, tracker.pattern.flags & ~re.UNICODE), lowered

    def _find(self, iframe: bool, text: bytes, low: bytes | None) -> Tracker | None:
        key = (iframe, text)
        small = len(text) <= self.cache_limit
        if small:
            try:
                return self._cache[key]
            except KeyError:
                pass
        if low is None:
            low = text.lower()
        found: Tracker | None = None
        for tracker, pattern, needles in (self.iframe if iframe else self.script):
            if needles:
                for needle in needles:
                    if needle in low:
                        break
                else:
                    continue
            if pattern.search(text) is not None:
                found = tracker
                break
        if small:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[key] = found
        return found

    def find_script(self, text: bytes, low: bytes | None = None) -> Tracker | None:
        """The tracker whose snippet or URL is in ``text`` (a script's src or its text)."""
        return self._find(False, text, low)

    def find_iframe(self, url: bytes) -> Tracker | None:
        """The tracker whose embed ``url`` is."""
        return self._find(True, url, None)


def required_literals(pattern: str) -> list[str] | None:
    """Strings of which every match of ``pattern`` contains at least one.

    ``None`` when no such set can be derived (the pattern then always runs).
    """
    try:
        parsed = _sre_parser.parse(pattern, re.IGNORECASE)
    except Exception:  # noqa: BLE001 - an unexpected shape only costs speed
        return None
    found = _required(list(parsed))
    if not found or min(len(n) for n in found) < 3:
        return None
    return sorted(found)


def _required(items: list[tuple[Any, Any]]) -> set[str] | None:
    candidates: list[set[str]] = []
    run: list[str] = []

    def close() -> None:
        if run:
            candidates.append({"".join(run)})
            run.clear()

    for op, av in items:
        if op is _c.LITERAL:
            run.append(chr(av))
            continue
        if op is _c.AT:
            continue
        close()
        sub: set[str] | None = None
        if op is _c.SUBPATTERN:
            sub = _required(list(av[3]))
        elif op is _c.ATOMIC_GROUP:
            sub = _required(list(av))
        elif op is _c.BRANCH:
            union: set[str] = set()
            for branch in av[1]:
                part = _required(list(branch))
                if part is None:
                    union = set()
                    break
                union |= part
            sub = union or None
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT) and av[0] >= 1:
            sub = _required(list(av[2]))
        if sub:
            candidates.append(sub)
    close()
    if not candidates:
        return None
    return max(candidates, key=lambda c: (min(len(n) for n in c), -len(c)))


_DEFAULT_MATCHER: TrackerMatcher | None = None


def default_matcher() -> TrackerMatcher:
    global _DEFAULT_MATCHER
    if _DEFAULT_MATCHER is None:
        _DEFAULT_MATCHER = TrackerMatcher()
    return _DEFAULT_MATCHER


def could_need_gating(body: bytes) -> bool:
    """Cheap check: can ``body`` contain a script or an iframe at all?"""
    return b"<script" in body or b"<iframe" in body or _ANY_CASE.search(body) is not None


# -- attributes -----------------------------------------------------------------


class _Attr:
    __slots__ = ("end", "raw", "start")

    def __init__(self, start: int, end: int, raw: bytes | None) -> None:
        self.start, self.end, self.raw = start, end, raw

    @property
    def value(self) -> str:
        """The attribute's value, unquoted and with character references decoded."""
        raw = self.raw
        if raw is None:
            return ""
        if raw[:1] in (b'"', b"'"):
            raw = raw[1:-1]
        text = raw.decode("utf-8", "replace")
        return html.unescape(text) if "&" in text else text


def _attributes(body: bytes, low: bytes, start: int, end: int) -> dict[bytes, _Attr]:
    """The attributes in ``body[start:end]``; the first of duplicates wins, as in browsers."""
    attrs: dict[bytes, _Attr] = {}
    for m in _ATTR.finditer(low, start, end):
        name = m.group(1)
        if name not in attrs:
            vstart = m.start(2)
            raw = body[vstart:m.end(2)] if vstart >= 0 else None
            attrs[name] = _Attr(m.start(), m.end(), raw)
    return attrs


def _quote(value: str) -> bytes:
    return b'"' + html.escape(value, quote=True).encode("utf-8") + b'"'


def _edit_tag(body: bytes, tag_start: int, name_end: int, tag_end: int,
              remove: Iterable[_Attr], add: bytes) -> bytes:
    """The start tag with ``remove`` taken out and ``add`` put after the tag name."""
    parts = [body[tag_start:name_end], add]
    pos = name_end
    for attr in sorted(remove, key=lambda a: a.start):
        parts.append(body[pos:attr.start].rstrip(b"\t\n\f\r "))
        pos = attr.end
    parts.append(body[pos:tag_end])
    return b"".join(parts)


# -- the scan ---------------------------------------------------------------------


def _script_end(low: bytes, pos: int) -> int:
    """Where the script's ``</script`` starts (the tokenizer's escape states included), or -1."""
    state = 0  # 0 data, 1 escaped, 2 double escaped
    n = len(low)
    while pos < n:
        if state == 0:
            m = _SCRIPT_DATA.search(low, pos)
            if m is None:
                return -1
            if m.group() == b"<!--":
                state, pos = 1, m.start() + 2  # "<!-->" closes at once: search "-->" from "--"
                continue
            return m.start()
        if state == 1:
            m = _SCRIPT_ESCAPED.search(low, pos)
            if m is None:
                return -1
            token = m.group()
            if token == b"-->":
                state = 0
            elif token.startswith(b"</"):
                return m.start()
            else:
                state = 2
            pos = m.end()
            continue
        m = _SCRIPT_DOUBLE.search(low, pos)
        if m is None:
            return -1
        state = 0 if m.group() == b"-->" else 1
        pos = m.end()
    return -1


def _end_tag_end(low: bytes, pos: int, name_len: int) -> int:
    """End of the end tag that starts at ``pos`` (``</name ...>``), or -1."""
    m = _END_TAG_REST.match(low, pos + 2 + name_len)
    return m.end() if m else -1


def _comment_end(low: bytes, pos: int) -> int:
    if low.startswith(b">", pos + 4):
        return pos + 5
    if low.startswith(b"->", pos + 4):
        return pos + 6
    m = _COMMENT_END.search(low, pos + 4)
    return m.end() if m else -1


def rewrite(
    body: bytes,
    gate: Gate,
    *,
    matcher: TrackerMatcher | None = None,
    final: bool = True,
) -> tuple[bytes, int]:
    """Gate the scripts and iframes of an HTML document.

    :param body: the document, in an ASCII-compatible encoding (UTF-8, Latin-1 …).
    :param final: ``False`` when more of the document follows (streaming): an
        element that is not complete yet is left for the next call.
    :return: ``(output, consumed)``: the rewritten bytes of ``body[:consumed]``.
        With ``final=True`` everything is consumed.
    """
    matcher = matcher or default_matcher()
    low = body.lower()
    n = len(body)
    out: list[bytes] = []
    copied = 0  # body[:copied] is in ``out`` already
    pos = 0
    while True:
        pos = _SKIP.match(low, pos).end()  # type: ignore[union-attr]  # always matches
        if pos >= n:
            break
        if low.startswith(b"<!--", pos):
            end = _comment_end(low, pos)
            if end < 0:  # the comment runs to the end
                if not final:
                    return b"".join([*out, body[copied:pos]]), pos
                pos = n
                break
            pos = end
            continue
        m = _SPECIAL_TAG.match(low, pos)
        if m is None:  # a tag cut off by the end of the input
            if not final:
                return b"".join([*out, body[copied:pos]]), pos
            break
        name = m.group(1)
        tag_end = m.end()
        if name == b"script":
            close = _script_end(low, tag_end)
            if close < 0:
                if not final:
                    return b"".join([*out, body[copied:pos]]), pos
                close = n
                after = n
            else:
                after = _end_tag_end(low, close, 6)
                if after < 0:
                    if not final:
                        return b"".join([*out, body[copied:pos]]), pos
                    after = n
            new = _gate_script(body, low, m, body[tag_end:close], gate, matcher)
            if new is not None:
                out.append(body[copied:pos])
                out.append(new)
                copied = tag_end
            pos = after
            continue
        if name == b"plaintext":
            break  # the rest of the document is text
        close_re = _RAW_END[name]
        found = close_re.search(low, tag_end)
        if found is None:
            if not final:
                return b"".join([*out, body[copied:pos]]), pos
            after = n
        else:
            after = _end_tag_end(low, found.start(), len(name))
            if after < 0:
                if not final:
                    return b"".join([*out, body[copied:pos]]), pos
                after = n
        if name == b"iframe":
            new = _gate_iframe(body, low, m, gate, matcher)
            if new is not None:
                out.append(body[copied:pos])
                out.append(new)
                copied = tag_end
        pos = after
    if not out:
        return body, n
    out.append(body[copied:])
    return b"".join(out), n


def _gate_script(body: bytes, low: bytes, m: re.Match[bytes], text: bytes,
                 gate: Gate, matcher: TrackerMatcher) -> bytes | None:
    """The new start tag of this script, or ``None`` to leave it as it is."""
    tag_low = low[m.start(2):m.end(2)]
    if b"type" not in tag_low and b"data-consent" not in tag_low and b"src" not in tag_low:
        # the common inline script: runnable, unmarked; only its text matters
        tracker = matcher.find_script(text, low[m.end():m.end() + len(text)])
        if tracker is None or gate.allows(tracker.category):
            return None
    attrs = _attributes(body, low, m.start(2), m.end(2))
    type_attr = attrs.get(b"type")
    type_value = type_attr.value.strip().lower() if type_attr else ""
    runnable = type_value.split(";", 1)[0].strip().encode() in _RUNNABLE_TYPES
    name_end = m.start(2)
    marked = attrs.get(b"data-consent")
    if marked is not None:
        category = marked.value.strip()
        if type_value == "text/plain":
            if not gate.allows(category):
                return None
            data_type = attrs.get(b"data-type")
            add = b" type=" + _quote(data_type.value) if data_type and data_type.value else b""
            assert type_attr is not None
            return _edit_tag(body, m.start(), name_end, m.end(), [type_attr], add)
        if not runnable or gate.allows(category):
            return None
        gate.report(
            f"runnable:{category}",
            f'a <script data-consent="{category}"> has a runnable type; it was made inert '
            'until consent. Write type="text/plain" (and data-type="module" for modules).',
        )
        return _neutralise_script(body, m, attrs, type_attr, category, b"")
    if not runnable:
        return None
    src = attrs.get(b"src")
    subject = (src.raw or b"") if src is not None else text
    tracker = matcher.find_script(subject, low[m.end():m.end() + len(text)] if src is None
                                  else None)
    if tracker is None or gate.allows(tracker.category):
        return None
    gate.report(
        f"tracker:{tracker.name}",
        f"an unmarked script of {tracker.name} was neutralised until "
        f'{tracker.category!r} is granted; mark it type="text/plain" '
        f'data-consent="{tracker.category}".',
    )
    return _neutralise_script(body, m, attrs, type_attr, tracker.category,
                              b" data-consentkit-neutralised")


def _neutralise_script(body: bytes, m: re.Match[bytes], attrs: dict[bytes, _Attr],
                       type_attr: _Attr | None, category: str, flag: bytes) -> bytes:
    add = b' type="text/plain"'
    if b"data-consent" not in attrs:
        add += b" data-consent=" + _quote(category)
    add += flag
    if type_attr is not None and type_attr.value.strip() and b"data-type" not in attrs:
        add += b" data-type=" + _quote(type_attr.value.strip())
    remove = [type_attr] if type_attr is not None else []
    return _edit_tag(body, m.start(), m.start(2), m.end(), remove, add)


def _gate_iframe(body: bytes, low: bytes, m: re.Match[bytes], gate: Gate,
                 matcher: TrackerMatcher) -> bytes | None:
    """The placeholder and new start tag of this iframe, or ``None`` to leave it."""
    attrs = _attributes(body, low, m.start(2), m.end(2))
    src = attrs.get(b"src")
    marked = attrs.get(b"data-consent")
    title_attr = attrs.get(b"title")
    title = title_attr.value.strip() if title_attr else None
    name_end = m.start(2)
    if marked is not None:
        category = marked.value.strip()
        consent_src = attrs.get(b"data-consent-src")
        if gate.allows(category):
            if consent_src is None:
                return None
            remove = [src] if src is not None else []
            return _edit_tag(body, m.start(), name_end, m.end(), remove,
                             b" src=" + _quote(consent_src.value))
        add = b""
        remove = []
        if src is not None:
            if src.value.strip().lower() in ("", "about:blank"):
                return gate.placeholder(category, title) + body[m.start():m.end()]
            remove.append(src)
            if consent_src is None:
                add = b" data-consent-src=" + _quote(src.value)
        return gate.placeholder(category, title) + _edit_tag(
            body, m.start(), name_end, m.end(), remove, add)
    if src is None or not src.raw:
        return None
    tracker = matcher.find_iframe(src.raw)
    if tracker is None or gate.allows(tracker.category):
        return None
    gate.report(
        f"tracker:{tracker.name}",
        f"an unmarked iframe of {tracker.name} was blocked until {tracker.category!r} is "
        f'granted; write it as <iframe data-consent="{tracker.category}" '
        'data-consent-src="…"> or use consent_iframe().',
    )
    add = (b" data-consent=" + _quote(tracker.category) + b" data-consent-src="
           + _quote(src.value) + b" data-consentkit-neutralised")
    return gate.placeholder(tracker.category, title) + _edit_tag(
        body, m.start(), name_end, m.end(), [src], add)


def gate_stream(chunks: Iterable[bytes | str], gate: Gate, *, encoding: str = "utf-8",
                matcher: TrackerMatcher | None = None) -> Iterator[bytes]:
    """Gate an HTML document that is produced in pieces.

    Each piece is rewritten as soon as it is complete; an element cut by a
    chunk boundary waits for the next chunk. Used by
    :func:`flask_consentkit.gating.gated_stream` for streamed responses.
    """
    pending = b""
    for chunk in chunks:
        data = chunk.encode(encoding) if isinstance(chunk, str) else chunk
        if not data:
            continue
        buffer = pending + data
        # Never scan into the last "<": it may open an element the next chunk completes.
        cut = buffer.rfind(b"<")
        if cut < 0:
            out, consumed = buffer, len(buffer)
        elif cut == 0:
            out, consumed = b"", 0
        else:
            out, consumed = rewrite(buffer[:cut], gate, matcher=matcher, final=False)
        pending = buffer[consumed:]
        if out:
            yield out
    if pending:
        yield rewrite(pending, gate, matcher=matcher)[0]
