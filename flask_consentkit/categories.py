"""Categories, services and cookie-name patterns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: the pseudo-category of the separate consent to transfers abroad (rules per audience,
#: :mod:`.regions`): kept in the consent cookie's and the receipts' granted/denied lists
#: beside the categories, never a category
TRANSFERS = "transfers_abroad"

NECESSARY = "necessary"

#: The default categories, in display order.
DEFAULT_CATEGORIES: tuple[str, ...] = (
    "necessary",
    "functional",
    "analytics",
    "performance",
    "marketing",
)

#: A text the app may give as one string or as a mapping of language → string.
Text = str | Mapping[str, str]


def pick_text(text: Text | None, language: str, fallback: str = "en") -> str | None:
    """Return ``text`` in ``language`` (then ``fallback``, then any language)."""
    if text is None or isinstance(text, str):
        return text
    for lang in (language, fallback):
        if lang in text:
            return text[lang]
    return next(iter(text.values()), None)


@dataclass(frozen=True)
class CookiePattern:
    """A cookie name, or a prefix when written with a trailing ``*``."""

    pattern: str

    @property
    def is_prefix(self) -> bool:
        return self.pattern.endswith("*")

    def matches(self, name: str) -> bool:
        if self.is_prefix:
            return name.startswith(self.pattern[:-1])
        return name == self.pattern

    def __str__(self) -> str:
        return self.pattern


@dataclass(frozen=True)
class HostPattern:
    """A host a vendor loads from or sends to, written as a CSP host source without scheme.

    ``host`` is ``www.example.com`` (that host) or ``*.example.com`` (its
    subdomains, not ``example.com`` itself); ``path`` is ``""`` (any path) or a
    prefix ending in ``/`` (``/recaptcha/``) for a host that vendors share.
    """

    host: str
    path: str = ""

    @property
    def is_wildcard(self) -> bool:
        return self.host.startswith("*.")

    def matches(self, host: str, path: str = "/") -> bool:
        """Does a request to ``host`` (lower case, no trailing dot) and ``path`` match?"""
        if self.is_wildcard:
            if not host.endswith(self.host[1:]):
                return False
        elif host != self.host:
            return False
        return not self.path or path.startswith(self.path)

    def __str__(self) -> str:
        return self.host + self.path


@dataclass(frozen=True)
class Service:
    """A vendor: declared by the app (shown in the preferences) or from the catalogue.

    Its ``hosts`` are allowed by the browser's policy when ``category`` — or
    one of ``shared_with``, for a loader that serves several categories — is
    granted.
    """

    name: str
    category: str
    purpose: Text | None = None
    policy_url: str | None = None
    cookies: tuple[CookiePattern, ...] = ()
    #: stable identifier: the catalogue key, or a slug of the name
    key: str = ""
    hosts: tuple[HostPattern, ...] = ()
    #: ISO 3166-1 codes (or ``"EU"``) of the countries the data goes to
    countries: tuple[str, ...] = ()
    shared_with: tuple[str, ...] = ()
    #: named in ``CONSENTKIT_SERVICES`` (``False`` for a catalogue entry the app did not name)
    declared: bool = True

    @property
    def categories(self) -> frozenset[str]:
        """Every category whose grant allows this service's hosts."""
        return frozenset((self.category, *self.shared_with))


@dataclass(frozen=True)
class Category:
    """One consent category. ``label`` and ``description`` override the catalog's."""

    key: str
    label: Text | None = None
    description: Text | None = None
    cookies: tuple[CookiePattern, ...] = ()
    services: tuple[Service, ...] = field(default=())

    @property
    def required(self) -> bool:
        return self.key == NECESSARY

    def all_cookies(self) -> tuple[CookiePattern, ...]:
        """Cookies declared for the category directly and through its services."""
        seen: dict[str, CookiePattern] = {p.pattern: p for p in self.cookies}
        for service in self.services:
            for p in service.cookies:
                seen.setdefault(p.pattern, p)
        return tuple(seen.values())


def cookie_category(categories: Iterable[Category], name: str) -> str | None:
    """The category that declares cookie ``name`` (exact names win over prefixes)."""
    prefix_hit: str | None = None
    for category in categories:
        for pattern in category.all_cookies():
            if pattern.matches(name):
                if not pattern.is_prefix:
                    return category.key
                prefix_hit = prefix_hit or category.key
    return prefix_hit
