"""Geo lookups in a local MaxMind database: editions, failures, replacement."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from flask_consentkit.collect.geo import DatabaseGeo, GeoRecord, shared_database
from flask_consentkit.extension import get_kit_state

from .collect_helpers import add_probe, grant, probe

LOGGER = "flask_consentkit.collect"


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.WARNING]


@pytest.mark.parametrize("edition", ["GeoIP2-City-Test.mmdb", "GeoLite2-City-Test.mmdb"])
def test_city_editions(testdata: Path, edition: str) -> None:
    geo = DatabaseGeo(str(testdata / edition))
    assert geo.lookup("175.16.199.0") == GeoRecord("CN", "Jilin Sheng", "Changchun")
    assert geo.lookup("2001:480:10::") == GeoRecord("US", "California", "San Diego")
    assert geo.lookup("67.43.156.0") == GeoRecord("BT", None, None)


@pytest.mark.parametrize("edition", ["GeoIP2-Country-Test.mmdb", "GeoLite2-Country-Test.mmdb"])
def test_country_editions_give_the_country_only(testdata: Path, edition: str) -> None:
    geo = DatabaseGeo(str(testdata / edition))
    assert geo.lookup("2001:480:10::") == GeoRecord("US", None, None)
    assert geo.lookup("67.43.156.0") == GeoRecord("BT", None, None)
    assert "Country" in (geo.database_type or "")


def test_records_are_cached_per_address(testdata: Path) -> None:
    geo = DatabaseGeo(str(testdata / "GeoIP2-City-Test.mmdb"))
    geo.cache_size = 2
    for ip in ("175.16.199.0", "81.2.69.0", "2001:480:10::", "175.16.199.0"):
        geo.lookup(ip)
    assert geo.cached == 2


def test_address_not_in_database_is_none_with_one_warning(
    testdata: Path, caplog: pytest.LogCaptureFixture
) -> None:
    geo = DatabaseGeo(str(testdata / "GeoIP2-City-Test.mmdb"))
    assert geo.lookup("81.2.69.0") is None
    assert geo.lookup("81.2.69.0") is None
    assert geo.lookup("89.160.20.0") is None
    assert len(warnings_logged(caplog)) == 1


def test_private_address_is_none_with_one_warning(
    testdata: Path, caplog: pytest.LogCaptureFixture
) -> None:
    geo = DatabaseGeo(str(testdata / "GeoIP2-City-Test.mmdb"))
    assert geo.lookup("127.0.0.0", public=False) is None
    assert geo.lookup("10.0.0.0", public=False) is None
    assert geo.cached == 0
    assert len(warnings_logged(caplog)) == 1


def test_corrupt_database_is_none_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "broken.mmdb"
    path.write_bytes(b"this is not a MaxMind database" * 100)
    geo = DatabaseGeo(str(path))
    geo.recheck_seconds = 0
    assert geo.lookup("175.16.199.0") is None
    assert geo.lookup("175.16.199.0") is None
    assert len(warnings_logged(caplog)) == 1
    assert "broken.mmdb" in warnings_logged(caplog)[0]


def test_truncated_database_is_none(
    tmp_path: Path, testdata: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cut.mmdb"
    path.write_bytes((testdata / "GeoIP2-City-Test.mmdb").read_bytes()[:4000])
    geo = DatabaseGeo(str(path))
    assert geo.lookup("175.16.199.0") is None
    assert len(warnings_logged(caplog)) == 1


def test_unreadable_database_is_none_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    geo = DatabaseGeo(str(tmp_path))  # a directory cannot be opened as a database
    assert geo.lookup("175.16.199.0") is None
    assert len(warnings_logged(caplog)) == 1


def test_missing_database_warns_at_init_and_views_keep_working(
    app_factory: Callable[..., Flask], tmp_path: Path, testdata: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "later.mmdb"
    with pytest.warns(UserWarning, match="does not exist"):
        app = app_factory(CONSENTKIT_GEOIP_DATABASE=str(path))
    add_probe(app)
    client = app.test_client()
    grant(client, "analytics")
    data = probe(client, "175.16.199.23")
    assert data["ip"] == "175.16.199.0" and data["country"] is None
    assert len(warnings_logged(caplog)) == 1

    # the file appears (a deploy copies it in): lookups start without a restart
    shutil.copy(testdata / "GeoIP2-City-Test.mmdb", path)
    geo = get_kit_state(app).geo
    geo.recheck_seconds = 0
    geo._next_check = 0.0
    assert probe(client, "175.16.199.23")["country"] == "CN"


def test_replaced_database_is_reopened(tmp_path: Path, testdata: Path) -> None:
    path = tmp_path / "geo.mmdb"
    shutil.copy(testdata / "GeoIP2-Country-Test.mmdb", path)
    geo = DatabaseGeo(str(path))
    assert geo.lookup("175.16.199.0") == GeoRecord("CN", None, None)
    # atomically replaced by a City edition, as a database updater does
    new = tmp_path / "geo.mmdb.new"
    shutil.copy(testdata / "GeoIP2-City-Test.mmdb", new)
    os.replace(new, path)
    # within the recheck interval the open database keeps answering
    assert geo.lookup("175.16.199.0") == GeoRecord("CN", None, None)
    geo.recheck_seconds = 0
    geo._next_check = 0.0
    assert geo.lookup("175.16.199.0") == GeoRecord("CN", "Jilin Sheng", "Changchun")


def test_database_is_opened_once_per_process_per_path(testdata: Path) -> None:
    path = str(testdata / "GeoIP2-City-Test.mmdb")
    same = os.path.join(str(testdata), ".", "GeoIP2-City-Test.mmdb")
    assert shared_database(path) is shared_database(same)


def test_apps_share_the_database(app_factory: Callable[..., Flask], testdata: Path) -> None:
    path = str(testdata / "GeoIP2-City-Test.mmdb")
    one = app_factory(CONSENTKIT_GEOIP_DATABASE=path)
    two = app_factory(CONSENTKIT_GEOIP_DATABASE=path)
    assert get_kit_state(one).geo is get_kit_state(two).geo


def test_c_extension_is_used_when_installed(testdata: Path) -> None:
    maxminddb_ext = pytest.importorskip("maxminddb.extension")
    geo = DatabaseGeo(str(testdata / "GeoIP2-City-Test.mmdb"))
    geo.lookup("175.16.199.0")
    assert type(geo._reader._db_reader).__module__ == maxminddb_ext.__name__


def test_corrupt_replacement_keeps_the_previous_database(
    tmp_path: Path, testdata: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "geo.mmdb"
    shutil.copy(testdata / "GeoIP2-City-Test.mmdb", path)
    geo = DatabaseGeo(str(path))
    assert geo.lookup("175.16.199.0") is not None
    new = tmp_path / "geo.mmdb.new"
    new.write_bytes(b"garbage" * 1000)
    os.replace(new, path)
    geo.recheck_seconds = 0
    geo._next_check = 0.0
    assert geo.lookup("2001:480:10::") == GeoRecord("US", "California", "San Diego")
    logged = warnings_logged(caplog)
    assert len(logged) == 1 and "previous version stays in use" in logged[0]
