"""Cookies the app sets: filter them by consent, expire them on withdrawal.

Two rules, applied to every response (HTML or not) by :func:`filter_cookies`:

1. A ``Set-Cookie`` header for a cookie declared under a category (in
   ``CONSENTKIT_COOKIES`` or a service's ``cookies``) that the visitor has not
   granted is removed from the response, and a warning is logged once per
   cookie name. A header that deletes a cookie is always let through.
2. When this request withdrew categories (``request_consent().withdrawn``,
   set by the choice and erase views), every cookie of those categories that
   the browser sent is expired — whether the app declared it, the vendor
   catalogue lists it (``ext.vendors``), or the known-cookie table
   (``flask_consentkit/cli/known_cookies.json``, derived from the Open Cookie
   Database) names it as analytics or marketing — and so is every exactly
   named declared one even when it was not sent (a cookie on another path is
   not). Each is expired on each of ``CONSENTKIT_COOKIE_PATHS``, host-only and on
   each of ``CONSENTKIT_COOKIE_DOMAINS`` plus the request's host and its parent
   domains (where vendors' scripts such as Google Analytics put their cookies)
   — HttpOnly cookies included, which no script in the browser can reach.
   Never expired: the consent cookie, the language cookie, the app's session
   cookie, a cookie declared ``necessary``, one of a category still granted,
   and a cookie nobody knows.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import re
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Response, current_app, request

from ..appstate import ConsentKitState
from ..categories import NECESSARY, Category, CookiePattern
from ..config import Settings
from ..state import RequestConsent, get_state, peek_request_consent

if TYPE_CHECKING:
    from ..vendors import VendorRegistry

logger = logging.getLogger("flask_consentkit.gating")

#: the known-cookie table (also read by ``flask consent scan``), read here in place
KNOWN_COOKIES = Path(__file__).resolve().parent.parent / "cli" / "known_cookies.json"
#: the table's categories that expiry trusts: its "functional" names include the
#: session and login cookies of common platforms (PHPSESSID, JSESSIONID, …)
_KNOWN_TRACKING = frozenset({"analytics", "marketing", "performance"})
#: a bare lowercase word (``token``, ``locale``, ``uid``): in the table as some
#: vendor's cookie on its own domain, but on this site far likelier the app's own
_GENERIC = re.compile(r"[a-z]+")
#: parent domains of the request's host on which withdrawn cookies are also expired
_MAX_PARENTS = 4

_MAX_AGE = re.compile(r";\s*max-age\s*=\s*(-?\d+)", re.IGNORECASE)
_EXPIRES = re.compile(r";\s*expires\s*=\s*([^;]+)", re.IGNORECASE)


class CookieRules:
    """Which category declares a cookie name: exact names first, then the longest prefix."""

    def __init__(self, categories: Iterable[Category], consent_cookie: str) -> None:
        self.exact: dict[str, str] = {}
        prefixes: list[tuple[str, str]] = []
        for category in categories:
            for pattern in category.all_cookies():
                self._add(pattern, category.key, prefixes)
        self.prefixes = sorted(prefixes, key=lambda p: -len(p[0]))
        #: nothing declared: nothing to filter (read on every response)
        self.empty = not (self.exact or self.prefixes)
        self.consent_cookie = consent_cookie
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def _add(self, pattern: CookiePattern, category: str, prefixes: list[tuple[str, str]]) -> None:
        if pattern.is_prefix:
            prefixes.append((pattern.pattern[:-1], category))
        else:
            self.exact.setdefault(pattern.pattern, category)

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefixes)

    def category(self, name: str) -> str | None:
        """The category that declares cookie ``name``, or ``None`` when it is not declared."""
        if name == self.consent_cookie:
            return None
        found = self.exact.get(name)
        if found is not None:
            return found
        for prefix, category in self.prefixes:
            if name.startswith(prefix):
                return category
        return None

    def warn_once(self, name: str, category: str) -> None:
        with self._lock:
            if name in self._warned:
                return
            self._warned.add(name)
        logger.warning(
            "The response set cookie %r, declared under %r, without that consent; "
            "the Set-Cookie header was removed. Set it only when "
            "current_consent.allows(%r).", name, category, category,
        )


def _deletes(header: str) -> bool:
    """True when a ``Set-Cookie`` header removes its cookie (max-age ≤ 0 or expired)."""
    m = _MAX_AGE.search(header)
    if m is not None:
        return int(m.group(1)) <= 0
    m = _EXPIRES.search(header)
    if m is None:
        return False
    try:
        when = parsedate_to_datetime(m.group(1).strip())
    except (TypeError, ValueError, IndexError):
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when <= datetime.now(UTC)


def _cookie_name(header: str) -> str:
    return header.split("=", 1)[0].strip() if "=" in header else ""


def filter_cookies(response: Response, ext: ConsentKitState) -> Response:
    """The response processor: rules 1 and 2 of this module."""
    rules: CookieRules = ext.gating.cookies
    if not rules.empty:
        headers = response.headers.getlist("Set-Cookie")
        if headers:
            _drop_unconsented(response, rules, headers)
    ctx = peek_request_consent()
    if ctx is not None and ctx.withdrawn:
        expire_withdrawn(response, ext, rules, ctx.withdrawn, _granted_after(ctx))
    return response


def _granted_after(ctx: RequestConsent) -> frozenset[str]:
    """What the visitor grants once this request is answered (nothing after an erasure)."""
    if ctx.decision is not None and not ctx.clear:
        return ctx.decision.granted
    return frozenset()


def _drop_unconsented(response: Response, rules: CookieRules, headers: list[str]) -> None:
    blocked: list[tuple[str, str]] = []
    for header in headers:
        name = _cookie_name(header)
        category = rules.category(name)
        if category is not None:
            blocked.append((header, category))
    if not blocked:
        return
    state = get_state()
    dropped = {
        header for header, category in blocked
        if not state.allows(category) and not _deletes(header)
    }
    if not dropped:
        return
    response.headers.remove("Set-Cookie")
    for header in headers:
        if header in dropped:
            rules.warn_once(_cookie_name(header), rules.category(_cookie_name(header)) or "")
        else:
            response.headers.add("Set-Cookie", header)


@functools.cache
def known_tracking_cookies() -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    """``(exact names, prefixes longest first)`` → category, of the known-cookie table's
    analytics, marketing and performance cookies that are not bare lowercase words."""
    data: Any = json.loads(KNOWN_COOKIES.read_text(encoding="utf-8"))
    exact = {name: category for name, (_, category) in data["cookies"].items()
             if category in _KNOWN_TRACKING and not _GENERIC.fullmatch(name)}
    prefixes = [(name, category) for name, _, category in data["prefixes"]
                if category in _KNOWN_TRACKING and not _GENERIC.fullmatch(name)]
    return exact, tuple(sorted(prefixes, key=lambda p: -len(p[0])))


class VendorCookies:
    """The cookie names of the catalogue's vendors that the app did not declare,
    by the categories whose grant allows each (exact names, then longest prefix)."""

    def __init__(self, registry: VendorRegistry) -> None:
        self.registry = registry
        declared = {s.key for s in registry.declared}
        vendors = [v for v in registry.catalogue.vendors if v.key not in declared]
        self.exact: dict[str, frozenset[str]] = {}
        prefixes: dict[str, frozenset[str]] = {}
        for service in vendors:  # the app's own declarations are in CookieRules
            for pattern in service.cookies:
                table = prefixes if pattern.is_prefix else self.exact
                name = pattern.pattern[:-1] if pattern.is_prefix else pattern.pattern
                table[name] = table.get(name, frozenset()) | service.categories
        self.prefixes = sorted(prefixes.items(), key=lambda p: -len(p[0]))

    def categories(self, name: str) -> frozenset[str] | None:
        found = self.exact.get(name)
        if found is not None:
            return found
        for prefix, categories in self.prefixes:
            if name.startswith(prefix):
                return categories
        return None


def _vendor_cookies(ext: ConsentKitState) -> VendorCookies | None:
    """The app's :class:`VendorCookies`, built on first use (the registry comes after us)."""
    registry = ext.vendors
    if registry is None:
        return None
    found: VendorCookies | None = ext.vendor_cookies
    if found is None or found.registry is not registry:
        found = ext.vendor_cookies = VendorCookies(registry)
    return found


def cookie_categories(name: str, rules: CookieRules,
                      vendors: VendorCookies | None) -> frozenset[str] | None:
    """The categories a cookie belongs to: declared, else the catalogue's, else the
    known-cookie table's; ``None`` when nobody knows it."""
    declared = rules.category(name)
    if declared is not None:
        return frozenset({declared})
    if vendors is not None:
        found = vendors.categories(name)
        if found is not None:
            return found
    exact, prefixes = known_tracking_cookies()
    category = exact.get(name)
    if category is None:
        category = next((c for prefix, c in prefixes if name.startswith(prefix)), None)
    return frozenset({category}) if category is not None else None


def _protected(ext: ConsentKitState) -> frozenset[str]:
    """Cookies a withdrawal never touches: the consent, language and session cookies."""
    names = {ext.settings.cookie_name}
    banner = ext.banner
    language = getattr(banner, "language_cookie", None)
    if isinstance(language, str):
        names.add(language)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        names.add(app.session_interface.get_cookie_name(app))
    except Exception:  # noqa: BLE001 - a session interface of the app's own
        names.add(str(app.config.get("SESSION_COOKIE_NAME") or "session"))
    return frozenset(names)


def _domains(settings: Settings, host: str) -> tuple[str | None, ...]:
    """Host-only, the configured domains, then the request's host and its parents.

    ``www.shop.example.com`` adds itself, ``shop.example.com`` and
    ``example.com`` (a browser ignores a public suffix such as ``co.uk``); an IP
    address or a single-label host (``localhost``) adds nothing.
    """
    out: dict[str | None, None] = {None: None}
    for domain in settings.cookie_domains:
        out[domain.lstrip(".")] = None
    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    host = host.strip("[]").rstrip(".").lower()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.split(".")
        if len(labels) >= 2:
            for start in range(min(len(labels) - 1, _MAX_PARENTS)):
                out[".".join(labels[start:])] = None
    return tuple(out)


def expire_withdrawn(response: Response, ext: ConsentKitState, rules: CookieRules,
                     withdrawn: Iterable[str],
                     granted: Iterable[str] = frozenset()) -> list[str]:
    """Expire every cookie the browser sent that belongs to a ``withdrawn`` category.

    A cookie is expired when it belongs to a withdrawn category (declared, in
    the catalogue or in the known-cookie table, see :func:`cookie_categories`)
    and to none that is still ``granted`` or ``necessary``; exactly named
    declared cookies are expired even when they were not sent.

    :return: the names of the cookies expired.
    """
    settings = ext.settings
    withdrawn = frozenset(withdrawn) - {NECESSARY}
    kept = frozenset(granted) | {NECESSARY}
    protected = _protected(ext)
    vendors = _vendor_cookies(ext)
    names = []
    for name in request.cookies:
        if name in protected:
            continue
        categories = cookie_categories(name, rules, vendors)
        if categories and categories & withdrawn and not categories & kept:
            names.append(name)
    # A cookie set on another path is not sent to the consent endpoint; exact names
    # are known, so they are expired even when this request did not carry them.
    names += [n for n, c in rules.exact.items()
              if c in withdrawn and n not in request.cookies and n not in protected]
    domains = _domains(settings, request.host)
    for name in names:
        secure = request.is_secure or name.startswith(("__Secure-", "__Host-"))
        if name.startswith("__Host-"):  # only ever host-only on "/"
            response.delete_cookie(name, path="/", secure=True, httponly=True)
            continue
        for path in settings.cookie_paths:
            for domain in domains:
                response.delete_cookie(name, path=path, domain=domain, secure=secure,
                                       httponly=True)
    return names


__all__ = ["CookieRules", "VendorCookies", "cookie_categories", "expire_withdrawn",
           "filter_cookies", "known_tracking_cookies"]
