"""The ``CONSENTKIT_*`` configuration keys: defaults, validation, one frozen object.

:func:`load_settings` is called once from :meth:`ConsentKit.init_app`. Every
mistake raises :class:`~flask_consentkit.errors.ConsentConfigError` naming the
key and the fix; nothing here runs while a request is handled.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
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
from .errors import ConsentConfigError
from .ratelimit import Rate, check_storage_url, parse_rate
from .regions import DEFAULT_TABLE, RegionTable, parse_regions
from .vendors import load_catalogue, resolve_service

#: Sentinel for "a SQLite file in the app's instance folder".
INSTANCE_SQLITE = "instance-sqlite"

DEFAULT_COLLECTION_RULES: dict[str, str] = {
    "ip": "analytics",
    "geo": "analytics",
    "user_agent": "performance",
}

#: Every key with its default. ``CONSENTKIT_LEDGER_URL`` defaults to a SQLite
#: file in the instance folder, resolved in :func:`load_settings`.
DEFAULTS: dict[str, Any] = {
    "CONSENTKIT_POLICY_VERSION": "1",
    "CONSENTKIT_POLICY_EFFECTIVE": None,
    "CONSENTKIT_POLICY_CHANGES": None,
    "CONSENTKIT_MIN_AGE": None,
    "CONSENTKIT_CONTROLLER": None,
    "CONSENTKIT_CATEGORIES": list(DEFAULT_CATEGORIES),
    "CONSENTKIT_COOKIES": {},
    "CONSENTKIT_SERVICES": [],
    "CONSENTKIT_COOKIE_NAME": "consentkit",
    "CONSENTKIT_COOKIE_SECURE": None,
    "CONSENTKIT_COOKIE_HOST_PREFIX": False,
    "CONSENTKIT_COOKIE_DOMAINS": [],
    "CONSENTKIT_COOKIE_PATHS": ["/"],
    "CONSENTKIT_CONSENT_MODE": None,
    "CONSENTKIT_MAX_AGE": 15552000,
    "CONSENTKIT_URL_PREFIX": "/consent",
    "CONSENTKIT_AUTO_INJECT": True,
    "CONSENTKIT_HONOR_GPC": True,
    "CONSENTKIT_HONOR_DNT": False,
    "CONSENTKIT_GPC_LAST_UPDATE": "2026-11-01",
    "CONSENTKIT_LEDGER_URL": INSTANCE_SQLITE,
    "CONSENTKIT_LEDGER_TIMEOUT": 5,
    "CONSENTKIT_RETENTION_DAYS": 365,
    "CONSENTKIT_SIGNING_KEY": None,
    "CONSENTKIT_SIGNING_OLD_KEYS": [],
    "CONSENTKIT_GEOIP_DATABASE": None,
    "CONSENTKIT_GEOIP_ACCOUNT_ID": None,
    "CONSENTKIT_GEOIP_LICENSE_KEY": None,
    "CONSENTKIT_GEOIP_HOST": "geoip.maxmind.com",
    "CONSENTKIT_GEOIP_TIMEOUT": 2.0,
    "CONSENTKIT_UA_PARSER": "auto",
    "CONSENTKIT_ANONYMIZE_IP": True,
    "CONSENTKIT_COLLECTION_RULES": dict(DEFAULT_COLLECTION_RULES),
    "CONSENTKIT_LANGUAGES": ["az", "en", "ru", "tr"],
    "CONSENTKIT_DEFAULT_LANGUAGE": "en",
    "CONSENTKIT_TRUSTED_ORIGINS": [],
    "CONSENTKIT_PRIVACY_POLICY_URL": None,
    "CONSENTKIT_DENIED_STATUS": 204,
    "CONSENTKIT_MAX_BODY": 4096,
    "CONSENTKIT_RATELIMIT": "5/minute",
    "CONSENTKIT_RATELIMIT_STORAGE_URL": None,
    "CONSENTKIT_CSP": "enforce",
    "CONSENTKIT_UNDECLARED_VENDORS": "catalogue",
    "CONSENTKIT_REGIONS": None,
}

_TOKEN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_COOKIE_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
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

    @property
    def category_keys(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.categories)

    @property
    def optional_keys(self) -> tuple[str, ...]:
        """Every category a visitor can refuse (all but ``necessary``)."""
        return tuple(c.key for c in self.categories if not c.required)

    def category(self, key: str) -> Category:
        for c in self.categories:
            if c.key == key:
                return c
        raise KeyError(key)

    @property
    def services(self) -> tuple[Service, ...]:
        return tuple(s for c in self.categories for s in c.services)


def _fail(key: str, message: str) -> ConsentConfigError:
    return ConsentConfigError(key, message)


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


def _categories(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    key = "CONSENTKIT_CATEGORIES"
    raw = config[key]
    if isinstance(raw, str) or not isinstance(raw, Sequence) or not raw:
        raise _fail(key, "must be a non-empty list of category keys, "
                    "e.g. ['necessary', 'analytics'].")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in raw:
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


def _positive_int(config: Mapping[str, Any], key: str, *, allow_zero: bool = False) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, f"expected a whole number, got {value!r}.")
    if value < 0 or (value == 0 and not allow_zero):
        raise _fail(key, f"must be a positive number, got {value}.")
    return value


def _bool(config: Mapping[str, Any], key: str) -> bool:
    value = config[key]
    if not isinstance(value, bool):
        raise _fail(key, f"expected True or False, got {value!r}.")
    return value


def _optional_str(config: Mapping[str, Any], key: str) -> str | None:
    value = config[key]
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        return str(os.fspath(value))
    if not isinstance(value, str) or not value:
        raise _fail(key, f"expected a non-empty string or None, got {value!r}.")
    return value


def _str_list(config: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = config[key]
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _fail(key, f"expected a list of strings, got {value!r}.")
    if not all(isinstance(v, str) for v in value):
        raise _fail(key, f"expected a list of strings, got {value!r}.")
    return tuple(value)


def _paths(config: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """A list of file paths (strings or ``os.PathLike``)."""
    value = config[key]
    if isinstance(value, str | os.PathLike) or not isinstance(value, Sequence) or not all(
            isinstance(v, str | os.PathLike) and str(v) for v in value):
        raise _fail(key, f"expected a list of file paths, e.g. ['/etc/app/signing-2026.key.pub'], "
                    f"got {value!r}.")
    return tuple(str(os.fspath(v)) for v in value)


def _origin(key: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise _fail(key, f"{value!r} is not an origin; write it as 'https://example.com' "
                    "(scheme and host, optional port, no path).")
    return f"{parts.scheme}://{parts.netloc}".lower()


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


def _cookie_paths(config: Mapping[str, Any]) -> tuple[str, ...]:
    key = "CONSENTKIT_COOKIE_PATHS"
    paths = _str_list(config, key)
    if not paths:
        raise _fail(key, "list at least one path; the default is ['/'].")
    for path in paths:
        if not path.startswith("/") or any(c in path for c in ";,\r\n\t "):
            raise _fail(key, f"{path!r} is not a cookie path; write paths such as '/' or '/app'.")
    return paths


def _consent_mode(config: Mapping[str, Any], cat_keys: set[str]) -> dict[str, tuple[str, ...]]:
    key = "CONSENTKIT_CONSENT_MODE"
    raw = config[key]
    if raw is None:
        return {c: t for c, t in DEFAULT_CONSENT_MODE.items() if c in cat_keys}
    if not isinstance(raw, Mapping):
        raise _fail(key, "must map a category to a list of Consent Mode types, e.g. "
                    "{'analytics': ['analytics_storage']}, or be None for the default.")
    out: dict[str, tuple[str, ...]] = {}
    for cat, types in raw.items():
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
def _services(config: Mapping[str, Any], cat_keys: set[str]) -> dict[str, list[Service]]:
    """``CONSENTKIT_SERVICES``: catalogue keys or mappings, by category."""
    key = "CONSENTKIT_SERVICES"
    raw = config[key]
    if isinstance(raw, str) or not isinstance(raw, Sequence):
        raise _fail(key, "must be a list of catalogue keys ('youtube') or mappings with "
                    "'name', 'category' and 'hosts'.")
    catalogue = load_catalogue()
    out: dict[str, list[Service]] = {}
    seen: set[str] = set()
    for item in raw:
        try:
            service = resolve_service(
                item, catalogue, cat_keys,
                text=lambda v: _text(key, v, "purpose"),
                url=lambda v, item=item: _http_url(key, v, f"policy_url of service {item!r}: "))
        except ValueError as e:
            raise _fail(key, f"{e}.") from None
        if isinstance(item, Mapping) and "cookies" in item:
            service = replace(service, cookies=_patterns(key, item["cookies"]))
        if service.key in seen:
            raise _fail(key, f"service {service.key!r} is declared twice.")
        seen.add(service.key)
        out.setdefault(service.category, []).append(service)
    return out


def _collect_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The technical-data collection keys (geo source, user-agent parser)."""
    database = _optional_str(config, "CONSENTKIT_GEOIP_DATABASE")
    account = config["CONSENTKIT_GEOIP_ACCOUNT_ID"]
    if isinstance(account, int) and not isinstance(account, bool) and account > 0:
        account = str(account)
    if account is not None and (not isinstance(account, str) or not account.isdigit()):
        raise _fail("CONSENTKIT_GEOIP_ACCOUNT_ID", f"{account!r} is not a MaxMind account id; "
                    "use the number shown in your MaxMind account, e.g. 123456.")
    license_key = _optional_str(config, "CONSENTKIT_GEOIP_LICENSE_KEY")
    if (account is None) != (license_key is None):
        raise _fail("CONSENTKIT_GEOIP_LICENSE_KEY" if account else "CONSENTKIT_GEOIP_ACCOUNT_ID",
                    "the MaxMind web service needs both CONSENTKIT_GEOIP_ACCOUNT_ID and "
                    "CONSENTKIT_GEOIP_LICENSE_KEY; set both, or neither.")
    if database is not None and account is not None:
        raise _fail("CONSENTKIT_GEOIP_DATABASE", "set either a local database "
                    "(CONSENTKIT_GEOIP_DATABASE) or the web service (CONSENTKIT_GEOIP_ACCOUNT_ID "
                    "and CONSENTKIT_GEOIP_LICENSE_KEY), not both.")
    host = config["CONSENTKIT_GEOIP_HOST"]
    if not isinstance(host, str) or not re.match(r"^[A-Za-z0-9.-]+(:\d+)?$", host):
        raise _fail("CONSENTKIT_GEOIP_HOST", f"{host!r} is not a host name; use "
                    "'geoip.maxmind.com' (GeoIP2) or 'geolite.info' (GeoLite2).")
    timeout = config["CONSENTKIT_GEOIP_TIMEOUT"]
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 60:
        raise _fail("CONSENTKIT_GEOIP_TIMEOUT", f"{timeout!r} must be a number of seconds "
                    "between 0 and 60, e.g. 2.0.")
    parser = config["CONSENTKIT_UA_PARSER"]
    if parser not in ("auto", "ua-parser", "user-agents"):
        raise _fail("CONSENTKIT_UA_PARSER", f"{parser!r} must be 'auto', 'ua-parser' or "
                    "'user-agents'.")
    if parser == "ua-parser":
        try:
            has_v1 = hasattr(importlib.import_module("ua_parser"), "Parser")
        except ImportError:
            has_v1 = False
        if not has_v1:
            raise _fail("CONSENTKIT_UA_PARSER", "'ua-parser' needs ua-parser 1.x: "
                        "pip install 'flask-consentkit[fast-ua]', or use 'auto'.")
    return {
        "geoip_database": database,
        "geoip_account_id": account,
        "geoip_license_key": license_key,
        "geoip_host": host,
        "geoip_timeout": float(timeout),
        "ua_parser": parser,
    }


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: longest summary of a policy change: the banner's first layer must stay small
MAX_CHANGES = 120


CONTROLLER_FIELDS = ("name", "address", "email", "phone", "url")


def _controller(value: Any) -> tuple[tuple[str, str], ...]:
    """``CONSENTKIT_CONTROLLER``: who the visitor deals with, as the privacy policy names them."""
    key = "CONSENTKIT_CONTROLLER"
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


def _notice_settings(config: Mapping[str, Any], languages: tuple[str, ...],
                     default_language: str) -> dict[str, Any]:
    """The policy's effective date and summary of changes, and the minimum age."""
    key = "CONSENTKIT_POLICY_EFFECTIVE"
    effective = config[key]
    if isinstance(effective, _dt.datetime):
        raise _fail(key, f"{effective!r} is a date and time; give the day only, as "
                    "'YYYY-MM-DD' (e.g. '2026-11-01') or a datetime.date.")
    if isinstance(effective, _dt.date):
        effective = effective.isoformat()
    if effective is not None:
        try:
            if not isinstance(effective, str) or not _ISO_DATE.match(effective):
                raise ValueError
            _dt.date.fromisoformat(effective)
        except ValueError:
            raise _fail(key, f"{effective!r} is not a date; write the day the policy of "
                        "CONSENTKIT_POLICY_VERSION takes effect as 'YYYY-MM-DD', e.g. "
                        "'2026-11-01', or None.") from None

    key = "CONSENTKIT_POLICY_CHANGES"
    changes = config[key]
    hint = ("one short sentence, e.g. 'We now use Yandex Metrica for visit statistics.', "
            "or a mapping of language code to it, e.g. {'en': '…', 'az': '…'}")
    if changes is not None:
        if isinstance(changes, str):
            texts = {default_language: changes}
        elif isinstance(changes, Mapping) and changes and all(
                isinstance(k, str) and isinstance(v, str) for k, v in changes.items()):
            texts = dict(changes)
            changes = texts
        else:
            raise _fail(key, f"expected {hint}; got {changes!r}.")
        for lang, text in texts.items():
            if lang not in languages:
                raise _fail(key, f"{lang!r} is not in CONSENTKIT_LANGUAGES {list(languages)}; "
                            "remove it or add the language.")
            if not text.strip():
                raise _fail(key, f"the text for {lang!r} is empty; write {hint}, or None.")
            if len(text) > MAX_CHANGES:
                raise _fail(key, f"the text for {lang!r} has {len(text)} characters; keep it "
                            f"to at most {MAX_CHANGES} (it is shown in the banner's first "
                            "layer), and put the details in the policy itself.")
        if isinstance(changes, Mapping) and default_language not in changes:
            raise _fail(key, f"give a text for the default language {default_language!r} "
                        "(CONSENTKIT_DEFAULT_LANGUAGE): it is shown where a language has none.")

    key = "CONSENTKIT_MIN_AGE"
    min_age = config[key]
    if min_age is not None and (isinstance(min_age, bool) or not isinstance(min_age, int)
                                or not 0 < min_age < 100):
        raise _fail(key, f"{min_age!r} must be a whole number of years between 1 and 99, "
                    "e.g. 13 (the site is not meant for children under 13), or None.")
    return {"policy_effective": effective, "policy_changes": changes, "min_age": min_age}


def load_settings(app: Flask) -> Settings:
    """Fill defaults into ``app.config`` and validate every ``CONSENTKIT_*`` key."""
    config = app.config
    for key, value in DEFAULTS.items():
        config.setdefault(key, value)

    if not config.get("SECRET_KEY"):
        raise _fail("SECRET_KEY", "the consent cookie is signed with the app's SECRET_KEY; "
                    "set app.config['SECRET_KEY'] to a long random value.")

    known = set(DEFAULTS)
    unknown = sorted(k for k in config if k.startswith("CONSENTKIT_") and k not in known)
    if unknown:
        raise _fail(unknown[0], "is not a flask-consentkit setting (known keys: "
                    f"{', '.join(sorted(known))}). Check the spelling.")

    policy_version = config["CONSENTKIT_POLICY_VERSION"]
    if isinstance(policy_version, int) and not isinstance(policy_version, bool):
        policy_version = str(policy_version)
    if not isinstance(policy_version, str) or not policy_version or len(policy_version) > 64:
        raise _fail("CONSENTKIT_POLICY_VERSION", "must be a non-empty string of at most 64 "
                    "characters, e.g. '2026-11'.")

    cat_entries = _categories(config)
    cat_keys = {e["key"] for e in cat_entries}

    cookies_raw = config["CONSENTKIT_COOKIES"]
    if not isinstance(cookies_raw, Mapping):
        raise _fail("CONSENTKIT_COOKIES", "must map a category to a list of cookie names, "
                    "e.g. {'analytics': ['_ga', '_ga_*']}.")
    cookies: dict[str, tuple[CookiePattern, ...]] = {}
    for cat, names in cookies_raw.items():
        if cat not in cat_keys:
            raise _fail("CONSENTKIT_COOKIES", f"unknown category {cat!r}; use one of "
                        f"{sorted(cat_keys)} or add it to CONSENTKIT_CATEGORIES.")
        cookies[cat] = _patterns("CONSENTKIT_COOKIES", names)

    services = _services(config, cat_keys)

    categories = tuple(
        Category(
            key=e["key"],
            label=e.get("label"),
            description=e.get("description"),
            cookies=cookies.get(e["key"], ()),
            services=tuple(services.get(e["key"], ())),
        )
        for e in cat_entries
    )

    cookie_name = config["CONSENTKIT_COOKIE_NAME"]
    if not isinstance(cookie_name, str) or not _COOKIE_NAME.match(cookie_name):
        raise _fail("CONSENTKIT_COOKIE_NAME", f"{cookie_name!r} is not a valid cookie name.")
    host_prefix = _bool(config, "CONSENTKIT_COOKIE_HOST_PREFIX")
    if host_prefix and not cookie_name.startswith("__Host-"):
        cookie_name = "__Host-" + cookie_name
    secure = config["CONSENTKIT_COOKIE_SECURE"]
    if secure is not None and not isinstance(secure, bool):
        raise _fail("CONSENTKIT_COOKIE_SECURE", "must be True, False or None (None: Secure on "
                    "HTTPS requests).")
    if host_prefix:
        secure = True

    max_age = _positive_int(config, "CONSENTKIT_MAX_AGE")

    prefix = config["CONSENTKIT_URL_PREFIX"]
    if not isinstance(prefix, str) or not prefix.startswith("/") or prefix.startswith("//") \
            or any(c in prefix for c in "?#\\ \r\n"):
        raise _fail("CONSENTKIT_URL_PREFIX", f"{prefix!r} must be a path such as '/consent'.")
    prefix = prefix.rstrip("/") or ""

    ledger_url = config["CONSENTKIT_LEDGER_URL"]
    if ledger_url == INSTANCE_SQLITE:
        ledger_url = "sqlite:///" + os.path.join(app.instance_path, "consentkit-ledger.sqlite3")
    elif ledger_url is not None and (not isinstance(ledger_url, str) or "://" not in ledger_url):
        raise _fail("CONSENTKIT_LEDGER_URL", f"{ledger_url!r} is not an SQLAlchemy URL; use e.g. "
                    "'sqlite:////var/lib/app/ledger.db' or 'postgresql+psycopg://user@host/db', "
                    "or None to turn receipts off.")

    ledger_timeout = config["CONSENTKIT_LEDGER_TIMEOUT"]
    if isinstance(ledger_timeout, bool) or not isinstance(ledger_timeout, int | float) \
            or not 0 < ledger_timeout <= 600:
        raise _fail("CONSENTKIT_LEDGER_TIMEOUT", f"{ledger_timeout!r} must be a number of "
                    "seconds above 0 and at most 600 (default 5): how long a receipt's write "
                    "may wait for the ledger before the choice goes on without it.")

    rules_raw = config["CONSENTKIT_COLLECTION_RULES"]
    if not isinstance(rules_raw, Mapping):
        raise _fail("CONSENTKIT_COLLECTION_RULES", "must map 'ip', 'geo' and 'user_agent' to a "
                    "category.")
    rules = dict(DEFAULT_COLLECTION_RULES)
    for what, cat in rules_raw.items():
        if what not in DEFAULT_COLLECTION_RULES:
            raise _fail("CONSENTKIT_COLLECTION_RULES", f"unknown kind of data {what!r}; use "
                        f"{sorted(DEFAULT_COLLECTION_RULES)}.")
        if cat not in cat_keys and cat != DEFAULT_COLLECTION_RULES[what]:
            # a default rule whose category the app removed simply never allows
            raise _fail("CONSENTKIT_COLLECTION_RULES", f"{what!r} is governed by unknown category "
                        f"{cat!r}; use one of {sorted(cat_keys)}.")
        rules[what] = cat

    languages = _str_list(config, "CONSENTKIT_LANGUAGES")
    if not languages:
        raise _fail("CONSENTKIT_LANGUAGES", "list at least one language, e.g. ['en'].")
    for lang in languages:
        if not _LANG.match(lang):
            raise _fail("CONSENTKIT_LANGUAGES", f"{lang!r} is not a language code such as 'az'.")
    default_language = config["CONSENTKIT_DEFAULT_LANGUAGE"]
    if default_language not in languages:
        raise _fail("CONSENTKIT_DEFAULT_LANGUAGE", f"{default_language!r} is not in "
                    f"CONSENTKIT_LANGUAGES {list(languages)}.")

    trusted = frozenset(
        _origin("CONSENTKIT_TRUSTED_ORIGINS", o) for o in _str_list(config,
                                                                    "CONSENTKIT_TRUSTED_ORIGINS")
    )

    gpc_date = config["CONSENTKIT_GPC_LAST_UPDATE"]
    try:
        _dt.date.fromisoformat(str(gpc_date))
    except ValueError:
        raise _fail("CONSENTKIT_GPC_LAST_UPDATE", f"{gpc_date!r} is not a date like "
                    "'2026-11-01'.") from None

    denied = config["CONSENTKIT_DENIED_STATUS"]
    if isinstance(denied, bool) or not isinstance(denied, int) or not 200 <= denied <= 599:
        raise _fail("CONSENTKIT_DENIED_STATUS", f"{denied!r} is not an HTTP status code "
                    "(default 204).")

    domains = _str_list(config, "CONSENTKIT_COOKIE_DOMAINS")
    paths = _cookie_paths(config)
    consent_mode = _consent_mode(config, cat_keys)

    csp = config["CONSENTKIT_CSP"]
    if not (csp is False or (isinstance(csp, str) and csp in ("enforce", "report-only"))):
        raise _fail("CONSENTKIT_CSP", f"{csp!r} must be 'enforce' (the default), 'report-only' "
                    "(the browser reports what it would block, for a rollout) or False (no "
                    "policy of the extension's).")
    undeclared = config["CONSENTKIT_UNDECLARED_VENDORS"]
    if undeclared not in ("catalogue", "blocked") or not isinstance(undeclared, str):
        raise _fail("CONSENTKIT_UNDECLARED_VENDORS", f"{undeclared!r} must be 'catalogue' (a "
                    "vendor of the catalogue that CONSENTKIT_SERVICES does not name follows its "
                    "catalogue category; the default) or 'blocked' (only declared services "
                    "are ever allowed).")

    return Settings(
        policy_version=policy_version,
        categories=categories,
        cookie_name=cookie_name,
        cookie_secure=secure,
        cookie_domains=domains,
        cookie_paths=paths,
        consent_mode=consent_mode,
        max_age=max_age,
        url_prefix=prefix,
        auto_inject=_bool(config, "CONSENTKIT_AUTO_INJECT"),
        honor_gpc=_bool(config, "CONSENTKIT_HONOR_GPC"),
        honor_dnt=_bool(config, "CONSENTKIT_HONOR_DNT"),
        gpc_last_update=str(gpc_date),
        ledger_url=ledger_url,
        retention_days=_positive_int(config, "CONSENTKIT_RETENTION_DAYS"),
        ledger_timeout=float(ledger_timeout),
        **_collect_settings(config),
        **_notice_settings(config, languages, default_language),
        anonymize_ip=_bool(config, "CONSENTKIT_ANONYMIZE_IP"),
        collection_rules=rules,
        languages=languages,
        default_language=default_language,
        trusted_origins=trusted,
        privacy_policy_url=_http_url("CONSENTKIT_PRIVACY_POLICY_URL",
                                     config["CONSENTKIT_PRIVACY_POLICY_URL"]),
        denied_status=denied,
        max_body=_positive_int(config, "CONSENTKIT_MAX_BODY"),
        ratelimit=parse_rate("CONSENTKIT_RATELIMIT", config["CONSENTKIT_RATELIMIT"]),
        csp=csp,
        undeclared_vendors=undeclared,
        signing_key=_optional_str(config, "CONSENTKIT_SIGNING_KEY"),
        signing_old_keys=_paths(config, "CONSENTKIT_SIGNING_OLD_KEYS"),
        regions=parse_regions(config["CONSENTKIT_REGIONS"]),
        controller=_controller(config["CONSENTKIT_CONTROLLER"]),
        ratelimit_storage_url=check_storage_url("CONSENTKIT_RATELIMIT_STORAGE_URL",
                                                config["CONSENTKIT_RATELIMIT_STORAGE_URL"]),
    )

