"""The element rules: which elements make a browser fetch, from which attributes, and when.

:data:`RULES` is the one table. The rewrite (:mod:`.html`), its prefilter
(:func:`~.html.could_need_gating`) and ``flask consent scan`` read it, through
the views below, computed once at import: a rule added here is neutralised by
the rewrite, found by the prefilter and the fast path, and reported by the scan.

The tokenizer (:mod:`.tokenizer`) knows none of this.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "ANY", "LINK_RELS", "RULES", "RUNNABLE_SCRIPT_TYPES", "URL_ATTRS", "Action", "Attr",
    "LinkRel", "Namespace", "Rule", "Syntax",
]


class Namespace(enum.Enum):
    """Where an element is: HTML content, or inside ``<svg>``."""

    HTML = "html"
    SVG = "svg"


class Syntax(enum.Enum):
    """What an attribute's value (or an element's text) holds."""

    URL = "url"
    #: a ``srcset``: candidates, each a URL and descriptors
    SRCSET = "srcset"
    #: CSS: ``url()``, ``@import``, ``image-set()`` …
    CSS = "css"


class Action(enum.Enum):
    """What the rewrite does with an element whose URL is not allowed."""

    #: its URL attributes are put aside as ``data-consent-<name>``
    NEUTRALISE = "neutralise"
    #: a script (one whose ``type`` is one of :data:`RUNNABLE_SCRIPT_TYPES` runs): made
    #: inert with ``type="text/plain"``
    INERT = "inert"
    #: an iframe: ``src`` put aside and a placeholder put in front (unless invisible)
    FRAME = "frame"
    #: a style sheet: ``type="text/plain"``, and the element wrapped in a ``<template>``
    SHEET = "sheet"


@dataclass(frozen=True, slots=True)
class Attr:
    """An attribute whose value the browser fetches."""

    name: str
    syntax: Syntax = Syntax.URL


@dataclass(frozen=True, slots=True)
class LinkRel:
    """A ``<link rel>`` value under which the browser fetches ``href`` or connects to its host."""

    #: what it does, for the developer's log ("/page preloads from …")
    how: str
    #: it only opens a connection (no policy governs it)
    connect: bool = False
    #: the known trackers' patterns are tried on it without the app's registry
    trackers: bool = False


#: the element name of a rule that holds for every element (of every namespace)
ANY = "*"


@dataclass(frozen=True, slots=True)
class Rule:
    """One element (in one namespace) and what of it the browser fetches."""

    element: str
    #: ``None``: every namespace (with :data:`ANY`)
    namespace: Namespace | None
    #: its attributes that are fetched
    attrs: tuple[Attr, ...] = ()
    action: Action = Action.NEUTRALISE
    #: what its fetch is, for the developer's log ("/page loads an image from …")
    how: str = "loads from"
    #: its text is fetched from too (a style sheet)
    text: Syntax | None = None
    #: only when ``<link rel>`` holds one of :data:`LINK_RELS`
    when_rel: bool = False
    #: only when its ``type`` is this (``<input type=image>``)
    when_type: str | None = None
    #: which known trackers its URL is matched against ("image", "script", "iframe",
    #: "resource": any of them); ``None``: those of "image", and only with the app's
    #: registry (without one only known trackers are looked for)
    trackers: str | None = None
    #: its URL is the document's base URL (no fetch: every relative URL after it)
    base: bool = False
    #: found by its attribute, not its name (the elements are too common to look at
    #: each: ``<body>``, ``<td>`` …)
    by_attribute: bool = False


_SRCSET, _CSS = Syntax.SRCSET, Syntax.CSS
_HTML, _SVG = Namespace.HTML, Namespace.SVG
_SRC = Attr("src")
_HREFS = (Attr("href"), Attr("xlink:href"))

#: ``<link rel>`` values that fetch or connect, and what each does
LINK_RELS: dict[str, LinkRel] = {
    "preconnect": LinkRel("connects early to", connect=True),
    "dns-prefetch": LinkRel("looks up early", connect=True),
    "preload": LinkRel("preloads from", trackers=True),
    "modulepreload": LinkRel("preloads a script from", trackers=True),
    "prefetch": LinkRel("prefetches from", trackers=True),
    "prerender": LinkRel("prerenders from", trackers=True),
    "stylesheet": LinkRel("loads a style sheet from", trackers=True),
    "icon": LinkRel("loads an icon from"),
    "manifest": LinkRel("loads a manifest from"),
    "apple-touch-icon": LinkRel("loads an icon from"),
    "apple-touch-icon-precomposed": LinkRel("loads an icon from"),
    "mask-icon": LinkRel("loads an icon from"),
}

#: ``type`` values under which a browser runs a script (lower case, no parameters)
RUNNABLE_SCRIPT_TYPES = frozenset({
    "", "module", "application/ecmascript", "application/javascript",
    "application/x-ecmascript", "application/x-javascript", "text/ecmascript",
    "text/javascript", "text/javascript1.0", "text/javascript1.1", "text/javascript1.2",
    "text/javascript1.3", "text/javascript1.4", "text/javascript1.5", "text/jscript",
    "text/livescript", "text/x-ecmascript", "text/x-javascript",
})

#: The element rules. HTML elements fetched by their name come first, in the order
#: the fast path looks for them (the commonest first).
RULES: tuple[Rule, ...] = (
    Rule("img", _HTML, (_SRC, Attr("srcset", _SRCSET)), how="loads an image from",
         trackers="image"),
    Rule("link", _HTML, (Attr("href"), Attr("imagesrcset", _SRCSET)), when_rel=True,
         trackers="resource"),
    Rule("source", _HTML, (_SRC, Attr("srcset", _SRCSET)), how="loads media from"),
    Rule("video", _HTML, (_SRC, Attr("poster")), how="loads media from"),
    Rule("audio", _HTML, (_SRC,), how="loads media from"),
    Rule("input", _HTML, (_SRC,), when_type="image", how="loads an image from"),
    Rule("object", _HTML, (Attr("data"),), how="embeds content from"),
    Rule("embed", _HTML, (_SRC,), how="embeds content from"),
    Rule("track", _HTML, (_SRC,), how="loads media from"),
    Rule("frame", _HTML, (_SRC,), how="embeds a frame from"),
    Rule("base", _HTML, (Attr("href"),), how="sets its base URL to", base=True),
    Rule("script", _HTML, (_SRC,), Action.INERT, "loads a script from",
         trackers="script"),
    Rule("iframe", _HTML, (_SRC,), Action.FRAME, "embeds a frame from", trackers="iframe"),
    Rule("style", _HTML, (), Action.SHEET, "loads a style sheet's resources from", text=_CSS),
    *(Rule(name, _HTML, (Attr("background"),), by_attribute=True)
      for name in ("body", "table", "td", "th", "tr", "thead", "tbody", "tfoot")),
    Rule("image", _SVG, _HREFS, how="loads an image from"),
    Rule("script", _SVG, _HREFS, how="loads a script from"),
    Rule("use", _SVG, _HREFS, how="loads SVG from"),
    Rule("feimage", _SVG, _HREFS, how="loads an image from"),
    Rule("style", _SVG, (), Action.SHEET, "loads a style sheet's resources from", text=_CSS),
    Rule(ANY, None, (Attr("style", _CSS),), how="loads a style's images or fonts from"),
)


#: every attribute that holds a URL, a srcset or CSS in some rule
URL_ATTRS: tuple[Attr, ...] = tuple(dict.fromkeys(a for r in RULES for a in r.attrs))
