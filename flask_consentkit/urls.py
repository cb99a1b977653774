"""URLs read the way a browser reads them (the WHATWG URL Standard, through ``ada-url``).

Every place that decides whether a URL reaches a third party — the HTML
rewrite, ``flask consent scan``, the ``Link:`` header filter — asks
:func:`network_target`, so a host spelt with percent-encoding, a backslash, a
tab, an explicit default port, a trailing dot or in Unicode is read as the
browser would read it. Character references (``&#46;``) belong to HTML, not to
URLs: decode attribute values (``html.unescape``) before calling this.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from ada_url import URL

#: schemes whose URLs are fetched from a host (``blob:`` and ``data:`` are the page's own)
NETWORK_SCHEMES = frozenset({"http:", "https:", "ws:", "wss:", "ftp:"})
#: the base used for relative URLs when the page's own URL is not known
_OWN = "http://consentkit.invalid/"


class Target(NamedTuple):
    """Where a URL goes: ``host`` (lower case, ASCII, no trailing dot) and ``path``."""

    host: str
    path: str


def network_target(url: str, base: str | None = None) -> Target | None:
    """The host and path a browser would fetch ``url`` from, or ``None``.

    ``None`` means the URL does not leave the page's own origin: relative URLs,
    ``data:``, ``blob:``, ``about:``, ``javascript:``, and text that is not a URL
    at all. ``base`` is the page's own URL; without it, relative URLs are the
    page's own by definition and answer ``None``.
    """
    try:
        parsed = URL(url, base or _OWN)
    except ValueError:
        return None
    if parsed.protocol not in NETWORK_SCHEMES:
        return None
    host = parsed.hostname.rstrip(".")
    if not host or (base is None and host == "consentkit.invalid"):
        return None
    if base is not None and host == URL(base).hostname.rstrip("."):
        return None
    return Target(host, parsed.pathname or "/")


def host_of(url: str) -> str | None:
    """Only the host of :func:`network_target`, for messages and reports."""
    target = network_target(url)
    return target.host if target else None


def safe_next(value: str | None) -> str:
    """``value`` when it is a path on this site, else ``/``."""
    if not value or len(value) > 2048:
        return "/"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value) or "\\" in value:
        return "/"
    for candidate in (value, unquote(value)):
        if not candidate.startswith("/") or candidate.startswith("//"):
            return "/"
        if "\\" in candidate or any(ord(c) < 0x20 or ord(c) == 0x7F for c in candidate):
            return "/"
    try:
        parts = urlsplit(value)
    except ValueError:
        return "/"
    if parts.scheme or parts.netloc:
        return "/"
    return value
