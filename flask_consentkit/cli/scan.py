"""``flask consent scan``: what the app leaks to a visitor who has not consented.

The scanner requests every GET route that takes no parameters (and the paths
given with ``--path``) through ``app.test_client()`` with no consent cookie,
once plainly and once with ``Sec-GPC: 1``, following redirects on the same site
only, and lists:

- every cookie set other than the consent cookie, classified as *declared*
  (``CONSENTKIT_COOKIES`` or a service's cookies), the Flask *session* cookie,
  *known* (the table in ``known_cookies.json``, derived from the Open Cookie
  Database by ``scripts/derive_cookie_table.py``) or *unknown*;
- every script, iframe, ``<img>`` or ``<link>`` left active that matches a
  known tracker (:mod:`flask_consentkit.gating.trackers`, plus an app's extra
  trackers);
- every technical-data field collected (the ``technical_data_collected``
  signal).

A finding *leaks* unless its category is ``necessary`` (for the Open Cookie
Database: "Necessary" or "Security"). Unknown cookies leak: declare them (under
``necessary`` if that is what they are). A route that raises is a failure too.
The command exits with 1 when anything leaks or fails, 0 otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache
from html.parser import HTMLParser
from importlib import resources
from typing import Any
from urllib.parse import urljoin, urlsplit

import click
from flask import Flask, current_app, got_request_exception
from werkzeug.test import TestResponse

from ..categories import NECESSARY, cookie_category
from ..config import Settings
from ..gating.trackers import TRACKERS, Tracker, find_tracker
from ..signals import technical_data_collected
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
_RUNNABLE = frozenset({
    "", "module", "application/ecmascript", "application/javascript",
    "application/x-ecmascript", "application/x-javascript", "text/ecmascript",
    "text/javascript", "text/jscript", "text/livescript", "text/x-ecmascript",
    "text/x-javascript",
})


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
    """One thing a visitor without consent got. ``leak`` unless it is necessary."""

    kind: str  # "cookie" | "tracker" | "technical_data" | "error" | "redirect"
    name: str
    path: str
    gpc: bool
    category: str | None
    source: str  # how it was classified: "declared", "known: …", "unknown", …
    leak: bool
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ScanResult:
    paths: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def leaks(self) -> list[Finding]:
        return [f for f in self.findings if f.leak]

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": not self.leaks,
            "paths": self.paths,
            "leaks": len(self.leaks),
            "findings": [f.as_json() for f in self.findings],
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


def scan_paths(app: Flask, extra: Sequence[str] = ()) -> list[str]:
    """Paths of every GET rule that needs no parameters, then ``extra``.

    Static files and the extension's own endpoints are skipped, except the
    preferences page, which a visitor sees.
    """
    paths: list[str] = []
    for rule in app.url_map.iter_rules():
        endpoint = rule.endpoint
        if "GET" not in (rule.methods or ()) or endpoint == "static" \
                or endpoint.endswith(".static"):
            continue
        if endpoint.startswith("consentkit") and endpoint != "consentkit.preferences":
            continue
        if rule.host or rule.subdomain:
            continue
        defaults = rule.defaults or {}
        if not set(rule.arguments) <= set(defaults):
            continue
        built = rule.build(defaults, append_unknown=False)
        if built is None:
            continue
        if built[1] not in paths:
            paths.append(built[1])
    paths.sort()
    return paths + [p for p in dict.fromkeys(extra) if p not in paths]


# -- reading the responses ----------------------------------------------------------------


class _Tags(HTMLParser):
    """Scripts, iframes, images and links of a page, with their attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], str]] = []
        self._script: dict[str, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): (v or "") for k, v in attrs}
        if tag == "script":
            self._script, self._text = values, []
        elif tag in ("iframe", "img", "link", "embed", "source"):
            self.elements.append((tag, values, ""))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "script":
            self.handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.elements.append(("script", self._script, "".join(self._text)))
            self._script = None


def _active_script(attrs: dict[str, str]) -> bool:
    kind = attrs.get("type", "").split(";")[0].strip().lower()
    return kind in _RUNNABLE


def find_trackers(html: str, trackers: Sequence[Tracker]) -> list[tuple[Tracker, str, str]]:
    """``(tracker, element, where)`` for every active element that matches a tracker."""
    parser = _Tags()
    parser.feed(html)
    parser.close()
    found = []
    for tag, attrs, text in parser.elements:
        hit: Tracker | None = None
        where = ""
        if tag == "script":
            if not _active_script(attrs):
                continue
            src = attrs.get("src", "")
            hit = find_tracker(src, "script", trackers) if src else None
            where = src
            if hit is None and text.strip():
                hit = find_tracker(text, "script", trackers)
                where = "inline script"
        elif tag == "iframe":
            src = attrs.get("src", "")
            if src and src != "about:blank":
                hit = find_tracker(src, "iframe", trackers) or find_tracker(src, None, trackers)
                where = src
        else:
            kind = "image" if tag in ("img", "source") else None
            for attr in ("src", "href", "srcset"):
                url = attrs.get(attr, "")
                if url and (hit := find_tracker(url, kind, trackers)
                            or find_tracker(url, None, trackers)) is not None:
                    where = url
                    break
        if hit is not None:
            found.append((hit, f"<{tag}>", where[:200]))
    return found


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


# -- the scan ---------------------------------------------------------------------------


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
class _Visit:
    """One visitor's requests for one path: follows same-site redirects, collects findings."""

    app: Flask
    settings: Settings
    trackers: Sequence[Tracker]
    start: str
    gpc: bool
    findings: list[Finding] = field(default_factory=list)
    _seen: set[tuple[str, str, str]] = field(default_factory=set)

    def add(self, kind: str, name: str, category: str | None, source: str, leak: bool,
            detail: str = "") -> None:
        key = (kind, name, detail)
        if key not in self._seen:
            self._seen.add(key)
            self.findings.append(Finding(kind, name, self.start, self.gpc, category, source,
                                         leak, detail))

    def run(self) -> list[Finding]:
        client = self.app.test_client(use_cookies=False)
        headers = {"Sec-GPC": "1"} if self.gpc else {}
        own_hosts = {"localhost", self.app.config.get("SERVER_NAME") or "localhost"}
        path = self.start
        for _hop in range(MAX_REDIRECTS + 1):
            with _watch(self.app) as (errors, collected):
                try:
                    response = client.get(path, headers=headers)
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
            self._read(path, response, bool(errors))
            location = response.headers.get("Location")
            if not (300 <= response.status_code < 400 and location):
                break
            target = urlsplit(urljoin(f"http://localhost{path}", location))
            if target.hostname not in own_hosts:
                self.add("redirect", target.geturl()[:200], None,
                         "redirect to another site, not followed", False)
                break
            path = target.path + (f"?{target.query}" if target.query else "")
        return self.findings

    def _technical_data(self, data: Any) -> None:
        for name in _fields(data):
            rule = FIELD_RULES.get(name)
            # a field no rule governs is unknown data: a leak
            category = self.settings.collection_rules.get(rule) if rule else None
            self.add("technical_data", name, category, "technical_data() signal",
                     category != NECESSARY)

    def _read(self, path: str, response: TestResponse, raised: bool) -> None:
        session_cookie = self.app.config.get("SESSION_COOKIE_NAME")
        for header in response.headers.getlist("Set-Cookie"):
            name = header.split("=", 1)[0].strip()
            if not name or name == self.settings.cookie_name or _deleting(header):
                continue
            category, source, leak = classify_cookie(name, self.settings, session_cookie)
            self.add("cookie", name, category, source, leak)
        if response.status_code >= 500 and not raised:
            self.add("error", f"HTTP {response.status_code}", None,
                     f"GET {path} answered {response.status_code}", True)
        if response.mimetype in ("text/html", "application/xhtml+xml"):
            html = response.get_data(as_text=True)
            for tracker, element, where in find_trackers(html, self.trackers):
                self.add("tracker", tracker.name, tracker.category, f"active {element}",
                         tracker.category != NECESSARY, where)
        response.close()


def scan(app: Flask, paths: Sequence[str]) -> ScanResult:
    """Request ``paths`` as an undecided visitor, with and without ``Sec-GPC: 1``."""
    ext = kit_state()
    gating = ext.services.get("gating")
    trackers: Sequence[Tracker] = getattr(getattr(gating, "matcher", None), "trackers",
                                          TRACKERS)
    result = ScanResult(paths=list(paths))
    for gpc in (False, True):
        for start in paths:
            visit = _Visit(app, ext.settings, trackers, start, gpc)
            result.findings.extend(visit.run())
    return result


# -- output -------------------------------------------------------------------------------


def render_text(result: ScanResult) -> str:
    lines = [f"Scanned {len(result.paths)} path(s) as a visitor without consent "
             "(plain and with Sec-GPC: 1)."]
    groups = (("cookie", "Cookies"), ("tracker", "Active trackers"),
              ("technical_data", "Technical data collected"), ("error", "Errors"),
              ("redirect", "Redirects off-site"))
    for kind, title in groups:
        found = [f for f in result.findings if f.kind == kind]
        if not found:
            continue
        lines += ["", f"{title}:"]
        merged: dict[tuple[str, str], list[Finding]] = {}
        for f in found:
            merged.setdefault((f.name, f.detail), []).append(f)
        for (name, detail), items in merged.items():
            f = items[0]
            where = sorted({i.path + (" (GPC)" if i.gpc else "") for i in items})
            mark = "LEAK" if f.leak else "ok  "
            category = f" [{f.category}]" if f.category else ""
            lines.append(f"  {mark} {name}{category} — {f.source}"
                         + (f": {detail}" if detail else ""))
            lines.append(f"       on {', '.join(where)}")
    leaks = result.leaks
    lines.append("")
    if leaks:
        names = sorted({f.name for f in leaks})
        lines.append(f"FAIL: {len(names)} leak(s) before consent: {', '.join(names)}.")
        if any(f.kind == "cookie" and f.source == "unknown" for f in leaks):
            lines.append("Declare each cookie in CONSENTKIT_COOKIES under its category "
                         "('necessary' if the site cannot work without it).")
    else:
        lines.append("OK: nothing but necessary cookies and no active trackers before consent.")
    return "\n".join(lines) + "\n"


@cli.command("scan")
@click.option("--path", "extra", multiple=True, metavar="PATH",
              help="Also request this path (repeatable), e.g. --path /story/lighthouse.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def scan_command(extra: tuple[str, ...], fmt: str) -> None:
    """Find cookies, trackers and data the app leaks before consent (exit 1 on a leak)."""
    for path in extra:
        if not path.startswith("/") or path.startswith("//"):
            raise click.BadParameter(f"{path!r} is not a path on this app; write it as "
                                     "'/story/lighthouse'.", param_hint="'--path'")
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    paths = scan_paths(app, extra)
    result = scan(app, paths)
    if fmt == "json":
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        click.echo(render_text(result), nl=False)
    if result.leaks:
        raise SystemExit(1)
