"""``technical_data()``: the one place an app asks what it may know of the visitor.

Each field of :class:`TechnicalData` is ``None`` unless the category that
governs it (``CONSENTKIT_COLLECTION_RULES``: ``ip``, ``geo``, ``user_agent``) is
granted, and nothing is looked up for a field the visitor has not allowed. The
answer is computed lazily, at most once per request (per consent decision), and
the expensive parts are cached per process: parsed user agents and geo records
per (anonymised) address.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask

from ..appstate import get_kit_state
from ..signals import technical_data_collected
from ..state import get_state, request_consent, request_parts
from .geo import GeoRecord, GeoService, WebServiceGeo, shared_database
from .ip import normalise
from .useragent import EMPTY, DeviceType, UserAgentInfo, UserAgentParser

if TYPE_CHECKING:
    from ..appstate import ConsentKitState
    from ..config import Settings

log = logging.getLogger("flask_consentkit.collect")

_MEMO = "technical_data"


@dataclass(frozen=True, slots=True)
class TechnicalData:
    """The technical data the visitor allows the app to have in this request.

    ``ip`` is anonymised (IPv4 /24, IPv6 /48) unless ``CONSENTKIT_ANONYMIZE_IP``
    is off; ``country`` is an ISO 3166-1 code, ``region`` and ``city`` English
    names; ``device_type`` is ``"desktop"``, ``"mobile"``, ``"tablet"``, ``"bot"``
    or ``"other"``. A field is ``None`` when it is not allowed or not known.
    """

    ip: str | None = None
    country: str | None = None
    region: str | None = None
    city: str | None = None
    browser: str | None = None
    browser_version: str | None = None
    os: str | None = None
    os_version: str | None = None
    device_type: DeviceType | None = None

    @property
    def collected(self) -> bool:
        """True when at least one field holds a value."""
        return self != NOTHING

    def as_dict(self) -> dict[str, str | None]:
        """The fields as a plain dict (e.g. for JSON)."""
        return asdict(self)


NOTHING = TechnicalData()
NO_RECORD = GeoRecord()


def technical_data() -> TechnicalData:
    """The consent-gated technical data of the current request.

    Call it before collecting anything about the visitor::

        data = technical_data()
        if data.country:
            stats.count_visit(country=data.country)

    Sends :data:`~flask_consentkit.signals.technical_data_collected` whenever
    the answer holds any value. Never raises for bad data: an unknown address,
    a broken geo database or a failing web service give ``None`` fields.
    """
    app, environ = request_parts()
    ext: ConsentKitState | None = app.extensions.get("consentkit")
    if ext is None:
        ext = get_kit_state(app)  # raises, saying how to register the extension
    state = get_state()
    rules = ext.settings.collection_rules
    key = (state.allows(rules["ip"]), state.allows(rules["geo"]), state.allows(rules["user_agent"]))
    cache = request_consent().cache
    memo = cache.get(_MEMO)
    if memo is not None and memo[0] == key:
        data: TechnicalData = memo[1]
    else:
        data = _collect(ext, environ, *key)
        cache[_MEMO] = (key, data)
    if data is not NOTHING and technical_data_collected.receivers:
        technical_data_collected.send(app, data=data)
    return data


def _collect(
    ext: ConsentKitState, environ: dict[str, Any], allow_ip: bool, allow_geo: bool,
    allow_ua: bool,
) -> TechnicalData:
    if not (allow_ip or allow_geo or allow_ua):
        return NOTHING
    ip = None
    record: GeoRecord | None = None
    if allow_ip or allow_geo:
        address = normalise(environ.get("REMOTE_ADDR"), ext.settings.anonymize_ip)
        if address is not None:
            text, public = address
            if allow_ip:
                ip = text
            geo: GeoService | None = ext.geo
            if allow_geo and geo is not None:
                try:
                    record = geo.lookup(text, public)
                except Exception:  # noqa: BLE001 - the view must never fail for geo data
                    log.warning("geo lookup for %s failed", text, exc_info=True)
    info = EMPTY
    if allow_ua:
        parser: UserAgentParser | None = ext.user_agent
        if parser is not None:
            try:
                info = parser.parse(environ.get("HTTP_USER_AGENT"))
            except Exception:  # noqa: BLE001 - a pathological header must not fail the view
                log.warning("parsing the User-Agent header failed", exc_info=True)
    if ip is None and record is None and info is EMPTY:
        return NOTHING
    return _build(ip, record or NO_RECORD, info)


def _build(ip: str | None, record: GeoRecord, info: UserAgentInfo) -> TechnicalData:
    """One :class:`TechnicalData`, reused while its parts are the same cached objects."""
    key = (ip, id(record), id(info))
    hit = _built.get(key)
    if hit is not None and hit[0] is record and hit[1] is info:
        return hit[2]
    data = TechnicalData(ip, record.country, record.region, record.city, info.browser,
                         info.browser_version, info.os, info.os_version, info.device_type)
    if data == NOTHING:
        data = NOTHING
    with _built_lock:
        if len(_built) >= _BUILT_SIZE:
            _built.pop(next(iter(_built)), None)
        _built[key] = (record, info, data)
    return data


#: finished answers per (ip, geo record, user-agent info); the parts come from
#: the per-process caches, so a warm request rebuilds nothing
_built: dict[tuple[str | None, int, int], tuple[GeoRecord, UserAgentInfo, TechnicalData]] = {}
_BUILT_SIZE = 4096
_built_lock = threading.Lock()


def clear_caches() -> None:
    """Forget the finished answers and normalised addresses cached in this process.

    The geo and user-agent services keep their own caches (``clear()`` on
    each). For benchmarks and tests; an app never needs it.
    """
    with _built_lock:
        _built.clear()
    normalise.cache_clear()


def make_geo_service(settings: Settings) -> GeoService | None:
    """The geo source the settings ask for (a database, the web service, or none)."""
    if settings.geoip_database:
        path = settings.geoip_database
        if not os.path.exists(path):
            warnings.warn(
                f"CONSENTKIT_GEOIP_DATABASE {path!r} does not exist; location stays unknown "
                "(None) until the file is there.",
                stacklevel=4,
            )
        return shared_database(path)
    if settings.geoip_account_id and settings.geoip_license_key:
        return WebServiceGeo(
            settings.geoip_account_id,
            settings.geoip_license_key,
            host=settings.geoip_host,
            timeout=settings.geoip_timeout,
        )
    return None


def install(app: Flask, ext: ConsentKitState) -> None:
    """Register the collectors on ``ext`` (``geo``, ``user_agent``, ``technical_data``)."""
    ext.user_agent = UserAgentParser(ext.settings.ua_parser)
    ext.geo = make_geo_service(ext.settings)
    ext.technical_data = technical_data
    app.jinja_env.globals.setdefault("technical_data", technical_data)

