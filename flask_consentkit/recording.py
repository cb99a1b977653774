"""Turning a request's decision into a receipt, and wiring the ledger into an app.

:func:`install` registers, from :meth:`ConsentKit.init_app`:

- ``ext.ledger`` — the app's :class:`~.ledger.store.Ledger` (absent when
  ``CONSENTKIT_LEDGER_URL`` is ``None``);
- ``ext.notices`` — the :class:`~.ledger.notices.NoticeStore` of the notices
  receipts name;
- ``ext.recorder`` — called by the choice endpoint as
  ``recorder(action=, state=, previous=)``;
- ``ext.ratelimiter`` — the data-subject endpoints' limiter.

A write that fails never loses the visitor's choice: the recorder logs the
error at ERROR, with the receipt's content (its consent id is pseudonymous, its
IP prefix, if any, already anonymised), on the ``flask_consentkit.ledger``
logger, and returns ``None``; the choice endpoint still sets the cookie and
answers normally. That includes a ledger that does not answer within
``CONSENTKIT_LEDGER_TIMEOUT`` ("NOT recorded": nothing was written), and the
rare connection lost during the commit itself ("NOT confirmed": the receipt
may or may not be in the ledger).

``CONSENTKIT_LEDGER_URL = None`` turns receipts off, with a WARNING on the
``flask_consentkit.ledger`` logger at ``init_app`` (INFO under ``TESTING``). It is
a log record rather than a :class:`UserWarning` on purpose: turning receipts off
is a legitimate choice (tests, previews), and test suites that run with
``-W error`` must not fail on it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Flask, request
from sqlalchemy.engine import make_url

from . import configkeys
from .categories import NECESSARY, TRANSFERS
from .errors import ConsentConfigError
from .ledger.notices import NoticeStore
from .ledger.schema import CATEGORY_LIST_LENGTH, encode_categories
from .ledger.store import Draft, Ledger, LedgerOutcomeUnknown
from .ratelimit import RateLimiter, anonymise_ip
from .state import ConsentState, request_consent, withdrawn_by

if TYPE_CHECKING:
    from .appstate import ConsentKitState
    from .appstate import Recorder as AppRecorder
    from .config import Settings

log = logging.getLogger("flask_consentkit.ledger")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
MAX_PATH = 512
#: the stores the ledger writes to: the one driver its writer speaks (on PostgreSQL it makes
#: psycopg 3's own calls: ``ledger.store._write_batch_pg``), its name, how to install it
LEDGER_DRIVERS = {
    "sqlite": ("pysqlite", "Python's sqlite3", "a Python built with its sqlite3 module"),
    "postgresql": ("psycopg", "psycopg 3", "pip install 'flask-consentkit[postgresql]'"),
}
_USE = ("use e.g. 'sqlite:////var/lib/app/ledger.sqlite3' or 'postgresql+psycopg://user@host/db' "
        "(pip install 'flask-consentkit[postgresql]')")


def install(app: Flask, ext: ConsentKitState) -> None:
    """Register the ledger, the recorder and the rate limiter on ``ext``."""
    settings = ext.settings
    ext.ratelimiter = RateLimiter.from_config(
        settings.ratelimit, settings.ratelimit_storage_url
    )
    if settings.ledger_url is None:
        message = ("CONSENTKIT_LEDGER_URL is None: consent receipts are off, so the app "
                   "cannot prove consent (GDPR Art. 7(1)).")
        log.log(logging.INFO if app.testing else logging.WARNING, message)
        return
    check_categories(settings)
    ledger = Ledger(check_url(settings.ledger_url), timeout=settings.ledger_timeout)
    ext.ledger = ledger
    ext.notices = NoticeStore(ledger)
    recorder: AppRecorder = Recorder(ext, ledger)
    if settings.regions.transfers_any:  # receipts say whether transfers abroad were allowed
        recorder = TransfersRecorder(ext, recorder)
    ext.recorder = recorder


def check_url(url: str) -> str:
    """``url`` when SQLAlchemy knows its dialect and it names a durable store."""
    key = configkeys.LEDGER_URL
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except Exception as exc:  # noqa: BLE001 - any parse or plugin error means a bad URL
        reason = str(exc).replace(url, parsed_safe(url))
        raise ConsentConfigError(key, f"{parsed_safe(url)!r} is not a usable SQLAlchemy URL "
                                 f"({reason}); use e.g. 'sqlite:////var/lib/app/ledger.sqlite3' or "
                                 "'postgresql+psycopg://user@host/db'.") from None
    backend, driver = parsed.get_backend_name(), dialect.driver
    if backend not in LEDGER_DRIVERS:
        raise ConsentConfigError(key, f"{parsed_safe(url)!r} is a {backend} database; the ledger "
                                 f"keeps receipts in SQLite or PostgreSQL only: {_USE}.")
    wanted, name, install_hint = LEDGER_DRIVERS[backend]
    if driver != wanted:
        raise ConsentConfigError(key, f"{parsed_safe(url)!r} names the driver {driver}; the "
                                 f"ledger writes to {backend} through {name} only: {_USE}.")
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise ConsentConfigError(key, f"{parsed_safe(url)!r} needs {name}, which is not "
                                 f"installed ({exc}): {install_hint}.") from None
    database = parsed.database or ""
    if database.startswith("file:"):  # the URI form (uri=true): file::memory:, file:?…
        database = urlsplit(database).path
    if backend == "sqlite" and (database in ("", ":memory:") or "mode=memory" in url):
        raise ConsentConfigError(key, "an in-memory SQLite database vanishes with the process "
                                 "and cannot prove anything; give a file, e.g. "
                                 "'sqlite:////var/lib/app/ledger.sqlite3'.")
    return url


def check_categories(settings: Settings) -> None:
    """Every category key, as a receipt writes them, fits the ledger's category columns.

    A receipt granting everything (and, under a rule that asks for it, the transfers abroad)
    is the longest; PostgreSQL refuses a longer one, so every receipt would be lost.
    """
    keys = set(settings.category_keys)
    if settings.regions.transfers_any:
        keys.add(TRANSFERS)
    written = len(encode_categories(keys))
    if written > CATEGORY_LIST_LENGTH:
        raise ConsentConfigError(
            configkeys.CATEGORIES,
            f"the {len(keys)} category keys take {written} characters in a receipt "
            f"(each key and a comma), more than the {CATEGORY_LIST_LENGTH} the ledger keeps; "
            "use fewer or shorter keys, e.g. 'analytics' rather than "
            "'category_for_analytics_cookies'.")


def parsed_safe(url: str) -> str:
    """``url`` without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + sep + rest


class Recorder:
    """``recorder(action=, state=, previous=)``: append the receipt of a decision."""

    def __init__(self, ext: ConsentKitState, ledger: Ledger) -> None:
        self.ext = ext
        self.ledger = ledger

    def __call__(self, *, action: str, state: ConsentState, previous: ConsentState
                 ) -> dict[str, Any] | None:
        try:
            draft = decision_draft(self.ext, action=action, state=state, previous=previous)
        except Exception as exc:  # noqa: BLE001 - the visitor's choice must not be lost
            log.error(
                "consent receipt NOT recorded (%s: %s); action %s, consent id %s, granted %s",
                type(exc).__name__, exc, action, state.consent_id, sorted(state.granted),
                exc_info=exc,
            )
            return None
        row = record(self.ledger, draft)
        if row is not None:
            keep_notice(self.ext, draft)
        return row


def keep_notice(ext: ConsentKitState, draft: Draft) -> None:
    """Store the notice ``draft`` names, once its receipt is written (once per process
    and notice: a ledger that is down costs the visitor one wait, not two).

    A notice that cannot be stored is logged at ERROR; the next receipt that names it
    stores it (its id is the hash of what was shown, so nothing else can take its place).
    """
    notice, store = ext.notice, ext.notices
    if notice is None or store is None or draft.banner_hash is None:
        return
    try:
        ident, _, content = notice()
        if ident == draft.banner_hash:
            # with its id: a notice kept already (the usual case) is not hashed again,
            # which would cost every decision more than the receipt's own digests
            store.keep(content, ident)
    except Exception as exc:  # noqa: BLE001 - the visitor's choice must not be lost
        log.error("the notice %s of a consent receipt was NOT kept (%s: %s)",
                  draft.banner_hash, type(exc).__name__, exc, exc_info=exc)


def record(ledger: Ledger, draft: Draft) -> dict[str, Any] | None:
    """Append ``draft``; on failure log it (ERROR, with its content) and return ``None``."""
    try:
        row = ledger.append(draft)
    except Exception as exc:  # noqa: BLE001 - the visitor's choice must not be lost
        what = ("NOT confirmed: it may or may not be in the ledger"
                if isinstance(exc, LedgerOutcomeUnknown) else "NOT recorded")
        log.error(
            "consent receipt %s (%s: %s); receipt content: %s",
            what, type(exc).__name__, exc, json.dumps(draft.as_log(), sort_keys=True),
            exc_info=exc,
        )
        return None
    request_consent().cache["receipt_id"] = row["receipt_id"]
    return row


def decision_draft(
    ext: ConsentKitState, *, action: str, state: ConsentState, previous: ConsentState
) -> Draft:
    """The receipt of a decision made in the current request."""
    settings = ext.settings
    optional = frozenset(settings.optional_keys)
    granted = frozenset(state.granted & optional) | {NECESSARY}
    withdrawn = withdrawn_by(previous, state)
    banner_hash, language = banner_fingerprint(ext)
    ip_prefix, country = technical(ext, state)
    return Draft(
        action=action,
        consent_id=state.consent_id,
        granted=granted,
        denied=optional - granted,
        withdrawn=withdrawn,
        policy_version=settings.policy_version,
        method=state.source or "api",
        banner_hash=banner_hash,
        language=language,
        page_path=page_path(),
        ip_prefix=ip_prefix,
        country=country,
        rule=applied_rule(ext),
    )


def applied_rule(ext: ConsentKitState) -> str | None:
    """The name of the request's rule per audience (``CONSENTKIT_REGIONS``), for the receipt;
    ``None`` when the app did not set the key (receipts as before it existed).

    Looked up here without the visitor's analytics consent: the rule is the legal
    basis of the choice, not analytics; the receipt keeps its name, never the address.
    """
    from .regions import DEFAULT_TABLE, current_rule

    if ext.settings.regions is DEFAULT_TABLE:
        return None
    try:
        return current_rule().name
    except Exception as exc:  # noqa: BLE001 - a receipt without it beats no receipt
        log.warning("the rule per audience is unavailable for the receipt: %s", exc)
        return None


def banner_fingerprint(ext: ConsentKitState) -> tuple[str | None, str | None]:
    """``(sha256 hex of the banner text shown, language)`` from the banner, if present."""
    fingerprint = ext.banner_fingerprint
    if fingerprint is None:
        return None, None
    try:
        digest, language = fingerprint()
    except Exception as exc:  # noqa: BLE001 - a receipt without it beats no receipt
        log.warning("banner fingerprint unavailable for the receipt: %s", exc)
        return None, None
    # checked like any input: a test or an app's banner may put anything there
    return (digest if isinstance(digest, str) and _HEX64.match(digest) else None,
            language[:16] if isinstance(language, str) and language else None)


def page_path() -> str | None:
    """The path (no query, no fragment) of the page the choice was made on.

    The ``Referer`` when it is a page of this site, else the form's ``next``;
    ``None`` when neither says.
    """
    referer = request.headers.get("Referer")
    candidate: str | None = None
    if referer:
        try:
            parts = urlsplit(referer)
        except ValueError:
            parts = None
        if parts is not None and (f"{parts.scheme}://{parts.netloc}".lower()
                                  == f"{request.scheme}://{request.host}".lower()):
            candidate = parts.path or "/"
    if candidate is None and request.mimetype in ("application/x-www-form-urlencoded",
                                                  "multipart/form-data"):
        from .urls import safe_next

        value = request.form.get("next")
        if value:
            candidate = urlsplit(safe_next(value)).path or "/"
    if not candidate:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in candidate):
        return None
    return candidate[:MAX_PATH]


def technical(ext: ConsentKitState, state: ConsentState) -> tuple[str | None, str | None]:
    """``(anonymised IP prefix, country)`` — only when analytics is granted.

    Both also need the category that ``CONSENTKIT_COLLECTION_RULES`` names for
    them. The values come from the ``technical_data`` service when the app has
    it; without it, the IP is the request's remote address and no country.
    The IP is anonymised here again, whatever the app's settings.
    """
    rules = ext.settings.collection_rules
    if not state.allows("analytics"):
        return None, None
    ip_allowed = state.allows(rules.get("ip", "analytics"))
    geo_allowed = state.allows(rules.get("geo", "analytics"))
    ip: str | None = None
    country: str | None = None
    provider = ext.technical_data
    if provider is not None:
        try:
            data = provider()
            ip, country = getattr(data, "ip", None), getattr(data, "country", None)
        except Exception as exc:  # noqa: BLE001 - the receipt goes without them
            log.warning("technical data unavailable for the receipt: %s", exc)
    elif ip_allowed:
        ip = request.remote_addr
    ip_prefix = anonymise_ip(ip) if ip_allowed and isinstance(ip, str) else None
    if not (geo_allowed and isinstance(country, str) and _COUNTRY.match(country.upper())):
        country = None
    return ip_prefix, country.upper() if country else None


class TransfersRecorder:
    """The app's recorder, whose receipts also say whether the visitor consented to
    transfers abroad, under a rule that asks for it: :data:`TRANSFERS` in ``granted`` or
    ``denied`` beside the categories (and in ``withdrawn`` when taken back).

    ``decision_draft`` keeps only the categories in ``granted``; this adds the line to its
    draft and records it as the recorder does. Any failure to build it leaves the receipt
    to the app's recorder (which logs).
    """

    def __init__(self, ext: ConsentKitState, inner: Any) -> None:
        self.ext = ext
        self.inner = inner

    def __call__(self, *, action: str, state: ConsentState, previous: ConsentState
                 ) -> dict[str, Any] | None:
        from .regions import current_rule

        ledger = getattr(self.inner, "ledger", None)
        try:
            if ledger is None or not current_rule().transfer_consent:
                return self.inner(action=action, state=state, previous=previous)  # type: ignore[no-any-return]
            draft = decision_draft(self.ext, action=action, state=state, previous=previous)
        except Exception:  # noqa: BLE001 - the app's recorder logs what went wrong
            return self.inner(action=action, state=state, previous=previous)  # type: ignore[no-any-return]
        line = frozenset({TRANSFERS})
        if TRANSFERS in state.granted:
            draft = replace(draft, granted=draft.granted | line, denied=draft.denied - line)
        else:
            draft = replace(draft, granted=draft.granted - line, denied=draft.denied | line)
        row = record(ledger, draft)
        if row is not None:
            keep_notice(self.ext, draft)
        return row
