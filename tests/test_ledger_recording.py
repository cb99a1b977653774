"""Every decision through ``POST /consent/`` leaves one receipt with what was shown and chosen."""
# ruff: noqa: F811  (pytest fixtures imported from ledger_helpers)

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_consentkit import ConsentKit
from flask_consentkit.ledger.store import Ledger

from .conftest import SAME_ORIGIN, SECRET, make_app
from .ledger_helpers import choose, ledger_app, store_url  # noqa: F401

ALL = ["analytics", "functional", "marketing", "necessary", "performance"]


def receipts(app: Flask, consent_id: str) -> list[dict[str, Any]]:
    ledger: Ledger = app.extensions["consentkit"].ledger
    return ledger.export(consent_id)


def test_accept_all_leaves_one_complete_receipt(ledger_app: Flask) -> None:
    client = ledger_app.test_client()
    state = choose(client, "accept_all").get_json()
    [receipt] = receipts(ledger_app, state["consent_id"])
    assert receipt["action"] == "accept_all"
    assert receipt["granted"] == ALL and receipt["denied"] == [] and receipt["withdrawn"] == []
    assert receipt["policy_version"] == "1" and receipt["method"] == "api"
    assert len(receipt["receipt_id"]) == 36 and receipt["receipt_id"][14] == "4"  # UUIDv4
    assert receipt["created_at"].endswith("Z") and receipt["previous_receipt_id"] is None
    # analytics granted: the IP is kept, anonymised to its /24
    assert receipt["ip_prefix"] == "127.0.0.0/24"


def test_no_ip_and_no_geo_without_analytics(ledger_app: Flask) -> None:
    client = ledger_app.test_client()
    state = choose(client, "save", categories=["functional", "performance", "marketing"],
                   ).get_json()
    [receipt] = receipts(ledger_app, state["consent_id"])
    assert receipt["ip_prefix"] is None and receipt["country"] is None
    assert receipt["denied"] == ["analytics"]


def test_a_withdrawal_is_a_decision_with_withdrawn_categories(ledger_app: Flask) -> None:
    client = ledger_app.test_client()
    first = choose(client, "accept_all").get_json()
    second = choose(client, "save", categories=["functional"]).get_json()
    assert first["consent_id"] == second["consent_id"]
    one, two = receipts(ledger_app, first["consent_id"])
    assert two["action"] == "save"
    assert two["withdrawn"] == ["analytics", "marketing", "performance"]
    assert two["previous_receipt_id"] == one["receipt_id"]
    assert two["ip_prefix"] is None  # analytics is no longer granted


def test_page_path_comes_from_the_referring_page_without_its_query(ledger_app: Flask) -> None:
    client = ledger_app.test_client()
    response = client.post(
        "/consent/",
        data={"action": "reject_all", "source": "banner", "next": "/elsewhere"},
        headers={"Referer": "http://localhost/story/lighthouse?utm_source=x#part-2"},
    )
    assert response.status_code == 303
    consent_id = client.get("/consent/state").get_json()["consent_id"]
    [receipt] = receipts(ledger_app, consent_id)
    assert receipt["page_path"] == "/story/lighthouse"
    assert receipt["method"] == "banner"


def test_page_path_falls_back_to_next_and_ignores_foreign_referers(ledger_app: Flask) -> None:
    client = ledger_app.test_client()
    client.post("/consent/", data={"action": "reject_all", "next": "/about?x=1"},
                headers={**SAME_ORIGIN})
    consent_id = client.get("/consent/state").get_json()["consent_id"]
    assert receipts(ledger_app, consent_id)[0]["page_path"] == "/about"
    other = ledger_app.test_client()
    state = choose(other, "reject_all", headers={"Referer": "https://evil.example/page"}
                   ).get_json()
    assert receipts(ledger_app, state["consent_id"])[0]["page_path"] is None


def test_gpc_method_is_recorded(ledger_app: Flask) -> None:
    client = ledger_app.test_client()
    state = choose(client, "accept_all", headers={"Sec-GPC": "1"}).get_json()
    [receipt] = receipts(ledger_app, state["consent_id"])
    assert receipt["method"] == "gpc" and receipt["denied"] == ["marketing"]


@dataclass
class Technical:
    ip: str | None
    country: str | None


def test_banner_and_technical_data_services_feed_the_receipt(ledger_app: Flask) -> None:
    ext = ledger_app.extensions["consentkit"]
    ext.banner_fingerprint = lambda: ("ab" * 32, "az")
    ext.technical_data = lambda: Technical("203.0.113.77", "az")
    state = choose(ledger_app.test_client(), "accept_all").get_json()
    [receipt] = receipts(ledger_app, state["consent_id"])
    assert (receipt["banner_hash"], receipt["language"]) == ("ab" * 32, "az")
    assert (receipt["ip_prefix"], receipt["country"]) == ("203.0.113.0/24", "AZ")


def test_ipv6_is_kept_as_its_48(ledger_app: Flask) -> None:
    client = ledger_app.test_client()
    state = client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN,
                        environ_base={"REMOTE_ADDR": "2001:db8:1234:5678::1"}).get_json()
    assert receipts(ledger_app, state["consent_id"])[0]["ip_prefix"] == "2001:db8:1234::/48"


def test_ledger_off_registers_no_recorder_and_warns_outside_tests(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="flask_consentkit.ledger"):
        app = make_app(tmp_path)
        production = Flask(__name__)
        production.config.update(SECRET_KEY=SECRET, CONSENTKIT_LEDGER_URL=None)
        ConsentKit(production)
    assert app.extensions["consentkit"].recorder is None
    assert choose(app.test_client()).status_code == 200
    assert [r.levelno for r in caplog.records if "receipts are off" in r.getMessage()] \
        == [logging.INFO, logging.WARNING]


@pytest.mark.parametrize("where", ["sqlite", pytest.param("postgresql",
                                                          marks=pytest.mark.postgres)])
def test_unreachable_ledger_keeps_the_choice_and_logs_the_receipt(
    where: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if where == "sqlite":
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a file where the ledger's folder should be")
        url = f"sqlite:///{blocker / 'ledger.sqlite3'}"
    else:
        url = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens there
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=url)
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="flask_consentkit.ledger"):
        response = choose(client, "save", categories=["analytics"])
    assert response.status_code == 200
    assert "consentkit=" in response.headers["Set-Cookie"]
    state = client.get("/consent/state").get_json()
    assert state["decided"] and state["granted"] == ["analytics", "necessary"]
    [record] = [r for r in caplog.records if r.name == "flask_consentkit.ledger"]
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert "NOT recorded" in message and state["consent_id"] in message
    assert '"action": "save"' in message and '"granted": ["analytics", "necessary"]' in message

    form = client.post("/consent/", data={"action": "reject_all", "next": "/about"},
                       headers=SAME_ORIGIN)
    assert form.status_code == 303 and form.headers["Location"] == "/about"


def test_failing_services_cost_their_fields_not_the_receipt(
        ledger_app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    ext = ledger_app.extensions["consentkit"]

    def broken() -> Any:
        raise RuntimeError("catalog missing")

    ext.banner_fingerprint = broken
    ext.technical_data = broken
    with caplog.at_level(logging.WARNING, logger="flask_consentkit.ledger"):
        state = choose(ledger_app.test_client(), "accept_all").get_json()
    [receipt] = receipts(ledger_app, state["consent_id"])
    assert receipt["banner_hash"] is None and receipt["ip_prefix"] is None
    assert "banner fingerprint unavailable" in caplog.text
    assert "technical data unavailable" in caplog.text


def test_malformed_service_values_are_not_stored(ledger_app: Flask) -> None:
    ext = ledger_app.extensions["consentkit"]
    ext.banner_fingerprint = lambda: ("not-a-hash", "")
    ext.technical_data = lambda: Technical("not an ip", "Azerbaijan")
    state = choose(ledger_app.test_client(), "accept_all").get_json()
    [receipt] = receipts(ledger_app, state["consent_id"])
    assert receipt["banner_hash"] is None and receipt["language"] is None
    assert receipt["ip_prefix"] is None and receipt["country"] is None


#: ``necessary`` and 16 keys of 32 characters: 539 characters in a receipt, past the 512
#: of the ledger's category columns
TOO_MANY = ["necessary"] + [f"category_number_{i:02d}_with_long_key" for i in range(16)]
#: ``necessary``, 15 of them and one of 5: exactly 512
JUST_FITS = [*TOO_MANY[:16], "extra"]


def test_category_keys_a_receipt_cannot_hold_are_refused_at_init(tmp_path: Path) -> None:
    from flask_consentkit import ConsentConfigError

    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    with pytest.raises(ConsentConfigError, match="539 characters.*512") as info:
        make_app(tmp_path, CONSENTKIT_LEDGER_URL=ledger, CONSENTKIT_CATEGORIES=TOO_MANY)
    assert info.value.key == "CONSENTKIT_CATEGORIES"
    # a rule asking for the consent to transfers abroad records one key more
    with pytest.raises(ConsentConfigError, match="529 characters") as info:
        make_app(tmp_path, CONSENTKIT_LEDGER_URL=ledger, CONSENTKIT_CATEGORIES=JUST_FITS,
                 CONSENTKIT_REGIONS={"TR": "tr", "*": "opt-in"})
    assert info.value.key == "CONSENTKIT_CATEGORIES"


def test_the_longest_category_keys_that_fit_are_recorded(store_url: str, tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url, CONSENTKIT_CATEGORIES=JUST_FITS)
    state = choose(app.test_client(), "accept_all").get_json()
    [receipt] = receipts(app, state["consent_id"])
    assert receipt["granted"] == sorted(JUST_FITS)


@pytest.mark.parametrize(("url", "hint"), [
    ("sqlite://", "in-memory SQLite"),
    ("sqlite:///:memory:", "in-memory SQLite"),
    ("sqlite:///file::memory:?cache=shared&uri=true", "in-memory SQLite"),
    ("sqlite:///file:?uri=true", "in-memory SQLite"),
    ("sqlite:///file:ledger?mode=memory&cache=shared&uri=true", "in-memory SQLite"),
    ("nosuchdb://user:hunter2@host/x", "not a usable SQLAlchemy URL"),
    ("postgresql+psycopg://user:hunter2@host:port/x", "not a usable SQLAlchemy URL"),
    ("mysql://user:hunter2@127.0.0.1/db", "SQLite or PostgreSQL only"),
    ("postgresql+psycopg2://user:hunter2@127.0.0.1/x", "through psycopg 3 only"),
    ("postgresql+asyncpg://user:hunter2@127.0.0.1/x", "through psycopg 3 only"),
])
def test_unusable_ledger_urls_are_refused_at_init(tmp_path: Path, url: str, hint: str) -> None:
    from flask_consentkit import ConsentConfigError

    with pytest.raises(ConsentConfigError, match=hint) as info:
        make_app(tmp_path, CONSENTKIT_LEDGER_URL=url)
    assert info.value.key == "CONSENTKIT_LEDGER_URL"
    assert "hunter2" not in str(info.value)


def test_a_ledger_whose_driver_is_missing_is_refused_at_init(tmp_path: Path) -> None:
    # a Python without psycopg: its import fails, as it does where it was never installed
    script = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from flask import Flask\n"
        "from flask_consentkit import ConsentConfigError, ConsentKit\n"
        "app = Flask('t')\n"
        "app.config.update(SECRET_KEY='x' * 32, "
        "CONSENTKIT_LEDGER_URL='postgresql+psycopg://user:hunter2@127.0.0.1/x')\n"
        "try:\n"
        "    ConsentKit(app)\n"
        "except ConsentConfigError as e:\n"
        "    print(e.key, e)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=tmp_path, check=True)
    assert result.stdout.startswith("CONSENTKIT_LEDGER_URL ")
    assert "needs psycopg 3, which is not installed" in result.stdout
    assert "pip install 'flask-consentkit[postgresql]'" in result.stdout
    assert "hunter2" not in result.stdout


def test_receipts_hold_the_banner_shown_and_the_country_from_the_real_services(
        store_url: str, tmp_path: Path, testdata: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=store_url,
                   CONSENTKIT_GEOIP_DATABASE=str(testdata / "GeoIP2-City-Test.mmdb"))
    where = {"REMOTE_ADDR": "175.16.199.23"}
    english = app.test_client().post(
        "/consent/", json={"action": "accept_all"}, environ_base=where,
        headers={**SAME_ORIGIN, "Accept-Language": "en"}).get_json()
    azerbaijani = app.test_client().post(
        "/consent/", json={"action": "reject_all"}, environ_base=where,
        headers={**SAME_ORIGIN, "Accept-Language": "az"}).get_json()
    [en] = receipts(app, english["consent_id"])
    [az] = receipts(app, azerbaijani["consent_id"])
    assert en["language"] == "en" and az["language"] == "az"
    assert len(en["banner_hash"]) == 64 and len(az["banner_hash"]) == 64
    assert en["banner_hash"] != az["banner_hash"]
    assert (en["ip_prefix"], en["country"]) == ("175.16.199.0/24", "CN")
    assert (az["ip_prefix"], az["country"]) == (None, None)
