"""``flask consent scan``: what the app leaks to a visitor who has not consented.

The scanner requests every GET route that takes no parameters, each path given
with ``--path``, and up to ``--max-per-route`` URLs per parameterised route
from the app's own sitemap (``/sitemap.xml`` and the ``Sitemap:`` lines of
``/robots.txt``: a sitemap or a sitemap index, same-site URLs only), through
``app.test_client()`` with no consent cookie, once plainly and once with
``Sec-GPC: 1``, following redirects on the same site only. It lists:

- every cookie set other than the consent cookie, classified as *declared*
  (``CONSENTKIT_COOKIES`` or a service's cookies), the Flask *session* cookie,
  *known* (the table in ``known_cookies.json``, derived from the Open Cookie
  Database by ``scripts/derive_cookie_table.py``) or *unknown*;
- every third-party host of every HTML page — in ``src``/``href``/``srcset``/
  ``poster``/``data``/``background`` of scripts, iframes (and ``srcdoc``),
  images, ``<picture>``/``<video>``/``<audio>`` sources, fetching ``<link>``
  elements, objects, embeds, SVG ``<image>``/``<use>``/``<script>``; in CSS
  (``@import``, ``url()``, ``image-set()``) of ``<style>`` elements, ``style``
  attributes and the same-origin stylesheets they load; in URL literals of
  inline scripts (joined across ``+``, a ternary of literals included; a
  literal whose host goes on in a variable is left out); in ``Link:`` headers.
  Which element loads what from which attribute is the gating's table
  (:mod:`flask_consentkit.gating.rules`), the one the rewrite follows.
  The page is read as served — after the server's rewrite — with the gating's
  tokenizer, which splits it as a browser's does (comments, raw text, script
  escapes, foreign content and its breakouts, ``<noscript>`` read as a visitor
  without JavaScript gets it); attribute
  values are decoded as HTML decodes them and every URL is read with
  :func:`~flask_consentkit.urls.network_target`, as a browser reads it (``<base
  href>`` too). What the rewrite set aside until consent (``data-consent-*``
  attributes, ``type="text/plain"``) is listed too, as "(gated)": after
  consent the browser loads it. One finding per host per page (the visit with
  GPC adds one only where its page differs), classified as

  - *leak*: the undecided visitor's browser may reach it and no necessary
    service covers it — it sits in an element left active and the policy the
    page came with (its ``Content-Security-Policy`` header of the extension's)
    does not block it (``CONSENTKIT_CSP = False`` and ``"report-only"`` block
    nothing; a ``<link rel=preconnect|dns-prefetch>`` is never blocked);
  - *undeclared*: a catalogue vendor the app did not name in
    ``CONSENTKIT_SERVICES`` (the preferences page does not name it), or a host
    in neither, which the policy allows for nobody (it cannot work even after
    consent);
  - *ok*: declared, and not reached before consent unless necessary;

- every technical-data field collected (the ``technical_data_collected``
  signal);
- HTML pages served without the consent banner (no ``id="consentkit-banner"``
  and no cookie-settings control: ``data-consentkit-reopen`` or a link to the
  preferences page), whether the extension puts it in or the app does;
- the parameterised routes that no ``--path`` and no sitemap URL reached
  (information), and the hosts the visitors' browsers were stopped from
  reaching, from the policy's violation reports (information).

A cookie or data field leaks unless its category is ``necessary`` (for the
Open Cookie Database: "Necessary" or "Security"); unknown cookies leak. The
command exits with 1 on a leak, an undeclared host, a page without the banner,
a ``--path`` or sitemap URL that answers 4xx/5xx, or any route that raises or
answers 5xx; 0 otherwise.

Each request runs in an app context of its own: the command's context would
otherwise be shared by all of them, and with it ``g``, where the extension
keeps what it knows of a request.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import re
import zlib
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit
from xml.etree import ElementTree

import click
from ada_url import URL
from flask import Flask, Response, current_app, got_request_exception, request_finished
from flask.testing import FlaskClient
from werkzeug.exceptions import HTTPException
from werkzeug.routing import MapAdapter, RequestRedirect, Rule
from werkzeug.test import TestResponse

from ..categories import NECESSARY, HostPattern, Service, cookie_category
from ..config import Settings
from ..csp import (
    ENFORCE_HEADER,
    FETCHING_RELS,
    REPORT_GROUP,
    REPORT_ONLY_HEADER,
    split_link_header,
)
from ..gating.rules import (
    ANY,
    LINK_RELS,
    RULES,
    RUNNABLE_SCRIPT_TYPES,
    URL_ATTRS,
    Action,
    Namespace,
    Syntax,
)
from ..gating.tokenizer import HTML_NS, RENAMED, attributes, read_tags, unescape_attribute
from ..gating.trackers import TRACKERS, Tracker, find_tracker
from ..signals import technical_data_collected
from ..urls import Target, network_target
from ..vendors import HostIndex, VendorRegistry, parse_host
from . import cli, kit_state

#: Categories of the Open Cookie Database that need no consent.
OCD_NECESSARY = frozenset({"necessary", "security"})
#: Which collection rule governs each technical-data field.
FIELD_RULES = {
    "ip": "ip", "country": "geo", "region": "geo", "city": "geo", "browser": "user_agent",
    "browser_version": "user_agent", "os": "user_agent", "os_version": "user_agent",
    "device_type": "user_agent",
}
MAX_REDIRECTS = 5
#: URLs sampled from the sitemap per parameterised route, by default
MAX_PER_ROUTE = 3
#: sitemap files read at most (a sitemap index and the sitemaps it names)
MAX_SITEMAPS = 20
#: sitemap URLs read at most, over all sitemap files
MAX_SITEMAP_URLS = 50_000
#: the largest sitemap read, after decompression (the protocol's own limit)
MAX_SITEMAP_BYTES = 50 * 1024 * 1024
#: the largest same-origin stylesheet read
MAX_STYLESHEET_BYTES = 2 * 1024 * 1024
#: how deep markup inside markup (``srcdoc``, ``document.write``) and ``@import`` is read
MAX_DEPTH = 3
#: violation reports shown
BLOCKED_SHOWN = 20
_RUNNABLE = RUNNABLE_SCRIPT_TYPES
#: script types that are not code but make the browser fetch the URLs they hold
_FETCHING_DATA_SCRIPTS = frozenset({"importmap", "speculationrules"})
#: ``<link rel>`` values that only open a connection (no policy governs them)
_CONNECT_RELS = frozenset(rel for rel, link in LINK_RELS.items() if link.connect)
_LINK_FETCHING_RELS = frozenset(LINK_RELS)
#: XML namespace names: URLs in scripts that no browser fetches
_NAMESPACES = frozenset({
    "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xhtml",
    "http://www.w3.org/1999/xlink", "http://www.w3.org/1998/Math/MathML",
    "http://www.w3.org/XML/1998/namespace", "http://www.w3.org/2000/xmlns/",
})
_ORDER = {"ok": 0, "undeclared": 1, "leak": 2}


# -- the known-cookie table --------------------------------------------------------


@dataclass(frozen=True)
class KnownCookie:
    """A fact from the Open Cookie Database: ``name`` (or prefix), platform, category."""

    name: str
    platform: str
    category: str
    prefix: bool = False


@cache
def known_cookies() -> tuple[dict[str, KnownCookie], tuple[KnownCookie, ...]]:
    """``(exact names, prefixes longest first)`` from ``known_cookies.json``."""
    text = resources.files(__package__).joinpath("known_cookies.json").read_text("utf-8")
    data = json.loads(text)
    exact = {name: KnownCookie(name, platform, category)
             for name, (platform, category) in data["cookies"].items()}
    prefixes = tuple(KnownCookie(name, platform, category, prefix=True)
                     for name, platform, category in data["prefixes"])
    return exact, prefixes


def lookup_known(name: str) -> KnownCookie | None:
    """The Open Cookie Database's entry for cookie ``name``: exact, else longest prefix."""
    exact, prefixes = known_cookies()
    if name in exact:
        return exact[name]
    for entry in prefixes:
        if name.startswith(entry.name):
            return entry
    return None


# -- findings ------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One thing a visitor without consent got, or a page that fails a check.

    ``status`` is ``"leak"``, ``"undeclared"`` (hosts only), ``"fail"`` (a page
    without the banner, a path that answers 4xx) or ``"ok"``; anything but
    ``"ok"`` fails the scan.
    """

    kind: str  # "cookie" | "host" | "technical_data" | "error" | "banner" | "status" | "redirect"
    name: str
    path: str
    gpc: bool
    category: str | None
    source: str  # how it was classified: "declared", "known: …", "unknown", …
    leak: bool
    detail: str = ""
    status: str = ""
    #: hosts: the service's key (declared or catalogue), else ``None``
    vendor: str | None = None
    #: hosts: the kinds of element the host was seen in, e.g. ``"<script src>"``
    elements: tuple[str, ...] = ()
    #: hosts: the first URL seen that goes to the host
    url: str = ""

    def __post_init__(self) -> None:
        if not self.status:
            object.__setattr__(self, "status", "leak" if self.leak else "ok")

    @property
    def failed(self) -> bool:
        return self.status != "ok"

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.kind == "host":
            data["elements"] = list(self.elements)
        else:
            for key in ("vendor", "elements", "url"):
                del data[key]
        return data


@dataclass
class ScanResult:
    paths: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    #: the browser policy's mode: "enforce", "report-only" or "off"
    csp: str = "off"
    #: parameterised routes no path reached: ``{"rule", "endpoint"}``
    unvisited: list[dict[str, str]] = field(default_factory=list)
    #: ``violations.top()``: what the browsers were stopped from reaching
    blocked: list[dict[str, Any]] = field(default_factory=list)
    sitemap: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def leaks(self) -> list[Finding]:
        return [f for f in self.findings if f.leak]

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.failed]

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": not self.failures,
            "paths": self.paths,
            "csp": self.csp,
            "leaks": len(self.leaks),
            "failures": len(self.failures),
            "findings": [f.as_json() for f in self.findings],
            "unvisited": self.unvisited,
            "sitemap": self.sitemap,
            "blocked_by_browsers": self.blocked,
            "notes": self.notes,
        }


def classify_cookie(name: str, settings: Settings, session_cookie: str | None
                    ) -> tuple[str | None, str, bool]:
    """``(category, source, leak)`` for a cookie an undecided visitor received."""
    declared = cookie_category(settings.categories, name)
    if declared is not None:
        return declared, "declared", declared != NECESSARY
    if session_cookie and name == session_cookie:
        return NECESSARY, "the app's session cookie (SESSION_COOKIE_NAME)", False
    known = lookup_known(name)
    if known is not None:
        match = f"prefix {known.name!r}" if known.prefix else "name"
        platform = known.platform or "unnamed platform"
        return (known.category, f"Open Cookie Database: {platform} ({match})",
                known.category not in OCD_NECESSARY)
    return None, "unknown", True


# -- finding routes ---------------------------------------------------------------------


def _scannable(rule: Rule) -> bool:
    """A GET rule of the app's own pages (the extension's preferences page included)."""
    endpoint = rule.endpoint
    if "GET" not in (rule.methods or ()) or endpoint == "static" \
            or endpoint.endswith(".static"):
        return False
    if endpoint.startswith("consentkit") and endpoint != "consentkit.preferences":
        return False
    return not (rule.host or rule.subdomain)


def _parameterised(rule: Rule) -> bool:
    return not set(rule.arguments) <= set(rule.defaults or {})


def _rule_key(rule: Rule) -> tuple[str, str]:
    return rule.rule, rule.endpoint


def scan_paths(app: Flask, extra: Sequence[str] = ()) -> list[str]:
    """Paths of every GET rule that needs no parameters, then ``extra``.

    Static files and the extension's own endpoints are skipped, except the
    preferences page, which a visitor sees.
    """
    paths: list[str] = []
    for rule in app.url_map.iter_rules():
        if not _scannable(rule) or _parameterised(rule):
            continue
        built = rule.build(rule.defaults or {}, append_unknown=False)
        if built is None:
            continue
        if built[1] not in paths:
            paths.append(built[1])
    paths.sort()
    return paths + [p for p in dict.fromkeys(extra) if p not in paths]


def parameterised_rules(app: Flask) -> list[Rule]:
    """The GET rules :func:`scan_paths` cannot build: they need a value for a parameter."""
    return [r for r in app.url_map.iter_rules() if _scannable(r) and _parameterised(r)]


def _adapter(app: Flask) -> MapAdapter:
    return app.url_map.bind(app.config.get("SERVER_NAME") or "localhost")


def rule_for(adapter: MapAdapter, path: str) -> Rule | None:
    """The rule a GET of ``path`` (query allowed) reaches, following a slash redirect."""
    target = urlsplit(path).path or "/"
    for _ in range(2):
        try:
            rule, _args = adapter.match(target, method="GET", return_rule=True)
        except RequestRedirect as e:
            target = urlsplit(e.new_url).path or "/"
            continue
        except HTTPException:
            return None
        return rule
    return None


def _own_hosts(app: Flask) -> set[str]:
    server = app.config.get("SERVER_NAME") or "localhost"
    return {"localhost", server.lower(), server.rpartition(":")[0].lower() or server.lower()}


def _same_site_path(url: str, own: set[str], base: str = "http://localhost/") -> str | None:
    """``url`` as a path with query on this app, or ``None`` when it is another site's."""
    parts = urlsplit(urljoin(base, url.strip()))
    if parts.scheme not in ("http", "https") or (parts.hostname or "") not in own:
        return None
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


# -- the sitemap ---------------------------------------------------------------------


@dataclass
class Sitemap:
    """What the app's sitemaps hold: same-site URLs as paths, and what went wrong."""

    read: list[str] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Served:
    """How the app sent a response (the test client's copy no longer says)."""

    streamed: bool = False
    file: bool = False


def _fetch(app: Flask, client: FlaskClient, path: str,
           headers: dict[str, str] | None = None) -> tuple[TestResponse, Served]:
    """GET ``path`` in an app context of its own.

    The command runs inside the CLI's app context, which a request would
    otherwise share — and with it ``g``, where the extension keeps what it
    knows of the request (the visitor's consent, whether the banner was put in).
    """
    served: list[Served] = []

    def on_finished(sender: Flask, response: Response, **extra: Any) -> None:
        served.append(Served(bool(response.is_streamed and not response.direct_passthrough),
                             bool(response.direct_passthrough)))

    request_finished.connect(on_finished, app)
    try:
        with app.app_context():
            response = client.get(path, headers=headers or {})
    finally:
        request_finished.disconnect(on_finished, app)
    return response, served[-1] if served else Served()


def _get(app: Flask, path: str, own: set[str]) -> TestResponse | None:
    """GET ``path`` without cookies, following same-site redirects; ``None`` on an error."""
    client = app.test_client(use_cookies=False)
    for _ in range(MAX_REDIRECTS + 1):
        with _watch(app) as (errors, _collected):
            try:
                response, _served = _fetch(app, client, path)
            except Exception:  # noqa: BLE001 - the page scan reports a route that raises
                return None
        if errors:
            response.close()
            return None
        location = response.headers.get("Location")
        if not (300 <= response.status_code < 400 and location):
            return response
        response.close()
        follow = _same_site_path(urljoin(f"http://localhost{path}", location), own)
        if follow is None:
            return None
        path = follow
    return None


def _decompressed(body: bytes) -> bytes:
    if body[:2] != b"\x1f\x8b":
        return body
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(body, MAX_SITEMAP_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"larger than {MAX_SITEMAP_BYTES // (1024 * 1024)} MB uncompressed")
    return out


def read_sitemaps(app: Flask) -> Sitemap:
    """The same-site URLs of ``/sitemap.xml`` and the sitemaps ``/robots.txt`` names."""
    own = _own_hosts(app)
    result = Sitemap()
    adapter = _adapter(app)
    # asked only of an app that has a route for them (a 404 page would be asked for nothing)
    queue = ["/sitemap.xml"] if rule_for(adapter, "/sitemap.xml") is not None else []
    robots = _get(app, "/robots.txt", own) if rule_for(adapter, "/robots.txt") else None
    if robots is not None:
        if robots.status_code == 200 and (robots.mimetype or "").startswith("text/"):
            for line in robots.get_data(as_text=True).splitlines()[:10_000]:
                key, _, value = line.partition(":")
                if key.strip().lower() == "sitemap" and value.strip():
                    path = _same_site_path(value.strip(), own)
                    if path is not None:
                        queue.append(path)
        robots.close()
    seen: set[str] = set()
    while queue and len(seen) < MAX_SITEMAPS:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        response = _get(app, path, own)
        if response is None or response.status_code != 200:
            if path != "/sitemap.xml" or (response is not None
                                          and response.status_code not in (404, 410)):
                status = "raised" if response is None else f"answered {response.status_code}"
                result.problems.append(f"{path} {status}")
            if response is not None:
                response.close()
            continue
        body = response.get_data()
        response.close()
        try:
            root = ElementTree.fromstring(_decompressed(body))
        except (ElementTree.ParseError, ValueError, zlib.error) as e:
            result.problems.append(f"{path} is not a sitemap: {e}")
            continue
        result.read.append(path)
        kind = root.tag.rpartition("}")[2]
        if kind not in ("urlset", "sitemapindex"):
            result.problems.append(f"{path} is neither <urlset> nor <sitemapindex>")
            continue
        for entry in root:
            loc = next((c.text for c in entry if c.tag.rpartition("}")[2] == "loc"), None)
            if not loc:
                continue
            local = _same_site_path(loc, own)
            if local is None:
                result.skipped += 1
            elif kind == "sitemapindex":
                queue.append(local)
            elif len(result.locations) < MAX_SITEMAP_URLS:
                result.locations.append(local)
    if queue and len(seen) >= MAX_SITEMAPS:
        result.problems.append(f"more than {MAX_SITEMAPS} sitemaps; the rest were not read")
    return result


def sample(app: Flask, explicit: Sequence[str], sitemap: Sitemap, max_per_route: int
           ) -> tuple[list[str], list[Rule]]:
    """``(sitemap paths to visit, parameterised rules nothing reaches)``.

    Each parameterised rule gets sitemap URLs until it has ``max_per_route``
    paths, counting those of ``--path``.
    """
    adapter = _adapter(app)
    per_rule: dict[tuple[str, str], list[str]] = {}
    for path in explicit:
        rule = rule_for(adapter, path)
        if rule is not None:
            per_rule.setdefault(_rule_key(rule), []).append(path)
    added: list[str] = []
    for path in sitemap.locations:
        rule = rule_for(adapter, path)
        if rule is None or not _scannable(rule) or not _parameterised(rule):
            continue
        bucket = per_rule.setdefault(_rule_key(rule), [])
        if path in bucket or len(bucket) >= max_per_route:
            continue
        bucket.append(path)
        added.append(path)
    unvisited = [r for r in parameterised_rules(app) if _rule_key(r) not in per_rule]
    return added, unvisited


# -- reading a page: its tags, through the gating's tokenizer -----------------------------

_SPACE = "\t\n\f\r "

#: An attribute value with its character references decoded, as the HTML tokenizer does
#: (the tokenizer's own function; a named reference without ``;`` is left alone before
#: ``=`` or an alphanumeric: ``?a=1&copy=2`` keeps ``&copy``).
decode_attribute = unescape_attribute


@dataclass
class _Token:
    kind: str  # "start" | "end"
    name: str
    attrs: dict[str, str]
    text: str | None = None
    foreign: bool = False  # inside <svg> or <math>


def _foreign_text(text: str) -> str:
    """The text of an SVG ``<script>``/``<style>``: CDATA sections kept, the rest decoded."""
    out = []
    for i, part in enumerate(re.split(r"<!\[CDATA\[|\]\]>", text)):
        out.append(part if i % 2 else html.unescape(re.sub(r"<[^>]*>", "", part)))
    return "".join(out)


def tokens(doc: str) -> Iterator[_Token]:
    """The start and end tags of ``doc`` as a browser's tokenizer and tree builder split
    them (:func:`flask_consentkit.gating.tokenizer.read_tags`, scripting off).

    A start tag carries the text of a ``<script>`` or raw-text element (``<style>`` …);
    inside ``<svg>``/``<math>`` the text of a script or style is markup, as there.
    """
    body = doc.encode("utf-8", "surrogatepass")
    low = body.lower()
    for tag in read_tags(body):
        name = tag.name.decode("utf-8", "replace")
        foreign = tag.ns != HTML_NS
        if not tag.start_tag:
            yield _Token("end", name, {}, foreign=foreign)
            continue
        attrs = {key.decode("utf-8", "replace"): attr.value
                 for key, attr in attributes(body, low, tag.a0, tag.a1).items()}
        text = None
        if tag.text is not None:
            text = body[tag.text[0]:tag.text[1]].decode("utf-8", "replace")
            if foreign:
                text = _foreign_text(text)
        yield _Token("start", name, attrs, text, foreign)


# -- reading a page: srcset, CSS and script text ---------------------------------------------


def srcset_urls(value: str) -> list[str]:
    """The URLs of a ``srcset`` value, split as the HTML standard splits it."""
    urls: list[str] = []
    pos, n = 0, len(value)
    while True:
        while pos < n and (value[pos] in _SPACE or value[pos] == ","):
            pos += 1
        if pos >= n:
            return urls
        start = pos
        while pos < n and value[pos] not in _SPACE:
            pos += 1
        url = value[start:pos]
        if url.endswith(","):
            urls.append(url.rstrip(","))
            continue
        urls.append(url)
        depth = 0
        while pos < n:  # the descriptors, up to a comma outside parentheses
            char = value[pos]
            if char == "(":
                depth += 1
            elif char == ")" and depth:
                depth -= 1
            elif char == "," and not depth:
                break
            pos += 1


_CSS_HEX = re.compile(r"[0-9a-fA-F]{1,6}")
_CSS_IDENT = re.compile(r"(?:[-_a-zA-Z\u0080-\U0010ffff]|\\.)"
                        r"(?:[-_a-zA-Z0-9\u0080-\U0010ffff]|\\.)*", re.DOTALL)
#: CSS functions whose string arguments are URLs
_CSS_URL_FUNCTIONS = frozenset({"image-set", "-webkit-image-set", "src"})


def _css_escape(text: str, i: int) -> tuple[str, int]:
    """The character of the CSS escape at ``text[i] == "\\"``, and where it ends."""
    hexa = _CSS_HEX.match(text, i + 1)
    if hexa is not None:
        code = int(hexa.group(), 16)
        end = hexa.end()
        if end < len(text) and text[end] in _SPACE:
            end += 2 if text.startswith("\r\n", end) else 1
        if code == 0 or 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
            return "\ufffd", end
        return chr(code), end
    if i + 1 >= len(text):
        return "\ufffd", i + 1
    return text[i + 1], i + 2


def _css_unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\":
            char, i = _css_escape(text, i)
            out.append(char)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _css_string(css: str, i: int) -> tuple[str, int]:
    """The value of the CSS string starting at ``css[i]`` (a quote), and where it ends."""
    quote = css[i]
    out: list[str] = []
    i += 1
    n = len(css)
    while i < n:
        char = css[i]
        if char == quote:
            return "".join(out), i + 1
        if char == "\n":
            return "".join(out), i  # a bad string: ends at the newline
        if char == "\\":
            if css.startswith("\r\n", i + 1):
                i += 3
            elif i + 1 < n and css[i + 1] in "\n\f\r":
                i += 2
            else:
                decoded, i = _css_escape(css, i)
                out.append(decoded)
            continue
        out.append(char)
        i += 1
    return "".join(out), n


def _css_bare_url(css: str, i: int) -> tuple[str | None, int]:
    """An unquoted ``url(…)`` from ``i`` (after the spaces): its value (``None`` when bad)."""
    out: list[str] = []
    n = len(css)
    while i < n:
        char = css[i]
        if char == ")":
            return "".join(out), i + 1
        if char in _SPACE:
            while i < n and css[i] in _SPACE:
                i += 1
            if i < n and css[i] == ")":
                return "".join(out), i + 1
            break
        if char in "\"'(" or ord(char) < 0x20 or ord(char) == 0x7F:
            break
        if char == "\\":
            if css.startswith("\n", i + 1):
                break
            decoded, i = _css_escape(css, i)
            out.append(decoded)
            continue
        out.append(char)
        i += 1
    end = css.find(")", i)  # a bad url: its remnants run to ")"
    return None, n if end < 0 else end + 1


def css_urls(css: str) -> list[tuple[str, str]]:
    """``(url, how)`` for each URL a stylesheet fetches: ``@import``, ``url()``, ``image-set()``.

    Comments, escapes (``\\2e``, ``\\.``) and ``@namespace`` (which fetches nothing)
    are read as CSS reads them.
    """
    found: list[tuple[str, str]] = []
    stack: list[str] = []  # the functions we are in
    pending: str | None = None  # the at-rule whose prelude we are in
    i, n = 0, len(css)
    while i < n:
        char = css[i]
        if css.startswith("/*", i):
            end = css.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif char in "\"'":
            value, i = _css_string(css, i)
            if pending == "import":
                found.append((value, "@import"))
                pending = None
            elif stack and stack[-1] == "url" and pending != "namespace":
                found.append((value, "@import" if pending == "import-url" else "url()"))
            elif stack and stack[-1] in _CSS_URL_FUNCTIONS and pending != "namespace":
                found.append((value, f"{stack[-1]}()"))
        elif char == "@":
            match = _CSS_IDENT.match(css, i + 1)
            if match is None:
                i += 1
                continue
            keyword = _css_unescape(match.group()).lower()
            pending = keyword if keyword in ("import", "namespace") else None
            i = match.end()
        elif char in "-_\\" or char.isalpha() or ord(char) > 0x7F:
            match = _CSS_IDENT.match(css, i)
            if match is None:
                i += 1
                continue
            name = _css_unescape(match.group()).lower()
            i = match.end()
            if i < n and css[i] == "(":
                i += 1
                if name == "url":
                    j = i
                    while j < n and css[j] in _SPACE:
                        j += 1
                    if j < n and css[j] in "\"'":
                        stack.append("url")
                        if pending == "import":
                            pending = "import-url"
                        continue
                    url, i = _css_bare_url(css, j)
                    if url and pending != "namespace":
                        found.append((url, "@import" if pending == "import" else "url()"))
                    if pending == "import":
                        pending = None
                else:
                    stack.append(name)
        elif char == "(" or char == "[" or char == "{":
            stack.append(char)
            if char == "{":
                pending = None
            i += 1
        elif char in ")]}":
            if stack:
                top = stack.pop()
                if top == "url" and pending == "import-url":
                    pending = None
            i += 1
        elif char == ";":
            pending = None
            i += 1
        else:
            i += 1
    return found


_JS_ID = re.compile(r"[A-Za-z0-9_$\u0080-\U0010ffff]+")
_JS_KEYWORDS_BEFORE_EXPR = frozenset({
    "return", "typeof", "instanceof", "in", "of", "new", "delete", "void", "throw", "case",
    "do", "else", "yield", "await",
})
_JS_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v",
                      "0": "\0"}
_URL_START = re.compile(r"^(?:(?:https?|wss?):)?[/\\]{2}", re.IGNORECASE)


@dataclass
class _JsToken:
    kind: str  # "str": a string or template literal; "punc"; "name"
    value: str
    #: template literals: the text before the first substitution, when there is one
    open: bool = False


def _js_escape(code: str, i: int) -> tuple[str, int]:
    """The value of the escape at ``code[i] == "\\"`` in a JavaScript string."""
    nxt = code[i + 1:i + 2]
    if nxt == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", code[i + 2:i + 4]):
        return chr(int(code[i + 2:i + 4], 16)), i + 4
    if nxt == "u":
        if code.startswith("{", i + 2):
            end = code.find("}", i + 3)
            digits = code[i + 3:end] if end > 0 else ""
            if digits and re.fullmatch(r"[0-9a-fA-F]{1,6}", digits) \
                    and int(digits, 16) <= 0x10FFFF:
                return chr(int(digits, 16)), end + 1
        elif re.fullmatch(r"[0-9a-fA-F]{4}", code[i + 2:i + 6]):
            return chr(int(code[i + 2:i + 6], 16)), i + 6
    if code.startswith("\r\n", i + 1):
        return "", i + 3
    if nxt in ("\n", "\r", "\u2028", "\u2029"):
        return "", i + 2
    return _JS_SIMPLE_ESCAPES.get(nxt, nxt), i + 2


def _js_tokens(code: str) -> list[_JsToken]:
    """Strings, names and punctuation of a script; comments and regular expressions skipped."""
    out: list[_JsToken] = []
    i, n = 0, len(code)

    def regex_allowed() -> bool:
        if not out:
            return True
        last = out[-1]
        if last.kind == "punc":
            return last.value not in (")", "]", "}")
        return last.kind == "name" and last.value in _JS_KEYWORDS_BEFORE_EXPR

    while i < n:
        char = code[i]
        if char in " \t\n\r\f\v\u00a0\ufeff\u2028\u2029":
            i += 1
        elif code.startswith("//", i) or code.startswith("<!--", i) or (
                code.startswith("-->", i)
                and not code[code.rfind("\n", 0, i) + 1:i].strip()):
            end = code.find("\n", i)
            i = n if end < 0 else end
        elif code.startswith("/*", i):
            end = code.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif char == "/" and regex_allowed():
            j, in_class = i + 1, False
            while j < n and code[j] != "\n":
                if code[j] == "\\":
                    j += 2
                    continue
                if code[j] == "[":
                    in_class = True
                elif code[j] == "]":
                    in_class = False
                elif code[j] == "/" and not in_class:
                    break
                j += 1
            if j < n and code[j] == "/":
                i = j + 1
                while i < n and (code[i].isalnum() or code[i] in "_$"):
                    i += 1
                out.append(_JsToken("name", "/regex/"))
            else:
                out.append(_JsToken("punc", "/"))
                i += 1
        elif char in "\"'":
            parts, j = [], i + 1
            while j < n and code[j] != char and code[j] != "\n":
                if code[j] == "\\":
                    decoded, j = _js_escape(code, j)
                    parts.append(decoded)
                else:
                    parts.append(code[j])
                    j += 1
            out.append(_JsToken("str", "".join(parts)))
            i = j + 1
        elif char == "`":
            parts, j, is_open = [], i + 1, False
            while j < n and code[j] != "`":
                if code[j] == "\\":
                    decoded, j = _js_escape(code, j)
                    if not is_open:
                        parts.append(decoded)
                elif code.startswith("${", j):
                    is_open, depth, j = True, 1, j + 2
                    while j < n and depth:  # skip the substitution (strings in it too)
                        if code[j] in "\"'`":
                            quote, j = code[j], j + 1
                            while j < n and code[j] != quote:
                                j += 2 if code[j] == "\\" else 1
                        elif code[j] == "{":
                            depth += 1
                        elif code[j] == "}":
                            depth -= 1
                        j += 1
                else:
                    if not is_open:
                        parts.append(code[j])
                    j += 1
            out.append(_JsToken("str", "".join(parts), open=is_open))
            i = j + 1
        else:
            match = _JS_ID.match(code, i)
            if match is not None:
                out.append(_JsToken("name", match.group()))
                i = match.end()
            else:
                two = code[i:i + 2]
                if two in ("++", "+=", "?.", "??", "=>", "==", "!=", "&&", "||"):
                    out.append(_JsToken("punc", two))
                    i += 2
                else:
                    out.append(_JsToken("punc", char))
                    i += 1
    return out


#: a string value and whether unknown text follows it (the rest is in a variable)
_Alt = tuple[str, bool]
_MAX_ALTERNATIVES = 8


def _js_group_end(toks: list[_JsToken], i: int) -> int:
    """The index of the ``)`` that closes the ``(`` at ``i``, or -1."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].kind == "punc":
            if toks[j].value in "([{":
                depth += 1
            elif toks[j].value in ")]}":
                depth -= 1
                if depth == 0:
                    return j if toks[j].value == ")" else -1
    return -1


def _js_operand(toks: list[_JsToken], i: int, end: int) -> tuple[list[_Alt] | None, int]:
    """The values a ``+`` operand at ``i`` can have (``None``: not known), and its end."""
    if i >= end:
        return None, i
    tok = toks[i]
    if tok.kind == "str":
        return [(tok.value, tok.open)], i + 1
    if tok.kind == "punc" and tok.value == "(":
        close = _js_group_end(toks, i)
        if close < 0 or close >= end:
            return None, i
        return _js_expression(toks, i + 1, close), close + 1
    return None, i


def _js_chain(toks: list[_JsToken], i: int, end: int) -> tuple[list[_Alt] | None, int]:
    """``a + b + …`` from ``i``: the values it can have, and where it ends."""
    alts, j = _js_operand(toks, i, end)
    if alts is None:
        return None, i
    while j < end and toks[j].kind == "punc" and toks[j].value == "+" \
            and not all(is_open for _, is_open in alts):
        more, k = _js_operand(toks, j + 1, end)
        if more is None:
            alts = [(text, True) for text, _ in alts]
            break
        alts = [(text if is_open else text + extra, is_open or extra_open)
                for text, is_open in alts for extra, extra_open in more][:_MAX_ALTERNATIVES]
        j = k
    return alts, j


def _js_expression(toks: list[_JsToken], i: int, end: int) -> list[_Alt] | None:
    """The values of ``toks[i:end]`` when it is a chain of literals or ``c ? chain : chain``."""
    depth = 0
    question = colon = -1
    nested = 0
    for j in range(i, end):
        tok = toks[j]
        if tok.kind != "punc":
            continue
        if tok.value in "([{":
            depth += 1
        elif tok.value in ")]}":
            depth -= 1
        elif depth == 0 and tok.value == "?":
            if question < 0:
                question = j
            else:
                nested += 1
        elif depth == 0 and tok.value == ":" and question >= 0:
            if nested:
                nested -= 1
            else:
                colon = j
                break
    if question >= 0 and colon > question:
        first, a = _js_chain(toks, question + 1, colon)
        second, b = _js_chain(toks, colon + 1, end)
        if first is None or second is None or a != colon or b != end:
            return None
        return (first + second)[:_MAX_ALTERNATIVES]
    alts, j = _js_chain(toks, i, end)
    return alts if j == end else None


def script_literals(code: str) -> list[_Alt]:
    """The string values a script builds from literals, ``+`` and ``?:`` of literals.

    ``'https://' + 'www.x.com/a.js'`` is one value; a value followed by ``+``
    something unknown is marked open (``True``).
    """
    toks = _js_tokens(code)
    found: list[_Alt] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok.kind == "str" or (tok.kind == "punc" and tok.value == "("):
            alts, j = _js_chain(toks, i, len(toks))
            if alts is not None and j > i:
                found.extend(alts)
                i = j
                continue
        i += 1
    return found


def script_urls(code: str) -> tuple[list[str], list[str]]:
    """``(URLs, markup)`` in the string literals of a script.

    A URL is a literal (or a join of literals) that starts with ``http(s)://``,
    ``ws(s)://`` or ``//``, whose host is complete; markup is a literal that
    holds a tag (``document.write('<script src=…>')``).
    """
    urls: list[str] = []
    markup: list[str] = []
    for text, is_open in script_literals(code):
        value = re.sub(r"[\t\n\r]", "", text).strip(_SPACE + "\v\0")
        match = _URL_START.match(value)
        if match is None:
            if re.search(r"<[a-zA-Z]", value):
                markup.append(value)
            continue
        authority = re.split(r"[/\\?#]", value[match.end():], maxsplit=1)
        if is_open and len(authority) == 1:
            continue  # the host goes on in something unknown
        host = unquote(authority[0].rpartition("@")[2]).rpartition(":")[0] \
            or unquote(authority[0].rpartition("@")[2])
        if "." not in host.strip(".") and not host.startswith("["):
            continue  # "https://ssl" + …: not a host of its own
        if value in _NAMESPACES:
            continue
        urls.append(value)
    return urls, markup


# -- reading a page: what it makes the browser fetch -----------------------------------------


@dataclass(frozen=True)
class Reference:
    """A URL on a page that a browser would fetch, and how.

    ``active`` is false for an element that waits for consent (a script of type
    ``text/plain``, a ``data-consent-*`` attribute); ``connect`` marks a link
    that only opens a connection, which no policy stops; ``stylesheet`` a URL
    whose CSS is read in turn.
    """

    url: str
    element: str
    active: bool
    base: str | None = None
    connect: bool = False
    stylesheet: bool = False


@dataclass
class Page:
    refs: list[Reference] = field(default_factory=list)
    base: str | None = None
    #: an element with ``id="consentkit-banner"`` or a cookie-settings control
    banner: bool = False
    #: a document (``<html>``, ``<head>``, ``<body>``, their end tags or a doctype), not a
    #: fragment
    document: bool = False
    #: a doctype or ``<html>`` first (after a BOM, spaces and comments)
    starts_like_document: bool = False


_DOCUMENT_START = re.compile(r"\ufeff?(?:\s|<!--.*?-->)*<(?:!doctype[\s>]|html[\s>/]|\?xml\s)",
                             re.IGNORECASE | re.DOTALL)


def _script_runnable(attrs: dict[str, str]) -> bool:
    if "type" in attrs:
        kind = attrs["type"].strip().lower()
    elif attrs.get("language", "").strip():
        kind = "text/" + attrs["language"].strip().lower()
    else:
        kind = ""
    return kind in _RUNNABLE


def read_page(doc: str, preferences: str | None = None) -> Page:
    """Every URL of ``doc`` a browser would fetch, and whether it shows the banner.

    ``preferences`` is the path of the preferences page: a link to it is a
    cookie-settings control.
    """
    start = bool(_DOCUMENT_START.match(doc))
    page = Page(document=start, starts_like_document=start)
    _read_markup(doc, page, "", True, 0, preferences, top=True)
    return page


#: the URL attributes the server's rewrite sets aside as ``data-consent-<name>`` (":" as "-")
_SET_ASIDE = {a.name.replace(":", "-"): a for a in URL_ATTRS}
#: the element rules (:mod:`flask_consentkit.gating.rules`) by name, in HTML content and SVG
_HTML_RULES = {r.element: r for r in RULES if r.namespace is Namespace.HTML}
_SVG_RULES = {r.element: r for r in RULES if r.namespace is Namespace.SVG}
#: the attributes fetched whatever the element (a style attribute)
_ANY_ATTRS = tuple(a for r in RULES if r.element == ANY for a in r.attrs)
_SRCSET_ATTRS = frozenset(a.name for a in URL_ATTRS if a.syntax is Syntax.SRCSET)
#: start tags the tree builder reads as another element in HTML content
_RENAMED = {old.decode(): new.decode() for old, new in RENAMED.items()}


def _label(name: str, attr: str, attrs: dict[str, str], foreign: bool) -> str:
    """How an element and its URL attribute are named in the findings."""
    if foreign:
        return f"<svg {name}>"
    name = _RENAMED.get(name, name)  # the tree builder makes <image> an <img>
    rule = _HTML_RULES.get(name)
    if rule is not None and rule.when_rel:
        rels = set(attrs.get("rel", "").lower().split()) & _LINK_FETCHING_RELS
        label = f"<{name} rel={' '.join(sorted(rels)) or '?'}>"
        return label + (f" {attr}" if attr in _SRCSET_ATTRS else "")
    if rule is not None and rule.when_type is not None:
        return f"<{name} type={rule.when_type} {attr}>"
    return f"<{name} {attr}>"


#: URLs that load nothing (a frame's ``src`` often says so)
_NOTHING = frozenset({"", "about:blank", "about:srcdoc"})


def _read_markup(doc: str, page: Page, where: str, active: bool, depth: int,
                 preferences: str | None, top: bool = False) -> None:
    noscript = 0

    def add(url: str, element: str, act: bool, **how: bool) -> None:
        url = url.strip(_SPACE)
        if url.lower() not in _NOTHING:
            label = where + element + (" in <noscript>" if noscript else "")
            page.refs.append(Reference(url, label + ("" if act else " (gated)"),
                                       act and active, page.base, **how))

    def add_css(css: str, element: str, act: bool) -> None:
        for url, how in css_urls(css):
            add(url, f"{element} {how}", act, stylesheet=how == "@import")

    for tok in tokens(doc):
        name, attrs = tok.name, tok.attrs
        if tok.kind == "end":
            if name == "noscript" and noscript:
                noscript -= 1
            elif name in ("body", "html") and top:
                page.document = True
            continue
        if name == "noscript":
            noscript += 1
            continue
        if name in ("html", "head", "body") and top:
            page.document = True
        if attrs.get("id") == "consentkit-banner" or "data-consentkit-reopen" in attrs:
            page.banner = True
        if name == "a" and preferences and "href" in attrs:
            link = urlsplit(attrs["href"].strip())
            if link.path == preferences and not link.netloc:
                page.banner = True
        rule = (_SVG_RULES if tok.foreign else _HTML_RULES).get(
            name if tok.foreign else _RENAMED.get(name, name))
        rels: set[str] = set()
        if rule is not None and rule.when_rel:
            rels = set(attrs.get("rel", "").strip().lower().split())
        if rule is not None and rule.base and top and page.base is None:
            page.base = next((attrs[a.name] for a in rule.attrs if a.name in attrs), None)
        # what the server's rewrite set aside until consent
        for attr, value in attrs.items():
            if not attr.startswith("data-consent-"):
                continue
            moved = _SET_ASIDE.get(attr.removeprefix("data-consent-"))
            if moved is None:
                continue
            if moved.syntax is Syntax.CSS:
                add_css(value, f'{moved.name}=""', False)
            elif moved.syntax is Syntax.SRCSET:
                for url in srcset_urls(value):
                    add(url, _label(name, moved.name, attrs, tok.foreign), False)
            else:
                add(value, _label(name, moved.name, attrs, tok.foreign), False,
                    stylesheet="stylesheet" in rels)
        for css_attr in _ANY_ATTRS:
            if css_attr.name in attrs:
                add_css(attrs[css_attr.name], f'{css_attr.name}=""', True)
        if rule is None:
            continue
        if rule.by_attribute:
            for attr_rule in rule.attrs:
                if attr_rule.name in attrs:
                    add(attrs[attr_rule.name], f"<{name} {attr_rule.name}>", True)
            continue
        if rule.action is Action.SHEET:  # in HTML and SVG alike
            if tok.text:
                kind = attrs.get("type", "").strip().lower()
                label = f"<svg {name}>" if tok.foreign else f"<{name}>"
                if kind in ("", "text/css"):
                    add_css(tok.text, label, True)
                elif "data-consent" in attrs:  # made inert until consent
                    add_css(tok.text, label, False)
            continue
        if tok.foreign:
            # a script's type decides whether it runs, here as in HTML content
            runnable = name != "script" or _script_runnable(attrs)
            found = [attrs[a.name] for a in rule.attrs if attrs.get(a.name)]
            for url in found:
                add(url, f"<svg {name}>", runnable)
            if name == "script" and tok.text and not found:
                _read_script(tok.text, "<svg script>", runnable, page, where, active,
                             depth, preferences, add)
            continue
        if rule.action is Action.INERT:
            if noscript:
                continue  # only a browser without scripting reads it: it runs no script
            kind = attrs.get("type", "").strip().lower()
            runnable = _script_runnable(attrs)
            if not runnable and "data-consent" not in attrs and kind not in \
                    _FETCHING_DATA_SCRIPTS:
                continue  # a data block: never fetched, never run
            act = runnable or kind in _FETCHING_DATA_SCRIPTS
            urls = [a.name for a in rule.attrs if a.name in attrs]
            for attr in urls:
                add(attrs[attr], _label(name, attr, attrs, False), act)
            if not urls and tok.text:
                label = f'<script type="{kind}">' if kind in _FETCHING_DATA_SCRIPTS \
                    else "inline <script>"
                _read_script(tok.text, label, act, page, where, active, depth, preferences,
                             add)
        elif rule.action is Action.FRAME and "srcdoc" in attrs:
            if depth < MAX_DEPTH:  # the browser shows the srcdoc, never the src
                _read_markup(attrs["srcdoc"], page, f"{where}<{name} srcdoc> ", active,
                             depth + 1, preferences)
        elif not rule.base:  # (a base URL is no fetch: the page's URLs are read from it)
            if rule.when_type is not None and \
                    attrs.get("type", "").strip().lower() != rule.when_type:
                continue
            fetching = (rels & _LINK_FETCHING_RELS) - _CONNECT_RELS
            if rule.when_rel and not fetching and not rels & _CONNECT_RELS:
                continue
            for attr_rule in rule.attrs:
                given = attrs.get(attr_rule.name)
                if given is None:
                    continue
                label = _label(name, attr_rule.name, attrs, False)
                if attr_rule.syntax is Syntax.SRCSET:
                    for url in srcset_urls(given):
                        add(url, label, True)
                elif rule.when_rel:
                    add(given, label, True, connect=not fetching,
                        stylesheet="stylesheet" in rels)
                else:
                    add(given, label, True)


def _read_script(text: str, label: str, act: bool, page: Page, where: str, active: bool,
                 depth: int, preferences: str | None, add: Any) -> None:
    urls, markup = script_urls(text)
    for url in urls:
        add(url, label, act)
    if depth < MAX_DEPTH:
        for fragment in markup:
            _read_markup(fragment, page, f"{where}markup in {label}: ", active and act,
                         depth + 1, preferences)


def link_header_refs(values: Sequence[str]) -> list[Reference]:
    """The fetching links of ``Link:`` response headers."""
    refs = []
    for value in values:
        for link in split_link_header(value):
            if not link.startswith("<") or ">" not in link:
                continue
            url, _, params = link[1:].partition(">")
            rels: set[str] = set()
            for param in params.split(";"):
                key, _, raw = param.strip().partition("=")
                if key.strip().lower() == "rel":
                    rels.update(raw.strip().strip('"').lower().split())
            if rels & FETCHING_RELS:
                fetching = (rels & FETCHING_RELS) - _CONNECT_RELS
                refs.append(Reference(url.strip(), f"Link: rel={' '.join(sorted(rels))}", True,
                                      connect=not fetching))
    return refs


def resolve(url: str, page_url: str, base: str | None = None) -> tuple[Target | None, str]:
    """``(third-party target or None, absolute URL)`` of ``url`` on ``page_url``."""
    doc_base = page_url
    if base:
        try:
            parsed = URL(base.strip(_SPACE), page_url)
        except ValueError:
            pass
        else:
            if parsed.protocol in ("http:", "https:"):
                doc_base = parsed.href
    try:
        absolute = URL(url, doc_base).href
    except ValueError:
        return None, ""
    return network_target(absolute, page_url), absolute


def served_policy(response: TestResponse) -> tuple[str, tuple[HostPattern, ...]]:
    """``(mode, hosts)`` of the extension's policy on ``response``.

    ``mode`` is ``"enforce"``, ``"report-only"`` or ``"off"`` (no policy of the
    extension's came with the page); ``hosts`` are the enforced ``default-src``
    hosts.
    """
    marker = f"report-to {REPORT_GROUP}"
    for value in response.headers.getlist(ENFORCE_HEADER):
        if marker not in value:
            continue
        hosts = []
        for directive in value.split(";"):
            parts = directive.split()
            if not parts or parts[0].lower() != "default-src":
                continue
            for source in parts[1:]:
                if source.startswith("'") or source.endswith(":"):
                    continue
                try:
                    hosts.append(parse_host(source.lower()))
                except ValueError:
                    continue
        return "enforce", tuple(hosts)
    if any(marker in v for v in response.headers.getlist(REPORT_ONLY_HEADER)):
        return "report-only", ()
    return "off", ()


# -- classifying a host ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Seen:
    ref: Reference
    target: Target
    url: str


def _judge(seen: _Seen, registry: VendorRegistry, mode: str, allowed: tuple[HostPattern, ...],
           catalogue: HostIndex) -> tuple[str, Service | None, bool]:
    """``(status, vendor, reached)`` of one reference.

    ``vendor`` is the registry's, else the catalogue's (a vendor the app did not
    declare, which ``CONSENTKIT_UNDECLARED_VENDORS = "blocked"`` leaves out of
    the registry), else ``None``.
    """
    target = seen.target
    vendor = registry.vendor_for(target) or catalogue.find(target)
    necessary = registry.allows(target, frozenset())
    blocked = (mode == "enforce" and not seen.ref.connect
               and not any(p.matches(target.host, target.path) for p in allowed))
    reached = seen.ref.active and not blocked
    if reached and not necessary:
        return "leak", vendor, reached
    if vendor is not None and vendor.declared:
        return "ok", vendor, reached
    return "undeclared", vendor, reached


def _declare_hint(host: str, vendor: Service | None, registry: VendorRegistry) -> str:
    if vendor is not None:
        if not vendor.declared and vendor not in registry.undeclared:
            return ("this app allows only the vendors it declares (CONSENTKIT_UNDECLARED_VENDORS "
                    '= "blocked"), so no visitor\'s browser may reach it, even after consent; '
                    f'add "{vendor.key}" to CONSENTKIT_SERVICES')
        if vendor.category not in registry.category_keys:
            return (f"the catalogue files it under {vendor.category!r}, which this app does "
                    "not have, so the browser policy allows it for nobody; declare it with "
                    f'{{"key": "{vendor.key}", "category": "..."}} in CONSENTKIT_SERVICES')
        return (f'add "{vendor.key}" to CONSENTKIT_SERVICES so that the preferences page '
                f"names it (the browser policy allows it once {vendor.category} is granted)")
    return ('declare it: CONSENTKIT_SERVICES = [..., {"name": "...", "category": "...", '
            f'"hosts": ["{host}"]}}]')


def _explain(host: str, status: str, vendor: Service | None, seen: _Seen, mode: str,
             registry: VendorRegistry, tracker: Tracker | None) -> tuple[str, str]:
    """``(source, detail)`` of a host finding: what it is and what to do."""
    if vendor is not None:
        source = (f"declared: {vendor.name}" if vendor.declared
                  else f"catalogue: {vendor.name}, not declared")
    elif tracker is not None:
        source = f"unknown to the catalogue (a known tracker: {tracker.name})"
    else:
        source = "unknown host: in neither CONSENTKIT_SERVICES nor the catalogue"
    declared = vendor is not None and vendor.declared
    if status == "leak":
        element = seen.ref.element
        if seen.ref.connect:
            why = f"{element} opens a connection before consent, which no policy stops"
        elif mode == "off":
            why = (f"the page has no browser policy (CONSENTKIT_CSP = False) and its {element} "
                   "is active: the browser fetches it before consent")
        elif mode == "report-only":
            why = (f"the policy is report-only: the browser fetches its {element} before "
                   "consent (and only reports it)")
        else:
            why = f"the browser policy allows {element} before consent"
        category = vendor.category if vendor is not None else (
            tracker.category if tracker is not None else "...")
        if seen.ref.connect:
            fix = "; remove it, or let the gated script connect"
        else:
            if "script" in element:
                fix = f'; mark the script type="text/plain" data-consent="{category}"'
            elif "<iframe" in element:
                fix = (f'; write it <iframe data-consent="{category}" '
                       'data-consent-src="…">')
            else:
                fix = f"; output it only when current_consent.allows({category!r})"
            if mode != "enforce":
                fix += ' or set CONSENTKIT_CSP = "enforce"'
        if not declared:
            fix += "; and " + _declare_hint(host, vendor, registry)
        return source, why + fix
    if status == "undeclared":
        if vendor is None:
            if mode == "enforce":
                return source, ("the browser policy allows it for nobody, so it cannot work "
                                "even after consent; " + _declare_hint(host, vendor, registry))
            if mode == "report-only":
                return source, ("a visitor's browser reports it, and will block it for "
                                'everyone with CONSENTKIT_CSP = "enforce"; '
                                + _declare_hint(host, vendor, registry))
            return source, ("the preferences page does not name it; "
                            + _declare_hint(host, vendor, registry))
        return source, _declare_hint(host, vendor, registry)
    if vendor is not None and vendor.category == NECESSARY:
        return source, "necessary"
    return source, "waits for consent" if not seen.ref.active else "blocked before consent"


def classify_hosts(seen: Sequence[_Seen], registry: VendorRegistry, mode: str,
                   allowed: tuple[HostPattern, ...], trackers: Sequence[Tracker],
                   catalogue: HostIndex | None = None) -> list[dict[str, Any]]:
    """One verdict per host: the worst of its references."""
    if catalogue is None:
        catalogue = HostIndex(registry.catalogue.vendors)
    by_host: dict[str, list[_Seen]] = {}
    for item in seen:
        by_host.setdefault(item.target.host, []).append(item)
    out = []
    for host, items in by_host.items():
        judged = [(_judge(item, registry, mode, allowed, catalogue), item) for item in items]
        (status, vendor, _reached), worst = max(
            judged, key=lambda j: (_ORDER[j[0][0]], j[0][2], j[1].ref.active))
        tracker = find_tracker(worst.url, None, trackers) if vendor is None else None
        source, detail = _explain(host, status, vendor, worst, mode, registry, tracker)
        category = vendor.category if vendor is not None else (
            tracker.category if tracker is not None else None)
        out.append({
            "host": host, "status": status, "vendor": vendor.key if vendor else None,
            "category": category, "source": source, "detail": detail, "url": worst.url[:200],
            "elements": tuple(dict.fromkeys(item.ref.element for item in items)),
        })
    return out


# -- the scan ---------------------------------------------------------------------------


def _deleting(header: str) -> bool:
    """The ``Set-Cookie`` header removes the cookie (empty, past or zero lifetime)."""
    parts = [p.strip() for p in header.split(";")]
    value = parts[0].partition("=")[2]
    for part in parts[1:]:
        key, _, v = part.partition("=")
        key = key.strip().lower()
        if key == "max-age":
            try:
                if int(v.strip()) <= 0:
                    return True
            except ValueError:
                pass
        elif key == "expires":
            try:
                when = parsedate_to_datetime(v.strip())
            except (TypeError, ValueError):
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            if when <= datetime.now(UTC):
                return True
    return value == "" and any(p.lower().startswith(("max-age", "expires")) for p in parts[1:])


class _QuietErrors(logging.Filter):
    """Keeps the app's exception log quiet while scanning; the scan reports the error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.exc_info


@contextmanager
def _watch(app: Flask) -> Iterator[tuple[list[BaseException], list[Any]]]:
    errors: list[BaseException] = []
    collected: list[Any] = []

    def on_error(sender: Flask, exception: BaseException, **extra: Any) -> None:
        errors.append(exception)

    def on_data(sender: Flask, data: Any = None, **extra: Any) -> None:
        collected.append(data)

    quiet = _QuietErrors()
    app.logger.addFilter(quiet)
    got_request_exception.connect(on_error, app)
    technical_data_collected.connect(on_data, app)
    try:
        yield errors, collected
    finally:
        technical_data_collected.disconnect(on_data, app)
        got_request_exception.disconnect(on_error, app)
        app.logger.removeFilter(quiet)


def _fields(data: Any) -> list[str]:
    if data is None:
        return []
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        values = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
    elif isinstance(data, dict):
        values = data
    else:
        values = {k: v for k, v in vars(data).items() if not k.startswith("_")}
    return [k for k, v in values.items() if v is not None]


@dataclass
class _Context:
    """What every visit of one scan shares."""

    app: Flask
    settings: Settings
    registry: VendorRegistry
    trackers: Sequence[Tracker]
    explicit: Collection[str]
    preferences: str | None
    adapter: MapAdapter
    own: set[str]
    stylesheets: dict[str, str | None] = field(default_factory=dict)
    catalogue: HostIndex | None = None

    def __post_init__(self) -> None:
        self.catalogue = HostIndex(self.registry.catalogue.vendors)


@dataclass
class _Visit:
    """One visitor's requests for one path: follows same-site redirects, collects findings."""

    ctx: _Context
    start: str
    gpc: bool
    findings: list[Finding] = field(default_factory=list)
    _seen: set[tuple[str, str, str]] = field(default_factory=set)

    def add(self, kind: str, name: str, category: str | None, source: str, leak: bool,
            detail: str = "", **extra: Any) -> None:
        key = (kind, name, detail)
        if key not in self._seen:
            self._seen.add(key)
            self.findings.append(Finding(kind, name, self.start, self.gpc, category, source,
                                         leak, detail, **extra))

    def run(self) -> list[Finding]:
        app = self.ctx.app
        client = app.test_client(use_cookies=False)
        headers = {"Sec-GPC": "1"} if self.gpc else {}
        path = self.start
        for _hop in range(MAX_REDIRECTS + 1):
            with _watch(app) as (errors, collected):
                served = Served()
                try:
                    response, served = _fetch(app, client, path, headers)
                except Exception as e:  # the app propagates errors (TESTING/DEBUG)
                    errors.append(e)
                    response = None
            for error in errors:
                self.add("error", type(error).__name__, None,
                         f"GET {path} raised {type(error).__name__}", True, str(error)[:200])
            for data in collected:
                self._technical_data(data)
            if response is None:
                break
            self._read(path, response, bool(errors), served)
            location = response.headers.get("Location")
            if not (300 <= response.status_code < 400 and location):
                if 400 <= response.status_code < 500 and self.start in self.ctx.explicit:
                    self.add("status", f"HTTP {response.status_code}", None,
                             f"GET {path} answered {response.status_code}", False,
                             "a path given with --path or listed in the sitemap must be a "
                             "page", status="fail")
                break
            target = urlsplit(urljoin(f"http://localhost{path}", location))
            if (target.hostname or "") not in self.ctx.own:
                self.add("redirect", target.geturl()[:200], None,
                         "redirect to another site, not followed", False)
                break
            path = target.path + (f"?{target.query}" if target.query else "")
        return self.findings

    def _technical_data(self, data: Any) -> None:
        for name in _fields(data):
            rule = FIELD_RULES.get(name)
            # a field no rule governs is unknown data: a leak
            category = self.ctx.settings.collection_rules.get(rule) if rule else None
            self.add("technical_data", name, category, "technical_data() signal",
                     category != NECESSARY)

    def _read(self, path: str, response: TestResponse, raised: bool, served: Served) -> None:
        settings = self.ctx.settings
        session_cookie = self.ctx.app.config.get("SESSION_COOKIE_NAME")
        for header in response.headers.getlist("Set-Cookie"):
            name = header.split("=", 1)[0].strip()
            if not name or name == settings.cookie_name or _deleting(header):
                continue
            category, source, leak = classify_cookie(name, settings, session_cookie)
            self.add("cookie", name, category, source, leak)
        if response.status_code >= 500 and not raised:
            self.add("error", f"HTTP {response.status_code}", None,
                     f"GET {path} answered {response.status_code}", True)
        if response.mimetype in ("text/html", "application/xhtml+xml"):
            self._page(path, response, served)
        response.close()

    def _page(self, path: str, response: TestResponse, served: Served) -> None:
        page_url = response.request.url
        page = read_page(response.get_data(as_text=True), self.ctx.preferences)
        refs = page.refs + link_header_refs(response.headers.getlist("Link"))
        seen: list[_Seen] = []
        self._resolve(refs, page_url, seen, 0)
        mode, allowed = served_policy(response)
        for verdict in classify_hosts(seen, self.ctx.registry, mode, allowed,
                                      self.ctx.trackers, self.ctx.catalogue):
            self.add("host", verdict["host"], verdict["category"], verdict["source"],
                     verdict["status"] == "leak", verdict["detail"], status=verdict["status"],
                     vendor=verdict["vendor"], elements=verdict["elements"],
                     url=verdict["url"])
        if 200 <= response.status_code < 300:
            self._banner(path, page, response, served)

    def _resolve(self, refs: Sequence[Reference], page_url: str, seen: list[_Seen],
                 depth: int, css_base: str | None = None) -> None:
        for ref in refs:
            target, absolute = resolve(ref.url, css_base or page_url,
                                       None if css_base else ref.base)
            if target is not None:
                seen.append(_Seen(ref, target, absolute))
            elif ref.stylesheet and absolute and depth < MAX_DEPTH:
                css = self._stylesheet(absolute)
                if css:
                    short = urlsplit(absolute).path
                    found = [Reference(url, f"{ref.element} → {short} {how}", ref.active,
                                       stylesheet=how == "@import")
                             for url, how in css_urls(css)]
                    self._resolve(found, page_url, seen, depth + 1, css_base=absolute)

    def _stylesheet(self, url: str) -> str | None:
        """The text of one of the app's own stylesheets (read once per scan)."""
        cached = self.ctx.stylesheets
        if url not in cached:
            cached[url] = None
            path = _same_site_path(url, self.ctx.own)
            response = _get(self.ctx.app, path, self.ctx.own) if path else None
            if response is not None:
                if response.status_code == 200 and response.mimetype == "text/css":
                    body = response.get_data()
                    if len(body) <= MAX_STYLESHEET_BYTES:
                        cached[url] = body.decode(response.mimetype_params.get(
                            "charset", "utf-8"), "replace")
                response.close()
        return cached[url]

    def _banner(self, path: str, page: Page, response: TestResponse, served: Served) -> None:
        settings = self.ctx.settings
        if page.banner or not page.document or not settings.optional_keys:
            return
        rule = rule_for(self.ctx.adapter, path)
        if rule is not None and rule.endpoint.startswith("consentkit"):
            return  # the preferences page is the choice itself
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if not settings.auto_inject:
            why = ("CONSENTKIT_AUTO_INJECT is off and the page does not place it: put "
                   "{{ consent_banner() }} in its template")
        elif served.file:
            why = ("it is sent as a file (send_file), which the extension leaves alone: serve "
                   "it through a template, or put the banner in it")
        elif served.streamed:
            why = ("it is streamed, which the extension leaves alone: put "
                   "{{ consent_banner() }} in its template (and wrap the stream with "
                   "gated_stream())")
        elif encoding not in ("", "identity"):
            why = ("it was compressed before the extension saw it: register ConsentKit after "
                   "the compression extension")
        elif not page.starts_like_document:
            why = ("its body does not start like a document, so the extension took it for a "
                   "fragment: start it with <!doctype html>")
        else:
            why = "put {{ consent_banner() }} in its template"
        self.add("banner", "no consent banner", None,
                 f"GET {path}: no element with id=\"consentkit-banner\" and no cookie-settings "
                 "control", False, why, status="fail")


def scan(app: Flask, paths: Sequence[str], explicit: Collection[str] = ()) -> ScanResult:
    """Request ``paths`` as an undecided visitor, with and without ``Sec-GPC: 1``.

    ``explicit`` paths (given with ``--path`` or read from the sitemap) fail
    the scan when they answer 4xx.
    """
    ext = kit_state()
    gating = ext.gating
    trackers: Sequence[Tracker] = getattr(getattr(gating, "matcher", None), "trackers",
                                          TRACKERS)
    registry = ext.vendors
    if not isinstance(registry, VendorRegistry):
        registry = VendorRegistry(ext.settings.category_keys, ext.settings.services)
    adapter = _adapter(app)
    try:
        preferences: str | None = adapter.build("consentkit.preferences")
    except Exception:  # noqa: BLE001 - an app without the endpoint
        preferences = None
    ctx = _Context(app, ext.settings, registry, trackers, set(explicit), preferences, adapter,
                   _own_hosts(app))
    policy = ext.policy
    result = ScanResult(paths=list(paths), csp=getattr(policy, "mode", "off"))
    plain: set[tuple[Any, ...]] = set()
    for gpc in (False, True):
        for start in paths:
            for f in _Visit(ctx, start, gpc).run():
                key = (f.kind, f.name, f.path, f.status, f.elements, f.detail)
                if f.kind in ("host", "banner", "status"):
                    if gpc and key in plain:
                        continue  # the same for a visitor with GPC: said once
                    plain.add(key)
                result.findings.append(f)
    return result


# -- output -------------------------------------------------------------------------------

_MARKS = {"leak": "LEAK", "ok": "ok  ", "undeclared": "UNDECLARED", "fail": "FAIL"}


def render_text(result: ScanResult) -> str:
    lines = [f"Scanned {len(result.paths)} path(s) as a visitor without consent "
             f"(plain and with Sec-GPC: 1); browser policy: {result.csp}."]
    groups = (("cookie", "Cookies"), ("host", "Third-party hosts"),
              ("technical_data", "Technical data collected"), ("banner", "Consent banner"),
              ("status", "Pages that answered an error"), ("error", "Errors"),
              ("redirect", "Redirects off-site"))
    for kind, title in groups:
        found = [f for f in result.findings if f.kind == kind]
        if not found:
            continue
        lines += ["", f"{title}:"]
        merged: dict[tuple[str, str, str, str], list[Finding]] = {}
        for f in found:
            merged.setdefault((f.name, f.status, f.source, f.detail), []).append(f)
        for (name, _status, _source, detail), items in merged.items():
            f = items[0]
            where = sorted({i.path + (" (GPC)" if i.gpc else "") for i in items})
            category = f" [{f.category}]" if f.category else ""
            lines.append(f"  {_MARKS[f.status]} {name}{category} — {f.source}"
                         + (f": {detail}" if detail else ""))
            if kind == "host":
                elements = dict.fromkeys(e for i in items for e in i.elements)
                lines.append(f"       in {', '.join(elements)}")
            lines.append(f"       on {', '.join(where)}")
    if result.unvisited:
        lines += ["", "Not visited (routes with parameters that no --path and no sitemap URL "
                  "matched; pass --path or list them in /sitemap.xml):"]
        lines += [f"  {r['rule']} ({r['endpoint']})" for r in result.unvisited]
    if result.blocked:
        lines += ["", "Blocked by visitors' browsers (the policy's violation reports):"]
        for row in result.blocked:
            lines.append(f"  {row['host']} ({row['directive']}) on {row['path']}: "
                         f"{row['count']}× between {row['first_seen']} and {row['last_seen']}")
    if result.notes:
        lines += ["", "Notes:"] + [f"  {note}" for note in result.notes]
    failures = result.failures
    lines.append("")
    if failures:
        parts = []
        leaks = sorted({f.name for f in failures if f.status == "leak"})
        if leaks:
            parts.append(f"{len(leaks)} leak(s) before consent: {', '.join(leaks)}")
        undeclared = sorted({f.name for f in failures if f.status == "undeclared"})
        if undeclared:
            parts.append(f"{len(undeclared)} undeclared host(s): {', '.join(undeclared)}")
        pages = sorted({f.path for f in failures if f.status == "fail"})
        if pages:
            parts.append(f"{len(pages)} page(s) failed a check: {', '.join(pages)}")
        lines.append(f"FAIL: {'; '.join(parts)}.")
        if any(f.kind == "cookie" and f.source == "unknown" for f in failures):
            lines.append("Declare each cookie in CONSENTKIT_COOKIES under its category "
                         "('necessary' if the site cannot work without it).")
    else:
        lines.append("OK: nothing but necessary cookies, no third-party host reached before "
                     "consent, every host declared.")
    return "\n".join(lines) + "\n"


@cli.command("scan")
@click.option("--path", "extra", multiple=True, metavar="PATH",
              help="Also request this path (repeatable), e.g. --path /story/lighthouse.")
@click.option("--max-per-route", type=click.IntRange(min=0), default=MAX_PER_ROUTE,
              show_default=True,
              help="URLs of the app's sitemap to visit per route with parameters (0: none).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def scan_command(extra: tuple[str, ...], max_per_route: int, fmt: str) -> None:
    """Find cookies, hosts and data the app leaks before consent (exit 1 on a leak)."""
    for path in extra:
        if not path.startswith("/") or path.startswith("//"):
            raise click.BadParameter(f"{path!r} is not a path on this app; write it as "
                                     "'/story/lighthouse'.", param_hint="'--path'")
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    sitemap = read_sitemaps(app) if max_per_route else Sitemap()
    sampled, unvisited = sample(app, extra, sitemap, max_per_route)
    paths = scan_paths(app, [*extra, *sampled])
    result = scan(app, paths, explicit={*extra, *sampled})
    result.unvisited = [{"rule": r.rule, "endpoint": r.endpoint} for r in unvisited]
    result.sitemap = {"read": sitemap.read, "urls": len(sitemap.locations),
                      "sampled": sampled, "other_sites": sitemap.skipped,
                      "problems": sitemap.problems}
    result.notes += [f"sitemap: {p}" for p in sitemap.problems]
    violations = kit_state().violations
    if violations is not None:
        try:
            result.blocked = list(violations.top(BLOCKED_SHOWN))
        except Exception as e:  # noqa: BLE001 - information only
            result.notes.append(f"the violation reports could not be read: {e}")
    if fmt == "json":
        click.echo(json.dumps(result.as_json(), indent=2, default=str))
    else:
        click.echo(render_text(result), nl=False)
    if result.failures:
        raise SystemExit(1)
