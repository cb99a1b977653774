"""The browser's policy: a Content-Security-Policy per set of granted categories.

Every HTML response gets a ``Content-Security-Policy`` header of the
extension's own (``-Report-Only`` in ``"report-only"`` mode), next to any policy
of the app's (browsers enforce every policy they get, so the app's nonces or
``'strict-dynamic'`` keep working). It is one ``default-src`` directive, which
every fetch directive falls back to — ``script-src``, ``style-src``,
``img-src``, ``font-src``, ``connect-src``, ``frame-src``, ``media-src``,
``object-src``, ``worker-src``, ``manifest-src`` and the ``-elem``/``-attr``
forms — so the host list is written once::

    default-src 'self' 'unsafe-inline' 'unsafe-eval' 'wasm-unsafe-eval' data: blob:
        <hosts of necessary services> <hosts of the granted categories' services>;
    report-uri /consent/csp-report; report-to consentkit-csp

It restricts hosts only: inline code, ``eval``, WebAssembly and ``blob:``
workers of the page itself are left to the app's own policy. ``data:`` and
``blob:`` reach no third party (documents made from them inherit the policy).

The header value depends on the set of granted categories, on the report
endpoint's path (the app's script root) and, when the visitor's rule per audience
forbids services (:mod:`.regions`), on that rule, and on nothing else: it is built
once per such key (:meth:`BrowserPolicy.value`).

What a policy cannot stop — ``<link rel=preconnect|dns-prefetch>`` and
``Link:`` headers that open connections — is dropped on the server
(:func:`filter_link_header` here, the HTML rewrite for ``<link>`` elements).
"""

from __future__ import annotations

import re
import threading
import time
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from . import jsonbody
from .cache import Kept
from .categories import HostPattern
from .urls import network_target
from .vendors import VendorRegistry

if TYPE_CHECKING:
    from .regions import RuleView

Mode = Literal["enforce", "report-only"]

ENFORCE_HEADER = "Content-Security-Policy"
REPORT_ONLY_HEADER = "Content-Security-Policy-Report-Only"
#: the name of the Reporting API endpoint in ``Reporting-Endpoints``
REPORT_GROUP = "consentkit-csp"
#: what a script root keeps unencoded in the report endpoint's URL: a path's own
#: characters, without those that end a directive (``;``), a policy (``,``), a quoted
#: keyword or the header's string (``'``, ``"``), or the value (spaces)
_PATH_SAFE = "/!$&()*+=:@"
#: what the page itself may do, whatever it was granted
SELF_SOURCES = "'self' 'unsafe-inline' 'unsafe-eval' 'wasm-unsafe-eval' data: blob:"
#: ``Link:`` relations that make the browser fetch or connect before any element asks
FETCHING_RELS = frozenset({"preconnect", "dns-prefetch", "preload", "modulepreload",
                           "prefetch", "prerender", "stylesheet", "icon", "manifest"})


class BrowserPolicy:
    """The policy header of one app.

    :param registry: the app's vendors (declared, then catalogue).
    :param mode: ``"enforce"`` or ``"report-only"``.
    :param report_path: the report endpoint's path below the script root.
    """

    def __init__(self, registry: VendorRegistry, mode: Mode, report_path: str) -> None:
        self.registry = registry
        self.mode = mode
        self.report_path = report_path
        self.header = ENFORCE_HEADER if mode == "enforce" else REPORT_ONLY_HEADER
        #: the header per (granted categories, script root, rule view's key)
        self._values: Kept[tuple[frozenset[str], str, str], str] = Kept(
            "policy headers", 256, 4 << 20)

    def value(self, granted: frozenset[str], script_root: str = "",
              view: RuleView | None = None) -> str:
        """The header value for a visitor who granted ``granted``; built once per key.

        ``view``: the visitor's rule forbids services (:mod:`.regions`); its registry,
        without them, gives the hosts, and its key is part of the cache's.
        """
        key = (granted, script_root, view.key if view is not None else "")
        value = self._values.get(key)
        if value is None:
            registry = view.registry if view is not None else self.registry
            value = self.build(registry.allowed_hosts(granted), self.report_url(script_root))
            self._values.put(key, value, len(value))
        return value

    @staticmethod
    def build(hosts: tuple[HostPattern, ...], report_url: str) -> str:
        sources = " ".join([SELF_SOURCES, *(str(h) for h in hosts)])
        return f"default-src {sources}; report-uri {report_url}; report-to {REPORT_GROUP}"

    def reporting_endpoints(self, script_root: str = "") -> str:
        """The ``Reporting-Endpoints`` header that names :data:`REPORT_GROUP`."""
        return f'{REPORT_GROUP}="{self.report_url(script_root)}"'

    def report_url(self, script_root: str) -> str:
        """The report endpoint's path below ``script_root`` (the WSGI ``SCRIPT_NAME``, a
        string of latin-1 decoded bytes), percent-encoded: a root may come from a proxy's
        ``X-Forwarded-Prefix``, and a ``;``, ``,``, quote or space in it would end the
        directive, the policy or the header's string and add directives of its own."""
        return quote(script_root.encode("latin-1", "replace"), safe=_PATH_SAFE) + self.report_path


def split_link_header(value: str) -> list[str]:
    """The link-values of a ``Link:`` header (commas inside ``<…>`` or quotes kept)."""
    parts: list[str] = []
    start = 0
    in_url = in_quote = False
    for i, char in enumerate(value):
        if in_quote:
            if char == '"':
                in_quote = False
        elif char == "<":
            in_url = True
        elif char == ">":
            in_url = False
        elif char == '"' and not in_url:
            in_quote = True
        elif char == "," and not in_url:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return [p.strip() for p in parts if p.strip()]


def _link_target(link: str) -> tuple[str, set[str]] | None:
    """``(url, rels)`` of one link-value, or ``None`` when it is not one."""
    if not link.startswith("<") or ">" not in link:
        return None
    url, _, params = link[1:].partition(">")
    rels: set[str] = set()
    for param in params.split(";"):
        name, _, raw = param.strip().partition("=")
        if name.strip().lower() == "rel":
            rels.update(raw.strip().strip('"').lower().split())
    return url.strip(), rels


def filter_link_header(value: str, allows: object, base: str) -> str | None:
    """``value`` without the links that would fetch from a host ``allows`` refuses.

    ``allows`` is called with a :class:`~flask_consentkit.urls.Target`;
    ``None`` is returned when no link is left.
    """
    kept = []
    for link in split_link_header(value):
        parsed = _link_target(link)
        if parsed is not None and parsed[1] & FETCHING_RELS:
            target = network_target(parsed[0], base)
            if target is not None and not allows(target):  # type: ignore[operator]
                continue
        kept.append(link)
    return ", ".join(kept) if kept else None


# -- violation reports --------------------------------------------------------------

#: the largest report body read, in bytes (a report quotes the whole policy)
MAX_REPORT_BODY = 64 * 1024
#: reports of one body counted at most (a ``reports+json`` batch)
MAX_REPORTS_PER_BODY = 100
REPORT_TYPES = frozenset({"application/csp-report", "application/json",
                          "application/reports+json"})
_DIRECTIVE = re.compile(r"^[a-z][a-z-]{0,39}$")
MAX_PATH = 512


class ReportError(ValueError):
    """A report body that is not a CSP violation report; the message says why."""


def parse_reports(body: bytes, base: str) -> dict[tuple[str, str, str], int]:
    """Count the violations of a report body: ``{(host, directive, path): n}``.

    Accepts both shapes browsers send: ``report-uri``'s
    ``{"csp-report": {...}}`` and the Reporting API's list of
    ``{"type": "csp-violation", "body": {...}}``. Only the blocked URL's host, the
    effective directive and the document's path (without query) are kept. A
    violation without a third-party host (inline code, ``eval``) is not counted.

    :raises ReportError: when the body is not JSON of either shape.
    """
    try:
        data = jsonbody.loads(body)
    except jsonbody.JSONBodyError as e:
        raise ReportError(f"the JSON is nested more than {jsonbody.MAX_DEPTH} levels deep"
                          if e.too_deep else "the body is not JSON") from None
    if isinstance(data, dict) and isinstance(data.get("csp-report"), dict):
        items = [_legacy(data["csp-report"])]
    elif isinstance(data, list):
        items = [_reporting_api(entry) for entry in data[:MAX_REPORTS_PER_BODY]
                 if isinstance(entry, dict) and entry.get("type") == "csp-violation"]
        if data and not items:
            raise ReportError("the list holds no csp-violation report")
    else:
        raise ReportError('expected {"csp-report": {...}} or a list of Reporting API reports')
    counts: dict[tuple[str, str, str], int] = {}
    for blocked, directive, document in items:
        if not isinstance(blocked, str) or not isinstance(directive, str):
            continue
        target = network_target(blocked[:2048])
        directive = directive.strip().split(" ", 1)[0].lower()
        if target is None or not _DIRECTIVE.match(directive) or len(target.host) > 253:
            continue
        path = "/"
        if isinstance(document, str):
            page = network_target(document[:2048])
            path = (page.path if page else "/")[:MAX_PATH]
        key = (target.host, directive, path)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _legacy(report: dict[str, Any]) -> tuple[Any, Any, Any]:
    directive = report.get("effective-directive") or report.get("violated-directive")
    return report.get("blocked-uri"), directive, report.get("document-uri")


def _reporting_api(entry: dict[str, Any]) -> tuple[Any, Any, Any]:
    body = entry.get("body")
    if not isinstance(body, dict):
        return None, None, None
    return body.get("blockedURL"), body.get("effectiveDirective"), body.get("documentURL")


class TokenBucket:
    """At most ``rate`` reports a second in this process, in bursts of ``burst``."""

    def __init__(self, rate: float = 50.0, burst: float = 200.0) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True
