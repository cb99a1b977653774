"""The vendor catalogue and the app's vendor registry.

The catalogue is data shipped with the package: one JSON file per group of
vendors in ``flask_consentkit/catalogue/``, each ``{"vendors": [...]}`` with, per
vendor, a stable ``key``, ``name``, ``category``, the ``hosts`` it loads from or
sends to, the ``cookies`` it sets, the ``countries`` its data goes to, its
``purpose``, ``policy_url`` and ``docs_url`` (where the hosts are documented),
and optionally ``shared_with`` (more categories whose grant allows the hosts:
a loader that serves two categories). The catalogue never files a vendor under
``necessary``: only the app can say a third party is necessary.

:class:`VendorRegistry` is one app's view: the services it declared in
``CONSENTKIT_SERVICES`` first, then every catalogue vendor it did not declare,
under its catalogue category (when the app has that category; otherwise for
nobody). A host in neither is allowed for nobody.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

from .categories import NECESSARY, CookiePattern, HostPattern, Service, Text
from .urls import Target

__all__ = [
    "Catalogue",
    "VendorRegistry",
    "load_catalogue",
    "parse_host",
]

CATALOGUE_PACKAGE = "flask_consentkit"
CATALOGUE_DIR = "catalogue"
#: the categories a catalogue entry may name (never ``necessary``)
CATALOGUE_CATEGORIES = frozenset({"functional", "analytics", "performance", "marketing"})

_KEY = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_HOST = re.compile(r"^(\*\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)+$")
_PATH = re.compile(r"^/(?:[A-Za-z0-9._~@+-]+/)*$")
_COUNTRY = re.compile(r"^(?:[A-Z]{2}|EU)$")
_COOKIE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FIELDS = frozenset({"key", "name", "category", "hosts", "cookies", "countries", "purpose",
                     "policy_url", "docs_url", "shared_with"})


def parse_host(text: Any) -> HostPattern:
    """``"*.example.com"`` or ``"www.example.com/path/"`` as a :class:`HostPattern`.

    :raises ValueError: saying what is wrong and how to write it.
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"a host must be a non-empty string, got {text!r}")
    host, slash, path = text.partition("/")
    path = slash + path
    if "://" in text or not _HOST.match(host) or (path and not _PATH.match(path)):
        raise ValueError(
            f"{text!r} is not a host: write 'cdn.example.com', '*.example.com' (its "
            "subdomains) or 'www.example.com/path/' (a path prefix ending in '/'), "
            "lower case, without scheme or port")
    return HostPattern(host, path)


def slug(name: str) -> str:
    """A key for a service declared without one: ``"My CDN"`` → ``"my-cdn"``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "service"


def _vendor(entry: Any, where: str) -> Service:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be an object")
    key = entry.get("key")
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(f"{where}: 'key' must be lower-case kebab-case, got {key!r}")
    where = f"{where} ({key})"
    unknown = set(entry) - _FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
    name = entry.get("name")
    category = entry.get("category")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: 'name' must be a non-empty string")
    if category not in CATALOGUE_CATEGORIES:
        raise ValueError(f"{where}: 'category' must be one of {sorted(CATALOGUE_CATEGORIES)}")
    shared = entry.get("shared_with", [])
    if not isinstance(shared, list) or not set(shared) <= CATALOGUE_CATEGORIES - {category}:
        raise ValueError(f"{where}: 'shared_with' must list other catalogue categories")
    hosts = entry.get("hosts")
    if not isinstance(hosts, list) or not hosts:
        raise ValueError(f"{where}: 'hosts' must be a non-empty list")
    cookies = entry.get("cookies", [])
    if not isinstance(cookies, list) or not all(
            isinstance(c, str) and _COOKIE.match(c.removesuffix("*") or "-") for c in cookies):
        raise ValueError(f"{where}: 'cookies' must be a list of cookie names ('_ga', '_ga_*')")
    countries = entry.get("countries", [])
    if not isinstance(countries, list) or not all(
            isinstance(c, str) and _COUNTRY.match(c) for c in countries):
        raise ValueError(f"{where}: 'countries' must be ISO 3166-1 alpha-2 codes or 'EU'")
    for field_name in ("purpose", "policy_url", "docs_url"):
        value = entry.get(field_name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where}: {field_name!r} must be a string")
    try:
        patterns = tuple(dict.fromkeys(parse_host(h) for h in hosts))
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return Service(
        name=name,
        category=category,
        purpose=entry.get("purpose"),
        policy_url=entry.get("policy_url"),
        cookies=tuple(CookiePattern(c) for c in cookies),
        key=key,
        hosts=patterns,
        countries=tuple(countries),
        shared_with=tuple(shared),
        declared=False,
    )


@dataclass(frozen=True)
class Catalogue:
    """Every vendor the package knows, by key, in file then entry order."""

    vendors: tuple[Service, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", {v.key: v for v in self.vendors})

    def get(self, key: str) -> Service | None:
        by_key: dict[str, Service] = self.__dict__["_by_key"]
        return by_key.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__["_by_key"]

    def __len__(self) -> int:
        return len(self.vendors)

    def find(self, target: Target) -> Service | None:
        """The first vendor one of whose hosts matches ``target``."""
        return HostIndex(self.vendors).find(target)


def parse_catalogue(files: Iterable[tuple[str, Any]]) -> Catalogue:
    """Validate ``(file name, parsed JSON)`` pairs and merge them.

    :raises ValueError: naming the file, the entry and what is wrong.
    """
    vendors: list[Service] = []
    seen: dict[str, str] = {}
    for name, data in files:
        if not isinstance(data, Mapping) or not isinstance(data.get("vendors"), list):
            raise ValueError(f'{name}: the catalogue must be an object {{"vendors": [...]}}')
        for i, entry in enumerate(data["vendors"]):
            vendor = _vendor(entry, f"{name}: vendor #{i}")
            if vendor.key in seen:
                raise ValueError(f"{name}: key {vendor.key!r} is also in {seen[vendor.key]}")
            seen[vendor.key] = name
            vendors.append(vendor)
    return Catalogue(tuple(vendors))


@cache
def load_catalogue() -> Catalogue:
    """The catalogue shipped with the package (read once per process)."""
    folder = resources.files(CATALOGUE_PACKAGE).joinpath(CATALOGUE_DIR)
    if not folder.is_dir():
        return Catalogue(())
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".json")),
                   key=lambda f: f.name)
    return parse_catalogue((f.name, json.loads(f.read_text("utf-8"))) for f in files)


class HostIndex:
    """Services by host: exact hosts in one dict, wildcards by their suffix."""

    def __init__(self, services: Iterable[Service]) -> None:
        self.exact: dict[str, list[tuple[HostPattern, Service]]] = {}
        self.wild: dict[str, list[tuple[HostPattern, Service]]] = {}
        for service in services:
            for pattern in service.hosts:
                if pattern.is_wildcard:
                    self.wild.setdefault(pattern.host[2:], []).append((pattern, service))
                else:
                    self.exact.setdefault(pattern.host, []).append((pattern, service))

    def find_all(self, target: Target) -> list[Service]:
        """Every service one of whose hosts matches, most specific pattern first."""
        host, path = target
        found: list[tuple[int, Service]] = []
        for pattern, service in self.exact.get(host, ()):
            if pattern.matches(host, path):
                found.append((2 + len(pattern.path), service))
        labels = host.split(".")
        for i in range(1, len(labels) - 1):
            for pattern, service in self.wild.get(".".join(labels[i:]), ()):
                if pattern.matches(host, path):
                    found.append((1 + len(pattern.path), service))
        found.sort(key=lambda item: -item[0])
        out: list[Service] = []
        for _, service in found:  # by identity: a service's texts may be mappings
            if not any(s is service for s in out):
                out.append(service)
        return out

    def find(self, target: Target) -> Service | None:
        found = self.find_all(target)
        return found[0] if found else None


class VendorRegistry:
    """One app's vendors: declared services first, then the rest of the catalogue.

    :param categories: the app's category keys.
    :param declared: the services of ``CONSENTKIT_SERVICES``, already resolved
        against the catalogue.
    :param undeclared: whether catalogue vendors the app did not declare are
        allowed under their catalogue category (else for nobody).
    """

    def __init__(self, categories: Iterable[str], declared: Iterable[Service],
                 catalogue: Catalogue | None = None, *, undeclared: bool = True) -> None:
        self.catalogue = catalogue if catalogue is not None else load_catalogue()
        self.category_keys = frozenset(categories)
        self.declared: tuple[Service, ...] = tuple(declared)
        keys = {s.key for s in self.declared}
        #: catalogue vendors the app did not declare, under their catalogue category
        #: (none with ``CONSENTKIT_UNDECLARED_VENDORS = "blocked"``: allowed for nobody)
        self.undeclared: tuple[Service, ...] = tuple(
            v for v in self.catalogue.vendors if v.key not in keys) if undeclared else ()
        self.services = self.declared + self.undeclared
        self._declared_index = HostIndex(self.declared)
        self._index = HostIndex(self.undeclared)
        self._allowed: dict[frozenset[str], tuple[HostPattern, ...]] = {}
        self._widening: dict[frozenset[str], tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def vendor_for(self, target: Target) -> Service | None:
        """The service a request to ``target`` belongs to: a declared one first."""
        return self._declared_index.find(target) or self._index.find(target)

    def services_for(self, target: Target) -> list[Service]:
        """Every service whose hosts match ``target``, declared ones first."""
        return self._declared_index.find_all(target) + self._index.find_all(target)

    def allows(self, target: Target, granted: frozenset[str]) -> bool:
        """Would the policy for ``granted`` let the browser reach ``target``?"""
        effective = (granted | {NECESSARY}) & self.category_keys
        return any(s.categories & effective for s in self.services_for(target))

    def allowed_hosts(self, granted: frozenset[str]) -> tuple[HostPattern, ...]:
        """The hosts the policy allows for a visitor who granted ``granted``.

        Built once per set of granted categories (the only thing it depends on).
        """
        hosts = self._allowed.get(granted)
        if hosts is None:
            effective = (granted | {NECESSARY}) & self.category_keys
            hosts = covering(
                pattern for s in self.services if s.categories & effective
                for pattern in s.hosts)
            with self._lock:
                if len(self._allowed) >= 256:
                    self._allowed.clear()
                self._allowed[granted] = hosts
        return hosts

    def widening(self, granted: frozenset[str]) -> tuple[str, ...]:
        """The categories whose grant would allow a host that ``granted`` does not.

        Depends on ``granted`` only; kept per set like :meth:`allowed_hosts`.
        """
        found = self._widening.get(granted)
        if found is None:
            current = set(self.allowed_hosts(granted))
            found = tuple(
                key for key in sorted(self.category_keys - granted - {NECESSARY})
                if not set(self.allowed_hosts(granted | {key})) <= current)
            with self._lock:
                if len(self._widening) >= 256:
                    self._widening.clear()
                self._widening[granted] = found
        return found


def covering(patterns: Iterable[HostPattern]) -> tuple[HostPattern, ...]:
    """``patterns`` in order, without those another one already allows.

    ``a.example.com`` and ``*.b.example.com`` go when ``*.example.com`` is there; a
    path prefix goes when its host is there with any path. The policy allows the
    same requests with fewer bytes.
    """
    unique = list(dict.fromkeys(patterns))
    whole = {p.host for p in unique if not p.path}
    wild = {p.host[2:] for p in unique if p.is_wildcard and not p.path}

    def covered(p: HostPattern) -> bool:
        if p.path and p.host in whole:
            return True
        labels = p.host.removeprefix("*.").split(".")
        # a parent domain's wildcard covers the host and its subdomains alike
        return any(".".join(labels[i:]) in wild for i in range(1, len(labels) - 1))

    return tuple(p for p in unique if not covered(p))


def resolve_service(entry: Any, catalogue: Catalogue, cat_keys: set[str],
                    text: Any, url: Any) -> Service:
    """One ``CONSENTKIT_SERVICES`` entry as a :class:`Service`.

    ``entry`` is a catalogue key (``"youtube"``), a mapping with a catalogue
    ``key`` and fields that override the catalogue's, or a full mapping with
    ``name``, ``category`` and ``hosts``. ``text`` and ``url`` are the config
    module's validators for texts and URLs.

    :raises ValueError: with the fix in the message.
    """
    if isinstance(entry, str):
        vendor = catalogue.get(entry)
        if vendor is None:
            raise ValueError(f"{entry!r} is not a key of the vendor catalogue "
                             "(`flask consent vendors` lists them); give a mapping with "
                             "'name', 'category' and 'hosts' for a vendor of your own")
        if vendor.category not in cat_keys:
            raise ValueError(f"catalogue vendor {entry!r} is filed under {vendor.category!r}, "
                             "which this app does not have; give a mapping "
                             f"{{'key': {entry!r}, 'category': ...}}")
        return replace(vendor, declared=True,
                       shared_with=tuple(c for c in vendor.shared_with if c in cat_keys))
    if not isinstance(entry, Mapping):
        raise ValueError(f"{entry!r} must be a catalogue key or a mapping with 'name' and "
                         "'category'")
    allowed = {"key", "name", "category", "purpose", "policy_url", "cookies", "hosts",
               "countries", "shared_with"}
    unknown = set(entry) - allowed
    if unknown:
        raise ValueError(f"service {entry.get('name') or entry.get('key')!r} has unknown "
                         f"field(s) {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")
    base: Service | None = None
    if "key" in entry:
        if not isinstance(entry["key"], str) or not _KEY.match(entry["key"]):
            raise ValueError(f"service key {entry['key']!r} must be lower-case kebab-case")
        base = catalogue.get(entry["key"])
    name = entry.get("name", base.name if base else None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{dict(entry)!r} needs a 'name' (or a 'key' of the vendor catalogue)")
    category = entry.get("category", base.category if base else None)
    if not isinstance(category, str) or category not in cat_keys:
        raise ValueError(f"service {name!r} names unknown category {category!r}; use one of "
                         f"{sorted(cat_keys)} (one key, a string)")
    hosts_raw = entry.get("hosts")
    if hosts_raw is None:
        hosts = base.hosts if base else ()
    else:
        if isinstance(hosts_raw, str) or not isinstance(hosts_raw, list | tuple):
            raise ValueError(f"the hosts of service {name!r} must be a list, e.g. "
                             "['cdn.example.com', '*.example.net']")
        hosts = tuple(dict.fromkeys(parse_host(h) for h in hosts_raw))
    countries_raw = entry.get("countries")
    if countries_raw is None:
        countries = base.countries if base else ()
    else:
        if not isinstance(countries_raw, list | tuple) or not all(
                isinstance(c, str) and _COUNTRY.match(c) for c in countries_raw):
            raise ValueError(f"the countries of service {name!r} must be a list of ISO 3166-1 "
                             "codes, e.g. ['US', 'EU']")
        countries = tuple(countries_raw)
    shared_raw = entry.get("shared_with")
    if shared_raw is not None and (not isinstance(shared_raw, list | tuple) or not all(
            isinstance(c, str) for c in shared_raw)):
        raise ValueError(f"'shared_with' of service {name!r} must be a list of category keys, "
                         f"e.g. ['marketing'], not {shared_raw!r}")
    shared = base.shared_with if base and shared_raw is None else tuple(shared_raw or ())
    if not set(shared) <= set(cat_keys):
        raise ValueError(f"'shared_with' of service {name!r} must list categories of this app")
    purpose: Text | None = text(entry.get("purpose", base.purpose if base else None))
    return Service(
        name=name,
        category=category,
        purpose=purpose,
        policy_url=url(entry.get("policy_url", base.policy_url if base else None)),
        cookies=base.cookies if base and "cookies" not in entry else (),
        key=entry.get("key") or slug(name),
        hosts=hosts,
        countries=countries,
        shared_with=tuple(c for c in shared if c != category),
        declared=True,
    )
