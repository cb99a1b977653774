"""The ``CONSENTKIT_*`` configuration keys: defaults, validation, one frozen object.

:data:`KEYS` is the table of keys — name, default, parser, README line.
:func:`load_settings` is called once from :meth:`ConsentKit.init_app`: it runs
each key's parser, then the few checks that span keys. Every mistake raises
:class:`~flask_consentkit.errors.ConsentConfigError` naming the key and the fix;
nothing here runs while a request is handled.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

from .categories import (
    DEFAULT_CATEGORIES,
    NECESSARY,
    Category,
    CookiePattern,
    Service,
    Text,
)
from .configkeys import (
    ANONYMIZE_IP,
    AUTO_INJECT,
    CATEGORIES,
    COLLECTION_RULES,
    CONSENT_MODE,
    CONTROLLER,
    COOKIE_DOMAINS,
    COOKIE_HOST_PREFIX,
    COOKIE_NAME,
    COOKIE_PATHS,
    COOKIE_SECURE,
    COOKIES,
    CSP,
    DEFAULT_LANGUAGE,
    DENIED_STATUS,
    GEOIP_ACCOUNT_ID,
    GEOIP_DATABASE,
    GEOIP_HOST,
    GEOIP_LICENSE_KEY,
    GEOIP_TIMEOUT,
    GPC_LAST_UPDATE,
    HONOR_DNT,
    HONOR_GPC,
    LANGUAGES,
    LEDGER_TIMEOUT,
    LEDGER_URL,
    MAX_AGE,
    MAX_BODY,
    MIN_AGE,
    POLICY_CHANGES,
    POLICY_EFFECTIVE,
    POLICY_VERSION,
    PREFIX,
    PRIVACY_POLICY_URL,
    RATELIMIT,
    RATELIMIT_STORAGE_URL,
    REGIONS,
    RETENTION_DAYS,
    SERVICES,
    SIGNING_KEY,
    SIGNING_OLD_KEYS,
    TRUSTED_ORIGINS,
    UA_PARSER,
    UNDECLARED_VENDORS,
    URL_PREFIX,
)
from .errors import ConsentConfigError
from .ratelimit import Rate, check_storage_url, parse_rate
from .regions import COUNTRIES, DEFAULT_TABLE, RegionTable, parse_regions
from .vendors import load_catalogue, resolve_service

#: Sentinel for "a SQLite file in the app's instance folder".
INSTANCE_SQLITE = "instance-sqlite"

DEFAULT_COLLECTION_RULES: dict[str, str] = {
    "ip": "analytics",
    "geo": "analytics",
    "user_agent": "performance",
}

_TOKEN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_COOKIE_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: a domain name: labels of letters, digits and inner hyphens; a leading dot as browsers accept
_DOMAIN = re.compile(r"^\.?(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")
_LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one app. Read-only; built once."""

    policy_version: str
    categories: tuple[Category, ...]
    cookie_name: str
    cookie_secure: bool | None
    cookie_domains: tuple[str, ...]
    #: paths on which cookies of a withdrawn category are expired
    cookie_paths: tuple[str, ...]
    #: category → Google Consent Mode v2 types it grants
    consent_mode: Mapping[str, tuple[str, ...]]
    max_age: int
    url_prefix: str
    auto_inject: bool
    honor_gpc: bool
    honor_dnt: bool
    gpc_last_update: str
    ledger_url: str | None
    retention_days: int
    geoip_database: str | None
    geoip_account_id: str | None
    geoip_license_key: str | None
    anonymize_ip: bool
    collection_rules: Mapping[str, str]
    languages: tuple[str, ...]
    default_language: str
    trusted_origins: frozenset[str]
    privacy_policy_url: str | None
    denied_status: int
    max_body: int
    #: data-subject endpoints: ``(limit, period seconds)`` per visitor, or ``None``
    ratelimit: Rate | None = Rate(5, 60)
    ratelimit_storage_url: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    geoip_host: str = "geoip.maxmind.com"
    geoip_timeout: float = 2.0
    ua_parser: str = "auto"
    #: seconds any ledger statement, lock wait or receipt write may take
    ledger_timeout: float = 5.0
    #: the browser policy: ``"enforce"``, ``"report-only"`` or ``False``
    csp: str | bool = "enforce"
    #: catalogue vendors the app did not declare: ``"catalogue"`` (their catalogue
    #: category) or ``"blocked"`` (allowed for nobody)
    undeclared_vendors: str = "catalogue"
    #: the Ed25519 private key file that signs checkpoints and receipts, or ``None``
    signing_key: str | None = None
    #: public (or private) key files of retired signing keys, still trusted to verify
    signing_old_keys: tuple[str, ...] = ()
    #: the day the policy of ``policy_version`` takes effect (``YYYY-MM-DD``), or ``None``
    policy_effective: str | None = None
    #: what changed in that version: one text, or ``{language: text}``; or ``None``
    policy_changes: Text | None = None
    #: the site is not meant for children under this age (a line in the banner), or ``None``
    min_age: int | None = None
    #: ``CONSENTKIT_REGIONS`` validated: the rule of each audience (see :mod:`.regions`)
    regions: RegionTable = DEFAULT_TABLE
    #: who the visitor deals with (name, address, email, phone, url), kept in each notice
    controller: tuple[tuple[str, str], ...] = ()

    # read on every request: made once (the settings never change)
    @cached_property
    def category_keys(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.categories)

    @cached_property
    def optional_keys(self) -> tuple[str, ...]:
        """Every category a visitor can refuse (all but ``necessary``)."""
        return tuple(c.key for c in self.categories if not c.required)

    def category(self, key: str) -> Category:
        for c in self.categories:
            if c.key == key:
                return c
        raise KeyError(key)

    @cached_property
    def services(self) -> tuple[Service, ...]:
        return tuple(s for c in self.categories for s in c.services)


#: What a parser reads besides the raw value: the parsed values of the keys it needs.
Parsed = Mapping[str, Any]
#: ``parse(key, raw value, parsed)`` → the parsed value; raises ConsentConfigError.
Parser = Callable[[str, Any, Parsed], Any]


@dataclass(frozen=True)
class Key:
    """One configuration key: its name, default, parser and line in the README."""

    name: str
    default: Any
    parse: Parser
    #: the README's "meaning" column; adjacent keys with the same doc share a row
    doc: str
    #: keys whose parsed values ``parse`` reads; they are parsed first
    needs: tuple[str, ...] = ()
    #: ``False``: the value is no :class:`Settings` field of its own (a cross-key step uses it)
    in_settings: bool = True
    #: the README's "default" column; ``{}`` stands for the default as a literal
    shown_default: str = "{}"

    @property
    def field(self) -> str:
        """The :class:`Settings` field: ``CONSENTKIT_MAX_AGE`` → ``max_age``."""
        return self.name.removeprefix(PREFIX).lower()


def _fail(key: str, message: str) -> ConsentConfigError:
    return ConsentConfigError(key, message)


# -- parsers shared by several keys ---------------------------------------------------


def _text(key: str, value: Any, what: str) -> Text | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return dict(value)
    raise _fail(key, f"{what} must be a string or a mapping of language code to string.")


def _http_url(key: str, value: Any, what: str = "") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(key, f"{what}expected an http(s) URL string, got {type(value).__name__}.")
    parts = urlsplit(value)
    if value.startswith("/") and not value.startswith("//"):
        return value  # a path on the app's own site
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _fail(
            key,
            f"{what}{value!r} is not an http(s) URL. Use an absolute https:// URL "
            "or a path on this site such as '/privacy'.",
        )
    return value


def _patterns(key: str, value: Any) -> tuple[CookiePattern, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _fail(key, "cookie names must be given as a list of strings, e.g. ['_ga', '_ga_*'].")
    out = []
    for name in value:
        if not isinstance(name, str) or not name:
            raise _fail(key, f"cookie name {name!r} must be a non-empty string.")
        bare = name[:-1] if name.endswith("*") else name
        if not bare or not _COOKIE_NAME.match(bare):
            raise _fail(
                key,
                f"{name!r} is not a valid cookie name; a trailing '*' marks a prefix ('_ga_*').",
            )
        out.append(CookiePattern(name))
    return tuple(out)


def _positive_int(key: str, value: Any, parsed: Parsed) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, f"expected a whole number, got {value!r}.")
    if value <= 0:
        raise _fail(key, f"must be a positive number, got {value}.")
    return value


#: longest ``CONSENTKIT_MAX_AGE``: browsers cap a cookie's lifetime at 400 days (RFC 6265bis)
MAX_AGE_LIMIT = 400 * 86400
#: longest ``CONSENTKIT_RETENTION_DAYS``: 100 years keeps every cutoff date in range
RETENTION_DAYS_LIMIT = 36500


def _max_age(key: str, value: Any, parsed: Parsed) -> int:
    seconds = _positive_int(key, value, parsed)
    if seconds > MAX_AGE_LIMIT:
        raise _fail(key, f"{seconds} seconds is longer than browsers keep a cookie; use at "
                    f"most {MAX_AGE_LIMIT} (400 days), e.g. 15552000 (180 days).")
    return seconds


def _retention_days(key: str, value: Any, parsed: Parsed) -> int:
    days = _positive_int(key, value, parsed)
    if days > RETENTION_DAYS_LIMIT:
        raise _fail(key, f"{days} days is longer than any receipt needs keeping, and the "
                    "day to prune before would fall outside the calendar; use at most "
                    f"{RETENTION_DAYS_LIMIT} (100 years), e.g. 365.")
    return days


def _bool(key: str, value: Any, parsed: Parsed) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, f"expected True or False, got {value!r}.")
    return value


def _optional_str(key: str, value: Any, parsed: Parsed) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        return str(os.fspath(value))
    if not isinstance(value, str) or not value:
        raise _fail(key, f"expected a non-empty string or None, got {value!r}.")
    return value


def _str_list(key: str, value: Any, parsed: Parsed) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _fail(key, f"expected a list of strings, got {value!r}.")
    if not all(isinstance(v, str) for v in value):
        raise _fail(key, f"expected a list of strings, got {value!r}.")
    return tuple(value)


def _paths(key: str, value: Any, parsed: Parsed) -> tuple[str, ...]:
    """A list of file paths (strings or ``os.PathLike``)."""
    if isinstance(value, str | os.PathLike) or not isinstance(value, Sequence) or not all(
            isinstance(v, str | os.PathLike) and str(v) for v in value):
        raise _fail(key, f"expected a list of file paths, e.g. ['/etc/app/signing-2026.key.pub'], "
                    f"got {value!r}.")
    return tuple(str(os.fspath(v)) for v in value)


def _category_keys(parsed: Parsed) -> set[str]:
    """The category keys of the parsed ``CONSENTKIT_CATEGORIES``."""
    return {e["key"] for e in parsed[CATEGORIES]}


# -- the policy and the notice ----------------------------------------------------------

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: longest summary of a policy change: the banner's first layer must stay small
MAX_CHANGES = 120


def _policy_version(key: str, value: Any, parsed: Parsed) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > 64:
        raise _fail(key, "must be a non-empty string of at most 64 characters, e.g. '2026-11'.")
    return value


def _policy_effective(key: str, value: Any, parsed: Parsed) -> str | None:
    """The day the policy takes effect, as ``YYYY-MM-DD``."""
    if isinstance(value, _dt.datetime):
        raise _fail(key, f"{value!r} is a date and time; give the day only, as "
                    "'YYYY-MM-DD' (e.g. '2026-11-01') or a datetime.date.")
    if isinstance(value, _dt.date):
        value = value.isoformat()
    if value is not None:
        try:
            if not isinstance(value, str) or not _ISO_DATE.match(value):
                raise ValueError
            _dt.date.fromisoformat(value)
        except ValueError:
            raise _fail(key, f"{value!r} is not a date; write the day the policy of "
                        f"{POLICY_VERSION} takes effect as 'YYYY-MM-DD', e.g. "
                        "'2026-11-01', or None.") from None
    effective: str | None = value
    return effective


def _policy_changes(key: str, value: Any, parsed: Parsed) -> Text | None:
    """What changed: one text (in the default language) or ``{language: text}``."""
    languages: tuple[str, ...] = parsed[LANGUAGES]
    default_language: str = parsed[DEFAULT_LANGUAGE]
    hint = ("one short sentence, e.g. 'We now use Yandex Metrica for visit statistics.', "
            "or a mapping of language code to it, e.g. {'en': '…', 'az': '…'}")
    if value is None:
        return None
    changes: Text
    if isinstance(value, str):
        texts = {default_language: value}
        changes = value
    elif isinstance(value, Mapping) and value and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        texts = dict(value)
        changes = texts
    else:
        raise _fail(key, f"expected {hint}; got {value!r}.")
    for lang, text in texts.items():
        if lang not in languages:
            raise _fail(key, f"{lang!r} is not in {LANGUAGES} {list(languages)}; "
                        "remove it or add the language.")
        if not text.strip():
            raise _fail(key, f"the text for {lang!r} is empty; write {hint}, or None.")
        if len(text) > MAX_CHANGES:
            raise _fail(key, f"the text for {lang!r} has {len(text)} characters; keep it "
                        f"to at most {MAX_CHANGES} (it is shown in the banner's first "
                        "layer), and put the details in the policy itself.")
    if isinstance(changes, Mapping) and default_language not in changes:
        raise _fail(key, f"give a text for the default language {default_language!r} "
                    f"({DEFAULT_LANGUAGE}): it is shown where a language has none.")
    return changes


CONTROLLER_FIELDS = ("name", "address", "email", "phone", "url")


def _controller(key: str, value: Any, parsed: Parsed) -> tuple[tuple[str, str], ...]:
    """Who the visitor deals with, as the privacy policy names them."""
    example = ("e.g. {'name': 'Example Stories LLC', 'address': '1 Main St, Baku', "
               "'email': 'privacy@example.com', 'phone': '+994 12 000 00 00'}")
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise _fail(key, f"{value!r} is not a mapping; give the controller's details, {example}")
    unknown = sorted(str(k) for k in value if k not in CONTROLLER_FIELDS)
    if unknown:
        raise _fail(key, f"unknown field(s) {', '.join(unknown)}; the fields are "
                    f"{', '.join(CONTROLLER_FIELDS)}")
    for field_name, text in value.items():
        if not isinstance(text, str) or not text.strip() or len(text) > 300:
            raise _fail(key, f"{field_name!r} must be a non-empty text of at most 300 "
                        f"characters, not {text!r}")
    if "name" not in value:
        raise _fail(key, f"'name' is missing: the visitor must be told who they deal with; "
                    f"{example}")
    return tuple((f, value[f].strip()) for f in CONTROLLER_FIELDS if f in value)


def _min_age(key: str, value: Any, parsed: Parsed) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not 0 < value < 100):
        raise _fail(key, f"{value!r} must be a whole number of years between 1 and 99, "
                    "e.g. 13 (the site is not meant for children under 13), or None.")
    return value


# -- categories, cookies, services, vendors ----------------------------------------------


def _categories(key: str, value: Any, parsed: Parsed) -> list[dict[str, Any]]:
    """The category entries (key, label, description); see :func:`_categories_of`."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise _fail(key, "must be a non-empty list of category keys, "
                    "e.g. ['necessary', 'analytics'].")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in value:
        if isinstance(item, str):
            entry: dict[str, Any] = {"key": item}
        elif isinstance(item, Mapping) and isinstance(item.get("key"), str):
            unknown = set(item) - {"key", "label", "description"}
            if unknown:
                raise _fail(key, f"unknown field(s) {sorted(unknown)} in category {item['key']!r}; "
                            "allowed: key, label, description.")
            entry = {
                "key": item["key"],
                "label": _text(key, item.get("label"), "label"),
                "description": _text(key, item.get("description"), "description"),
            }
        else:
            raise _fail(key, f"{item!r} is neither a category key nor a mapping with a 'key'.")
        name = entry["key"]
        if not _TOKEN.match(name):
            raise _fail(key, f"category key {name!r} must be lower-case letters, digits, "
                        "'-' or '_'.")
        if name in seen:
            raise _fail(key, f"category {name!r} is listed twice.")
        seen.add(name)
        out.append(entry)
    if NECESSARY not in seen:
        raise _fail(key, "'necessary' is missing; it is always present and cannot be removed. "
                    "Add 'necessary' to the list.")
    return out


def _cookies(key: str, value: Any, parsed: Parsed) -> dict[str, tuple[CookiePattern, ...]]:
    """Cookie names by category."""
    if not isinstance(value, Mapping):
        raise _fail(key, "must map a category to a list of cookie names, "
                    "e.g. {'analytics': ['_ga', '_ga_*']}.")
    cat_keys = _category_keys(parsed)
    cookies: dict[str, tuple[CookiePattern, ...]] = {}
    for cat, names in value.items():
        if cat not in cat_keys:
            raise _fail(key, f"unknown category {cat!r}; use one of "
                        f"{sorted(cat_keys)} or add it to {CATEGORIES}.")
        cookies[cat] = _patterns(key, names)
    return cookies


def _services(key: str, value: Any, parsed: Parsed) -> dict[str, list[Service]]:
    """Catalogue keys or mappings, by category."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _fail(key, "must be a list of catalogue keys ('youtube') or mappings with "
                    "'name', 'category' and 'hosts'.")
    cat_keys = _category_keys(parsed)
    catalogue = load_catalogue()
    out: dict[str, list[Service]] = {}
    seen: set[str] = set()
    for item in value:
        try:
            service = resolve_service(
                item, catalogue, cat_keys,
                text=lambda v: _text(key, v, "purpose"),
                url=lambda v, item=item: _http_url(key, v, f"policy_url of service {item!r}: "))
        except ValueError as e:
            raise _fail(key, f"{e}.") from None
        if isinstance(item, Mapping) and "cookies" in item:
            service = replace(service, cookies=_patterns(key, item["cookies"]))
        if isinstance(item, Mapping) and "countries" in item:
            _service_countries(key, service)
        if service.key in seen:
            raise _fail(key, f"service {service.key!r} is declared twice.")
        seen.add(service.key)
        out.setdefault(service.category, []).append(service)
    return out


def _service_countries(key: str, service: Service) -> None:
    """Each country is an ISO 3166-1 alpha-2 code, as the rules per audience compare them."""
    for code in service.countries:
        if code != "EU" and code not in COUNTRIES:
            hint = " (the United Kingdom is 'GB')" if code == "UK" else ""
            raise _fail(key, f"{code!r} in the countries of service {service.name!r} is not an "
                        f"ISO 3166-1 alpha-2 country code{hint}; write codes such as 'US', "
                        "'GB' or 'DE', or 'EU' for somewhere in the EU.")


def _csp(key: str, value: Any, parsed: Parsed) -> str | bool:
    if not (value is False or (isinstance(value, str) and value in ("enforce", "report-only"))):
        raise _fail(key, f"{value!r} must be 'enforce' (the default), 'report-only' "
                    "(the browser reports what it would block, for a rollout) or False (no "
                    "policy of the extension's).")
    return value


def _undeclared_vendors(key: str, value: Any, parsed: Parsed) -> str:
    if value not in ("catalogue", "blocked") or not isinstance(value, str):
        raise _fail(key, f"{value!r} must be 'catalogue' (a "
                    f"vendor of the catalogue that {SERVICES} does not name follows its "
                    "catalogue category; the default) or 'blocked' (only declared services "
                    "are ever allowed).")
    return value


def _regions(key: str, value: Any, parsed: Parsed) -> RegionTable:
    return parse_regions(value)


# -- the consent cookie ---------------------------------------------------------------


def _cookie_name(key: str, value: Any, parsed: Parsed) -> str:
    """The cookie's name, ``__Host-`` prefixed when ``CONSENTKIT_COOKIE_HOST_PREFIX`` says so."""
    if not isinstance(value, str) or not _COOKIE_NAME.match(value):
        raise _fail(key, f"{value!r} is not a valid cookie name.")
    name: str = value
    if parsed[COOKIE_HOST_PREFIX] and not name.startswith("__Host-"):
        name = "__Host-" + name
    return name


def _cookie_secure(key: str, value: Any, parsed: Parsed) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise _fail(key, "must be True, False or None (None: Secure on HTTPS requests).")
    if parsed[COOKIE_HOST_PREFIX]:
        return True  # browsers refuse a __Host- cookie without Secure
    return value


def _cookie_domains(key: str, value: Any, parsed: Parsed) -> tuple[str, ...]:
    domains = _str_list(key, value, parsed)
    for domain in domains:
        if not _DOMAIN.match(domain) or len(domain.lstrip(".")) > 253:
            raise _fail(key, f"{domain!r} is not a cookie domain; write domain names such as "
                        "'example.com' or '.cdn.example.org' (letters, digits, hyphens and "
                        "dots; no scheme, port, path or spaces).")
    return domains


def _cookie_paths(key: str, value: Any, parsed: Parsed) -> tuple[str, ...]:
    paths = _str_list(key, value, parsed)
    if not paths:
        raise _fail(key, "list at least one path; the default is ['/'].")
    for path in paths:
        if not path.startswith("/") or any(c in path for c in ";,\r\n\t "):
            raise _fail(key, f"{path!r} is not a cookie path; write paths such as '/' or '/app'.")
    return paths


#: The Google Consent Mode v2 consent types.
CONSENT_MODE_TYPES: tuple[str, ...] = (
    "ad_storage",
    "ad_user_data",
    "ad_personalization",
    "analytics_storage",
    "functionality_storage",
    "personalization_storage",
    "security_storage",
)

#: Which category grants which Consent Mode type unless ``CONSENTKIT_CONSENT_MODE`` says otherwise.
DEFAULT_CONSENT_MODE: dict[str, tuple[str, ...]] = {
    "necessary": ("security_storage",),
    "functional": ("functionality_storage", "personalization_storage"),
    "analytics": ("analytics_storage",),
    "marketing": ("ad_storage", "ad_user_data", "ad_personalization"),
}


def _consent_mode(key: str, value: Any, parsed: Parsed) -> dict[str, tuple[str, ...]]:
    cat_keys = _category_keys(parsed)
    if value is None:
        return {c: t for c, t in DEFAULT_CONSENT_MODE.items() if c in cat_keys}
    if not isinstance(value, Mapping):
        raise _fail(key, "must map a category to a list of Consent Mode types, e.g. "
                    "{'analytics': ['analytics_storage']}, or be None for the default.")
    out: dict[str, tuple[str, ...]] = {}
    for cat, types in value.items():
        if cat not in cat_keys:
            raise _fail(key, f"unknown category {cat!r}; use one of {sorted(cat_keys)}.")
        if isinstance(types, str) or not isinstance(types, Sequence):
            raise _fail(key, f"the types of {cat!r} must be a list, e.g. ['analytics_storage'].")
        for t in types:
            if t not in CONSENT_MODE_TYPES:
                raise _fail(key, f"{t!r} (for {cat!r}) is not a Consent Mode v2 type; use "
                            f"{', '.join(CONSENT_MODE_TYPES)}.")
        out[cat] = tuple(dict.fromkeys(types))
    return out


# -- endpoints and signals -----------------------------------------------------------


def _url_prefix(key: str, value: Any, parsed: Parsed) -> str:
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//") \
            or any(c in value for c in "?#<>\\ \r\n"):
        raise _fail(key, f"{value!r} must be a path such as '/consent' (no '?', '#', '<', "
                    "'>', backslash or space).")
    return value.rstrip("/") or ""


def _gpc_last_update(key: str, value: Any, parsed: Parsed) -> str:
    """The day, ``YYYY-MM-DD``: the form the GPC specification gives ``lastUpdate``."""
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        value = value.isoformat()
    try:
        if not isinstance(value, str) or not _ISO_DATE.match(value):
            raise ValueError
        _dt.date.fromisoformat(value)
    except ValueError:
        raise _fail(key, f"{value!r} is not a date like '2026-11-01'; write it as "
                    "'YYYY-MM-DD', the form /.well-known/gpc.json must serve.") from None
    day: str = value
    return day


# -- the ledger ---------------------------------------------------------------------


def _ledger_url(key: str, value: Any, parsed: Parsed) -> str | None:
    """An SQLAlchemy URL, ``None``, or :data:`INSTANCE_SQLITE` (see :func:`_in_instance_folder`)."""
    if value != INSTANCE_SQLITE and value is not None and (
            not isinstance(value, str) or "://" not in value):
        raise _fail(key, f"{value!r} is not an SQLAlchemy URL; use e.g. "
                    "'sqlite:////var/lib/app/ledger.db' or 'postgresql+psycopg://user@host/db', "
                    "or None to turn receipts off.")
    url: str | None = value
    return url


def _ledger_timeout(key: str, value: Any, parsed: Parsed) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 600:
        raise _fail(key, f"{value!r} must be a number of "
                    "seconds above 0 and at most 600 (default 5): how long a receipt's write "
                    "may wait for the ledger before the choice goes on without it.")
    return float(value)


# -- technical data (geo source, user-agent parser) ------------------------------------


def _geoip_account_id(key: str, value: Any, parsed: Parsed) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        value = str(value)
    if value is not None and (not isinstance(value, str) or not value.isdigit()):
        raise _fail(key, f"{value!r} is not a MaxMind account id; "
                    "use the number shown in your MaxMind account, e.g. 123456.")
    account: str | None = value
    return account


def _geoip_host(key: str, value: Any, parsed: Parsed) -> str:
    if not isinstance(value, str) or not re.match(r"^[A-Za-z0-9.-]+(:\d+)?$", value):
        raise _fail(key, f"{value!r} is not a host name; use "
                    "'geoip.maxmind.com' (GeoIP2) or 'geolite.info' (GeoLite2).")
    return value


def _geoip_timeout(key: str, value: Any, parsed: Parsed) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 60:
        raise _fail(key, f"{value!r} must be a number of seconds "
                    "between 0 and 60, e.g. 2.0.")
    return float(value)


def _ua_parser(key: str, value: Any, parsed: Parsed) -> str:
    if value not in ("auto", "ua-parser", "user-agents"):
        raise _fail(key, f"{value!r} must be 'auto', 'ua-parser' or "
                    "'user-agents'.")
    if value == "ua-parser":
        try:
            has_v1 = hasattr(importlib.import_module("ua_parser"), "Parser")
        except ImportError:
            has_v1 = False
        if not has_v1:
            raise _fail(key, "'ua-parser' needs ua-parser 1.x: "
                        "pip install 'flask-consentkit[fast-ua]', or use 'auto'.")
    parser: str = value
    return parser


def _collection_rules(key: str, value: Any, parsed: Parsed) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise _fail(key, "must map 'ip', 'geo' and 'user_agent' to a category.")
    cat_keys = _category_keys(parsed)
    rules = dict(DEFAULT_COLLECTION_RULES)
    for what, cat in value.items():
        if what not in DEFAULT_COLLECTION_RULES:
            raise _fail(key, f"unknown kind of data {what!r}; use "
                        f"{sorted(DEFAULT_COLLECTION_RULES)}.")
        if not isinstance(cat, str):
            raise _fail(key, f"{what!r} must be governed by one category key, e.g. "
                        f"{DEFAULT_COLLECTION_RULES[what]!r}, not {cat!r}.")
        if cat not in cat_keys and cat != DEFAULT_COLLECTION_RULES[what]:
            # a default rule whose category the app removed simply never allows
            raise _fail(key, f"{what!r} is governed by unknown category "
                        f"{cat!r}; use one of {sorted(cat_keys)}.")
        rules[what] = cat
    return rules


# -- languages, origins, responses -------------------------------------------------------


def _languages(key: str, value: Any, parsed: Parsed) -> tuple[str, ...]:
    languages = _str_list(key, value, parsed)
    if not languages:
        raise _fail(key, "list at least one language, e.g. ['en'].")
    for lang in languages:
        if not _LANG.match(lang):
            raise _fail(key, f"{lang!r} is not a language code such as 'az'.")
    return languages


def _default_language(key: str, value: Any, parsed: Parsed) -> str:
    languages: tuple[str, ...] = parsed[LANGUAGES]
    if value not in languages:
        raise _fail(key, f"{value!r} is not in {LANGUAGES} {list(languages)}.")
    default_language: str = value
    return default_language


def _origin(key: str, value: str) -> str:
    """``scheme://host[:port]``, as a browser sends it in ``Origin``."""
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - a port that is no number raises
        valid = (parts.scheme in ("http", "https") and bool(parts.hostname)
                 and parts.path in ("", "/") and not (parts.query or parts.fragment)
                 and not any(c in parts.netloc for c in "@*"))
    except ValueError:
        valid = False
    if not valid:
        raise _fail(key, f"{value!r} is not an origin; an origin is scheme://host[:port], "
                    "e.g. 'https://example.com' or 'https://shop.example.com:8443' (no path, "
                    "no user name, no wildcard: list each host).")
    return f"{parts.scheme}://{parts.netloc}".lower()


def _trusted_origins(key: str, value: Any, parsed: Parsed) -> frozenset[str]:
    return frozenset(_origin(key, o) for o in _str_list(key, value, parsed))


def _privacy_policy_url(key: str, value: Any, parsed: Parsed) -> str | None:
    return _http_url(key, value)


def _denied_status(key: str, value: Any, parsed: Parsed) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 200 <= value <= 599:
        raise _fail(key, f"{value!r} is not an HTTP status code (default 204).")
    return value


def _ratelimit(key: str, value: Any, parsed: Parsed) -> Rate | None:
    return parse_rate(key, value)


def _ratelimit_storage_url(key: str, value: Any, parsed: Parsed) -> str | None:
    return check_storage_url(key, value)


# -- the table ----------------------------------------------------------------------

#: Every configuration key, in the README's order.
KEYS: tuple[Key, ...] = (
    Key(POLICY_VERSION, "1", _policy_version,
        "version of the privacy/cookie policy; a choice made for another version is void"),
    Key(POLICY_EFFECTIVE, None, _policy_effective,
        'the day that version takes effect, `"YYYY-MM-DD"` (or a `datetime.date`): told to a '
        "visitor asked again after a version bump, shown on the preferences page"),
    Key(POLICY_CHANGES, None, _policy_changes,
        f"what changed in that version, one short sentence (at most {MAX_CHANGES} characters): "
        "a string for every language or `{lang: text}` naming the default language",
        needs=(LANGUAGES, DEFAULT_LANGUAGE)),
    Key(CONTROLLER, None, _controller,
        "who the visitor deals with, kept in every notice and shown on `/consent/notice`: "
        '`{"name": …, "address": …, "email": …, "phone": …, "url": …}` (`name` required); '
        "a rule with `separate_notice` and no controller logs a warning"),
    Key(MIN_AGE, None, _min_age,
        "a whole number of years (1–99), e.g. `13`: the first layer says the site is not meant "
        "for children under it"),
    Key(CATEGORIES, list(DEFAULT_CATEGORIES), _categories,
        'category keys in display order, or mappings `{"key", "label", "description"}` (texts '
        "may be `{lang: text}`); `necessary` must be present; with receipts on, the keys, each "
        "with a comma, fit in 512 characters (the ledger's column)",
        in_settings=False, shown_default="the five defaults"),
    Key(COOKIES, {}, _cookies,
        "category → cookie names the app or its vendors set; a trailing `*` is a prefix "
        '(`"_ga_*"`)',
        needs=(CATEGORIES,), in_settings=False),
    Key(SERVICES, [], _services,
        "vendors shown in the preferences and allowed by the browser policy: catalogue keys "
        '(`"youtube"`) or mappings `{"key", "name", "category", "hosts", "purpose", '
        '"policy_url", "cookies", "countries", "shared_with"}` (`countries`: ISO 3166-1 '
        'alpha-2 codes, `"GB"` not `"UK"`, or `"EU"`)',
        needs=(CATEGORIES,), in_settings=False),
    Key(CSP, "enforce", _csp,
        'the browser policy: `"enforce"`, `"report-only"` or `False`'),
    Key(UNDECLARED_VENDORS, "catalogue", _undeclared_vendors,
        f'catalogue vendors not in `{SERVICES}`: `"catalogue"` (their catalogue category) or '
        '`"blocked"` (allowed for nobody)'),
    Key(REGIONS, None, _regions,
        'rules per audience: country codes (`"RU"`), groups (`"EU"`, `"EEA"`, `"UK"`), '
        'subdivisions (`"US-CA"`) and `"*"` → a preset (`"opt-in"`, `"eu"`, `"ru"`, `"tr"`, '
        '`"az"`, `"us-ca"`) or a mapping `{"preset", "name", "forbid_countries", '
        '"forbid_outside", "separate_notice", "transfer_consent", "model"}` (`model`: '
        '`"opt-in"`, or `"opt-out"` from the `us-ca` preset); see "Rules per audience"',
        shown_default="{} (opt-in everywhere)"),
    Key(COOKIE_NAME, "consentkit", _cookie_name,
        "the consent cookie (not the name of Flask's session cookie, `SESSION_COOKIE_NAME`)",
        needs=(COOKIE_HOST_PREFIX,)),
    Key(COOKIE_SECURE, None, _cookie_secure,
        "`Secure` attribute; `None` sets it on HTTPS requests",
        needs=(COOKIE_HOST_PREFIX,)),
    Key(COOKIE_HOST_PREFIX, False, _bool,
        "name the cookie `__Host-…` (implies `Secure`)",
        in_settings=False),
    Key(COOKIE_DOMAINS, [], _cookie_domains,
        'extra domains on which withdrawn cookies are expired: domain names such as '
        '`"example.com"` or `".cdn.example.org"`'),
    Key(COOKIE_PATHS, ["/"], _cookie_paths,
        "paths on which withdrawn cookies are expired"),
    Key(CONSENT_MODE, None, _consent_mode,
        'category → Google Consent Mode v2 types it grants, e.g. '
        '`{"analytics": ["analytics_storage"]}`',
        needs=(CATEGORIES,), shown_default='{} (the mapping under "Server-side enforcement")'),
    Key(MAX_AGE, 15552000, _max_age,
        f"seconds a choice stays valid, at most `{MAX_AGE_LIMIT}` (400 days: browsers keep no "
        "cookie longer)",
        shown_default="{} (180 days)"),
    Key(URL_PREFIX, "/consent", _url_prefix,
        "where the endpoints are mounted"),
    Key(AUTO_INJECT, True, _bool,
        "inject the banner into HTML responses"),
    Key(HONOR_GPC, True, _bool,
        "browser privacy signals"),
    Key(HONOR_DNT, False, _bool,
        "browser privacy signals"),
    Key(GPC_LAST_UPDATE, "2026-11-01", _gpc_last_update,
        '`lastUpdate` of `/.well-known/gpc.json`: the day, `"YYYY-MM-DD"` (or a `datetime.date`)'),
    Key(LEDGER_URL, INSTANCE_SQLITE, _ledger_url,
        "SQLAlchemy URL of the receipts store: a SQLite file (`sqlite:///…`) or PostgreSQL "
        "through psycopg 3 (`postgresql+psycopg://…`); "
        "`None` turns receipts off (logged as a warning; at INFO under `TESTING`)",
        shown_default="SQLite file in the instance folder"),
    Key(LEDGER_TIMEOUT, 5, _ledger_timeout,
        "seconds (above 0, at most 600) a receipt's write, and each ledger statement and lock "
        "wait, may take; past it the choice goes on without its receipt (logged at ERROR)"),
    Key(RETENTION_DAYS, 365, _retention_days,
        f"receipts older than this many days are pruned; at most `{RETENTION_DAYS_LIMIT}` "
        "(100 years)"),
    Key(SIGNING_KEY, None, _optional_str,
        "path of the Ed25519 private key file (PEM PKCS#8, unencrypted, mode 0600; "
        "`flask consent keygen PATH` makes one) that signs checkpoints and visitors' receipts; "
        "`None`: nothing is signed and `/consent/receipt` answers 404"),
    Key(SIGNING_OLD_KEYS, [], _paths,
        "public key files (`PATH.pub`) of retired signing keys: they sign nothing, stay in the "
        "JWK Set and verify the checkpoint lines and receipts they signed"),
    Key(GEOIP_DATABASE, None, _optional_str,
        "path to a MaxMind `.mmdb` (City or Country)"),
    Key(GEOIP_ACCOUNT_ID, None, _geoip_account_id,
        "MaxMind web service instead of a file (both or neither; not together with a database)"),
    Key(GEOIP_LICENSE_KEY, None, _optional_str,
        "MaxMind web service instead of a file (both or neither; not together with a database)"),
    Key(GEOIP_HOST, "geoip.maxmind.com", _geoip_host,
        'web-service host; `"geolite.info"` for GeoLite accounts'),
    Key(GEOIP_TIMEOUT, 2.0, _geoip_timeout,
        "seconds to wait for the web service (0–60)"),
    Key(UA_PARSER, "auto", _ua_parser,
        '`"auto"`, `"ua-parser"` (1.x, native resolver) or `"user-agents"`'),
    Key(ANONYMIZE_IP, True, _bool,
        "truncate IPs (IPv4 /24, IPv6 /48) before any use"),
    Key(COLLECTION_RULES, dict(DEFAULT_COLLECTION_RULES), _collection_rules,
        "which category allows which technical data",
        needs=(CATEGORIES,)),
    Key(LANGUAGES, ["az", "en", "ru", "tr"], _languages,
        "banner languages"),
    Key(DEFAULT_LANGUAGE, "en", _default_language,
        "banner languages",
        needs=(LANGUAGES,)),
    Key(TRUSTED_ORIGINS, [], _trusted_origins,
        "extra origins allowed to POST choices, each `scheme://host[:port]` (no wildcard); the "
        "app's own origin always is"),
    Key(PRIVACY_POLICY_URL, None, _privacy_policy_url,
        "the app's privacy policy (an http(s) URL or a path), linked from the banner"),
    Key(DENIED_STATUS, 204, _denied_status,
        "status of `@requires_consent` views without consent"),
    Key(MAX_BODY, 4096, _positive_int,
        "largest consent request body, in bytes"),
    Key(RATELIMIT, "5/minute", _ratelimit,
        "per-visitor limit of `/consent/export`, `/consent/erase` and `/consent/receipt` "
        '(`"10 per hour"`, `"3/30 seconds"`); `None` for none'),
    Key(RATELIMIT_STORAGE_URL, None, _ratelimit_storage_url,
        "where the limiter counts: `None` in this process's memory, `redis://…` shared by every "
        "process and machine"),
)

#: Every key with its default. ``CONSENTKIT_LEDGER_URL`` defaults to a SQLite
#: file in the instance folder, resolved in :func:`load_settings`.
DEFAULTS: dict[str, Any] = {key.name: key.default for key in KEYS}


def _in_parse_order(keys: Sequence[Key]) -> tuple[Key, ...]:
    """``keys`` in table order, except that each comes after the keys it needs."""
    by_name = {key.name: key for key in keys}
    order: dict[str, Key] = {}

    def visit(key: Key, path: tuple[str, ...]) -> None:
        if key.name in order:
            return
        if key.name in path:
            cycle = " → ".join((*path, key.name))
            raise RuntimeError(f"configuration keys need each other: {cycle}")
        for name in key.needs:
            visit(by_name[name], (*path, key.name))
        order[key.name] = key

    for key in keys:
        visit(key, ())
    return tuple(order.values())


_PARSE_ORDER = _in_parse_order(KEYS)


# -- load_settings and its cross-key steps ------------------------------------------------


def _check_secret_key(config: Mapping[str, Any]) -> None:
    if not config.get("SECRET_KEY"):
        raise _fail("SECRET_KEY", "the consent cookie is signed with the app's SECRET_KEY; "
                    "set app.config['SECRET_KEY'] to a long random value.")


def _check_unknown_keys(config: Mapping[str, Any]) -> None:
    """Refuse a misspelt key: ignoring it could silently turn a protection off."""
    known = set(DEFAULTS)
    unknown = sorted(k for k in config if k.startswith(PREFIX) and k not in known)
    if unknown:
        raise _fail(unknown[0], "is not a flask-consentkit setting (known keys: "
                    f"{', '.join(sorted(known))}). Check the spelling.")


def _check_geoip_source(parsed: Parsed) -> None:
    """A local database or the web service (account id and licence key), not both."""
    account, license_key = parsed[GEOIP_ACCOUNT_ID], parsed[GEOIP_LICENSE_KEY]
    if (account is None) != (license_key is None):
        raise _fail(GEOIP_LICENSE_KEY if account else GEOIP_ACCOUNT_ID,
                    f"the MaxMind web service needs both {GEOIP_ACCOUNT_ID} and "
                    f"{GEOIP_LICENSE_KEY}; set both, or neither.")
    if parsed[GEOIP_DATABASE] is not None and account is not None:
        raise _fail(GEOIP_DATABASE, "set either a local database "
                    f"({GEOIP_DATABASE}) or the web service ({GEOIP_ACCOUNT_ID} "
                    f"and {GEOIP_LICENSE_KEY}), not both.")


def _check_session_cookie(config: Mapping[str, Any], parsed: Parsed) -> None:
    """The consent cookie is not Flask's session cookie: each would overwrite the other."""
    session = config.get("SESSION_COOKIE_NAME") or "session"
    if parsed[COOKIE_NAME] == session:
        raise _fail(COOKIE_NAME, f"{session!r} is the name of Flask's session cookie "
                    "(SESSION_COOKIE_NAME); consenting would log the visitor out. Give the "
                    "consent cookie another name, e.g. 'consentkit' (the default).")


def _categories_of(parsed: Parsed) -> tuple[Category, ...]:
    """The categories with their cookies and services attached."""
    cookies: Mapping[str, tuple[CookiePattern, ...]] = parsed[COOKIES]
    services: Mapping[str, list[Service]] = parsed[SERVICES]
    return tuple(
        Category(
            key=e["key"],
            label=e.get("label"),
            description=e.get("description"),
            cookies=cookies.get(e["key"], ()),
            services=tuple(services.get(e["key"], ())),
        )
        for e in parsed[CATEGORIES]
    )


def _in_instance_folder(ledger_url: str | None, app: Flask) -> str | None:
    """:data:`INSTANCE_SQLITE` → a SQLite file in the app's instance folder."""
    if ledger_url == INSTANCE_SQLITE:
        return "sqlite:///" + os.path.join(app.instance_path, "consentkit-ledger.sqlite3")
    return ledger_url


def load_settings(app: Flask) -> Settings:
    """Fill defaults into ``app.config`` and validate every ``CONSENTKIT_*`` key."""
    config = app.config
    for key in KEYS:
        config.setdefault(key.name, key.default)
    _check_secret_key(config)
    _check_unknown_keys(config)

    parsed: dict[str, Any] = {}
    for key in _PARSE_ORDER:
        parsed[key.name] = key.parse(key.name, config[key.name], parsed)
    _check_geoip_source(parsed)
    _check_session_cookie(config, parsed)

    fields = {key.field: parsed[key.name] for key in KEYS if key.in_settings}
    fields["ledger_url"] = _in_instance_folder(fields["ledger_url"], app)
    return Settings(categories=_categories_of(parsed), **fields)
