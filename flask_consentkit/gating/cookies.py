"""Cookies the app sets: filter them by consent, expire them on withdrawal.

Two rules, applied to every response (HTML or not) by :func:`filter_cookies`:

1. A ``Set-Cookie`` header for a cookie declared under a category (in
   ``CONSENTKIT_COOKIES`` or a service's ``cookies``) that the visitor has not
   granted is removed from the response, and a warning is logged once per
   cookie name. A header that deletes a cookie is always let through.
2. When this request withdrew categories (``request_consent().withdrawn``,
   set by the choice and erase views), every cookie of those categories that
   the browser sent (exact names and ``*`` prefixes), and every exactly named
   one even when it was not sent (a cookie on another path is not), is expired
   on each of ``CONSENTKIT_COOKIE_PATHS`` and on the host plus each of
   ``CONSENTKIT_COOKIE_DOMAINS`` — HttpOnly cookies included, which no script
   in the browser can reach.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from flask import Response, request

from ..categories import Category, CookiePattern
from ..config import Settings
from ..extension import ConsentKitState
from ..state import get_state, peek_request_consent

logger = logging.getLogger("flask_consentkit.gating")

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
    rules: CookieRules = ext.services["gating"].cookies
    if rules.empty:
        return response
    headers = response.headers.getlist("Set-Cookie")
    if headers:
        _drop_unconsented(response, rules, headers)
    ctx = peek_request_consent()
    if ctx is not None and ctx.withdrawn:
        expire_withdrawn(response, ext.settings, rules, ctx.withdrawn)
    return response


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


def expire_withdrawn(response: Response, settings: Settings, rules: CookieRules,
                     withdrawn: Iterable[str]) -> list[str]:
    """Expire every cookie the browser sent that belongs to a ``withdrawn`` category.

    :return: the names of the cookies expired.
    """
    withdrawn = frozenset(withdrawn)
    names = [n for n in request.cookies if rules.category(n) in withdrawn]
    # A cookie set on another path is not sent to the consent endpoint; exact names
    # are known, so they are expired even when this request did not carry them.
    names += [n for n, c in rules.exact.items()
              if c in withdrawn and n not in request.cookies and n != rules.consent_cookie]
    for name in names:
        secure = request.is_secure or name.startswith(("__Secure-", "__Host-"))
        if name.startswith("__Host-"):  # only ever host-only on "/"
            response.delete_cookie(name, path="/", secure=True, httponly=True)
            continue
        for path in settings.cookie_paths:
            for domain in (None, *settings.cookie_domains):
                response.delete_cookie(name, path=path, domain=domain, secure=secure,
                                       httponly=True)
    return names
