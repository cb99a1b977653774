"""The HTML tokenizer, on bytes: tags, attributes, comments, raw text, foreign content.

What the rewrite (:mod:`.html`) and ``flask consent scan`` read a document
with, the way Chromium's tokenizer and tree builder split it: the patterns of
names, attribute values, start and end tags and comments (all matched against
the lower-cased document), the end of a script's text (with its escape
states) and of raw text, the attributes of a tag (character references decoded
as in a value), what the tree builder needs of foreign content (namespaces,
breakout tags, integration points, the "special" elements), and the walk over
a document that keeps the stack of open elements where it matters
(:class:`TagReader`; :func:`read_tags` lists every tag). It knows nothing of
what an element fetches (that is :mod:`.rules`).

Each pattern is written so that a match is made in one pass: possessive
repeats, and alternatives that cannot both match at one place. An attribute
value that opens a quote must close it (else the tag runs to the end of the
input, as in the browser), and a name followed by "=" must have a value.
"""

from __future__ import annotations

import html
import re
from html.entities import html5 as _ENTITIES

# -- the patterns of tokens ------------------------------------------------------------

#: an attribute's name, and its value (quoted or not)
NAME = rb"[^\t\n\f\r />][^\t\n\f\r />=]*+"
VALUE = rb"(?:\"[^\"]*+\"|'[^']*+'|[^\t\n\f\r >\"'][^\t\n\f\r >]*+|(?=>))"
EQ = rb"[\t\n\f\r ]*+=[\t\n\f\r ]*+"
NO_EQ = rb"(?![\t\n\f\r ]*+=)"
ANY_ATTR = NAME + rb"(?:" + EQ + VALUE + rb"|" + NO_EQ + rb")"
#: The attributes of a tag, exactly as the HTML tokenizer splits them.
ATTRS = rb"(?:[\t\n\f\r /]++|" + ANY_ATTR + rb")*+"
#: after a tag name or an attribute name
END_OF_NAME = rb"(?=[\t\n\f\r />])"
END_OF_ATTR_NAME = rb"(?=[\t\n\f\r /=>])"


#: a comment (``<!-->`` and ``<!--->`` included), and a tag's name
COMMENT = rb"<!--(?:-?>|(?:[^-]++|-(?!-!?>))*+--!?>)"
TAG_NAME = rb"[a-z][^\t\n\f\r />]*+"


#: a "<" that opens a tag, an end tag or a bogus comment
OPENER = re.compile(rb"<[a-z/!?]")
COMMENT_RE = re.compile(COMMENT)
EQ_OR_SPACE = frozenset(b"=\t\n\f\r ")


# -- the tree builder's elements ---------------------------------------------------------

#: HTML elements that are void: no end tag, nothing pushed
VOID = frozenset({b"area", b"base", b"basefont", b"bgsound", b"br", b"col", b"embed",
                   b"frame", b"hr", b"img", b"image", b"input", b"keygen", b"link", b"meta",
                   b"param", b"source", b"track", b"wbr"})


#: The start tags that end foreign content (the HTML spec's list; ``font`` with
#: ``color``, ``face`` or ``size`` too).
BREAKOUT = frozenset(
    b"b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr i "
    b"img li listing menu meta nobr ol p pre ruby s small span strong strike sub sup table tt "
    b"u ul var".split())
BREAKOUT_NAMES = b"|".join(sorted(BREAKOUT | {b"font"}))


#: the careful walk over ordinary markup: every token, read exactly
WALK = re.compile(
    rb"(?:[^<]++"
    rb"|</?" + TAG_NAME + ATTRS + rb">"
    rb"|" + COMMENT +
    rb"|<(?:/(?![a-z])|!(?!--)|\?)[^>]*+>"
    rb"|<(?![a-z/!?])"
    rb")*+"
)
START_TAG = re.compile(rb"<(" + TAG_NAME + rb")(" + ATTRS + rb")>")
#: :data:`START_TAG` for the common tag, in fewer steps: every "=" follows an
#: attribute's name and is followed by a quote (so each quote opens or closes a
#: value, as in the tokenizer). Where it does not match, :data:`START_TAG` reads
#: the tag; where it does, the two agree.
PLAIN_TAG = re.compile(
    rb"<(" + TAG_NAME + rb")((?:[^\"'>=]++|(?<=[^\t\n\f\r /\"'=])=(?:\"[^\"]*+\"|'[^']*+'))*+)>")


END_TAG = re.compile(rb"</(" + TAG_NAME + rb")" + ATTRS + rb">")
END_TAG_REST = re.compile(ATTRS + rb">")
ATTR = re.compile(rb"(" + NAME + rb")(?:" + EQ + rb"(" + VALUE + rb")|" + NO_EQ + rb")")
#: the text of a script up to its end tag, when it holds no "<!--" (the common case)
SCRIPT_TEXT = re.compile(
    rb"((?:[^<]++|<(?!/script[\t\n\f\r />]|!--))*+)</script(?=[\t\n\f\r />])" + ATTRS + rb">")


SCRIPT_DATA = re.compile(rb"</script(?=[\t\n\f\r />])|<!--")
SCRIPT_ESCAPED = re.compile(rb"</script(?=[\t\n\f\r />])|<script(?=[\t\n\f\r />])|-->")
SCRIPT_DOUBLE = re.compile(rb"</script(?=[\t\n\f\r />])|-->")
#: the elements whose content is raw text or RCDATA in HTML content
RAW_TEXT = (b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes",
             b"noscript")
RAW_END = {name: re.compile(rb"</" + name + rb"(?=[\t\n\f\r />])") for name in RAW_TEXT}


#: namespaces of the elements on the stack of foreign content
HTML_NS, SVG_NS, MATH_NS = 0, 1, 2
#: kinds of integration point: HTML (start tags and text are HTML) and MathML text
HTML_POINT, TEXT_POINT = 1, 2
#: HTML elements in the "special" category: an end tag does not look past one
SPECIAL = frozenset(
    b"address applet area article aside base basefont bgsound blockquote body br button "
    b"caption center col colgroup dd details dir div dl dt embed fieldset figcaption figure "
    b"footer form frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr html iframe img "
    b"input keygen li link listing main marquee menu meta nav noembed noframes noscript "
    b"object ol p param plaintext pre script search section select source style summary "
    b"table tbody td template textarea tfoot th thead title tr track ul wbr xmp".split())


# -- attributes and text ---------------------------------------------------------------

_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")


def _attribute_reference(m: re.Match[str]) -> str:
    """One character reference in an attribute value, decoded as a browser does.

    As :func:`html.unescape`, except that a named reference without ``;``
    followed by ``=`` or a letter or digit stays as it is (``?a=1&copy=2``).
    """
    ref = m.group(1)
    if ref[0] == "#":
        return html.unescape(m.group())
    if ref in _ENTITIES:
        if ref[-1] != ";":
            after = m.string[m.end():m.end() + 1]
            if after == "=" or (after.isascii() and after.isalnum()):
                return m.group()
        return _ENTITIES[ref]
    for x in range(len(ref) - 1, 1, -1):
        if ref[:x] in _ENTITIES:
            after = ref[x]
            if after == "=" or (after.isascii() and after.isalnum()):
                return "&" + ref
            return _ENTITIES[ref[:x]] + ref[x:]
    return "&" + ref


def unescape_attribute(text: str) -> str:
    """An attribute value with its character references decoded (HTML's rules)."""
    return _CHARREF.sub(_attribute_reference, text) if "&" in text else text


class Attr:
    """An attribute of a tag: where it is, and its value as written (``None``: none)."""

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
        return unescape_attribute(raw.decode("utf-8", "replace"))


def attributes(body: bytes, low: bytes, start: int, end: int) -> dict[bytes, Attr]:
    """The attributes in ``body[start:end]``; the first of duplicates wins, as in browsers."""
    attrs: dict[bytes, Attr] = {}
    # not bounded by ``end``: a value written ``a=`` before the ">" needs to see it
    for m in ATTR.finditer(low, start):
        if m.start() >= end:
            break
        name = m.group(1)
        if name not in attrs:
            vstart = m.start(2)
            raw = body[vstart:m.end(2)] if vstart >= 0 else None
            attrs[name] = Attr(m.start(), m.end(), raw)
    return attrs


def self_closing(low: bytes, a0: int, a1: int) -> bool:
    """Does the tag whose attributes are ``low[a0:a1]`` end with ``/>`` (not a value's "/")?"""
    if a1 <= a0 or low[a1 - 1] != 47:
        return False
    last = -1
    for m in ATTR.finditer(low, a0):
        if m.start() >= a1:
            break
        last = m.end()
    return last < a1


def script_end(low: bytes, pos: int) -> int:
    """Where the script's ``</script`` starts (the tokenizer's escape states included), or -1."""
    state = 0  # 0 data, 1 escaped, 2 double escaped
    n = len(low)
    while pos < n:
        if state == 0:
            m = SCRIPT_DATA.search(low, pos)
            if m is None:
                return -1
            if m.group() == b"<!--":
                state, pos = 1, m.start() + 2  # "<!-->" closes at once: search "-->" from "--"
                continue
            return m.start()
        if state == 1:
            m = SCRIPT_ESCAPED.search(low, pos)
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
        m = SCRIPT_DOUBLE.search(low, pos)
        if m is None:
            return -1
        state = 0 if m.group() == b"-->" else 1
        pos = m.end()
    return -1


def end_tag_end(low: bytes, pos: int, name_len: int) -> int:
    """End of the end tag that starts at ``pos`` (``</name ...>``), or -1."""
    m = END_TAG_REST.match(low, pos + 2 + name_len)
    return m.end() if m else -1


class Frame:
    """An element on the stack of foreign content (or HTML inside it)."""

    __slots__ = ("a0", "a1", "content", "name", "ns", "point", "start")

    def __init__(self, name: bytes, ns: int, point: int, start: int, content: int,
                 a0: int = 0, a1: int = 0) -> None:
        self.name, self.ns, self.point = name, ns, point
        #: where its start tag starts and ends; where its attributes are
        self.start, self.content, self.a0, self.a1 = start, content, a0, a1


#: MathML text integration points; the elements that stay MathML in them
MATH_TEXT = frozenset({b"mi", b"mo", b"mn", b"ms", b"mtext"})
MGLYPH = frozenset({b"mglyph", b"malignmark"})
#: SVG's HTML integration points; ``<font>`` with these attributes breaks out
SVG_POINTS = frozenset({b"foreignobject", b"desc", b"title"})
#: end tags that close no element open outside foreign content (``_html_end``)
NEVER_OUTSIDE = frozenset({b"body", b"html", b"br", b"svg", b"math"})
FONT_BREAKS = (b"color", b"face", b"size")
_counters: dict[bytes, re.Pattern[bytes]] = {}


def tag_counter(name: bytes) -> re.Pattern[bytes]:
    """A pattern for the start and end tags of ``name`` (group 1: "/" for an end tag)."""
    pattern = _counters.get(name)
    if pattern is None:
        if len(_counters) >= 512:
            _counters.clear()
        pattern = _counters[name] = re.compile(
            rb"<(/?)" + re.escape(name) + rb"(?=[\t\n\f\r />])")
    return pattern


def may_open(low: bytes, pos: int, end: int, quote: bytes) -> bool:
    """May the last ``quote`` in ``low[pos:end]`` open an attribute value (follow "=")?"""
    at = low.rfind(quote, pos, end)
    if at <= pos:
        return at == pos
    before = at - 1
    if low[before] not in EQ_OR_SPACE:  # the common case: it closes one
        return False
    while before >= pos and low[before] in b"\t\n\f\r ":
        before -= 1
    return before < pos or low[before] == 61  # "=" (or it follows the last known place)


# -- the walk ----------------------------------------------------------------------------

#: Elements that change how what follows is read: raw text, script data, foreign content.
STATE_ELEMENTS = (b"script", b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed",
                  b"noframes", b"noscript", b"plaintext", b"svg", b"math")
#: start tags the tree builder reads as another element in HTML content
RENAMED = {b"image": b"img"}
#: the elements foreign content starts with
FOREIGN_ROOTS = (b"svg", b"math")


#: text, comments, bogus comments and doctypes: what is passed over to read every tag
TEXT = re.compile(
    rb"(?:[^<]++"
    rb"|" + COMMENT +
    rb"|<(?:/(?![a-z])|!(?!--|\[)|\?)[^>]*+>"
    rb"|<(?![a-z/!?])"
    rb")*+"
)


class Document:
    """The document being read: its bytes, lower-cased, and whether it is whole."""

    __slots__ = ("body", "final", "low", "n")

    def __init__(self, body: bytes, final: bool = True) -> None:
        self.body, self.low, self.n, self.final = body, body.lower(), len(body), final


class TagReader:
    """Reads the start tags of a document as the browser's tokenizer and tree builder do.

    In HTML content the elements need not be tracked: only the state of the
    tokenizer matters there (raw text, script data, ``<plaintext>``). Inside
    foreign content (and in HTML inside it) the stack of open elements is kept,
    with breakouts, integration points and the end tags' rules. What a tag means
    is left to a subclass, told through the hooks below (the ``_``-methods that
    do nothing here), which also gives what is passed over between tags: the
    ``skip_*`` patterns match from one place to the next that must be read, and
    each must stop at every start tag the subclass needs to be told of.
    """

    __slots__ = ("barriers", "counts", "ctx", "cut", "foreign_named", "frames", "html_at",
                 "html_named", "points", "scripting")

    #: pass over text and comments in HTML content with :attr:`skip_html` rather than
    #: :meth:`_jump`
    careful = True
    #: what is passed over in HTML content, in foreign content, and in HTML content
    #: whose elements are tracked (inside an integration point, or ``<noscript>``
    #: read with scripting off): text, comments, bogus comments, and any tag the
    #: subclass need not be told of (and, in HTML content, end tags)
    skip_html: re.Pattern[bytes] = TEXT
    skip_foreign: re.Pattern[bytes] = TEXT
    skip_inner: re.Pattern[bytes] = TEXT
    #: Which hooks are called at all (each call costs, in foreign content most): the
    #: foreign start tags :meth:`_start_tag` is told of (``None``: all; else those of
    #: these names, or with :attr:`told_if` among their attributes' bytes), the
    #: elements :meth:`_closed` is told of (``None``: all), and whether
    #: :meth:`_end_tag` is.
    told_foreign: frozenset[bytes] | None = None
    told_if: bytes = b"\0"
    told_closed: frozenset[bytes] | None = None
    told_end_tags = True

    def __init__(self, ctx: Document, scripting: bool, frames: list[Frame]) -> None:
        self.ctx = ctx
        #: read as a browser with scripting on (``<noscript>`` is raw text) or off
        self.scripting = scripting
        #: the stack of foreign content and of the HTML elements inside it; empty in
        #: plain HTML content (whose elements need not be tracked)
        self.frames: list[Frame] = []
        #: where on the stack the HTML elements are, the integration points, and what
        #: an end tag processed by the HTML rules does not look past (special elements,
        #: integration points); the elements of each name: so no end tag walks the stack
        self.html_at: list[int] = []
        self.points: list[int] = []
        self.barriers: list[int] = []
        self.html_named: dict[bytes, list[int]] = {}
        self.foreign_named: dict[bytes, list[int]] = {}
        for frame in frames:
            self._push(frame)
        #: where the first construct cut off by the end of the input starts (or -1)
        self.cut = -1
        #: per tag name: [up to where counted, start tags less end tags] (see _ancestor_open)
        self.counts: dict[bytes, list[int]] = {}

    # -- what a subclass is told (here: nothing is done)

    def _start_tag(self, name: bytes, ns: int, t0: int, a0: int, a1: int, t1: int) -> None:
        """A start tag ``body[t0:t1]`` (attributes ``a0:a1``) of an element in ``ns``; not a
        script or raw-text element of HTML content (see :meth:`_script_text`,
        :meth:`_raw_text`)."""

    def _script_text(self, t0: int, a0: int, a1: int, t1: int, close: int) -> None:
        """A script of HTML content; its text is ``body[t1:close]``."""

    def _raw_text(self, name: bytes, t0: int, a0: int, a1: int, t1: int, close: int,
                  after: int) -> None:
        """A raw-text (or RCDATA) element of HTML content, its text ``body[t1:close]``;
        ``after`` is the end of its end tag (-1: none, it runs to the end)."""

    def _end_tag(self, name: bytes, t0: int, t1: int) -> None:
        """An end tag read (in HTML content, only those :attr:`skip_html` stops at)."""

    def _closed(self, frame: Frame, at: int) -> None:
        """An element on the stack closes at ``at`` (its content is ``body[frame.content:at]``)."""

    def _jump(self, pos: int) -> int:
        """Where the next thing to read is, from ``pos`` in HTML content (a subclass may
        pass over more than :attr:`skip_html` does)."""
        return self.skip_html.match(self.ctx.low, pos).end()  # type: ignore[union-attr]

    def _noscript(self, t0: int, a0: int, a1: int, t1: int) -> int:
        """``<noscript>`` read with scripting on: raw text."""
        self._start_tag(b"noscript", HTML_NS, t0, a0, a1, t1)
        found = RAW_END[b"noscript"].search(self.ctx.low, t1)
        after = end_tag_end(self.ctx.low, found.start(), 8) if found is not None else -1
        if after < 0:
            self._eof(t0)
            return -1
        return after

    # -- the walk

    def run(self, pos: int, stop: int = -1) -> int:
        """Read from ``pos``; return where it ended (``len(body)``, or after the end tag
        that left ``stop`` elements on the stack)."""
        ctx = self.ctx
        low, n = ctx.low, ctx.n
        frames = self.frames
        skip_html, skip_foreign, skip_inner = self.skip_html, self.skip_foreign, self.skip_inner
        careful = self.careful
        while True:
            if not frames:
                if careful:
                    pos = skip_html.match(low, pos).end()  # type: ignore[union-attr]
                else:
                    pos = self._jump(pos)
            else:
                top = frames[-1]
                skip = skip_foreign if top.ns and not top.point else skip_inner
                pos = skip.match(low, pos).end()  # type: ignore[union-attr]
            if pos >= n:
                return self._eof(n)
            kind = low[pos + 1] if pos + 1 < n else 0
            if kind == 47:  # "</"
                m = END_TAG.match(low, pos)
                if m is None:
                    return self._eof(pos)
                pos = m.end()
                if self.told_end_tags:
                    self._end_tag(m.group(1), m.start(), pos)
                if frames:
                    self._end(m.group(1), m.start())
                    if len(frames) <= stop:
                        return pos
            elif 97 <= kind <= 122:  # a start tag
                m = PLAIN_TAG.match(low, pos) or START_TAG.match(low, pos)
                if m is None:
                    return self._eof(pos)
                pos = self._start(m)
                if pos < 0:
                    return n
            elif kind == 33:  # "<!"
                if low.startswith(b"<!--", pos):
                    return self._eof(pos)  # a comment that runs to the end
                if (frames and frames[-1].ns and low.startswith(b"<![", pos)
                        and ctx.body.startswith(b"<![CDATA[", pos)):
                    end = low.find(b"]]>", pos + 9)
                    if end < 0:
                        return self._eof(pos)
                    pos = end + 3
                else:
                    end = low.find(b">", pos)
                    if end < 0:
                        return self._eof(pos)
                    pos = end + 1
            else:
                return self._eof(pos)

    def _eof(self, at: int) -> int:
        """The input ends in what starts at ``at``; the elements still open end with it."""
        if self.cut < 0:
            self.cut = self.frames[0].start if self.frames else at
        if self.frames:
            self._pop(0, self.ctx.n)
        return self.ctx.n

    # -- start tags

    def _start(self, m: re.Match[bytes]) -> int:
        frames = self.frames
        if frames:
            top = frames[-1]
            name = m.group(1)
            if top.ns and (not top.point or (top.point == TEXT_POINT and name in MGLYPH)):
                if not (top.ns == MATH_NS and top.name == b"annotation-xml"
                        and name == b"svg"):
                    if name in BREAKOUT or (name == b"font" and self._font_breaks(m)):
                        self._breakout(m.start())
                    else:
                        return self._foreign_start(m, top.ns)
        return self._html_start(m)

    def _font_breaks(self, m: re.Match[bytes]) -> bool:
        a0, a1 = m.span(2)
        attrs = attributes(self.ctx.body, self.ctx.low, a0, a1)
        return any(name in attrs for name in FONT_BREAKS)

    def _foreign_start(self, m: re.Match[bytes], ns: int) -> int:
        ctx = self.ctx
        low = ctx.low
        name = m.group(1)
        t0, t1 = m.span()
        a0, a1 = m.span(2)
        told = self.told_foreign
        if told is None or name in told or self.told_if in low[a0:a1]:
            self._start_tag(name, ns, t0, a0, a1, t1)
        if a1 > a0 and low[a1 - 1] == 47 and self_closing(low, a0, a1):
            return t1
        point = 0
        if ns == SVG_NS:
            if name in SVG_POINTS:
                point = HTML_POINT
        elif name in MATH_TEXT:
            point = TEXT_POINT
        elif name == b"annotation-xml":
            encoding = attributes(ctx.body, low, a0, a1).get(b"encoding")
            if encoding is not None and encoding.value.lower() in ("text/html",
                                                                   "application/xhtml+xml"):
                point = HTML_POINT
        self._push(Frame(name, ns, point, t0, t1, a0, a1))
        return t1

    def _html_start(self, m: re.Match[bytes]) -> int:
        low = self.ctx.low
        name = m.group(1)
        t0, t1 = m.span()
        a0, a1 = m.span(2)
        if name == b"image":  # the tree builder makes it an <img>
            name = b"img"
        if name == b"script":
            return self._script(t0, a0, a1, t1)
        if name in RAW_END:
            if name == b"noscript":
                if self.scripting:
                    return self._noscript(t0, a0, a1, t1)
                self._start_tag(name, HTML_NS, t0, a0, a1, t1)
                self._push(Frame(name, HTML_NS, 0, t0, t1))
                return t1
            return self._raw(name, t0, a0, a1, t1)
        self._start_tag(name, HTML_NS, t0, a0, a1, t1)
        if name == b"plaintext":  # the rest of the document is text
            self._eof(t0)
            return -1
        if name == b"svg" or name == b"math":
            if not self_closing(low, a0, a1):
                ns = SVG_NS if name == b"svg" else MATH_NS
                self._push(Frame(name, ns, 0, t0, t1, a0, a1))
        elif self.frames and name not in VOID:
            self._push(Frame(name, HTML_NS, 0, t0, t1))
        return t1

    def _raw(self, name: bytes, t0: int, a0: int, a1: int, t1: int) -> int:
        """An element whose content is raw text (or RCDATA) up to its end tag."""
        low, n = self.ctx.low, self.ctx.n
        found = RAW_END[name].search(low, t1)
        close = found.start() if found is not None else n
        after = end_tag_end(low, close, len(name)) if found is not None else -1
        self._raw_text(name, t0, a0, a1, t1, close, after)
        if after < 0:
            self._eof(t0)
            return -1
        return after

    def _script(self, t0: int, a0: int, a1: int, t1: int) -> int:
        """A script of HTML content: its text up to its end tag (with the escape states)."""
        ctx = self.ctx
        low, n = ctx.low, ctx.n
        whole = SCRIPT_TEXT.match(low, t1)
        if whole is not None:
            close, after = whole.end(1), whole.end()
        else:  # its text holds "<!--" (escape states), or it is cut off
            close = script_end(low, t1)
            after = end_tag_end(low, close, 6) if close >= 0 else -1
            if close < 0:
                close = n
        self._script_text(t0, a0, a1, t1, close)
        if after < 0:
            self._eof(t0)
            return -1
        return after

    # -- end tags

    def _end(self, name: bytes, at: int) -> None:
        """An end tag inside foreign content or tracked HTML (the tree builder's rules)."""
        frames = self.frames
        if not frames[-1].ns:
            self._html_end(name, at)
            return
        if name == b"br" or name == b"p":  # these end foreign content as breakouts do
            self._breakout(at)
            if name == b"p":
                self._html_end(name, at)
            return
        # the nearest foreign element of that name above the nearest HTML element
        named = self.foreign_named.get(name)
        if named and named[-1] > (self.html_at[-1] if self.html_at else -1):
            self._pop(named[-1], at)
            return
        self._html_end(name, at)

    def _html_end(self, name: bytes, at: int) -> None:
        """An end tag processed by the HTML rules: it closes the nearest open element of
        its name, unless a special element comes first."""
        frames = self.frames
        if not frames:
            return
        barrier = self.barriers[-1] if self.barriers else -1
        named = self.html_named.get(name)
        if named and named[-1] >= barrier:
            self._pop(named[-1], at)
            return
        if barrier >= 0:
            return
        # the element may be open outside the foreign content (not tracked there); never
        # an <svg> or <math>, which are no HTML elements: their end tag closes one only
        # through the foreign content's rules (an earlier one a breakout closed is not
        # open, whatever the count of tags says)
        if name not in NEVER_OUTSIDE and self._ancestor_open(name, frames[0].start):
            self._pop(0, at)

    def _ancestor_open(self, name: bytes, before: int) -> bool:
        """Is an element ``name`` open before ``before``? Told by counting its start and
        end tags (at most 16 names per reading; any other is taken as open)."""
        entry = self.counts.get(name)
        if entry is None:
            if len(self.counts) >= 16:
                return True
            entry = self.counts[name] = [0, 0]
        if before > entry[0]:
            balance = entry[1]
            for m in tag_counter(name).finditer(self.ctx.low, entry[0], before):
                balance += -1 if m.group(1) else 1
            entry[0], entry[1] = before, balance
        return entry[1] > 0

    def _breakout(self, at: int) -> None:
        """Pop foreign elements up to an integration point or an HTML element."""
        keep = max(self.html_at[-1] if self.html_at else -1,
                   self.points[-1] if self.points else -1)
        if keep + 1 < len(self.frames):
            self._pop(keep + 1, at)

    def _pop(self, i: int, at: int) -> None:
        """Close ``frames[i:]`` at ``at`` (each is told to :meth:`_closed` first, as
        :attr:`told_closed` says)."""
        frames = self.frames
        told = self.told_closed
        for frame in frames[i:]:
            if told is None or frame.name in told:
                self._closed(frame, at)
            (self.foreign_named if frame.ns else self.html_named)[frame.name].pop()
        for at_stack in (self.html_at, self.points, self.barriers):
            while at_stack and at_stack[-1] >= i:
                at_stack.pop()
        del frames[i:]

    def _push(self, frame: Frame) -> None:
        at = len(self.frames)
        self.frames.append(frame)
        if frame.ns:
            self.foreign_named.setdefault(frame.name, []).append(at)
            if frame.point:
                self.points.append(at)
            if frame.point or frame.name == b"annotation-xml":
                self.barriers.append(at)
        else:
            self.html_named.setdefault(frame.name, []).append(at)
            self.html_at.append(at)
            if frame.name in SPECIAL:
                self.barriers.append(at)


class Tag:
    """A start or end tag of a document, as :func:`read_tags` finds it."""

    __slots__ = ("a0", "a1", "end", "name", "ns", "start", "start_tag", "text")

    def __init__(self, start_tag: bool, name: bytes, ns: int, start: int, end: int,
                 a0: int = 0, a1: int = 0, text: tuple[int, int] | None = None) -> None:
        self.start_tag, self.name, self.ns = start_tag, name, ns
        #: where the tag is, where its attributes are
        self.start, self.end, self.a0, self.a1 = start, end, a0, a1
        #: where the text of a script, a raw-text element, or a script or style of
        #: foreign content (its markup) is
        self.text = text


class _Tags(TagReader):
    """Every tag, in the order the tree builder sees them."""

    __slots__ = ("found",)

    def __init__(self, doc: Document, scripting: bool) -> None:
        super().__init__(doc, scripting, [])
        self.found: list[Tag] = []

    def _start_tag(self, name: bytes, ns: int, t0: int, a0: int, a1: int, t1: int) -> None:
        if ns and name in _FOREIGN_TEXT and not self_closing(self.ctx.low, a0, a1):
            return  # told when it closes, with its content (see _closed)
        self.found.append(Tag(True, name, ns, t0, t1, a0, a1))

    def _script_text(self, t0: int, a0: int, a1: int, t1: int, close: int) -> None:
        self.found.append(Tag(True, b"script", HTML_NS, t0, t1, a0, a1, (t1, close)))

    def _raw_text(self, name: bytes, t0: int, a0: int, a1: int, t1: int, close: int,
                  after: int) -> None:
        self.found.append(Tag(True, name, HTML_NS, t0, t1, a0, a1, (t1, close)))

    def _end_tag(self, name: bytes, t0: int, t1: int) -> None:
        self.found.append(Tag(False, name, self.frames[-1].ns if self.frames else HTML_NS,
                              t0, t1))

    def _closed(self, frame: Frame, at: int) -> None:
        if frame.ns and frame.name in _FOREIGN_TEXT:
            self.found.append(Tag(True, frame.name, frame.ns, frame.start, frame.content,
                                  frame.a0, frame.a1, (frame.content, at)))


#: foreign elements whose text is told with their start tag (a script's, a style sheet's)
_FOREIGN_TEXT = frozenset({b"script", b"style"})


def read_tags(body: bytes, *, scripting: bool = False) -> list[Tag]:
    """Every start and end tag of ``body``, as a browser's tokenizer and tree builder read
    them (scripting off: ``<noscript>`` holds markup). A script or style element of
    foreign content comes when it closes, with its content."""
    reader = _Tags(Document(body), scripting)
    reader.run(0)
    return reader.found
