"""The report reads back the decisions visitors post through ``POST /consent/``."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from flask_consentkit.cli import cli
from tests.conftest import SAME_ORIGIN, make_app


def _post(app: Flask, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    client = app.test_client()  # a new visitor: a cookie jar of its own
    response = client.post("/consent/", data=data, headers={**SAME_ORIGIN, **(headers or {})})
    assert response.status_code == 303


def _post_example(app: Flask) -> None:
    for _ in range(3):
        _post(app, {"action": "accept_all", "source": "banner"})
    for _ in range(2):
        _post(app, {"action": "reject_all", "source": "banner"})
    _post(app, {"action": "save", "categories": ["analytics"]})


def _report(app: Flask, *args: str) -> dict[str, Any]:
    result = app.test_cli_runner().invoke(cli, ["report", "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Flask:
    return make_app(tmp_path, CONSENTKIT_LEDGER_URL=f"sqlite:///{tmp_path / 'ledger.db'}")


@pytest.fixture
def pg_app(tmp_path: Path, postgres_url: str) -> Iterator[Flask]:
    schema = f"ck_report_{secrets.token_hex(4)}"
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=url.render_as_string(hide_password=False))
    try:
        yield app
    finally:
        ledger = app.extensions["consentkit"].ledger
        engine = getattr(ledger, "engine", None)
        if engine is not None:
            engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_app(request: pytest.FixtureRequest) -> Flask:
    return request.getfixturevalue(  # type: ignore[no-any-return]
        "sqlite_app" if request.param == "sqlite" else "pg_app")


def test_posted_decisions_are_counted(ledger_app: Flask) -> None:
    _post_example(ledger_app)

    data = _report(ledger_app, "--min-count", "0")

    assert data["decisions"] == 6
    assert data["visitors"] == 6
    assert data["categories"]["analytics"] == {"granted": 4, "denied": 2,
                                               "opt_in_rate": round(4 / 6, 4)}
    assert data["categories"]["marketing"] == {"granted": 3, "denied": 3, "opt_in_rate": 0.5}
    assert data["by_method"] == {"banner": 5, "preferences": 1, "api": 0, "gpc": 0}
    assert data["by_policy_version"] == {"1": 6}
    assert sum(p["decisions"] for p in data["by_period"]) == 6
    assert data["by_period"][-1]["decisions"] == 6  # all of them today


def test_change_of_mind_withdrawal_gpc_and_erasure(ledger_app: Flask) -> None:
    _post_example(ledger_app)
    visitor = ledger_app.test_client()
    visitor.post("/consent/", data={"action": "accept_all"}, headers=SAME_ORIGIN)
    visitor.post("/consent/", data={"action": "reject_all"}, headers=SAME_ORIGIN)
    _post(ledger_app, {"action": "accept_all", "source": "banner"}, {"Sec-GPC": "1"})
    eraser = ledger_app.test_client()
    eraser.post("/consent/", data={"action": "accept_all"}, headers=SAME_ORIGIN)
    assert eraser.post("/consent/erase", headers=SAME_ORIGIN).status_code < 400

    data = _report(ledger_app, "--min-count", "0")

    assert data["decisions"] == 10
    assert data["visitors"] == 8  # the erased visitor is no longer one
    assert data["withdrawals"] == 1
    assert data["erasures"] == 1
    assert data["by_method"]["gpc"] == 1
    assert data["categories"]["analytics"]["granted"] == 5
    assert data["categories"]["analytics"]["denied"] == 3
    assert data["categories"]["marketing"] == {"granted": 3, "denied": 5,
                                               "opt_in_rate": 0.375}


def test_small_groups_from_posted_decisions(ledger_app: Flask) -> None:
    _post_example(ledger_app)
    data = _report(ledger_app)
    assert data["decisions"] == 6
    assert data["categories"]["analytics"] == {"granted": None, "denied": None,
                                               "opt_in_rate": None}
