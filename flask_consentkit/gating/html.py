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
  ``data-consentkit-neutralised``, while the tracker's category is not granted;
  so is a known tracking pixel (``<img>``, usually in ``<noscript>``): it loses
  its ``src`` and ``srcset``.

Decisions are asked of a :class:`Gate`, and only for elements that need one,
so a page without gated markup never resolves the visitor's consent.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from re import _constants as _c  # type: ignore[attr-defined]
from re import _parser as _sre_parser  # type: ignore[attr-defined]
from typing import Any, Protocol

from .trackers import TRACKERS, Tracker

__all__ = [
    "Gate", "NoncedDocument", "ScanCache", "ScannedDocument", "Site", "TrackerMatcher", "apply",
    "could_need_gating", "gate_stream", "rewrite", "scan",
]

# -- the tokenizer's pieces (all matched against the lower-cased document) -----

_WS = rb"\t\n\f\r "
#: The attributes of a start tag, exactly as the HTML tokenizer splits them.
_ATTRS = (
    rb"(?:[\t\n\f\r /]++"
    rb"|[^\t\n\f\r />][^\t\n\f\r />=]*+"
    rb"(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+(?:\"[^\"]*+\"|'[^']*+'|[^\t\n\f\r >]*+))?+)*+"
)
#: Elements whose content is not markup, plus the three we gate.
_SPECIAL = rb"script|iframe|img|link|style|textarea|title|xmp|noembed|noframes|plaintext"

#: Everything that needs no attention: text, ordinary tags, end tags, bogus
#: comments, a lone ``<``. Stops at a comment, a special element or an
#: incomplete tag at the end of the input.
_WS_LOOK = rb"(?=[\t\n\f\r />])"
#: Raw-text elements that are complete: start tag, text, end tag.
_RAW_TEXT = b"".join(
    rb"|<" + name + _WS_LOOK + _ATTRS + rb">(?:[^<]++|<(?!/" + name + rb"[\t\n\f\r />]))*+</"
    + name + _WS_LOOK + _ATTRS + rb">"
    for name in (b"style", b"textarea", b"title", b"xmp", b"noembed", b"noframes")
)
_SKIP_BODY = (
    rb"(?:[^<]++"
    rb"|<(?!(?:" + _SPECIAL + rb")[\t\n\f\r />])[a-z][^\t\n\f\r />]*+" + _ATTRS + rb">"
    rb"|</[a-z][^\t\n\f\r />]*+" + _ATTRS + rb">"
    rb"|<!--(?:-?>|(?:[^-]++|-(?!-!?>))*+--!?>)"
    + _RAW_TEXT +
    rb"|<(?:/(?![a-z])|!(?!--)|\?)[^>]*+>"
    rb"|<(?![a-z/!?])"
    rb")*+"
)
#: Everything that needs no attention — text, ordinary tags, end tags, comments,
#: complete raw-text elements, bogus comments, a lone ``<`` — in one go, then
#: what does:
#:
#: - a whole script without ``<!--`` in its text: attributes (1), text (2);
#: - any other special element's start tag: name (3), attributes (4);
#: - a comment that runs to the end of the input (5).
#:
#: None of them matches at the end of the input or before a tag cut off by it.
_WHAT = (
    rb"(?:<script" + _WS_LOOK + rb"(" + _ATTRS + rb")>"
    rb"((?:[^<]++|<(?!/script[\t\n\f\r />]|!--))*+)</script" + _WS_LOOK + _ATTRS + rb">"
    rb"|<(" + _SPECIAL + rb")" + _WS_LOOK + rb"(" + _ATTRS + rb")>"
    rb"|(<!--))"
)
_NEXT = re.compile(_SKIP_BODY + _WHAT + rb"?")
#: :data:`_NEXT` without the walk: what needs attention, right here (same groups)
_HERE = re.compile(_WHAT)

# -- the fast path: jump from one place that may need attention to the next ------
#
# Between two such places a document holds only text, tags and bogus comments,
# and each of those ends at its first ">" that is not inside a quoted attribute
# value. A ">" is inside one only when the nearest '"' (or "'") before it
# opens one, so it follows "=" (and whitespace). When neither does, the data
# state resumes after that ">", and a candidate is outside any tag when no "<"
# that opens one comes between the two. Anything else takes the careful walk.

#: where a special element (one of :data:`_SPECIAL`) or a comment may start; the
#: lookahead lets most "<" fail on one test
_CANDIDATE = re.compile(
    rb"<(?=[sitxnpl!])(?:(?:s(?:cript|tyle)|i(?:frame|mg)|link|t(?:extarea|itle)|xmp"
    rb"|no(?:embed|frames)|plaintext)[\t\n\f\r />]|!--)"
)
#: a "<" that opens a tag, an end tag or a bogus comment
_OPENER = re.compile(rb"<[a-z/!?]")
_COMMENT = re.compile(rb"<!--(?:-?>|(?:[^-]++|-(?!-!?>))*+--!?>)")
_ATTR = re.compile(
    rb"([^\t\n\f\r />][^\t\n\f\r />=]*+)"
    rb"(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+(\"[^\"]*+\"|'[^']*+'|[^\t\n\f\r >]*+))?+"
)
_END_TAG_REST = re.compile(_ATTRS + rb">")
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
#: CSP nonces a page may be matched by with the nonce left out (URL-safe base64)
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,256}")
_IMG_ANY_CASE = re.compile(rb"<(?i:img)")


class Gate(Protocol):
    """What the rewrite asks about one document."""

    def allows(self, category: str) -> bool:
        """True when ``category`` is granted."""

    def placeholder(self, category: str, title: str | None) -> bytes:
        """The markup put in front of a blocked iframe (already encoded).

        A gate may have a ``placeholders_key()`` method: a hashable value (or
        ``None``) such that two gates with equal keys make equal placeholders for
        every category and title; a kept output is then found by it.
        """

    def report(self, key: str, message: str) -> None:
        """Tell the developer about something the markup should fix (once per ``key``).

        A gate may have a ``reports_once`` attribute: an object that keeps each
        key it was told for good (so a later gate with the same one need not be
        told it again).
        """


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
        self.image = [self._prepare(t) for t in self.trackers if t.kind == "image"]
        #: literals of which an image tracker's URL holds one (``()``: match every ``<img``)
        self.image_needles: tuple[bytes, ...] | None = ()
        needles: list[bytes] = []
        for _, _, literals in self.image:
            if not literals:
                self.image_needles = None
                break
            needles.extend(literals)
        else:
            self.image_needles = tuple(needles)
        self._kinds = {"script": self.script, "iframe": self.iframe, "image": self.image}
        #: per kind, one pattern that finds any tracker's literal (``None``: some
        #: tracker has none, so every text is tried)
        self._any = {kind: _any_literal(entries) for kind, entries in self._kinds.items()}
        self._caches: dict[str, dict[bytes, Tracker | None]] = {k: {} for k in self._kinds}

    @staticmethod
    def _prepare(tracker: Tracker) -> tuple[Tracker, re.Pattern[bytes], tuple[bytes, ...]]:
        source = tracker.pattern.pattern.encode("ascii")
        needles = required_literals(tracker.pattern.pattern)
        lowered = tuple(n.lower().encode("ascii") for n in needles) if needles else ()
        # matched against lower-cased text: always case-insensitive
        flags = (tracker.pattern.flags & ~re.UNICODE) | re.IGNORECASE
        return tracker, re.compile(source, flags), lowered

    def _find(self, kind: str, low: bytes) -> Tracker | None:
        """The first tracker of ``kind`` in ``low`` (lower-cased text; patterns ignore case)."""
        cache = self._caches[kind]
        found = cache.get(low, _MISS)
        if found is not _MISS:
            return found  # type: ignore[return-value]
        found = None
        prefilter = self._any[kind]
        entries = self._kinds[kind] if prefilter is None or prefilter.search(low) else ()
        for tracker, pattern, needles in entries:
            if needles:
                for needle in needles:
                    if needle in low:
                        break
                else:
                    continue
            if pattern.search(low) is not None:
                found = tracker
                break
        if len(low) <= self.cache_limit:
            if len(cache) >= self.cache_size:
                cache.clear()
            cache[low] = found
        return found

    def script_in_lower(self, low: bytes) -> Tracker | None:
        """:meth:`find_script` for text that is lower-cased already."""
        return self._find("script", low)

    def find_script(self, text: bytes, low: bytes | None = None) -> Tracker | None:
        """The tracker whose snippet or URL is in ``text`` (a script's src or its text)."""
        return self._find("script", text.lower() if low is None else low)

    def find_iframe(self, url: bytes) -> Tracker | None:
        """The tracker whose embed ``url`` is."""
        return self._find("iframe", url.lower())

    def find_image(self, url: bytes, low: bytes | None = None) -> Tracker | None:
        """The tracker whose pixel ``url`` is."""
        return self._find("image", url.lower() if low is None else low)

    def may_be_pixel(self, tag: bytes) -> bool:
        """Can the lower-cased ``tag`` (an ``<img`` start tag) be a known tracking pixel?"""
        if not self.image:
            return False
        if self.image_needles is None:
            return True
        return self._find("image", tag) is not None

    def find_resource(self, url: bytes) -> Tracker | None:
        """The tracker whose script, embed or pixel ``url`` is (a ``<link>``'s ``href``)."""
        low = url.lower()
        return self._find("script", low) or self._find("iframe", low) or self._find("image", low)

    def may_be_resource(self, tag: bytes) -> bool:
        """Can the lower-cased ``tag`` (a ``<link`` start tag) fetch a tracker's resource?"""
        return self.find_resource(tag) is not None

    def may_hold_pixels(self, body: bytes) -> bool:
        """Can ``body`` (without scripts or iframes) hold a known tracking pixel?"""
        if not self.image or (b"<img" not in body and _IMG_ANY_CASE.search(body) is None):
            return False
        if self.image_needles is None:
            return True
        low = body.lower()
        return any(needle in low for needle in self.image_needles)


#: Bytes from the rarest to the commonest in the scripts and tags of web pages
#: (measured on minified libraries and story pages); bytes not listed are rarer still.
_BY_RARITY = b"~@%`#^*?zjq+$7986!|4&53k\\wx0[]2y{}bgh1v;)(mpf,dculsinoarte=_-.:/'\"<> "
_RARITY = {byte: rank for rank, byte in enumerate(_BY_RARITY)}


def _rarest(needle: bytes) -> int:
    """Where in ``needle`` its rarest byte is."""
    return min(range(len(needle)), key=lambda i: _RARITY.get(needle[i], -1))


def _any_literal(
    entries: list[tuple[Tracker, re.Pattern[bytes], tuple[bytes, ...]]],
) -> re.Pattern[bytes] | None:
    """A pattern that finds any of the literals of ``entries`` in one search.

    Each literal is looked for at its rarest byte: the pattern's branches start
    with those bytes, so the regular-expression engine skips every position
    that holds none of them, and only checks the rest of a literal (behind and
    ahead) where one does. ``None`` when an entry has no literals: its pattern
    must run on every text.
    """
    if any(not needles for _, _, needles in entries):
        return None
    by_key: dict[int, list[bytes]] = {}
    for _, _, needles in entries:
        for needle in needles:
            at = _rarest(needle)
            # matched after the key byte: what is behind includes it
            before, after = needle[:at + 1], needle[at + 1:]
            branch = ((b"(?<=" + re.escape(before) + b")" if at else b"")
                      + (b"(?=" + re.escape(after) + b")" if after else b""))
            by_key.setdefault(needle[at], []).append(branch)
    if not by_key:
        return re.compile(b"(?!)")
    return re.compile(b"|".join(
        re.escape(bytes([key])) + b"(?:" + b"|".join(branches) + b")"
        for key, branches in sorted(by_key.items())
    ))


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
    # the longest literals, unless they are words that most scripts hold (a literal
    # found in many texts makes its tracker's pattern run on them)
    return min(candidates, key=lambda c: (
        any(n.lower() in _COMMON_WORDS for n in c), -min(len(n) for n in c), len(c)))


#: Words too common in scripts to tell a tracker's snippet by
_COMMON_WORDS = frozenset({
    "config", "create", "document", "event", "function", "init", "load", "push", "script",
    "send", "set", "track", "window",
})


_MISS = object()
_DEFAULT_MATCHER: TrackerMatcher | None = None


def default_matcher() -> TrackerMatcher:
    global _DEFAULT_MATCHER
    if _DEFAULT_MATCHER is None:
        _DEFAULT_MATCHER = TrackerMatcher()
    return _DEFAULT_MATCHER


def could_need_gating(body: bytes, matcher: TrackerMatcher | None = None) -> bool:
    """Cheap check: can ``body`` hold a script, an iframe or a known tracking pixel at all?"""
    if b"<script" in body or b"<iframe" in body or _ANY_CASE.search(body) is not None:
        return True
    return (matcher or default_matcher()).may_hold_pixels(body)


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


@dataclass(frozen=True, slots=True)
class Site:
    """A start tag whose bytes depend on whether ``category`` is granted."""

    #: where the start tag is in the document
    start: int
    end: int
    category: str
    #: the start tag when granted / not granted; ``None`` keeps it as it is
    granted: bytes | None
    denied: bytes | None
    #: put a placeholder (for ``title``) in front of it when not granted
    placeholder: bool = False
    title: str | None = None
    #: ``(key, message)`` for the developer when not granted
    report: tuple[str, str] | None = None


def rewrite(
    body: bytes,
    gate: Gate,
    *,
    matcher: TrackerMatcher | None = None,
    final: bool = True,
    cache: ScanCache | None = None,
    nonce: Callable[[], str | None] | None = None,
) -> tuple[bytes, int]:
    """Gate the scripts and iframes of an HTML document.

    :param body: the document, in an ASCII-compatible encoding (UTF-8, Latin-1 …).
    :param final: ``False`` when more of the document follows (streaming): an
        element that is not complete yet is left for the next call.
    :param cache: remembers the scan of documents seen before.
    :param nonce: gives the request's CSP nonce, asked only when ``body`` was not
        seen before: a page that differs only by its nonce is then not scanned
        again (see :meth:`ScanCache.entry`).
    :return: ``(output, consumed)``: the rewritten bytes of ``body[:consumed]``.
        With ``final=True`` everything is consumed.
    """
    if cache is not None and final:
        return cache.entry(body, matcher, nonce).apply(gate), len(body)
    sites, consumed = scan(body, matcher=matcher, final=final)
    return apply(body, sites, gate, consumed), consumed


def apply(body: bytes, sites: Iterable[Site], gate: Gate, consumed: int | None = None) -> bytes:
    """``body[:consumed]`` with each site's start tag switched by ``gate``'s decision."""
    end = len(body) if consumed is None else consumed
    out: list[bytes] = []
    copied = 0
    for site in sites:
        if gate.allows(site.category):
            new, prefix = site.granted, b""
        else:
            new = site.denied
            if site.report is not None:
                gate.report(*site.report)
            prefix = gate.placeholder(site.category, site.title) if site.placeholder else b""
        if new is None and not prefix:
            continue
        out.append(body[copied:site.start])
        out.append(prefix)
        out.append(body[site.start:site.end] if new is None else new)
        copied = site.end
    if not out:
        return body if end == len(body) else body[:end]
    out.append(body[copied:end])
    return b"".join(out)


class _Output:
    """The output of one document for one set of decisions.

    ``plan`` is the output with a gap (an ``int``, the index of the site) for
    each placeholder; ``finals`` keeps whole outputs by the placeholders that
    filled the gaps, so a request whose placeholders are those of an earlier
    one (same language, page and link) gets the same bytes without a copy.
    """

    __slots__ = ("finals", "keyed", "plan", "reports", "told")

    def __init__(self, plan: tuple[bytes | int, ...], reports: tuple[tuple[str, str], ...]) -> None:
        self.plan = plan
        self.reports = reports
        self.finals: dict[tuple[bytes, ...], bytes] = {}
        #: whole outputs by a gate's ``placeholders_key()`` (see :meth:`Gate.placeholder`)
        self.keyed: dict[Any, bytes] = {}
        #: the ``reports_once`` of a gate that was given every report (see :meth:`apply`)
        self.told: object | None = None


class ScannedDocument:
    """One document in a :class:`ScanCache`: its sites and its outputs per set of decisions.

    An output depends on nothing but the document and the decision for each
    category, except the placeholders, which a :class:`Gate` makes for its own
    request; so what is kept per decision set is the output with a gap for each
    placeholder, plus a few whole outputs keyed by the placeholders that went in.
    """

    __slots__ = ("body", "cache", "categories", "outputs", "scripts", "sites")

    #: output plans kept per document (one per combination of decisions seen)
    max_outputs = 8
    #: whole outputs kept per plan (one per language and link seen)
    max_finals = 4

    def __init__(self, body: bytes, sites: list[Site], cache: ScanCache | None = None) -> None:
        self.body = body
        self.sites = sites
        #: the categories the sites depend on, each once, in order of first use
        self.categories = tuple(dict.fromkeys(site.category for site in sites))
        #: the cache that holds this document and bounds the bytes its outputs take
        self.cache = cache
        #: where the texts of its scripts are (kept for documents with a nonce stand-in)
        self.scripts: list[tuple[int, int]] = []
        #: decisions (per category) -> output
        self.outputs: dict[tuple[bool, ...], _Output] = {}

    def apply(self, gate: Gate) -> bytes:
        """The output for ``gate``: :func:`apply` of the sites, reusing what was made before."""
        if not self.sites:
            return self.body
        decisions = tuple([gate.allows(category) for category in self.categories])
        output = self.outputs.get(decisions)
        if output is None:
            output = self._output(decisions)
            if (len(self.outputs) < self.max_outputs and self.cache is not None
                    and self.cache.charge(sum(len(p) for p in output.plan
                                              if isinstance(p, bytes)))):
                # replaced whole: readers in other threads see the old dict or the new one
                self.outputs = {**self.outputs, decisions: output}
        if output.reports:
            # A gate whose reports are kept once per key by some object (its
            # ``reports_once``) need not be told again what a gate of the same
            # object was told in full.
            once = getattr(gate, "reports_once", None)
            if once is None or output.told is not once:
                for report in output.reports:
                    gate.report(*report)
                output.told = once
        plan = output.plan
        if len(plan) == 1:
            only = plan[0]
            assert isinstance(only, bytes)
            return only
        keyer = getattr(gate, "placeholders_key", None)
        key = keyer() if keyer is not None else None
        if key is not None:
            final = output.keyed.get(key)
            if final is not None:
                return final
        sites = self.sites
        fillers = tuple([
            gate.placeholder(sites[piece].category, sites[piece].title)
            for piece in plan if isinstance(piece, int)
        ])
        final = output.finals.get(fillers)
        if final is None:
            parts = iter(fillers)
            final = b"".join([piece if isinstance(piece, bytes) else next(parts)
                              for piece in plan])
            if (len(output.finals) < self.max_finals and self.cache is not None
                    and self.cache.charge(len(final))):
                output.finals = {**output.finals, fillers: final}
        if key is not None and len(output.keyed) < 4 * self.max_finals:
            output.keyed = {**output.keyed, key: final}  # the bytes are charged above
        return final

    def _output(self, decisions: tuple[bool, ...]) -> _Output:
        allowed_by = dict(zip(self.categories, decisions, strict=True))
        body = self.body
        out: list[bytes | int] = []
        pending: list[bytes] = []  # bytes since the last placeholder gap
        reports: list[tuple[str, str]] = []
        copied = 0
        for index, site in enumerate(self.sites):
            allowed = allowed_by[site.category]
            if not allowed and site.report is not None:
                reports.append(site.report)
            gap = not allowed and site.placeholder
            new = site.granted if allowed else site.denied
            if new is None and not gap:
                continue
            pending.append(body[copied:site.start])
            if gap:
                out.append(b"".join(pending))
                out.append(index)
                pending = []
            pending.append(body[site.start:site.end] if new is None else new)
            copied = site.end
        pending.append(body[copied:])
        out.append(body if copied == 0 else b"".join(pending))
        return _Output(tuple(out), tuple(reports))


class ScanCache:
    """The scans of documents seen before: a page served to many visitors is scanned once.

    A document is found by its length and first and last bytes, then compared
    whole (a hit is exact, and costs a ``memcmp`` rather than hashing the
    document); each keeps its outputs per set of decisions, so the same page
    for a visitor with the same choices is a lookup. Bounded by the number of
    documents and their total size (outputs included); documents larger than
    :attr:`limit` are not kept.
    """

    #: documents kept per (length, first and last bytes): pages that differ
    #: only inside (a nonce per request) share a key
    per_key = 4

    def __init__(self, size: int = 256, total: int = 16 << 20, limit: int = 1 << 20) -> None:
        self.size, self.total, self.limit = size, total, limit
        self._scans: dict[tuple[int, bytes, bytes], list[ScannedDocument]] = {}
        self._count = 0
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _key(body: bytes) -> tuple[int, bytes, bytes]:
        return len(body), body[:48], body[-48:]

    def __len__(self) -> int:
        return self._count

    def __contains__(self, body: object) -> bool:
        return isinstance(body, bytes) and self._find(body, self._key(body)) is not None

    def known(self, body: bytes) -> ScannedDocument | None:
        """The scanned document ``body`` if it was scanned before (no scan, no nonce)."""
        return self._find(body, self._key(body))

    def _find(self, body: bytes, key: tuple[int, bytes, bytes]) -> ScannedDocument | None:
        for doc in self._scans.get(key, ()):
            if doc.body is body or doc.body == body:
                return doc
        return None

    def entry(self, body: bytes, matcher: TrackerMatcher | None = None,
              nonce: Callable[[], str | None] | None = None) -> ScannedDocument | NoncedDocument:
        """The scanned document ``body``, scanned now unless it was before.

        :param nonce: gives the request's CSP nonce. A page that differs from
            one seen before only by its nonce (a new one on every request) is
            not scanned again when every occurrence of the nonce is the value of
            a ``nonce`` attribute outside any script's text: its scan does not
            depend on those bytes (see :class:`NoncedDocument`).
        """
        key = self._key(body)
        found = self._find(body, key)
        if found is not None:
            return found
        if nonce is not None and len(body) <= self.limit:
            nonced = self._nonced(body, nonce(), matcher)
            if nonced is not None:
                return nonced
        return self._scan(body, key, matcher)

    def _nonced(self, body: bytes, nonce: str | None,
                matcher: TrackerMatcher | None) -> NoncedDocument | None:
        if not nonce or _NONCE.fullmatch(nonce) is None:
            return None
        value = nonce.encode("ascii")
        size = len(value)
        found = body.find(value)
        if found < 0 or b"\0" in body:
            return None
        positions = []
        while found >= 0:
            if body[found - 7:found] not in (b'nonce="', b"nonce='"):
                return None
            positions.append(found)
            found = body.find(value, found + size)
        stand_in = b"\0" * size
        canonical = body.replace(value, stand_in)
        key = self._key(canonical)
        doc = self._find(canonical, key) or self._scan(canonical, key, matcher, scripts=True)
        for position in positions:
            for start, end in doc.scripts:
                if start <= position < end:
                    return None  # in a script's text, where trackers are looked for
        return NoncedDocument(doc, stand_in, value)

    def _scan(self, body: bytes, key: tuple[int, bytes, bytes], matcher: TrackerMatcher | None,
              *, scripts: bool = False) -> ScannedDocument:
        spans: list[tuple[int, int]] | None = [] if scripts else None
        sites, _ = scan(body, matcher=matcher, scripts=spans)
        if len(body) > self.limit:
            doc = ScannedDocument(body, sites)
            doc.scripts = spans or []
            return doc
        doc = ScannedDocument(body, sites, self)
        doc.scripts = spans or []
        with self._lock:
            if self._count >= self.size or self._bytes + len(body) > self.total:
                self._scans.clear()
                self._count = self._bytes = 0
            self._bytes += len(body)
            bucket = self._scans.get(key, [])
            if len(bucket) >= self.per_key:
                bucket = bucket[1:]
                self._count -= 1
            self._scans[key] = [*bucket, doc]  # a new list: readers never see it change
            self._count += 1
        return doc

    def charge(self, size: int) -> bool:
        """Account for ``size`` more bytes of kept output; False when they do not fit."""
        with self._lock:
            if self._bytes + size > self.total:
                return False
            self._bytes += size
            return True

    def sites(self, body: bytes, matcher: TrackerMatcher | None = None) -> list[Site]:
        """The sites of ``body`` (see :func:`scan`), scanned now unless it was before."""
        doc = self.entry(body, matcher)
        assert isinstance(doc, ScannedDocument)
        return doc.sites


class NoncedDocument:
    """A document seen before but for its CSP nonce: the kept one with the nonce put back.

    The kept document has each occurrence of the nonce replaced by as many NUL
    bytes (the page holds none of its own). Inside an attribute value the
    tokenizer treats a NUL, a letter, a digit, ``-`` and ``_`` alike; the
    only attributes whose values the scan reads are ``type``, ``src``,
    ``srcset``, ``title`` and the ``data-consent`` ones, never ``nonce``; and
    the only text where trackers are looked for, a script's, holds no
    occurrence. So the sites are those of the real page, and its output is the
    kept document's output with the NULs turned back into the nonce.
    """

    __slots__ = ("base", "nonce", "stand_in")

    def __init__(self, base: ScannedDocument, stand_in: bytes, nonce: bytes) -> None:
        self.base, self.stand_in, self.nonce = base, stand_in, nonce

    def apply(self, gate: Gate) -> bytes:
        return self.base.apply(gate).replace(self.stand_in, self.nonce)


def scan(body: bytes, *, matcher: TrackerMatcher | None = None,
         final: bool = True, scripts: list[tuple[int, int]] | None = None,
         ) -> tuple[list[Site], int]:
    """Find every start tag of ``body`` that depends on consent.

    :param scripts: when given, the span of every script's text is appended to it.
    :return: ``(sites, consumed)``; with ``final=False`` an element cut off at
        the end is not scanned and ``consumed`` is where it starts.
    """
    matcher = matcher or default_matcher()
    find_script = matcher.script_in_lower
    low = body.lower()
    n = len(body)
    sites: list[Site] = []
    pos = 0
    while True:
        m = _jump(low, pos, matcher)
        if m is None:
            if final:
                return sites, n  # nothing from here needs attention (or it is cut off)
            m = _NEXT.match(low, pos)  # the careful walk tells where the cut is
            assert m is not None  # every part of the pattern may be empty
        t1, close = m.span(2)
        if t1 >= 0:  # a whole script
            if scripts is not None:
                scripts.append((t1, close))
            a0, a1 = m.span(1)
            tag_low = low[a0:a1]
            if (b"type" in tag_low or b"data-consent" in tag_low
                    or find_script(low[t1:close]) is not None
                    or (b"src" in tag_low and find_script(tag_low) is not None)):
                site = _script_site(body, low, a0 - 7, a0, a1, t1, close, matcher)
                if site is not None:
                    sites.append(site)
            # else: runnable and unmarked, and no tracker in its text nor anywhere in
            # its tag (so none in its src): the common script, nothing to decide
            pos = m.end()
            continue
        name = m.group(3)
        if name is None:
            # the end of the input, a cut-off tag or a comment that runs to the end
            start = m.start(5) if m.start(5) >= 0 else m.end()
            if start < n and not final:
                return sites, start
            return sites, n
        t0, a0, a1, t1 = m.start(3) - 1, m.start(4), m.end(4), m.end()
        if name == b"script":  # one whose text holds "<!--", or is cut off
            close = _script_end(low, t1)
            after = _end_tag_end(low, close, 6) if close >= 0 else -1
            if after < 0:
                if not final:
                    return sites, t0
                close = n if close < 0 else close
                after = n
            if scripts is not None:
                scripts.append((t1, close))
            site = _script_site(body, low, t0, a0, a1, t1, close, matcher)
            if site is not None:
                sites.append(site)
            pos = after
            continue
        if name == b"img" or name == b"link":  # void elements: the start tag is all
            site_of = _image_site if name == b"img" else _link_site
            site = site_of(body, low, t0, a0, a1, t1, matcher)
            if site is not None:
                sites.append(site)
            pos = t1
            continue
        if name == b"plaintext":
            return sites, n  # the rest of the document is text
        found = _RAW_END[name].search(low, t1)
        after = _end_tag_end(low, found.start(), len(name)) if found is not None else -1
        if after < 0:
            if not final:
                return sites, t0
            after = n
        if name == b"iframe":
            site = _iframe_site(body, low, t0, a0, a1, t1, matcher)
            if site is not None:
                sites.append(site)
        pos = after


def _jump(low: bytes, pos: int, matcher: TrackerMatcher) -> re.Match[bytes] | None:
    """What needs attention next from ``pos`` (in the data state), found without a walk.

    Comments are skipped on the way, and so are images that cannot be tracking
    pixels.

    :return: a match of :data:`_HERE` (or of :data:`_NEXT`, when the fast path
        cannot vouch for the text before it); ``None`` when nothing needs
        attention up to the end, or the next thing is cut off by it.
    """
    gap = pos
    while True:
        candidate = _CANDIDATE.search(low, gap)
        if candidate is None:
            return None
        at = candidate.start()
        kind = low[at + 1]
        if (kind == 105 and low[at + 2] == 109) or kind == 108:  # "<im", "<l": img, link
            # Neither a pixel nor a tracker's resource whatever the state here: no
            # tracker in the tag (its quotes balanced, so the first ">" ends it).
            # Skipped like any other tag.
            end = low.find(b">", at)
            if end > 0:
                tag = low[at:end]
                if (tag.count(b'"') % 2 == 0 and tag.count(b"'") % 2 == 0
                        and not (matcher.may_be_pixel(tag) if kind == 105
                                 else matcher.may_be_resource(tag))):
                    gap = end
                    continue
        elif kind == 33:  # "<!--": a comment (if it is in the data state)
            # One that holds no candidate reads like text to what follows: the checks
            # below hold for the gap with it inside (its end is a ">"; a quote in it
            # at worst sends the gap to the careful walk).
            comment = _COMMENT.match(low, at)
            if comment is not None and _CANDIDATE.search(low, at + 4, comment.end()) is None:
                gap = comment.end()
                continue
        close = low.rfind(b">", pos, at)
        if close >= 0:
            double, single = low.rfind(b'"', pos, close), low.rfind(b"'", pos, close)
            # the common case inline: a quote that follows neither "=" nor whitespace
            if ((double > pos and low[double - 1] not in _EQ_OR_SPACE) or double < 0
                    or not _opens_value(low, pos, double)) and (
                    (single > pos and low[single - 1] not in _EQ_OR_SPACE) or single < 0
                    or not _opens_value(low, pos, single)):
                start = close + 1
            else:
                return _NEXT.match(low, pos)  # that ">" may be inside a quoted value
        else:
            start = pos
        if _OPENER.search(low, start, at) is not None:
            gap = at + 1  # inside a tag: no element starts here
            continue
        if kind == 33:  # "<!--"
            comment = _COMMENT.match(low, at)
            if comment is None:
                return None
            pos = gap = comment.end()
            continue
        return _HERE.match(low, at)


_EQ_OR_SPACE = frozenset(b"=\t\n\f\r ")


def _opens_value(low: bytes, pos: int, quote: int) -> bool:
    """Does the quote at ``quote`` (``-1``: none) follow ``=`` and whitespace after ``pos``?"""
    if quote < 0:
        return False
    before = quote - 1
    while before >= pos and low[before] in b"\t\n\f\r ":
        before -= 1
    return before >= pos and low[before] == 61  # "="


def _script_site(body: bytes, low: bytes, t0: int, a0: int, a1: int, t1: int, close: int,
                 matcher: TrackerMatcher) -> Site | None:
    """The site of the script ``body[t0:t1]`` (attributes ``a0:a1``, text ``t1:close``).

    ``None`` when the script never depends on consent.
    """
    tag_low = low[a0:a1]
    if (b"type" not in tag_low and b"data-consent" not in tag_low
            and matcher.script_in_lower(low[t1:close]) is None
            and (b"src" not in tag_low or matcher.script_in_lower(tag_low) is None)):
        # runnable and unmarked, and no tracker in its text nor anywhere in its tag
        # (so none in its src): the common script, nothing to decide
        return None
    attrs = _attributes(body, low, a0, a1)
    type_attr = attrs.get(b"type")
    type_value = type_attr.value.strip().lower() if type_attr else ""
    runnable = type_value.split(";", 1)[0].strip().encode() in _RUNNABLE_TYPES
    marked = attrs.get(b"data-consent")
    if marked is not None:
        category = marked.value.strip()
        if type_value == "text/plain":
            data_type = attrs.get(b"data-type")
            add = b" type=" + _quote(data_type.value) if data_type and data_type.value else b""
            assert type_attr is not None
            return Site(t0, t1, category, _edit_tag(body, t0, a0, t1, [type_attr], add), None)
        if not runnable:
            return None
        return Site(
            t0, t1, category, None,
            _neutralise_script(body, t0, a0, t1, attrs, type_attr, category, b""),
            report=(f"runnable:{category}",
                    f'a <script data-consent="{category}"> has a runnable type; it was made '
                    'inert until consent. Write type="text/plain" (and data-type="module" '
                    "for modules)."),
        )
    if not runnable:
        return None
    src = attrs.get(b"src")
    if src is not None:
        tracker = matcher.find_script(src.raw or b"")
    else:
        tracker = matcher.script_in_lower(low[t1:close])
    if tracker is None:
        return None
    return Site(
        t0, t1, tracker.category, None,
        _neutralise_script(body, t0, a0, t1, attrs, type_attr, tracker.category,
                           b" data-consentkit-neutralised"),
        report=(f"tracker:{tracker.name}",
                f"an unmarked script of {tracker.name} was neutralised until "
                f'{tracker.category!r} is granted; mark it type="text/plain" '
                f'data-consent="{tracker.category}".'),
    )


def _neutralise_script(body: bytes, t0: int, a0: int, t1: int, attrs: dict[bytes, _Attr],
                       type_attr: _Attr | None, category: str, flag: bytes) -> bytes:
    add = b' type="text/plain"'
    if b"data-consent" not in attrs:
        add += b" data-consent=" + _quote(category)
    add += flag
    if type_attr is not None and type_attr.value.strip() and b"data-type" not in attrs:
        add += b" data-type=" + _quote(type_attr.value.strip())
    remove = [type_attr] if type_attr is not None else []
    return _edit_tag(body, t0, a0, t1, remove, add)


def _neutralised(category: str, name: bytes, url: str) -> bytes:
    """The attributes that mark a tag whose URL attribute ``name`` was moved aside."""
    return (b" data-consent=" + _quote(category) + b" data-consent-" + name + b"="
            + _quote(url) + b" data-consentkit-neutralised")


def _iframe_site(body: bytes, low: bytes, t0: int, a0: int, a1: int, t1: int,
                 matcher: TrackerMatcher) -> Site | None:
    """The site of this iframe, or ``None`` when it never depends on consent."""
    attrs = _attributes(body, low, a0, a1)
    src = attrs.get(b"src")
    marked = attrs.get(b"data-consent")
    title_attr = attrs.get(b"title")
    title = title_attr.value.strip() if title_attr else None
    if marked is not None:
        category = marked.value.strip()
        consent_src = attrs.get(b"data-consent-src")
        granted = None
        if consent_src is not None:
            granted = _edit_tag(body, t0, a0, t1, [src] if src is not None else [],
                                b" src=" + _quote(consent_src.value))
        denied = None
        if src is not None and src.value.strip().lower() not in ("", "about:blank"):
            add = b" data-consent-src=" + _quote(src.value) if consent_src is None else b""
            denied = _edit_tag(body, t0, a0, t1, [src], add)
        return Site(t0, t1, category, granted, denied, placeholder=True, title=title)
    if src is None or not src.raw:
        return None
    tracker = matcher.find_iframe(src.raw)
    if tracker is None:
        return None
    add = _neutralised(tracker.category, b"src", src.value)
    return Site(
        t0, t1, tracker.category, None, _edit_tag(body, t0, a0, t1, [src], add),
        placeholder=True, title=title,
        report=(f"tracker:{tracker.name}",
                f"an unmarked iframe of {tracker.name} was blocked until "
                f"{tracker.category!r} is granted; write it as <iframe "
                f'data-consent="{tracker.category}" data-consent-src="…"> or use '
                "consent_iframe()."),
    )


def _image_site(body: bytes, low: bytes, t0: int, a0: int, a1: int, t1: int,
                matcher: TrackerMatcher) -> Site | None:
    """The site of a known tracking pixel, or ``None`` for any other image."""
    tag_low = low[a0:a1]
    if b"src" not in tag_low or matcher.find_image(body[a0:a1], tag_low) is None:
        return None  # no tracker anywhere in the tag, so none in its src
    attrs = _attributes(body, low, a0, a1)
    src = attrs.get(b"src")
    if src is None or not src.raw or b"data-consent" in attrs:
        return None
    tracker = matcher.find_image(src.raw)
    if tracker is None:
        return None
    remove = [a for a in (src, attrs.get(b"srcset")) if a is not None]
    add = _neutralised(tracker.category, b"src", src.value)
    return Site(
        t0, t1, tracker.category, None, _edit_tag(body, t0, a0, t1, remove, add),
        report=(f"tracker:{tracker.name}",
                f"a tracking pixel of {tracker.name} was blocked until {tracker.category!r} "
                "is granted; load it only when current_consent.allows("
                f"{tracker.category!r})."),
    )


#: ``rel`` values under which a browser fetches a link's ``href`` before (or
#: without) any script asking for it
_FETCHING_RELS = frozenset({"preload", "modulepreload", "prefetch", "prerender", "stylesheet"})


def _link_site(body: bytes, low: bytes, t0: int, a0: int, a1: int, t1: int,
               matcher: TrackerMatcher) -> Site | None:
    """The site of a ``<link>`` that fetches a tracker's resource, or ``None``."""
    attrs = _attributes(body, low, a0, a1)
    href, rel = attrs.get(b"href"), attrs.get(b"rel")
    if (href is None or not href.raw or rel is None or b"data-consent" in attrs
            or _FETCHING_RELS.isdisjoint(rel.value.lower().split())):
        return None
    tracker = matcher.find_resource(href.raw)
    if tracker is None:
        return None
    add = _neutralised(tracker.category, b"href", href.value)
    return Site(
        t0, t1, tracker.category, None, _edit_tag(body, t0, a0, t1, [href], add),
        report=(f"tracker:{tracker.name}:link",
                f"a <link rel={rel.value!r}> fetched a resource of {tracker.name}; its href "
                f"was taken away until {tracker.category!r} is granted. Leave the loading "
                "to the gated script."),
    )


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
