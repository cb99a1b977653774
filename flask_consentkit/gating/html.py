"""Find and switch the start tags of an HTML document that depend on consent.

This is a careful scan, not a parse-and-serialise: the document is read the
way Chromium's tokenizer and tree builder read it (:mod:`.tokenizer`), and only
the start tags that must change are rewritten. Every other byte of the document
stays exactly as it was. Which elements fetch what, and what is done with each,
is the table of :mod:`.rules`: the searches of the fast path, the prefilter and
the site functions below are made from it. What the scan follows:

- the tokenizer's states: comments, bogus comments, quoted attribute values
  (with ``>`` inside), the raw text of ``<style>``, ``<textarea>``, ``<title>``,
  ``<xmp>``, ``<iframe>``, ``<noembed>``, ``<noframes>`` and ``<plaintext>``, and
  script text with its ``<!-- <script>`` escape states;
- foreign content: inside ``<svg>`` and ``<math>`` those elements are not raw
  text, ``<![CDATA[ ]]>`` is a section, ``<image>`` is an SVG image; an HTML
  breakout tag (``<img>``, ``<p>``, ``<div>`` …) or ``</p>``/``</br>`` ends it,
  and ``foreignObject``, ``desc``, ``title``, ``mi`` … ``annotation-xml`` hold
  HTML again (where ``<style>`` is raw text once more);
- ``<noscript>``, both ways: for a browser with scripting on its content is raw
  text up to the first ``</noscript``, for one with scripting off it is markup.
  Both readings are gated. Where they part for good (markup inside a quoted
  value that the raw reading ends early), the scripting-off reading is made to
  the end of the document on its own;
- URLs as the browser reads them: character references decoded (with the rule
  for attribute values), then parsed by :func:`~flask_consentkit.urls.network_target`
  (percent-encoded hosts, a trailing dot, ``:443``, backslashes, tabs and
  newlines), every candidate of ``srcset`` / ``imagesrcset``, CSS ``url()``,
  ``@import`` and ``image-set()`` with CSS escapes.

The scan costs time linear in the size of the document, whatever it holds:
every regular expression is possessive and is applied once where it starts,
and nothing is read again from each candidate. Ordinary text and tags whose URL
attributes are the page's own are passed over in one regular-expression match.

The rules, for each element found:

- ``<script type="text/plain" data-consent="CAT">`` becomes runnable when
  ``CAT`` is granted: its ``type`` is replaced by ``data-type`` if given, else
  removed (a classic script). Otherwise it stays inert.
- A script marked ``data-consent="CAT"`` with a runnable type (the author
  forgot ``type="text/plain"``) is made inert while ``CAT`` is not granted.
- ``<iframe data-consent="CAT" data-consent-src="URL">`` gets ``src="URL"``
  when ``CAT`` is granted; otherwise any ``src`` is taken away and a
  placeholder is put in front of it.
- With the app's vendor registry (:class:`HostRules`), any third-party URL in
  an element that fetches it — ``script src``, ``iframe src``, ``img``
  ``src``/``srcset``, ``<picture><source srcset>``, ``<video>``/``<audio>``
  ``src``/``poster``, ``<source>``, ``<track>``, ``<input type=image>``,
  ``<embed>``, ``<object data>``, SVG ``<image>``/``<script>``/``<use>``/
  ``<feImage>`` ``href``, ``background``, a ``<link>`` that fetches or connects
  (``preconnect``, ``dns-prefetch``, ``preload``, ``modulepreload``,
  ``prefetch``, ``prerender``, ``stylesheet``, ``icon``, ``manifest``,
  ``apple-touch-icon``, ``mask-icon``),
  ``<base href>``, a ``style`` attribute or ``<style>`` element with ``url()``
  or ``@import`` — is allowed when a category of the host's service(s) is
  granted. Otherwise the element is neutralised: a script is made inert, an
  iframe loses its ``src`` (and gets a placeholder unless it is invisible), any
  other element its URL attributes (kept as ``data-consent-<name>``), a
  ``<style>`` gets ``type="text/plain"``; each is marked
  ``data-consentkit-neutralised``. A host that no service names is allowed for
  nobody: ``data-consentkit-undeclared``, and its placeholder says so.
- Known trackers (:mod:`.trackers`) refine that: an unmarked script, iframe,
  pixel or link whose URL, or an inline script whose text, matches one needs
  the tracker's category too (an ``AW-`` Google tag needs ``marketing`` though
  its loader's host is allowed by ``analytics`` as well). Without a registry
  they are all the rewrite knows.

Decisions are asked of a :class:`Gate`, and only for elements that need one,
so a page without gated markup never resolves the visitor's consent. A
:class:`Site` carries the categories that would allow it, computed when the
page is scanned, so a kept scan is decided for any set of granted categories.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .._compat import parse_regex
from .._compat import re_constants as _c
from ..categories import NECESSARY
from ..responses import fill_holes
from ..urls import Target, network_target
from . import rules as _rules
from .rules import ANY, LINK_RELS, RULES, RUNNABLE_SCRIPT_TYPES, URL_ATTRS, Action, Syntax
from .tokenizer import (
    ANY_ATTR,
    ATTRS,
    BREAKOUT_NAMES,
    COMMENT,
    COMMENT_RE,
    END_OF_ATTR_NAME,
    END_OF_NAME,
    END_TAG,
    EQ,
    EQ_OR_SPACE,
    FOREIGN_ROOTS,
    HTML_NS,
    MATH_NS,
    NO_EQ,
    OPENER,
    RAW_END,
    RENAMED,
    STATE_ELEMENTS,
    SVG_NS,
    TAG_NAME,
    VOID,
    WALK,
    Attr,
    Document,
    Frame,
    TagReader,
    attributes,
    end_tag_end,
    may_open,
)
from .trackers import TRACKERS, Tracker

if TYPE_CHECKING:
    from ..vendors import VendorRegistry

__all__ = [
    "Gate", "HostRules", "NoncedDocument", "ScanCache", "ScannedDocument", "Site",
    "TrackerMatcher", "apply", "could_need_gating", "gate_stream", "rewrite", "scan",
]

# -- what the rules say, as the scan reads it (computed once from rules.RULES) ---------


def _names(names: Iterable[str | bytes]) -> bytes:
    """An alternation of ``names`` (each once, in order), for a pattern on lower-cased bytes."""
    encoded = (n.encode() if isinstance(n, str) else n for n in names)
    return b"|".join(re.escape(n) for n in dict.fromkeys(encoded))


_HTML_NS_RULES = {r.element.encode(): r for r in RULES
                  if r.namespace is _rules.Namespace.HTML and r.element != ANY}
_SVG_NS_RULES = {r.element.encode(): r for r in RULES
                 if r.namespace is _rules.Namespace.SVG and r.element != ANY}


def _only(action: Action) -> _rules.Rule:
    """The one rule of HTML content with ``action`` (a site function of its own reads it)."""
    (rule,) = (r for r in _HTML_NS_RULES.values() if r.action is action)
    return rule


_SCRIPT_RULE, _FRAME_RULE, _SHEET_RULE = (_only(Action.INERT), _only(Action.FRAME),
                                          _only(Action.SHEET))
#: attributes whose value is a URL (or a list of them) in some element
_URL_ATTRS = _names(a.name for a in URL_ATTRS if a.syntax is not Syntax.CSS)
#: attributes whose value is CSS (in any element)
_CSS_ATTRS = _names(a.name for a in URL_ATTRS if a.syntax is Syntax.CSS)
#: attributes fetched by elements too common to look at each (found by the attribute)
_BY_ATTRIBUTE = _names(a.name for r in RULES if r.by_attribute for a in r.attrs)
#: a URL that stays on the page's own origin whatever the element: no scheme, no
#: "//" (nor "\\"), no character reference, tab or newline that could make one
_OWN_URL = (
    rb"(?:\"(?:[^\":&\\\t\n\r/]++|/(?!/))*+\"|'(?:[^':&\\\t\n\r/]++|/(?!/))*+'"
    rb"|(?:[^\t\n\f\r >\"':&\\/]|/(?!/))(?:[^\t\n\f\r >:&\\/]++|/(?!/))*+(?=[\t\n\f\r >])"
    rb"|(?=>))"
)
#: a style attribute that loads nothing: no "(" (``url(``), no character reference
_PLAIN_STYLE = (rb"(?:\"[^\"(&]*+\"|'[^'(&]*+'|[^\t\n\f\r >\"'(&][^\t\n\f\r >(&]*+(?=[\t\n\f\r >])"
                rb"|(?=>))")
_OWN_ATTR = (
    rb"(?:(?:" + _URL_ATTRS + rb")" + END_OF_ATTR_NAME + rb"(?:" + EQ + _OWN_URL + rb"|"
    + NO_EQ + rb")"
    rb"|(?:" + _CSS_ATTRS + rb")" + END_OF_ATTR_NAME + rb"(?:" + EQ + _PLAIN_STYLE + rb"|"
    + NO_EQ + rb")"
    rb"|(?!(?:" + _URL_ATTRS + rb"|" + _CSS_ATTRS + rb")" + END_OF_ATTR_NAME + rb")"
    + ANY_ATTR + rb")"
)
#: attributes none of which can fetch from another site
_OWN_ATTRS = rb"(?:[\t\n\f\r /]++|" + _OWN_ATTR + rb")*+"
#: :data:`_OWN_ATTRS` without a "<" anywhere: what is passed over without knowing
#: the state there (see _Reader._jump) must hide no tag inside a value
_OWN_ATTRS_NO_TAG = _OWN_ATTRS.replace(b"[^", b"[^<")
#: an ``<a>``'s attributes: its ``href`` is not fetched, only a style may load
_LINK_ATTRS = (
    rb"(?:[\t\n\f\r /]++|(?:" + _CSS_ATTRS + rb")" + END_OF_ATTR_NAME + rb"(?:" + EQ
    + _PLAIN_STYLE + rb"|" + NO_EQ + rb")|(?!(?:" + _CSS_ATTRS + rb")" + END_OF_ATTR_NAME
    + rb")" + ANY_ATTR + rb")*+"
)

#: elements that fetch with a URL attribute (where it is the page's own they are
#: passed over): the rules that neutralise, found by their name, but a base URL
_FETCHING = _names(r.element for r in _HTML_NS_RULES.values()
                   if r.action is Action.NEUTRALISE and not r.by_attribute and not r.base)
#: Elements that change how what follows is read, or that always need a look: a
#: base URL, an element the tree builder renames (``<image>`` is an ``<img>``)
_STATEFUL = _names([*STATE_ELEMENTS, *(r.element for r in _HTML_NS_RULES.values() if r.base),
                    *(old for old, new in RENAMED.items() if new in _HTML_NS_RULES)])

#: In HTML content: text, comments, bogus comments and doctypes, a lone "<",
#: end tags, and start tags of ordinary elements whose URLs are the page's own.
#: Stops at anything else (and at a construct cut off by the end of the input).
_SKIP_HTML = re.compile(
    rb"(?:[^<]++"
    rb"|<a" + END_OF_NAME + _LINK_ATTRS + rb">"
    rb"|<(?!(?:" + _STATEFUL + rb")" + END_OF_NAME + rb")" + TAG_NAME + _OWN_ATTRS + rb">"
    rb"|</" + TAG_NAME + ATTRS + rb">"
    rb"|" + COMMENT +
    rb"|<(?:/(?![a-z])|!(?!--)|\?)[^>]*+>"
    rb"|<(?![a-z/!?])"
    rb")*+"
)
# -- the fast path: jump from one place that may need attention to the next ------
#
# In HTML content, between two such places the document holds only text,
# ordinary tags, end tags and bogus comments, each of which ends at its first
# ">" that is not inside a quoted attribute value. A ">" is inside one only when
# the nearest '"' (or "'") before it opens one, so it follows "=" (and
# whitespace). When neither does, the data state resumes after that ">", and a
# place is outside any tag when no "<" that opens one comes between the two;
# otherwise the tag that holds it is read whole. Where a quote may open a value,
# the text since the last known place is read by the careful walk. Each byte is
# looked at a bounded number of times.

def _attr_names(names: bytes) -> bytes:
    """``names`` (an alternation), each only as a whole attribute name: after a space,
    "/" or the quote that ends the value before (looked behind, so the search stops
    where the name is first)."""
    return b"|".join(name + rb"(?<=[\t\n\f\r /\"']" + name + rb")"
                     for name in names.split(b"|"))


#: where an element that may need attention, or a comment, starts
_CANDIDATE = re.compile(
    rb"<(?:(" + _FETCHING + rb")[\t\n\f\r />]|(?:" + _STATEFUL + rb")[\t\n\f\r />]|!--)")
#: a style attribute that may load something (a "(" or a character reference in it)
_STYLE_CANDIDATE = re.compile(
    rb"(?:" + _attr_names(_CSS_ATTRS) + rb")[\t\n\f\r ]*+=[\t\n\f\r ]*+"
    rb"(?:\"[^\"(&]*+[(&]|'[^'(&]*+[(&]|[^\t\n\f\r >\"'(&=]*+[(&=])")
#: an attribute found by its name (``background``, of ``<body>``, ``<table>`` and its cells)
_BACKGROUND_CANDIDATE = re.compile(
    rb"(?:" + _attr_names(_BY_ATTRIBUTE) + rb")[\t\n\f\r ]*+=")
#: a fetching element none of whose URLs leaves the page's origin
_OWN_FETCHING = re.compile(rb"<(?:" + _FETCHING + rb")" + END_OF_NAME + _OWN_ATTRS + rb">")

#: SVG elements an icon is drawn with: neither a breakout nor an integration point,
#: nor one that loads or holds a style sheet (``<use>`` and filters with their own
#: URLs only, as every attribute in :data:`_PLAIN_SVG`)
_SVG_SHAPES = (rb"g|defs|symbol|path|circle|rect|line|polyline|polygon|ellipse|lineargradient"
               rb"|radialgradient|stop|clippath|mask|pattern|marker|use|text|tspan|desc"
               rb"|filter|fe[a-z]++|animate|animatetransform|animatemotion|set|metadata|view"
               rb"|switch")
#: a whole ``<svg>`` of only those and text, up to its ``</svg>``: read as foreign
#: content it changes nothing and fetches nothing from another site; read as
#: anything else (inside an attribute value) it hides no element that would
_PLAIN_SVG = re.compile(
    rb"<svg" + END_OF_NAME + _OWN_ATTRS_NO_TAG + rb">"
    rb"(?:[^<]++"
    rb"|<(?:" + _SVG_SHAPES + rb")" + END_OF_NAME + _OWN_ATTRS_NO_TAG + rb">"
    rb"|</(?:" + _SVG_SHAPES + rb")" + END_OF_NAME + ATTRS + rb">"
    rb"|<(?![a-z/!?]))*+"
    rb"</svg" + END_OF_NAME + ATTRS + rb">")

#: void elements passed over where their URLs are the page's own (not those always read)
_VOID_NAMES = _names(sorted(n for n in VOID if n not in RENAMED
                            and not (n in _HTML_NS_RULES and _HTML_NS_RULES[n].base)))
#: In HTML content whose elements are tracked (inside an integration point, or
#: the scripting-off reading of ``<noscript>``): only text, comments and void
#: elements pass; CDATA sections may be real here, so ``<![`` stops too.
_SKIP_INNER = re.compile(
    rb"(?:[^<]++"
    rb"|<(?:" + _VOID_NAMES + rb")" + END_OF_NAME + _OWN_ATTRS + rb">"
    rb"|" + COMMENT +
    rb"|<(?:/(?![a-z])|!(?!--|\[)|\?)[^>]*+>"
    rb"|<(?![a-z/!?])"
    rb")*+"
)
#: In foreign content: text, comments, and self-closing elements that are not
#: breakouts and fetch nothing from another site.
_SKIP_FOREIGN = re.compile(
    rb"(?:[^<]++"
    rb"|<(?!(?:" + BREAKOUT_NAMES + rb")" + END_OF_NAME + rb")" + TAG_NAME
    + rb"(?:[\t\n\f\r /]*+" + _OWN_ATTR + rb")*+[\t\n\f\r ]*+/>"
    rb"|" + COMMENT +
    rb"|<(?:/(?![a-z])|!(?!--|\[)|\?)[^>]*+>"
    rb"|<(?![a-z/!?])"
    rb")*+"
)
#: :data:`_OWN_FETCHING` in fewer steps, for a plain tag (as :data:`PLAIN_TAG`)
#: without any ":", "//", "\\", "&", "(", tab or newline, which a URL that leaves
#: the page's origin (or a style that loads) needs, nor a "<" (see _OWN_ATTRS_NO_TAG)
_PLAIN_OWN_FETCHING = re.compile(
    rb"<(?:" + _FETCHING + rb")(?=[\t\n\f\r />])(?:[^<\"'>=:&\\(\t\n\r/]++|/(?!/)"
    rb"|(?<=[^\t\n\f\r /\"'=])=(?:\"(?:[^<\":&\\(\t\n\r/]++|/(?!/))*+\""
    rb"|'(?:[^<':&\\(\t\n\r/]++|/(?!/))*+'))*+>")


def _script_marks() -> bytes:
    """A pattern for the attributes of a script with neither ``type``, ``data-consent`` nor a
    URL attribute of the script rule: no name starts with one of theirs (a letter followed
    by the rest of any of them)."""
    names = [b"type", b"data-consent",
             *(a.name.encode() for a in _SCRIPT_RULE.attrs)]
    firsts = re.escape(bytes(sorted({n[0] for n in names})))
    rests = b"|".join(re.escape(n[1:]) for n in names)
    return (rb"(?:[^\"'>=" + firsts + rb"]++|[" + firsts + rb"](?!" + rests + rb")"
            rb"|(?<=[^\t\n\f\r /\"'=])=(?:\"[^\"]*+\"|'[^']*+'))*+")


#: a whole script with neither type, data-consent nor src: its text (1), end tag (2)
_PLAIN_SCRIPT = re.compile(
    rb"<script(?=[\t\n\f\r />])" + _script_marks() + rb">"
    rb"()(?:[^<]++|<(?!/script[\t\n\f\r />]|!--))*+(</script(?=[\t\n\f\r />])" + ATTRS + rb">)")

#: ``type`` values under which a browser runs a script (compared lower-cased,
#: parameters ignored so that we rather gate too much than too little).
_RUNNABLE_TYPES = frozenset(t.encode() for t in RUNNABLE_SCRIPT_TYPES)
#: CSP nonces a page may be matched by with the nonce left out (URL-safe base64)
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,256}")
#: what any page that may need the rewrite holds (any case): an element of a rule (or one
#: the tree builder makes one), the foreign content SVG's rules are in, ``<noscript>``
#: (read two ways), or an attribute fetched whatever the element
_MAY_NEED = re.compile(
    rb"<(?i:" + _names([*_HTML_NS_RULES, *(old for old, new in RENAMED.items()
                                           if new in _HTML_NS_RULES),
                        *FOREIGN_ROOTS, b"noscript"]) + rb")[\t\n\f\r />]"
    rb"|(?i:" + _CSS_ATTRS + rb"|" + _BY_ATTRIBUTE + rb")[\t\n\f\r ]*+=")

#: the rules whose site is an element's URL attributes put aside, by namespace and name
#: (the others have site functions of their own: scripts, iframes, style sheets)
_NEUTRALISED: dict[int, dict[bytes, _rules.Rule]] = {
    HTML_NS: {n: r for n, r in _HTML_NS_RULES.items() if r.action is Action.NEUTRALISE},
    SVG_NS: {n: r for n, r in _SVG_NS_RULES.items() if r.action is Action.NEUTRALISE},
    MATH_NS: {},
}
#: the attribute names of each rule
_FETCHED = {rule: tuple(a.name.encode() for a in rule.attrs) for rule in RULES}
_SRCSETS = frozenset(a.name.encode() for a in URL_ATTRS if a.syntax is Syntax.SRCSET)
#: ``rel`` values under which a browser fetches a link's ``href`` or connects to its
#: host before (or without) any script asking for it; what it does, for the log
_LINK_RELS = {rel: link.how for rel, link in LINK_RELS.items()}
#: the relations the known trackers' patterns are tried on without a registry
_TRACKER_RELS = frozenset(rel for rel, link in LINK_RELS.items() if link.trackers)
#: the URL attribute of a script and of an iframe (their site functions read one)
(_SCRIPT_URL,) = _FETCHED[_SCRIPT_RULE]
(_IFRAME_URL,) = _FETCHED[_FRAME_RULE]
_HOW_SCRIPT, _HOW_IFRAME, _HOW_SHEET = _SCRIPT_RULE.how, _FRAME_RULE.how, _SHEET_RULE.how
_HOW_STYLE_ATTR = next(r.how for r in RULES if r.element == ANY)
#: where an iframe marked by the app keeps its URL until consent
_IFRAME_MARKED_URL = b"data-consent-" + _IFRAME_URL
#: the attribute whose value is CSS (the rules' one such attribute)
(_STYLE_ATTR,) = (a.name.encode() for a in URL_ATTRS if a.syntax is Syntax.CSS)
#: the SVG elements whose text is a style sheet (read when they close: it is markup)
_SVG_SHEETS = frozenset(n for n, r in _SVG_NS_RULES.items() if r.action is Action.SHEET)
#: the raw-text elements of HTML content with a site function of their own, by action
_RAW_ACTIONS = {n: r.action for n, r in _HTML_NS_RULES.items() if n in RAW_END}



class Gate(Protocol):
    """What the rewrite asks about one document."""

    def allows(self, category: str) -> bool:
        """True when ``category`` is granted."""

    def placeholder(self, category: str, title: str | None) -> bytes:
        """The markup put in front of a blocked iframe (already encoded).

        ``category`` is ``""`` for content from a host the site did not declare,
        which no choice allows.

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
        self._kinds = {"script": self.script, "iframe": self.iframe, "image": self.image}
        #: per kind, one pattern that finds any tracker's literal (``None``: some
        #: tracker has none, so every text is tried)
        self._any = {kind: _any_literal(entries) for kind, entries in self._kinds.items()}
        self._caches: dict[str, dict[bytes, tuple[Tracker, ...]]] = {
            k: {} for k in self._kinds}

    @staticmethod
    def _prepare(tracker: Tracker) -> tuple[Tracker, re.Pattern[bytes], tuple[bytes, ...]]:
        source = tracker.pattern.pattern.encode("ascii")
        needles = required_literals(tracker.pattern.pattern)
        lowered = tuple(n.lower().encode("ascii") for n in needles) if needles else ()
        # matched against lower-cased text: always case-insensitive
        flags = (tracker.pattern.flags & ~re.UNICODE) | re.IGNORECASE
        return tracker, re.compile(source, flags), lowered

    def _find_all(self, kind: str, low: bytes) -> tuple[Tracker, ...]:
        """The trackers of ``kind`` in ``low`` (lower-cased text; patterns ignore case).

        Every tracker that is not generic, in the order of the data; the first
        generic one only when there is none of those.
        """
        cache = self._caches[kind]
        found = cache.get(low)
        if found is not None:
            return found
        out: list[Tracker] = []
        generic: Tracker | None = None
        prefilter = self._any[kind]
        entries = self._kinds[kind] if prefilter is None or prefilter.search(low) else ()
        for tracker, pattern, needles in entries:
            if tracker.generic and generic is not None:
                continue
            if needles:
                for needle in needles:
                    if needle in low:
                        break
                else:
                    continue
            if pattern.search(low) is not None:
                if tracker.generic:
                    generic = tracker
                else:
                    out.append(tracker)
        if not out and generic is not None:
            out.append(generic)
        found = tuple(out)
        if len(low) <= self.cache_limit:
            if len(cache) >= self.cache_size:
                cache.clear()
            cache[low] = found
        return found

    def _find(self, kind: str, low: bytes) -> Tracker | None:
        """The first of :meth:`_find_all`."""
        found = self._find_all(kind, low)
        return found[0] if found else None

    def scripts_in_lower(self, low: bytes) -> tuple[Tracker, ...]:
        """Every tracker in a script's lower-cased text or URL (see :meth:`_find_all`)."""
        return self._find_all("script", low)

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

    def find_resource(self, url: bytes) -> Tracker | None:
        """The tracker whose script, embed or pixel ``url`` is (a ``<link>``'s ``href``)."""
        low = url.lower()
        return self._find("script", low) or self._find("iframe", low) or self._find("image", low)


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
        parsed = parse_regex(pattern, re.IGNORECASE)
    except Exception:  # noqa: BLE001 - an unexpected shape only costs speed
        return None
    if parsed is None:
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


_DEFAULT_MATCHER: TrackerMatcher | None = None


def default_matcher() -> TrackerMatcher:
    global _DEFAULT_MATCHER
    if _DEFAULT_MATCHER is None:
        _DEFAULT_MATCHER = TrackerMatcher()
    return _DEFAULT_MATCHER


def could_need_gating(body: bytes, matcher: TrackerMatcher | None = None) -> bool:
    """Cheap check: can ``body`` hold anything the rewrite may change at all?

    A script, an iframe, a link, an image, media, an embed, ``<noscript>``,
    ``<svg>``, a style (which may ``@import`` or use ``url()``), a ``background``
    or ``<base>``, in any letter case. ``matcher`` is not needed (kept for callers).
    """
    return _MAY_NEED.search(body) is not None


# -- attributes -----------------------------------------------------------------

def _quote(value: str) -> bytes:
    return b'"' + html.escape(value, quote=True).encode("utf-8") + b'"'


def _edit_tag(body: bytes, tag_start: int, name_end: int, tag_end: int,
              remove: Iterable[Attr], add: bytes) -> bytes:
    """The start tag with ``remove`` taken out and ``add`` put after the tag name."""
    parts = [body[tag_start:name_end], add]
    pos = name_end
    for attr in sorted(remove, key=lambda a: a.start):
        parts.append(body[pos:attr.start].rstrip(b"\t\n\f\r "))
        pos = attr.end
    parts.append(body[pos:tag_end])
    return b"".join(parts)


# -- URLs in attributes and style sheets ---------------------------------------------

_SRCSET_URL = re.compile(r"[\t\n\f\r ,]*+([^\t\n\f\r ]++)")
_SRCSET_DESCRIPTORS = re.compile(r"(?:[^,(]++|\([^)]*+\)?)*+,?")


def srcset_urls(value: str) -> list[str]:
    """The URL of every candidate of a ``srcset`` (HTML's parsing algorithm)."""
    urls: list[str] = []
    pos = 0
    while True:
        m = _SRCSET_URL.match(value, pos)
        if m is None:
            return urls
        url = m.group(1)
        pos = m.end()
        if url.endswith(","):  # no descriptors
            url = url.rstrip(",")
            if url:
                urls.append(url)
            continue
        urls.append(url)
        pos = _SRCSET_DESCRIPTORS.match(value, pos).end()  # type: ignore[union-attr]


_CSS_IDENT = r"(?:[-\w]|\\[0-9a-fA-F]{1,6}[ \t\r\n\f]?|\\[^\n0-9a-fA-F])++"
#: CSS tokens that matter for what a sheet loads; each always matches where it
#: starts (an unclosed comment or string runs on), so the search never goes back
_CSS_TOKEN = re.compile(
    r"/\*(?:[^*]++|\*(?!/))*+(?:\*/)?"
    r"|\"(?:[^\"\\\n]++|\\.)*+\"?|'(?:[^'\\\n]++|\\.)*+'?"
    r"|" + _CSS_IDENT + r"\(?"
    r"|@" + _CSS_IDENT +
    r"|[();]",
    re.S,
)
#: an unquoted ``url(…)``: up to ")", a quote, a space or "(" (which make a bad URL)
_CSS_BARE_URL = re.compile(r"[ \t\n\r\f]*+((?:[^()\"'\s\\]++|\\.)*+)", re.S)
_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})[ \t\r\n\f]?|(\n)|(.))", re.S)
#: CSS functions whose strings are URLs
_CSS_URL_FUNCTIONS = frozenset({"url", "src", "image-set", "-webkit-image-set", "image",
                                "cross-fade", "-webkit-cross-fade"})


def _css_escape(m: re.Match[str]) -> str:
    if m.group(1):
        code = int(m.group(1), 16)
        return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"
    return "" if m.group(2) else m.group(3)


def _css_unescape(text: str) -> str:
    return _CSS_ESCAPE.sub(_css_escape, text) if "\\" in text else text


def css_urls(css: str) -> list[str]:
    """The URLs a style sheet or ``style`` attribute loads: ``url()``, ``@import``,
    ``image-set()`` … (CSS escapes decoded; comments skipped)."""
    urls: list[str] = []
    expect = 0  # 1: the string after @import; 2: strings until the function's ")"
    depth = 0
    for m in _CSS_TOKEN.finditer(css):
        token = m.group()
        first = token[0]
        if first == '"' or first == "'":
            if expect:
                closed = len(token) > 1 and token[-1] == first
                urls.append(_css_unescape(token[1:-1] if closed else token[1:]))
                if expect == 1:
                    expect = 0
        elif first == "/":
            continue  # a comment ("/" alone is no token)
        elif first == "@":
            expect = 1 if _css_unescape(token).lower() == "@import" else 0
        elif token == "(":
            depth += expect == 2
        elif token == ")":
            if expect == 2:
                if depth:
                    depth -= 1
                else:
                    expect = 0
        elif token == ";":
            expect = depth = 0
        elif token[-1] == "(":
            name = _css_unescape(token[:-1]).lower()
            if name == "url":
                bare = _CSS_BARE_URL.match(css, m.end())
                if bare is not None and bare.group(1):
                    urls.append(_css_unescape(bare.group(1)))
            if expect == 2:
                depth += 1
            elif name in _CSS_URL_FUNCTIONS:
                expect, depth = 2, 0
    return urls


# -- hosts ----------------------------------------------------------------------------

#: a URL that may leave the page: a scheme, or "//" (slashes either way, with tabs)
_SCHEME_RELATIVE = re.compile(r"[\x00-\x20]*+[/\\][\t\n\r]*+[/\\]")
_UNKNOWN = object()


class HostRules:
    """The app's vendors as the rewrite asks about them: which categories allow a host.

    Built on the app's :class:`~flask_consentkit.vendors.VendorRegistry`
    (``ext.vendors``); the answers for URLs and hosts are kept, since
    the pages of a site share most of them.
    """

    memo_size = 4096

    def __init__(self, registry: VendorRegistry) -> None:
        self.registry = registry
        self.keys = frozenset(registry.category_keys) | {NECESSARY}
        self._targets: dict[str, Target | None] = {}
        self._hosts: dict[Target, tuple[frozenset[str], str]] = {}

    def target(self, url: str) -> Target | None:
        """Where a browser fetches ``url`` (references decoded) from; ``None``: its own origin."""
        found = self._targets.get(url, _UNKNOWN)
        if found is _UNKNOWN:
            found = (network_target(url)
                     if ":" in url or _SCHEME_RELATIVE.match(url) is not None else None)
            if len(self._targets) >= self.memo_size:
                self._targets.clear()
            self._targets[url] = found
        return found  # type: ignore[return-value]

    def decide(self, target: Target) -> tuple[frozenset[str], str]:
        """``(categories any one of which allows target, the category to show)``.

        ``({"necessary"}, …)`` for a host that is always allowed; ``(∅, "")`` for a
        host of no service (or of one filed under a category the app lacks).
        """
        found = self._hosts.get(target)
        if found is None:
            services = self.registry.services_for(target)
            allowed: frozenset[str] = frozenset().union(*(s.categories for s in services))
            allowed &= self.keys
            if NECESSARY in allowed:
                allowed = frozenset({NECESSARY})
            label = next((s.category for s in services if s.category in allowed), "")
            found = (allowed, label if allowed else "")
            if len(self._hosts) >= self.memo_size:
                self._hosts.clear()
            self._hosts[target] = found
        return found


# -- sites ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Site:
    """A start tag whose bytes depend on whether the visitor allows it."""

    #: where the start tag is in the document
    start: int
    end: int
    #: the category shown for it (its placeholder, ``data-consent``); ``""``: none
    #: (content from a host the site did not declare)
    category: str
    #: the start tag when allowed / not allowed; ``None`` keeps it as it is
    granted: bytes | None
    denied: bytes | None
    #: put a placeholder (for ``title``) in front of it when not allowed
    placeholder: bool = False
    title: str | None = None
    #: ``(key, message)`` for the developer when not allowed
    report: tuple[str, str] | None = None
    #: the categories any one of which allows it (``None``: ``{category}``; an empty
    #: set: nobody), computed when the page was scanned
    categories: frozenset[str] | None = None
    #: more such sets, each of which must allow it too (a tracker's own category
    #: on a host that other categories allow as well)
    also: tuple[frozenset[str], ...] = ()

    @property
    def needs(self) -> tuple[frozenset[str], ...]:
        """Every set of categories of which one must be granted for it to be allowed."""
        first = frozenset((self.category,)) if self.categories is None else self.categories
        return (first, *self.also)


def _site_allowed(site: Site, allows: Callable[[str], bool]) -> bool:
    categories = site.categories
    if categories is None:
        if not allows(site.category):
            return False
    elif not any(allows(c) for c in categories):
        return False
    return all(any(allows(c) for c in clause) for clause in site.also)


_ALWAYS = frozenset({NECESSARY})
#: what a style sheet not allowed is wrapped in (see _Reader._style)
_TEMPLATE = b"<template data-consentkit-neutralised>"
_NOBODY: frozenset[str] = frozenset()


def _simplify(clauses: Iterable[frozenset[str]]) -> tuple[frozenset[str], ...]:
    """The sets that matter: those with ``necessary`` dropped, and each that holds another."""
    kept: list[frozenset[str]] = []
    for clause in clauses:
        if NECESSARY not in clause and clause not in kept:
            kept.append(clause)
    return tuple(c for c in kept if not any(other < c for other in kept))


def _make_site(start: int, end: int, clauses: tuple[frozenset[str], ...], label: str,
               granted: bytes | None, denied: bytes | None, *, placeholder: bool = False,
               title: str | None = None, report: tuple[str, str] | None = None) -> Site:
    if not clauses:
        clauses = (_ALWAYS,)
    elif _NOBODY in clauses:
        clauses, label = (_NOBODY,), ""
    first, *rest = clauses
    return Site(start, end, label, granted, denied, placeholder, title, report, first,
                tuple(rest))


def _marks(label: str, marked: bool, moved: Iterable[tuple[bytes, str]], undeclared: bool,
           ) -> bytes:
    """The attributes that mark a tag whose URL attributes ``moved`` were put aside."""
    add = b" data-consent=" + _quote(label) if label and not marked else b""
    for name, value in moved:
        add += b" data-consent-" + name.replace(b":", b"-") + b"=" + _quote(value)
    add += b" data-consentkit-neutralised"
    if undeclared:
        add += b" data-consentkit-undeclared"
    return add


def _size(attrs: dict[bytes, Attr], name: bytes) -> float | None:
    attr = attrs.get(name)
    if attr is None:
        return None
    m = re.match(r"[\t\n\f\r ]*([0-9]*\.?[0-9]+)", attr.value)
    return float(m.group(1)) if m else None


_NO_SPACE = str.maketrans("", "", " \t\n\r\f")


def _invisible(attrs: dict[bytes, Attr]) -> bool:
    """Is this iframe never seen: ``hidden``, 0 or 1 pixel wide or high, not displayed?"""
    if b"hidden" in attrs:
        return True
    for name in (b"width", b"height"):
        size = _size(attrs, name)
        if size is not None and size <= 1:
            return True
    style = attrs.get(_STYLE_ATTR)
    if style is not None and style.raw:
        css = _css_unescape(style.value).lower().translate(_NO_SPACE)
        if "display:none" in css or "visibility:hidden" in css:
            return True
    return False


# -- the scan ---------------------------------------------------------------------


#: below this, a <noscript> is read the other way at once to the end (see _noscript)
_NOSCRIPT_DEPTH = 64
class _Context(Document):
    """What the readings of one document share."""

    __slots__ = ("hosts", "matcher", "neutral", "off", "off_at", "own", "parted", "saw",
                 "scripts")

    def __init__(self, body: bytes, final: bool, matcher: TrackerMatcher,
                 hosts: HostRules | None, own: str | None,
                 saw: Callable[[str, str], None] | None,
                 scripts: list[tuple[int, int]] | None) -> None:
        super().__init__(body, final)
        self.matcher, self.hosts, self.own, self.saw = matcher, hosts, own, saw
        self.scripts = scripts
        #: the scripting-off reading, once it has parted from the other (see _noscript)
        self.off: _Reader | None = None
        #: where it goes on from (-1: it has read to the end)
        self.off_at = -1
        #: where the readings part (the <noscript> whose content they read two ways):
        #: edits from there on change no quotes (see _Reader._edit)
        self.neutral = self.n + 1
        #: where the first <noscript> the readings part at starts
        self.parted = -1


def _same_frames(a: list[Frame], b: list[Frame]) -> bool:
    return len(a) == len(b) and all(
        x.name == y.name and x.ns == y.ns and x.point == y.point for x, y in zip(a, b, strict=True))


class _Reader(TagReader):
    """One reading of the document: with scripting on (a browser with JavaScript) or off.

    The tokenizer's walk (:class:`~.tokenizer.TagReader`) tells it each start tag
    that may fetch; it makes their sites.
    """

    __slots__ = ("next", "sites")

    ctx: _Context
    #: read every tag of HTML content with the careful walk (the fast path's reference)
    careful = False
    skip_html = _SKIP_HTML
    skip_foreign = _SKIP_FOREIGN
    skip_inner = _SKIP_INNER
    told_foreign = frozenset(_NEUTRALISED[SVG_NS])
    told_if = _STYLE_ATTR
    told_closed = _SVG_SHEETS
    told_end_tags = False

    def __init__(self, ctx: _Context, scripting: bool, frames: list[Frame]) -> None:
        super().__init__(ctx, scripting, frames)
        self.sites: list[Site] = []
        #: the next place found by each search of the fast path (see _jump)
        self.next = [-1, -1 if ctx.hosts is not None else ctx.n,
                     -1 if ctx.hosts is not None else ctx.n, 0]

    # -- the walk

    def _jump(self, pos: int) -> int:
        """From ``pos`` (HTML content, the data state) to the next "<" that needs reading:
        the start of a tag that may need attention (or of the tag that holds a style
        or background attribute that may), or of a construct cut off by the end."""
        low, n = self.ctx.low, self.ctx.n
        found = self.next
        gap = pos  # the searches go on from here; ``pos`` is in the data state
        while True:
            at = found[0]
            if at < gap:
                m = _CANDIDATE.search(low, gap)
                at = found[0] = m.start() if m is not None else n
                found[3] = m is not None and m.start(1) >= 0
            hit = found[1]
            if hit < n:
                if hit < gap:
                    m = _STYLE_CANDIDATE.search(low, gap)
                    hit = found[1] = m.start() if m is not None else n
                if hit < at:
                    at = hit
            hit = found[2]
            if hit < n:
                if hit < gap:
                    m = _BACKGROUND_CANDIDATE.search(low, gap)
                    hit = found[2] = m.start() if m is not None else n
                if hit < at:
                    at = hit
            if at >= n:
                if not self.ctx.final:  # where what follows is cut off by the end
                    return WALK.match(low, pos).end()  # type: ignore[union-attr]
                return n
            # Passed over whatever the state here, as ordinary markup: an image (or the
            # like) whose URLs are the page's own, an icon, a comment with nothing
            # inside that could matter (the checks below hold with them in the gap).
            if found[3]:
                m = _PLAIN_OWN_FETCHING.match(low, at)
                if m is not None:
                    gap = m.end()
                    continue
            elif low[at + 1] == 33:  # "<!--"
                m = COMMENT_RE.match(low, at)
                if m is not None:
                    end = m.end()
                    if (found[1] >= end and found[2] >= end
                            and _CANDIDATE.search(low, at + 4, end) is None):
                        gap = end
                        continue
            elif low.startswith(b"<svg", at):
                m = _PLAIN_SVG.match(low, at)
                if m is not None:
                    gap = m.end()
                    continue
            # what state is ``at`` in? [pos, at) holds only ordinary markup
            close = low.rfind(b">", pos, at)
            opener = -1
            if close >= 0 and (
                    ((q := low.rfind(b'"', pos, close)) >= 0
                     and low[q - 1] in EQ_OR_SPACE and may_open(low, pos, close, b'"'))
                    or ((q := low.rfind(b"'", pos, close)) >= 0
                        and low[q - 1] in EQ_OR_SPACE and may_open(low, pos, close, b"'"))):
                # that ">" may be inside a quoted value: read the tokens up to ``at``
                walked = WALK.match(low, pos, at).end()  # type: ignore[union-attr]
                if walked < at:
                    opener = walked
            else:
                m = OPENER.search(low, close + 1 if close >= 0 else pos, at)
                if m is not None:
                    opener = m.start()
            if opener >= 0:  # ``at`` is inside the tag (or bogus comment) that opens there
                kind = low[opener + 1]
                if kind == 47:  # an end tag
                    m = END_TAG.match(low, opener)
                    if m is None:
                        return opener
                    pos = gap = m.end()
                elif kind == 33 or kind == 63:  # a bogus comment
                    end = low.find(b">", opener)
                    if end < 0:
                        return opener
                    pos = gap = end + 1
                else:
                    return opener
                continue
            if low[at] != 60:  # a style or background attribute in text
                pos, gap = at, at + 1
                continue
            if low[at + 1] == 33:  # "<!--"
                m = COMMENT_RE.match(low, at)
                if m is None:
                    return at  # it runs to the end
                pos = gap = m.end()
                continue
            if not found[3]:
                if low.startswith(b"<script", at):
                    m = _PLAIN_SCRIPT.match(low, at)
                    if m is not None and not self.ctx.matcher.scripts_in_lower(
                            low[m.end(1):m.start(2)]):
                        if self.ctx.scripts is not None:
                            self.ctx.scripts.append((m.end(1), m.start(2)))
                        pos = gap = m.end()  # runs as written: no tracker in it
                        continue
                return at  # one that changes how what follows is read
            m = _OWN_FETCHING.match(low, at)
            if m is None:
                return at
            pos = gap = m.end()

    def _noscript(self, t0: int, a0: int, a1: int, t1: int) -> int:
        """``<noscript>`` with scripting on: raw text, and its content read as markup too.

        The scripting-off reading starts inside it. When it ends the element
        where this reading does (the usual case), its sites are this one's; when
        not, the two readings have parted for good, and the scripting-off one
        goes on to the end of the document on its own (:attr:`_Context.off`).
        """
        ctx = self.ctx
        low, n = ctx.low, ctx.n
        self._start_tag(b"noscript", HTML_NS, t0, a0, a1, t1)
        found = RAW_END[b"noscript"].search(low, t1)
        close = found.start() if found is not None else n
        after = end_tag_end(low, close, 8) if found is not None else -1
        if ctx.off is None:
            depth = len(self.frames)
            other = _Reader(ctx, False, [*self.frames, Frame(b"noscript", HTML_NS, 0, t0, t1)])
            if depth > _NOSCRIPT_DEPTH:  # deep inside foreign content: part at once
                end, closed = t1, True
            else:
                end = other.run(t1, depth)
                closed = other.cut < 0 and len(other.frames) <= depth  # not at the end
            if (closed and end == after and depth <= _NOSCRIPT_DEPTH
                    and _same_frames(other.frames, self.frames)):
                self.sites.extend(other.sites)
            else:
                ctx.off, ctx.off_at = other, end if closed and end < n else -1
                ctx.parted = t0
                if not ctx.final:  # wait for the whole document
                    self._eof(t0)
                    return -1
        if after < 0:
            self._eof(t0)
            return -1
        return after

    # -- decisions

    def _edit(self, t0: int, a0: int, t1: int, remove: list[Attr], add: bytes) -> bytes:
        """The start tag ``body[t0:t1]`` with ``remove`` put aside and ``add`` after its name.

        Where two readings of the document part (see :func:`scan`), a tag that is real
        in one may lie inside an attribute value in the other: there nothing is taken
        out and no quote put in (which would change how the other reads on), each
        attribute is renamed where it is (``src`` → ``data-consent-src``) and the
        added ones are written without quotes.
        """
        if t0 < self.ctx.neutral:
            return _edit_tag(self.ctx.body, t0, a0, t1, remove, add)
        body = self.ctx.body
        parts = [body[t0:a0], _NEUTRAL_ATTR.sub(_neutral_attr, add)]
        pos = a0
        for attr in sorted(remove, key=lambda a: a.start):
            parts += [body[pos:attr.start], b"data-consent-"]
            pos = attr.start
        parts.append(body[pos:t1])
        return b"".join(parts)

    def _decide(self, url: str, kind: str, how: str,
                ) -> tuple[tuple[frozenset[str], ...], str, Tracker | None] | None:
        """What must be granted for ``url`` to be fetched by an element of ``kind``.

        ``(sets of categories, one of each must be granted; the category to show;
        the known tracker it is)``, or ``None`` when nothing needs consent.
        """
        ctx = self.ctx
        hosts, matcher = ctx.hosts, ctx.matcher
        url = url.strip("\t\n\f\r ")
        if not url:
            return None
        target = hosts.target(url) if hosts is not None else None
        text = url
        if target is not None or ":" in url or _SCHEME_RELATIVE.match(url) is not None:
            normal = _normal_form(url)
            if normal and normal != url:
                text = url + "\n" + normal
        low = text.lower().encode("utf-8", "replace")
        if kind == "script":
            found = matcher.scripts_in_lower(low)
        else:
            tracker = matcher.find_resource(low) if kind == "resource" else matcher._find(kind, low)
            found = (tracker,) if tracker is not None else ()
        needs = tuple(frozenset((t.category,)) for t in found)
        first = found[0] if found else None
        if hosts is None:
            return (needs, first.category, first) if first is not None else None
        if target is not None and target.host == ctx.own:
            target = None
        if target is None:
            return (needs, first.category, first) if first is not None else None
        if ctx.saw is not None:
            ctx.saw(target.host, how)
        allowed, label = hosts.decide(target)
        if first is not None:
            return (allowed, *needs), first.category if allowed else "", first
        if NECESSARY in allowed:
            return None
        return (allowed,), label, None

    def _raw_text(self, name: bytes, t0: int, a0: int, a1: int, t1: int, close: int,
                  after: int) -> None:
        action = _RAW_ACTIONS.get(name)
        if action is Action.FRAME:
            site = self._iframe(t0, a0, a1, t1)
            if site is not None:
                self.sites.append(site)
        elif action is Action.SHEET:
            site = self._style(t0, a0, a1, t1, close, after, markup=False)
            if site is not None:
                self.sites.append(site)
        else:
            self._start_tag(name, HTML_NS, t0, a0, a1, t1)

    def _script_text(self, t0: int, a0: int, a1: int, t1: int, close: int) -> None:
        if self.ctx.scripts is not None:
            self.ctx.scripts.append((t1, close))
        site = self._script_site(t0, a0, a1, t1, close)
        if site is not None:
            self.sites.append(site)

    def _closed(self, frame: Frame, at: int) -> None:
        if frame.ns == SVG_NS and frame.name in _SVG_SHEETS:  # its text is read now
            site = self._style(frame.start, frame.a0, frame.a1, frame.content, at, at,
                               markup=True)
            if site is not None:
                self.sites.append(site)

    def _start_tag(self, name: bytes, ns: int, t0: int, a0: int, a1: int, t1: int) -> None:
        """The site of an element that may fetch with its URL attributes or its style."""
        ctx = self.ctx
        rule = _NEUTRALISED[ns].get(name)
        if ctx.hosts is None:
            if rule is None or rule.trackers is None or ns != HTML_NS:
                return  # without the app's hosts only known trackers are looked for
        elif rule is None and _STYLE_ATTR not in ctx.low[a0:a1]:
            return
        site = self._element(rule, t0, a0, a1, t1)
        if site is not None:
            self.sites.append(site)

    def _element(self, rule: _rules.Rule | None, t0: int, a0: int, a1: int,
                 t1: int) -> Site | None:
        """The site of an element that neutralises by ``rule`` (``None``: one whose only
        URLs may be in its style attribute)."""
        ctx = self.ctx
        body, hosts = ctx.body, ctx.hosts
        attrs = attributes(body, ctx.low, a0, a1)
        marked = attrs.get(b"data-consent")
        if marked is not None and hosts is None:
            return None  # the app's own gate
        fetched: tuple[bytes, ...] = ()
        how, kind = "loads from", "image"
        if rule is not None:
            fetched, how = _FETCHED[rule], rule.how
            kind = rule.trackers or "image"
            if rule.when_type is not None:
                given = attrs.get(b"type")
                if given is None or given.value.strip().lower() != rule.when_type:
                    fetched = ()
            elif rule.when_rel:
                rel = attrs.get(b"rel")
                rels = rel.value.lower().split() if rel is not None else []
                wanted = _LINK_RELS if hosts is not None else _TRACKER_RELS
                fetching = [r for r in rels if r in wanted]
                if not fetching:
                    fetched = ()
                else:
                    how = _LINK_RELS[fetching[0]]
        needs: list[frozenset[str]] = []
        moved: list[tuple[bytes, str]] = []
        remove: list[Attr] = []
        label = ""
        tracker: Tracker | None = None
        for attr_name in fetched:
            attr = attrs.get(attr_name)
            if attr is None or not attr.raw:
                continue
            value = attr.value
            blocked = False
            for url in srcset_urls(value) if attr_name in _SRCSETS else (value,):
                decided = self._decide(url, kind, how)
                if decided is not None:
                    needs.extend(decided[0])
                    label = label or decided[1]
                    tracker = tracker or decided[2]
                    blocked = True
            if blocked:
                moved.append((attr_name, value))
                remove.append(attr)
        style = attrs.get(_STYLE_ATTR)
        if (hosts is not None and style is not None and style.raw
                and (b"(" in style.raw or b"&" in style.raw)):
            value = style.value
            blocked = False
            for url in css_urls(value) if "(" in value else ():
                decided = self._decide(url, "image", _HOW_STYLE_ATTR)
                if decided is not None:
                    needs.extend(decided[0])
                    label = label or decided[1]
                    blocked = True
            if blocked:
                moved.append((_STYLE_ATTR, value))
                remove.append(style)
        if not moved:
            return None
        if marked is not None:
            label = marked.value.strip()
            needs.append(frozenset((label,)))
        clauses = _simplify(needs)
        if not clauses:
            return None  # all it loads is always allowed
        undeclared = _NOBODY in clauses
        denied = self._edit(t0, a0, t1, remove, _marks(label, marked is not None, moved,
                                                      undeclared))
        report = None
        if tracker is not None:
            if rule is not None and rule.when_rel:
                rel_text = attrs[b"rel"].value
                report = (f"tracker:{tracker.name}:link",
                          f"a <link rel={rel_text!r}> fetched a resource of {tracker.name}; its "
                          f"href was taken away until {tracker.category!r} is granted. Leave "
                          "the loading to the gated script.")
            else:
                report = (f"tracker:{tracker.name}",
                          f"a tracking pixel of {tracker.name} was blocked until "
                          f"{tracker.category!r} is granted; load it only when "
                          f"current_consent.allows({tracker.category!r}).")
        return _make_site(t0, t1, clauses, label, None, denied, report=report)

    def _style(self, t0: int, a0: int, a1: int, t1: int, close: int, end: int, *,
               markup: bool) -> Site | None:
        """The site of a ``<style>`` whose sheet loads from a host not always allowed."""
        ctx = self.ctx
        if ctx.hosts is None:
            return None
        body = ctx.body
        attrs = attributes(body, ctx.low, a0, a1)
        site = self._element(None, t0, a0, a1, t1)  # its own style attribute
        css = body[t1:close].decode("utf-8", "replace")
        if markup:  # SVG: the text of its children, references decoded
            css = html.unescape(css.replace("<![CDATA[", "").replace("]]>", ""))
        if "(" not in css and "@" not in css:
            return site
        needs: list[frozenset[str]] = list(site.needs) if site is not None else []
        label = site.category if site is not None else ""
        blocked = False
        for url in css_urls(css):
            decided = self._decide(url, "image", _HOW_SHEET)
            if decided is not None:
                needs.extend(decided[0])
                label = label or decided[1]
                blocked = True
        if not blocked:
            return site
        marked = attrs.get(b"data-consent")
        if marked is not None:
            label = marked.value.strip()
            needs.append(frozenset((label,)))
        clauses = _simplify(needs)
        if not clauses:
            return site
        type_attr = attrs.get(b"type")
        remove = [type_attr] if type_attr is not None else []
        add = b' type="text/plain"' + _marks(label, marked is not None, (), _NOBODY in clauses)
        if type_attr is not None and type_attr.value.strip():
            add += b" data-type=" + _quote(type_attr.value.strip())
        style = attrs.get(_STYLE_ATTR)
        if site is not None and style is not None:  # its style attribute is put aside too
            remove.append(style)
            add += b" data-consent-style=" + _quote(style.value)
        # The type stops the sheet; Chromium's preload scanner fetches an @import of any
        # <style> (it reads no type, nor whether the element is SVG), but none inside a
        # <template>: so the element is put in one until it is allowed.
        denied = _TEMPLATE + self._edit(t0, a0, t1, remove, add)
        if end >= 0:  # (one that runs to the end of the input is closed by it)
            self.sites.append(_make_site(end, end, clauses, label, None, b"</template>"))
        return _make_site(t0, t1, clauses, label, None, denied)

    def _script_site(self, t0: int, a0: int, a1: int, t1: int, close: int) -> Site | None:
        """The site of the script ``body[t0:t1]`` (attributes ``a0:a1``, text ``t1:close``).

        ``None`` when the script never depends on consent.
        """
        ctx = self.ctx
        body, low, matcher = ctx.body, ctx.low, ctx.matcher
        tag_low = low[a0:a1]
        if (b"type" not in tag_low and b"data-consent" not in tag_low and _SCRIPT_URL not in tag_low
                and not matcher.scripts_in_lower(low[t1:close])):
            # runnable, unmarked, its own text and no tracker in it: the common script
            return None
        attrs = attributes(body, low, a0, a1)
        type_attr = attrs.get(b"type")
        type_value = type_attr.value.strip().lower() if type_attr else ""
        runnable = type_value.split(";", 1)[0].strip().encode() in _RUNNABLE_TYPES
        marked = attrs.get(b"data-consent")
        if not runnable and (marked is None or type_value != "text/plain"):
            return None
        src = attrs.get(_SCRIPT_URL)
        needs: tuple[frozenset[str], ...] = ()
        label = ""
        tracker: Tracker | None = None
        if src is not None:
            decided = self._decide(src.value, "script", _HOW_SCRIPT)
            if decided is not None:
                needs, label, tracker = decided
        else:
            found = matcher.scripts_in_lower(low[t1:close])
            if found:
                needs = tuple(frozenset((t.category,)) for t in found)
                label, tracker = found[0].category, found[0]
        if marked is not None:
            category = marked.value.strip()
            clauses = _simplify((frozenset((category,)), *needs))
            if type_value == "text/plain":
                data_type = attrs.get(b"data-type")
                add = b" type=" + _quote(data_type.value) if data_type and data_type.value else b""
                assert type_attr is not None
                granted = self._edit(t0, a0, t1, [type_attr], add)
                return _make_site(t0, t1, clauses, category, granted, None)
            return _make_site(
                t0, t1, clauses, category, None,
                _neutralise_script(self._edit, t0, a0, t1, attrs, type_attr, category, b""),
                report=(f"runnable:{category}",
                        f'a <script data-consent="{category}"> has a runnable type; it was '
                        'made inert until consent. Write type="text/plain" (and '
                        'data-type="module" for modules).'))
        clauses = _simplify(needs)
        if not clauses:
            return None
        flag = b" data-consentkit-neutralised"
        if _NOBODY in clauses:
            flag += b" data-consentkit-undeclared"
            label = ""
        report = None
        if tracker is not None:
            report = (f"tracker:{tracker.name}",
                      f"an unmarked script of {tracker.name} was neutralised until "
                      f'{tracker.category!r} is granted; mark it type="text/plain" '
                      f'data-consent="{tracker.category}".')
        return _make_site(t0, t1, clauses, label, None,
                          _neutralise_script(self._edit, t0, a0, t1, attrs, type_attr, label,
                                             flag),
                          report=report)

    def _iframe(self, t0: int, a0: int, a1: int, t1: int) -> Site | None:
        """The site of this iframe, or ``None`` when it never depends on consent."""
        body = self.ctx.body
        attrs = attributes(body, self.ctx.low, a0, a1)
        src = attrs.get(_IFRAME_URL)
        marked = attrs.get(b"data-consent")
        title_attr = attrs.get(b"title")
        title = title_attr.value.strip() if title_attr else None
        how = _HOW_IFRAME
        if marked is not None:
            category = marked.value.strip()
            consent_src = attrs.get(_IFRAME_MARKED_URL)
            needs: list[frozenset[str]] = [frozenset((category,))]
            for attr in (consent_src, src):
                if attr is not None and self.ctx.hosts is not None:
                    decided = self._decide(attr.value, "iframe", how)
                    if decided is not None:
                        needs.extend(decided[0])
            granted = None
            if consent_src is not None and t0 < self.ctx.neutral:
                granted = _edit_tag(body, t0, a0, t1, [src] if src is not None else [],
                                    b" " + _IFRAME_URL + b"=" + _quote(consent_src.value))
            denied = None
            if src is not None and src.value.strip().lower() not in ("", "about:blank"):
                add = (b" " + _IFRAME_MARKED_URL + b"=" + _quote(src.value)
                       if consent_src is None else b"")
                denied = self._edit(t0, a0, t1, [src], add)
            return _make_site(t0, t1, _simplify(needs), category, granted, denied,
                              placeholder=t0 < self.ctx.neutral and not _invisible(attrs),
                              title=title)
        if src is None or not src.raw:
            return None
        decided = self._decide(src.value, "iframe", how)
        if decided is None:
            return None
        clauses = _simplify(decided[0])
        if not clauses:
            return None
        label, tracker = decided[1], decided[2]
        undeclared = _NOBODY in clauses
        add = _marks(label, False, [(_IFRAME_URL, src.value)], undeclared)
        report = None
        if tracker is not None:
            report = (f"tracker:{tracker.name}",
                      f"an unmarked iframe of {tracker.name} was blocked until "
                      f"{tracker.category!r} is granted; write it as <iframe "
                      f'data-consent="{tracker.category}" data-consent-src="…"> or use '
                      "consent_iframe().")
        return _make_site(t0, t1, clauses, label, None, self._edit(t0, a0, t1, [src], add),
                          placeholder=t0 < self.ctx.neutral and not _invisible(attrs),
                          title=title, report=report)


def _neutralise_script(edit: Callable[[int, int, int, list[Attr], bytes], bytes], t0: int,
                       a0: int, t1: int, attrs: dict[bytes, Attr], type_attr: Attr | None,
                       category: str, flag: bytes) -> bytes:
    add = b' type="text/plain"'
    if b"data-consent" not in attrs and category:
        add += b" data-consent=" + _quote(category)
    add += flag
    if type_attr is not None and type_attr.value.strip() and b"data-type" not in attrs:
        add += b" data-type=" + _quote(type_attr.value.strip())
    remove = [type_attr] if type_attr is not None else []
    return edit(t0, a0, t1, remove, add)


_normal_forms: dict[str, str | None] = {}


def _normal_form(url: str) -> str | None:
    """``host/path?query`` of an absolute URL as the browser reads it (known trackers are
    matched on it too: a host spelt ``googletagmanager%2Ecom`` or with ``:443``)."""
    found = _normal_forms.get(url, "\0")
    if found != "\0":
        return found
    target = network_target(url)
    normal = None
    if target is not None:
        query = url.partition("?")[2].partition("#")[0]
        normal = target.host + target.path + ("?" + query if query else "")
    if len(_normal_forms) >= 4096:
        _normal_forms.clear()
    _normal_forms[url] = normal
    return normal


_NEUTRAL_ATTR = re.compile(rb' ([a-z-]+)="([^"]*)"')
_TOKEN = re.compile(rb"[A-Za-z0-9_./+-]+")


def _neutral_attr(m: re.Match[bytes]) -> bytes:
    name, value = m.group(1), m.group(2)
    if name.startswith(b"data-consent-") or _TOKEN.fullmatch(value) is None:
        return b""  # renamed where it is (or no value that needs no quotes)
    return b" " + name + b"=" + value


def _conflict(body: bytes, a: Site, b: Site) -> Site:
    """Two readings of the document see different tags here (markup inside a value that
    one of them ends early): neither is let through until both are allowed."""
    start, end = min(a.start, b.start), max(a.end, b.end)
    return Site(start, end, a.category or b.category, None,
                body[start:end].replace(b"<", b"&lt;"), a.placeholder or b.placeholder,
                a.title or b.title,
                ("conflict", "markup that a browser reads one way with JavaScript on and "
                 "another with it off was taken apart until consent; write the <noscript> "
                 "content without '</noscript' inside attribute values."),
                a.needs[0], (*a.needs[1:], *b.needs))


def _merge(body: bytes, *readings: list[Site]) -> list[Site]:
    """The sites of every reading, in order; one site where readings saw the same tag."""
    merged = sorted((site for sites in readings for site in sites),
                    key=lambda s: (s.start, s.end))
    out: list[Site] = []
    for site in merged:
        if out and site.start < out[-1].end:
            if site != out[-1]:
                out[-1] = _conflict(body, out[-1], site)
            continue
        out.append(site)
    return out


def scan(body: bytes, *, matcher: TrackerMatcher | None = None, final: bool = True,
         scripts: list[tuple[int, int]] | None = None, hosts: HostRules | None = None,
         own: str | None = None, saw: Callable[[str, str], None] | None = None,
         ) -> tuple[list[Site], int]:
    """Find every start tag of ``body`` that depends on consent.

    :param scripts: when given, the span of every script's text is appended to it.
    :param hosts: the app's hosts; without them only known trackers are looked for.
    :param own: the page's own host (its URLs need no consent).
    :param saw: told ``(host, how)`` for every third-party host a fetching element names.
    :return: ``(sites, consumed)``; with ``final=False`` an element cut off at
        the end is not scanned and ``consumed`` is where it starts.
    """
    spans: list[tuple[int, int]] | None = [] if scripts is not None else None
    ctx = _Context(body, final, matcher or default_matcher(), hosts, own, saw, spans)
    main = _Reader(ctx, True, [])
    main.run(0)
    if ctx.off is not None and final:
        # The readings part: read again (both), with edits that keep either from
        # changing how the other goes on.
        parted = ctx.parted
        ctx = _Context(body, final, ctx.matcher, hosts, own, None, scripts)
        ctx.neutral = parted
        main = _Reader(ctx, True, [])
        main.run(0)
    elif scripts is not None and spans:
        scripts.extend(spans)
    consumed = ctx.n if final or main.cut < 0 else main.cut
    sites = main.sites
    off = ctx.off
    if off is not None and final:
        if ctx.off_at >= 0:
            off.run(ctx.off_at)
        sites = _merge(body, sites, off.sites)
    else:
        sites.sort(key=lambda s: s.start)
    if consumed < ctx.n:  # (a style sheet's closing </template> at the cut is kept)
        sites = [s for s in sites if s.start < consumed or s.start == s.end == consumed]
    return sites, consumed


def rewrite(
    body: bytes,
    gate: Gate,
    *,
    matcher: TrackerMatcher | None = None,
    final: bool = True,
    cache: ScanCache | None = None,
    nonce: Callable[[], str | None] | None = None,
    hosts: HostRules | None = None,
    own: str | None = None,
    saw: Callable[[str, str], None] | None = None,
) -> tuple[bytes, int]:
    """Gate the elements of an HTML document that depend on consent.

    :param body: the document, in an ASCII-compatible encoding (UTF-8, Latin-1 …).
    :param final: ``False`` when more of the document follows (streaming): an
        element that is not complete yet is left for the next call.
    :param cache: remembers the scan of documents seen before.
    :param nonce: gives the request's CSP nonce, asked only when ``body`` was not
        seen before: a page that differs only by its nonce is then not scanned
        again (see :meth:`ScanCache.entry`).
    :param hosts: the app's hosts (:class:`HostRules`); ``own`` the page's host;
        ``saw`` is told each third-party host when the page is scanned (see :func:`scan`).
    :return: ``(output, consumed)``: the rewritten bytes of ``body[:consumed]``.
        With ``final=True`` everything is consumed.
    """
    if cache is not None and final:
        doc = cache.entry(body, matcher, nonce, hosts=hosts, own=own, saw=saw)
        return doc.apply(gate), len(body)
    sites, consumed = scan(body, matcher=matcher, final=final, hosts=hosts, own=own, saw=saw)
    return apply(body, sites, gate, consumed), consumed


def apply(body: bytes, sites: Iterable[Site], gate: Gate, consumed: int | None = None) -> bytes:
    """``body[:consumed]`` with each site's start tag switched by ``gate``'s decision."""
    end = len(body) if consumed is None else consumed
    out: list[bytes] = []
    copied = 0
    allows = gate.allows
    for site in sites:
        if _site_allowed(site, allows):
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

    __slots__ = ("body", "cache", "categories", "holes", "nonce_outside", "outputs", "own",
                 "scripts", "segments", "sites", "unholeable")

    #: output plans kept per document (one per combination of decisions seen)
    max_outputs = 8
    #: whole outputs kept per plan (one per language and link seen)
    max_finals = 4

    def __init__(self, body: bytes, sites: list[Site], cache: ScanCache | None = None,
                 own: str | None = None) -> None:
        self.body = body
        self.sites = sites
        #: the categories the sites depend on, each once, in order of first use
        self.categories = tuple(dict.fromkeys(
            category for site in sites for clause in site.needs for category in clause))
        #: the page's own host it was scanned for (its URLs need no consent)
        self.own = own
        #: the cache that holds this document and bounds the bytes its outputs take
        self.cache = cache
        #: where the texts of its scripts are (kept for documents with a nonce stand-in)
        self.scripts: list[tuple[int, int]] = []
        #: decisions (per category) -> output
        self.outputs: dict[tuple[bool, ...], _Output] = {}
        #: a document kept with NUL holes (see :meth:`ScanCache._holed`): where they
        #: are, the bytes between them, and whether one is in a site or a script's
        #: text (then its pages are scanned whole)
        self.holes: tuple[tuple[int, int], ...] = ()
        self.segments: tuple[tuple[int, bytes], ...] = ()
        self.unholeable: bool | None = None
        #: a document kept with a nonce stand-in: is every stand-in outside the scripts'
        #: texts (see :meth:`ScanCache._nonced`; the same for every page it stands for)
        self.nonce_outside: bool | None = None

    def set_holes(self, runs: list[tuple[int, int]]) -> None:
        """Mark this document as kept with NULs at ``runs``."""
        spans = [(site.start, site.end) for site in self.sites] + list(self.scripts)
        self.unholeable = any(s < end and start < e for start, end in runs for s, e in spans)
        self.holes = tuple(runs)
        segments, at = [], 0
        for start, end in runs:
            segments.append((at, self.body[at:start]))
            at = end
        segments.append((at, self.body[at:]))
        self.segments = tuple(segments)

    def tokens_in(self, body: bytes) -> tuple[bytes, ...] | None:
        """``body``'s bytes for this document's holes when it fits them (:meth:`fits`)."""
        if not self.holes or not self.fits(body):
            return None
        return tuple([body[start:end] for start, end in self.holes])

    def fits(self, body: bytes) -> bool:
        """Is ``body`` this document but for its holes, which hold tokens?"""
        starts = body.startswith
        for at, segment in self.segments:
            if not starts(segment, at):
                return False
        fullmatch = _TOKEN_VALUE.fullmatch
        return all(fullmatch(body, start, end) for start, end in self.holes)

    def apply(self, gate: Gate) -> bytes:
        """The output for ``gate``: :func:`apply` of the sites, reusing what was made before."""
        if not self.sites:
            return self.body
        allows = gate.allows
        decisions = tuple([allows(category) for category in self.categories])
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
        allowed_by = dict(zip(self.categories, decisions, strict=True)).__getitem__
        body = self.body
        out: list[bytes | int] = []
        pending: list[bytes] = []  # bytes since the last placeholder gap
        reports: list[tuple[str, str]] = []
        copied = 0
        for index, site in enumerate(self.sites):
            allowed = _site_allowed(site, allowed_by)
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
        #: keys whose pages differed from the kept ones otherwise than in tokens (in a
        #: script's text, say): not compared again for holes (see _holed)
        self._unlike: set[tuple[tuple[int, bytes, bytes], str | None]] = set()
        self._count = 0
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _key(body: bytes) -> tuple[int, bytes, bytes]:
        return len(body), body[:48], body[-48:]

    def __len__(self) -> int:
        return self._count

    def __contains__(self, body: object) -> bool:
        return isinstance(body, bytes) and any(
            doc.body == body for doc in self._scans.get(self._key(body), ()))

    def kin(self, body: bytes) -> bool:
        """Was a document of ``body``'s length and ends kept (the same page but for a
        nonce or a token, most likely: :meth:`entry` finds it without the prefilter)?"""
        return self._key(body) in self._scans

    def known(self, body: bytes, own: str | None = None) -> ScannedDocument | None:
        """The scanned document ``body`` if it was scanned before for the page's host
        ``own`` (no scan, no nonce)."""
        return self._find(body, self._key(body), own)

    def _find(self, body: bytes, key: tuple[int, bytes, bytes],
              own: str | None = None) -> ScannedDocument | None:
        for doc in self._scans.get(key, ()):
            if (doc.body is body or doc.body == body) and doc.own == own:
                return doc
        return None

    def entry(self, body: bytes, matcher: TrackerMatcher | None = None,
              nonce: Callable[[], str | None] | None = None, *,
              hosts: HostRules | None = None, own: str | None = None,
              saw: Callable[[str, str], None] | None = None,
              ) -> ScannedDocument | NoncedDocument | FilledDocument:
        """The scanned document ``body``, scanned now unless it was before.

        :param nonce: gives the request's CSP nonce. A page that differs from
            one seen before only by its nonce (a new one on every request) is
            not scanned again when every occurrence of the nonce is the value of
            a ``nonce`` attribute outside any script's text: its scan does not
            depend on those bytes (see :class:`NoncedDocument`).
        """
        key = self._key(body)
        found = self._find(body, key, own)
        if found is not None:
            return found
        scan_with = _ScanWith(matcher, hosts, own, saw)
        if nonce is not None and len(body) <= self.limit:
            nonced = self._nonced(body, nonce(), scan_with)
            if nonced is not None:
                return nonced
        if len(body) <= self.limit:
            filled = self._holed(body, key, scan_with)
            if filled is not None:
                return filled
        return self._scan(body, key, scan_with)

    def _holed(self, body: bytes, key: tuple[int, bytes, bytes],
               scan_with: _ScanWith) -> FilledDocument | None:
        """A page seen before but for the values of a few token-valued attributes.

        Pages that change on every request usually change in a CSRF field's
        ``value`` or a ``nonce`` the app did not make known: same length, same
        ends, a few short runs of other bytes. When every run is the whole value
        of such an attribute (see :func:`_token_runs`) and lies outside every
        site and script text, the scan does not depend on those bytes: the page
        is kept once with NULs in those holes, and its output is that document's
        with the holes filled with this request's bytes (:class:`FilledDocument`).
        A page that matches a kept document but for its holes costs one
        comparison of its bytes; finding the holes (the first time) a few more.
        """
        if b"\0" in body:
            return None
        bucket = self._scans.get(key, ())
        for doc in bucket:
            if doc.own == scan_with.own and doc.unholeable is False:
                tokens = doc.tokens_in(body)
                if tokens is not None:
                    return FilledDocument(doc, list(tokens))
        if (key, scan_with.own) in self._unlike:
            return None  # its pages differ otherwise: finding that out again costs a scan
        compared = False
        for doc in bucket:
            if doc.own != scan_with.own:
                continue
            compared = True
            runs = _token_runs(doc.body, body)
            if runs is None:
                continue
            holed = _with_holes(body, runs)
            found = self._find(holed, key, scan_with.own)
            if found is None:
                found = self._scan(holed, key, scan_with, scripts=True)
                found.set_holes(runs)
            if not found.holes or found.unholeable:
                break
            return FilledDocument(found, [body[start:end] for start, end in runs])
        if compared:  # at most one entry per document kept
            self._unlike.add((key, scan_with.own))
        return None

    def _nonced(self, body: bytes, nonce: str | None,
                scan_with: _ScanWith) -> NoncedDocument | None:
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
        doc = (self._find(canonical, key, scan_with.own)
               or self._scan(canonical, key, scan_with, scripts=True))
        if doc.nonce_outside is None:  # the stand-ins are where they were: checked once
            doc.nonce_outside = not any(start <= position < end for position in positions
                                        for start, end in doc.scripts)
        if not doc.nonce_outside:
            return None  # in a script's text, where trackers are looked for
        return NoncedDocument(doc, stand_in, value)

    def _scan(self, body: bytes, key: tuple[int, bytes, bytes], scan_with: _ScanWith,
              *, scripts: bool = False) -> ScannedDocument:
        spans: list[tuple[int, int]] | None = [] if scripts else None
        sites, _ = scan(body, matcher=scan_with.matcher, scripts=spans, hosts=scan_with.hosts,
                        own=scan_with.own, saw=scan_with.saw)
        if len(body) > self.limit:
            doc = ScannedDocument(body, sites, own=scan_with.own)
            doc.scripts = spans or []
            return doc
        doc = ScannedDocument(body, sites, self, scan_with.own)
        doc.scripts = spans or []
        with self._lock:
            if self._count >= self.size or self._bytes + len(body) > self.total:
                self._scans.clear()
                self._unlike = set()
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

    def sites(self, body: bytes, matcher: TrackerMatcher | None = None, *,
              hosts: HostRules | None = None, own: str | None = None) -> list[Site]:
        """The sites of ``body`` (see :func:`scan`), scanned now unless it was before."""
        doc = self.entry(body, matcher, hosts=hosts, own=own)
        if isinstance(doc, FilledDocument):  # the holes are in no site: same positions
            doc = doc.base
        assert isinstance(doc, ScannedDocument)
        return doc.sites


class NoncedDocument:
    """A document seen before but for its CSP nonce: the kept one with the nonce put back.

    The kept document has each occurrence of the nonce replaced by as many NUL
    bytes (the page holds none of its own). Inside an attribute value the
    tokenizer treats a NUL, a letter, a digit, ``-`` and ``_`` alike; the
    scan reads the values of URL attributes, ``type``, ``rel``, ``style``,
    ``title``, sizes and the ``data-consent`` ones, never ``nonce``; and
    the only text where trackers are looked for, a script's, holds no
    occurrence. So the sites are those of the real page, and its output is the
    kept document's output with the NULs turned back into the nonce.
    """

    __slots__ = ("base", "nonce", "stand_in")

    def __init__(self, base: ScannedDocument, stand_in: bytes, nonce: bytes) -> None:
        self.base, self.stand_in, self.nonce = base, stand_in, nonce

    def apply(self, gate: Gate) -> bytes:
        return self.base.apply(gate).replace(self.stand_in, self.nonce)




class FilledDocument:
    """A document seen before with holes, and this request's bytes for the holes.

    The kept document has NUL bytes where the values of token-valued attributes
    were (see :meth:`ScanCache._holed`); none is in a site or a script's text,
    so every hole is copied to the output as it is, in order: the output is the
    kept document's output with each run of NULs replaced by this page's bytes.
    """

    __slots__ = ("base", "fills")

    def __init__(self, base: ScannedDocument, fills: list[bytes]) -> None:
        self.base, self.fills = base, fills

    def apply(self, gate: Gate) -> bytes:
        return fill_holes(self.base.apply(gate), self.fills)



#: bytes of the values the holes may take: tokens, base64 (url), hex, UUIDs, JWTs
_TOKEN_BYTES = (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                b"-_.+/~")
#: attributes whose values the scan never reads (``data-`` ones that hold no URL and
#: are not the extension's own); the name before ``="`` of a hole, lower case
_HOLE_ATTRIBUTE = re.compile(
    rb"[\s\"'/](?:nonce|value|content|id|class|name|for|form|"
    rb"data-(?![a-z0-9_.:-]*(?:src|href|url|bg|background|poster|consent))[a-z0-9_.:-]+)"
    rb"=[\"']\Z")
#: most runs a page may differ by, and the shortest a compared slice is cut to
_MAX_RUNS = 16
_LEAF = 64


def _token_runs(old: bytes, new: bytes) -> list[tuple[int, int]] | None:
    """Where two documents of one length differ, if only in whole token-valued
    attribute values: ``[(start, end), …]`` of each value in ``new``, else ``None``.

    Found by halving: equal halves are skipped in one comparison of their bytes.
    Each run of differing bytes is widened to the whole value it is part of —
    bytes of :data:`_TOKEN_BYTES` (or the NULs of a kept document) between two
    equal quotes, after the name of an attribute the scan never reads, in a tag
    the scan passes over or reads by its URL attributes only (not an element
    that fetches or changes the tokenizer's state but ``<input>`` and ``<meta>``,
    none with a ``style`` or ``background`` attribute, no ``http-equiv``) —
    so that nothing a browser or the scan would read differently can differ:
    such bytes (no ``<``, ``>``, ``&``, ``=`` or quote) change neither the state of
    the HTML tokenizer nor a URL, a tag or an attribute name, nor make a
    candidate of the scan's searches.
    """
    differing: list[int] = []
    # (start, end, known to differ): when the left half of a span that differs is
    # equal, the right half differs without being compared
    stack = [(0, len(new), old != new)]
    while stack:
        start, end, differs = stack.pop()
        if not differs and old[start:end] == new[start:end]:
            if stack and stack[-1][2] is None:  # the right half of this one's parent
                stack[-1] = (stack[-1][0], stack[-1][1], True)
            continue
        if end - start <= _LEAF:
            differing.extend(i for i in range(start, end) if old[i] != new[i])
            if len(differing) > _MAX_RUNS * 256:
                return None
            continue
        middle = (start + end) // 2
        stack.append((middle, end, None))  # type: ignore[arg-type]
        stack.append((start, middle, False))
    if not differing:
        return None
    runs: list[tuple[int, int]] = []
    for index in sorted(differing):
        if runs and index < runs[-1][1]:
            continue  # inside the value found for an earlier byte
        start = end = index
        while start > 0 and new[start - 1] in _TOKEN_BYTES and old[start - 1] in _TOKEN_OR_NUL:
            start -= 1
        while end < len(new) and new[end] in _TOKEN_BYTES and old[end] in _TOKEN_OR_NUL:
            end += 1
        if end == index or start == 0 or end >= len(new):
            return None  # the byte itself is not one of a token
        quote = new[start - 1]
        if quote not in b"\"'" or new[end] != quote or old[start - 1] != quote \
                or old[end] != quote:
            return None
        name = _HOLE_ATTRIBUTE.search(new[max(0, start - 40):start].lower())
        if name is None:
            return None
        # not in a tag the scan reads (an element that fetches or changes the
        # tokenizer's state, a style or background attribute): only in one it passes over
        tag = new.rfind(b"<", 0, start)
        close = new.find(b">", end)
        if tag < 0 or close < 0:
            return None
        text = new[tag:close + 1].lower()
        if ((_CANDIDATE.match(text) is not None and _PLAIN_HOLDER.match(text) is None)
                or any(name in text for name in _READ_ATTRS) or b"http-equiv" in text):
            return None
        runs.append((start, end))
        if len(runs) > _MAX_RUNS:
            return None
    return runs


_TOKEN_OR_NUL = _TOKEN_BYTES + b"\0"
#: the elements the scan reads whose tokens may be holes all the same: a form field
#: (a CSRF token; only ``type=image`` fetches, through ``src``) and a ``<meta>``
_PLAIN_HOLDER = re.compile(
    rb"<(?:" + _names([*(r.element for r in _HTML_NS_RULES.values() if r.when_type), "meta"])
    + rb")[\t\n\f\r />]")
#: the attributes the scan reads whatever the element (found by their name)
_READ_ATTRS = (*_CSS_ATTRS.split(b"|"), *_BY_ATTRIBUTE.split(b"|"))
_TOKEN_VALUE = re.compile(rb"[A-Za-z0-9\-_.+/~]+")


def _with_holes(body: bytes, runs: list[tuple[int, int]]) -> bytes:
    """``body`` with each run replaced by as many NUL bytes."""
    parts: list[bytes] = []
    at = 0
    for start, end in runs:
        parts.append(body[at:start])
        parts.append(b"\0" * (end - start))
        at = end
    parts.append(body[at:])
    return b"".join(parts)


class _ScanWith:
    """What a document is scanned with (a cache scans it for the app it belongs to)."""

    __slots__ = ("hosts", "matcher", "own", "saw")

    def __init__(self, matcher: TrackerMatcher | None, hosts: HostRules | None,
                 own: str | None, saw: Callable[[str, str], None] | None) -> None:
        self.matcher, self.hosts, self.own, self.saw = matcher, hosts, own, saw


def gate_stream(chunks: Iterable[bytes | str], gate: Gate, *, encoding: str = "utf-8",
                matcher: TrackerMatcher | None = None, hosts: HostRules | None = None,
                own: str | None = None, saw: Callable[[str, str], None] | None = None,
                ) -> Iterator[bytes]:
    """Gate an HTML document that is produced in pieces.

    Each piece is rewritten as soon as it is complete; an element cut by a
    chunk boundary waits for the next chunk (and so does foreign content or a
    ``<noscript>`` not yet closed: what follows depends on how it ends). What
    waits is read again only once as much again has come, so a long element
    arriving in many chunks costs linear time. Used by
    :func:`flask_consentkit.gating.gated_stream` for streamed responses.
    """
    pending: list[bytes] = []
    size = 0
    #: what was left over by the last scan: scan again once the buffer is twice that
    held = 0
    for chunk in chunks:
        data = chunk.encode(encoding) if isinstance(chunk, str) else chunk
        if not data:
            continue
        pending.append(data)
        size += len(data)
        if size < 2 * held:
            continue
        buffer = b"".join(pending) if len(pending) > 1 else pending[0]
        # Never scan into the last "<": it may open an element the next chunk completes.
        cut = buffer.rfind(b"<")
        if cut < 0:
            out, consumed = buffer, len(buffer)
        elif cut == 0:
            out, consumed = b"", 0
        else:
            out, consumed = rewrite(buffer[:cut], gate, matcher=matcher, final=False,
                                    hosts=hosts, own=own, saw=saw)
        rest = buffer[consumed:]
        pending = [rest] if rest else []
        size = held = len(rest)
        if out:
            yield out
    if pending:
        yield rewrite(b"".join(pending), gate, matcher=matcher, hosts=hosts, own=own,
                      saw=saw)[0]
