"""The policy's violation reports: aggregates only, bounded, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flask_consentkit.csp import TokenBucket
from flask_consentkit.ledger import Ledger
from flask_consentkit.ledger.violations import ViolationStore

from .conftest import make_app

LEGACY = "application/csp-report"
REPORTS = "application/reports+json"


def legacy(blocked: str = "https://www.googletagmanager.com/gtm.js?id=GTM-X",
           directive: str = "script-src-elem",
           document: str = "http://localhost/story/lighthouse?utm=secret#x") -> bytes:
    return json.dumps({"csp-report": {
        "document-uri": document, "blocked-uri": blocked, "effective-directive": directive,
        "violated-directive": directive, "original-policy": "default-src 'self'",
        "disposition": "enforce", "status-code": 200, "referrer": "https://ref.example/?q=1",
    }}).encode()


def reporting_api(*blocked: str) -> bytes:
    return json.dumps([{
        "type": "csp-violation", "age": 10, "url": "http://localhost/a?b=c",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "body": {"documentURL": "http://localhost/a?b=c", "blockedURL": url,
                 "effectiveDirective": "img-src", "disposition": "enforce"},
    } for url in blocked]).encode()


def post(client: Any, body: bytes, content_type: str = LEGACY, **headers: str) -> Any:
    return client.post("/consent/csp-report", data=body, content_type=content_type,
                       headers={"User-Agent": "Mozilla/5.0 secret-agent", **headers},
                       environ_overrides={"REMOTE_ADDR": "203.0.113.7"})


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path, CONSENTKIT_LEDGER_URL=f"sqlite:///{tmp_path}/ledger.db")


def test_reports_of_both_shapes_are_counted_as_aggregates(app):
    client = app.test_client()
    assert post(client, legacy()).status_code == 204
    assert post(client, legacy()).status_code == 204
    assert post(client, reporting_api("https://www.facebook.com/tr?id=1&ev=PageView",
                                      "https://www.facebook.com/tr?id=2"),
                REPORTS).status_code == 204
    rows = app.extensions["consentkit"].violations.top()
    assert [(r["host"], r["directive"], r["path"], r["count"]) for r in rows] == [
        ("www.facebook.com", "img-src", "/a", 2),
        ("www.googletagmanager.com", "script-src-elem", "/story/lighthouse", 2),
    ]
    stored = json.dumps(rows)
    for secret in ("utm", "secret", "203.0.113", "Mozilla", "id=", "ref.example"):
        assert secret not in stored


def test_the_reports_are_in_the_ledgers_database_for_every_worker_and_the_cli(app, tmp_path):
    post(app.test_client(), legacy())
    # another process (a worker, the CLI) opening the same database sees them
    other = ViolationStore(Ledger(f"sqlite:///{tmp_path}/ledger.db"))
    assert other.top()[0]["host"] == "www.googletagmanager.com"


@pytest.mark.postgres
def test_the_reports_on_postgresql(tmp_path, postgres_url):
    from sqlalchemy import text

    from flask_consentkit.ledger.store import get_engine

    with get_engine(postgres_url).begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS consentkit_csp_violations"))
    app = make_app(tmp_path, CONSENTKIT_LEDGER_URL=postgres_url)
    client = app.test_client()
    for _ in range(3):
        assert post(client, legacy()).status_code == 204
    (row,) = ViolationStore(Ledger(postgres_url)).top()
    assert (row["host"], row["count"]) == ("www.googletagmanager.com", 3)


def test_violations_without_a_third_party_host_are_not_counted(app):
    client = app.test_client()
    for blocked in ("inline", "eval", "data", "blob:http://localhost/x", "/own.js", ""):
        assert post(client, legacy(blocked=blocked)).status_code == 204
    assert app.extensions["consentkit"].violations.top() == []


@pytest.mark.parametrize("body, status", [
    (b"not json", 400),
    (b'{"csp-report": "x"}', 400),
    (b'{"something": {}}', 400),
    (b"[" * 5000 + b"]" * 5000, 400),  # deeper than the JSON parser recurses
    (b'[{"type": "deprecation", "body": {}}]', 400),
    (b'{"csp-report": {"blocked-uri": 5, "effective-directive": ["x"]}}', 204),
    (b'{"csp-report": {"blocked-uri": "https://x.example/", "effective-directive": '
     b'"<script>"}}', 204),
    (b"", 400),
])
def test_bad_bodies_get_a_4xx_never_a_500(app, body, status):
    assert post(app.test_client(), body).status_code == status


def test_other_content_types_get_415(app):
    response = post(app.test_client(), legacy(), "text/plain")
    assert response.status_code == 415


def test_a_huge_body_gets_413_without_being_read(app):
    client = app.test_client()
    assert post(client, b"{" + b" " * (70 * 1024) + b"}").status_code == 413
    big = json.dumps({"csp-report": {"blocked-uri": "https://x.example/" + "a" * 70_000}})
    assert post(client, big.encode()).status_code == 413


def test_a_flood_is_cut_at_the_processs_rate(app):
    ext = app.extensions["consentkit"]
    assert (ext.report_bucket.rate, ext.report_bucket.burst) == (50.0, 200.0)
    ext.report_bucket = TokenBucket(rate=0.5, burst=200)  # the default burst, slower
    client = app.test_client()
    statuses = [post(client, legacy()).status_code for _ in range(260)]
    assert statuses[:200] == [204] * 200
    assert 429 in statuses[200:]
    response = post(client, legacy())
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"


def test_storage_stays_bounded(app):
    store = app.extensions["consentkit"].violations
    store.max_rows = 5
    client = app.test_client()
    for i in range(12):
        post(client, legacy(blocked=f"https://t{i}.example/x"))
    post(client, legacy(blocked="https://t0.example/x"))
    rows = store.top(100)
    assert len(rows) == 5
    assert rows[0]["host"] == "t0.example" and rows[0]["count"] == 2  # a known row still counts
    assert store.dropped == 7


def test_without_a_ledger_the_reports_are_kept_in_memory_and_bounded(tmp_path):
    app = make_app(tmp_path)
    store = app.extensions["consentkit"].violations
    store.max_rows = 2
    client = app.test_client()
    for i in range(4):
        assert post(client, legacy(blocked=f"https://m{i}.example/")).status_code == 204
    assert [r["host"] for r in store.top()] == ["m0.example", "m1.example"]
    assert store.dropped == 2


def test_a_reported_undeclared_host_is_logged_once(app, caplog):
    client = app.test_client()
    with caplog.at_level("WARNING", "flask_consentkit.csp"):
        post(client, legacy(blocked="https://cdn.never-declared.example/a.js"))
        post(client, legacy(blocked="https://cdn.never-declared.example/b.js"))
    messages = [r.getMessage() for r in caplog.records if "never-declared" in r.getMessage()]
    assert len(messages) == 1 and "/story/lighthouse" in messages[0]


def test_status_shows_the_policy_and_the_hosts_browsers_were_stopped_from_reaching(app):
    from flask_consentkit.cli import cli

    post(app.test_client(), legacy())
    result = app.test_cli_runner().invoke(cli, ["status"])
    assert result.exit_code == 0, result.output
    assert "browser policy: enforce (Content-Security-Policy;" in result.output
    assert "in the catalogue; undeclared ones follow their catalogue category" in result.output
    assert "www.googletagmanager.com  script-src-elem  /story/lighthouse" in result.output


def test_status_says_when_the_policy_is_off(tmp_path):
    from flask_consentkit.cli import cli

    app = make_app(tmp_path, CONSENTKIT_CSP=False, CONSENTKIT_UNDECLARED_VENDORS="blocked")
    result = app.test_cli_runner().invoke(cli, ["status"])
    assert "browser policy: off (CONSENTKIT_CSP = False)" in result.output
    assert "undeclared ones blocked for everyone" in result.output
    assert "blocked hosts:  none reported by browsers" in result.output
