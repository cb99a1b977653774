"""Location of an (anonymised) address through MaxMind's ``geoip2``.

Two sources, chosen by the configuration:

* :class:`DatabaseGeo` — a local ``.mmdb`` file (City or Country edition),
  opened once per process per path with the C extension when it is installed,
  and reopened when the file is replaced (checked at most every
  :attr:`DatabaseGeo.recheck_seconds`).
* :class:`WebServiceGeo` — MaxMind's GeoIP web service, with a timeout, a small
  cache and a back-off after errors so a failing service cannot slow every
  request.

Both answer :meth:`GeoService.lookup` with a :class:`GeoRecord` or ``None`` and
never raise: a missing, corrupt or unreadable database, an address the source
does not know, a private or loopback address, and any web-service error give
``None`` and one logged warning per kind of problem (repeats within
:attr:`GeoService.warn_interval` seconds are logged at debug level).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import geoip2.database
import geoip2.errors
import geoip2.webservice
import maxminddb
import requests

log = logging.getLogger("flask_consentkit.collect")

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class GeoRecord:
    """What a geo source knows of one address: ISO country code, region and city names.

    ``subdivision`` is the ISO 3166-2 code of the first-level subdivision without the
    country (``"CA"`` for California), which the rules per audience use (``US-CA``);
    it takes no part in comparisons (a record equals one made from the names alone).
    """

    country: str | None = None
    region: str | None = None
    city: str | None = None
    subdivision: str | None = field(default=None, compare=False)


def _record(model: Any) -> GeoRecord:
    country = model.country.iso_code
    subdivisions = getattr(model, "subdivisions", None)
    city = getattr(model, "city", None)
    return GeoRecord(
        country=country,
        region=subdivisions.most_specific.name if subdivisions is not None else None,
        city=city.name if city is not None else None,
        subdivision=subdivisions[0].iso_code if subdivisions else None,
    )


class GeoService:
    """Base of the geo sources: the cache, the private-address rule and the warnings."""

    #: seconds during which a repeated problem of the same kind is logged at debug level
    warn_interval = 300.0
    #: addresses (already anonymised unless the app turned that off) kept per source
    cache_size = 4096

    def __init__(self) -> None:
        self._warned: dict[str, float] = {}
        self._cache: dict[str, GeoRecord | None] = {}
        self._lock = threading.Lock()

    def lookup(self, address: str, public: bool = True) -> GeoRecord | None:
        """The record for ``address``; ``None`` when there is none or the source failed.

        ``public`` false (a private, loopback or otherwise non-global address)
        answers ``None`` without asking the source.
        """
        if not public:
            self.warn("private", "no location for the non-public address %s "
                      "(private, loopback or reserved)", address)
            return None
        found = self._cache.get(address, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[no-any-return]
        found, cacheable = self._query(address)
        if cacheable:
            self._remember(address, found)
        return found

    def clear(self) -> None:
        """Forget every cached record."""
        with self._lock:
            self._cache.clear()

    @property
    def cached(self) -> int:
        """How many addresses are cached now."""
        return len(self._cache)

    def _remember(self, address: str, record: GeoRecord | None) -> None:
        with self._lock:
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)), None)
            self._cache[address] = record

    def _query(self, address: str) -> tuple[GeoRecord | None, bool]:
        """Ask the source; returns the record and whether the answer may be cached."""
        raise NotImplementedError

    def warn(self, kind: str, message: str, *args: Any) -> None:
        """Log ``message`` as a warning once per ``kind`` per :attr:`warn_interval`."""
        now = time.monotonic()
        last = self._warned.get(kind)
        if last is not None and now - last < self.warn_interval:
            log.debug(message, *args)
            return
        self._warned[kind] = now
        log.warning(message, *args)


Opener = Callable[[str], Any]


def open_reader(path: str) -> geoip2.database.Reader:
    """Open ``path`` with the C extension when it is installed, else in pure Python."""
    return geoip2.database.Reader(path, mode=maxminddb.MODE_AUTO)


class DatabaseGeo(GeoService):
    """Lookups in a local MaxMind ``.mmdb`` (City or Country edition).

    :param path: the database file.
    :param opener: makes a reader from a path; ``geoip2.database.Reader`` with
        ``MODE_AUTO`` by default. An app (or a test) may pass a subclass of the
        reader to observe or tune lookups.
    """

    #: at most this often (seconds) the file is checked for replacement
    recheck_seconds = 5.0

    def __init__(self, path: str, *, opener: Opener | None = None) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.opener: Opener = opener or open_reader
        self._reader: Any = None
        self._query_fn: Callable[[str], Any] | None = None
        self._signature: tuple[int, int, int] | None = None
        self._next_check = 0.0

    def __repr__(self) -> str:
        return f"<DatabaseGeo {self.path!r}>"

    @property
    def database_type(self) -> str | None:
        """The open database's type (``"GeoIP2-City"`` …), or ``None`` when none is open."""
        self._maybe_reopen()
        reader = self._reader
        return str(reader.metadata().database_type) if reader is not None else None

    def lookup(self, address: str, public: bool = True) -> GeoRecord | None:
        if time.monotonic() >= self._next_check:
            self._maybe_reopen()
        return super().lookup(address, public)

    def _maybe_reopen(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._next_check:
                return
            self._next_check = now + self.recheck_seconds
            try:
                st = os.stat(self.path)
            except OSError as exc:
                if self._reader is None:
                    self.warn("missing", "the GeoIP database %s cannot be read (%s); location "
                              "stays unknown", self.path, exc.strerror or exc)
                return  # a reader already open keeps working from its mapping
            signature = (st.st_ino, st.st_mtime_ns, st.st_size)
            if signature == self._signature:
                return
            self._signature = signature
            self._open()

    def _open(self) -> None:
        """(Re)open the file; on failure warn and keep what was open before (if anything)."""
        try:
            reader = self.opener(self.path)
            database_type = str(reader.metadata().database_type)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            self.warn("corrupt", "the GeoIP database %s cannot be opened (%s); %s", self.path,
                      exc, "location stays unknown" if self._reader is None
                      else "the previous version stays in use")
            return
        if "City" in database_type or "Enterprise" in database_type:
            query = reader.city
        elif "Country" in database_type:
            query = reader.country
        else:
            self.warn("edition", "the GeoIP database %s is a %s database; a City or Country "
                      "edition is needed", self.path, database_type)
            return
        self._reader, self._query_fn = reader, query
        self._cache.clear()

    def _query(self, address: str) -> tuple[GeoRecord | None, bool]:
        query = self._query_fn
        if query is None:
            return None, False
        try:
            return _record(query(address)), True
        except geoip2.errors.AddressNotFoundError:
            self.warn("not-found", "no location for %s in %s", address, self.path)
            return None, True
        except (OSError, ValueError, RuntimeError, maxminddb.InvalidDatabaseError) as exc:
            self.warn("read-error", "reading the GeoIP database %s failed (%s); location "
                      "stays unknown", self.path, exc)
            return None, False


ClientFactory = Callable[..., Any]


class WebServiceGeo(GeoService):
    """Lookups through MaxMind's GeoIP web service (the City endpoint).

    Answers are cached per address for :attr:`ttl` seconds. After an error no
    request is made for :attr:`backoff_seconds` (:attr:`auth_backoff_seconds`
    for a refused account or exhausted queries), so a slow or failing service
    costs at most one timeout per back-off period.
    """

    cache_size = 1024
    ttl = 3600.0
    backoff_seconds = 30.0
    auth_backoff_seconds = 300.0

    def __init__(
        self,
        account_id: int | str,
        license_key: str,
        *,
        host: str = "geoip.maxmind.com",
        timeout: float = 2.0,
        client_factory: ClientFactory | None = None,
    ) -> None:
        super().__init__()
        self.account_id = account_id
        self.host = host
        self.timeout = timeout
        self._license_key = license_key
        self._client_factory = client_factory or geoip2.webservice.Client
        self._client: Any = None
        self._expires: dict[str, float] = {}
        self._backoff_until = 0.0

    def __repr__(self) -> str:
        return f"<WebServiceGeo account {self.account_id} at {self.host}>"

    def lookup(self, address: str, public: bool = True) -> GeoRecord | None:
        expires = self._expires.get(address)
        if expires is not None and time.monotonic() >= expires:
            with self._lock:
                self._cache.pop(address, None)
                self._expires.pop(address, None)
        return super().lookup(address, public)

    def _remember(self, address: str, record: GeoRecord | None) -> None:
        super()._remember(address, record)
        with self._lock:
            self._expires[address] = time.monotonic() + self.ttl
            if len(self._expires) > self.cache_size:
                for stale in [a for a in self._expires if a not in self._cache]:
                    self._expires.pop(stale, None)

    def _client_or_none(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._client_factory(
                        int(self.account_id), self._license_key, host=self.host,
                        timeout=self.timeout,
                    )
        return self._client

    def _query(self, address: str) -> tuple[GeoRecord | None, bool]:
        now = time.monotonic()
        if now < self._backoff_until:
            log.debug("GeoIP web service in back-off; no location for %s", address)
            return None, False
        try:
            return _record(self._client_or_none().city(address)), True
        except geoip2.errors.AddressNotFoundError:
            self.warn("not-found", "the GeoIP web service has no location for %s", address)
            return None, True
        except geoip2.errors.AuthenticationError as exc:
            self._fail(now, self.auth_backoff_seconds, "auth", "the GeoIP web service refused "
                       "the account (%s); check CONSENTKIT_GEOIP_ACCOUNT_ID and "
                       "CONSENTKIT_GEOIP_LICENSE_KEY", exc)
        except geoip2.errors.OutOfQueriesError as exc:
            self._fail(now, self.auth_backoff_seconds, "quota", "the GeoIP web service account "
                       "is out of queries (%s)", exc)
        except geoip2.errors.PermissionRequiredError as exc:
            self._fail(now, self.auth_backoff_seconds, "auth", "the GeoIP web service account "
                       "may not use this service (%s)", exc)
        except requests.Timeout:
            self._fail(now, self.backoff_seconds, "timeout", "the GeoIP web service did not "
                       "answer within %s s", self.timeout)
        except (geoip2.errors.GeoIP2Error, requests.RequestException, ValueError, KeyError,
                TypeError) as exc:
            self._fail(now, self.backoff_seconds, "error", "the GeoIP web service failed (%s)",
                       exc)
        return None, False

    def _fail(self, now: float, backoff: float, kind: str, message: str, *args: Any) -> None:
        self._backoff_until = now + backoff
        self.warn(kind, message + "; no further requests for %d s", *args, backoff)


_shared: dict[str, DatabaseGeo] = {}
_shared_lock = threading.Lock()


def shared_database(path: str) -> DatabaseGeo:
    """The process's one :class:`DatabaseGeo` for ``path`` (apps in one process share it)."""
    key = os.path.abspath(os.fspath(path))
    with _shared_lock:
        geo = _shared.get(key)
        if geo is None:
            geo = _shared[key] = DatabaseGeo(key)
        return geo
