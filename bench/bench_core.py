"""Per-request cost of the extension on a JSON route, against bare Flask in the same run.

    python bench/bench_core.py

Budgets: a request with a valid consent cookie on a JSON route costs ≤ 1.03× the
same route on bare Flask (issue 14, stricter than DESIGN.md's 1.05×); a JSON route
whose view reads the consent, ≤ 1.05× (DESIGN.md).
"""

from __future__ import annotations

import sys

from _common import compare, report, wsgi_caller
from flask import Flask

from flask_consentkit import ConsentKit, current_consent

SECRET = "bench-secret-key-bench-secret-key"


def bare() -> Flask:
    app = Flask("bare")
    app.config["SECRET_KEY"] = SECRET

    @app.get("/api")
    def api() -> dict[str, object]:
        return {"ok": True, "items": [1, 2, 3]}

    return app


def with_kit() -> Flask:
    app = bare()
    app.config["CONSENTKIT_LEDGER_URL"] = None
    ConsentKit(app)

    @app.get("/api/personal")
    def personal() -> dict[str, object]:
        return {"ok": current_consent.allows("analytics"), "items": [1, 2, 3]}

    return app


def consent_cookie(app: Flask) -> str:
    client = app.test_client()
    client.post("/consent/", json={"action": "accept_all"},
                headers={"Origin": "http://localhost"})
    cookie = client.get_cookie("consentkit")
    assert cookie is not None
    return f"consentkit={cookie.value}"


def main() -> int:
    plain, kit = bare(), with_kit()
    cookie = {"Cookie": consent_cookie(kit)}
    cases = {
        "bare Flask, JSON route": wsgi_caller(plain, "/api", headers=cookie),
        "consentkit, JSON route, valid cookie": wsgi_caller(kit, "/api", headers=cookie),
        "consentkit, JSON route reading consent": wsgi_caller(kit, "/api/personal",
                                                              headers=cookie),
    }
    results = compare(cases)
    ok = report("JSON route through WSGI (median of interleaved rounds)", results,
                "bare Flask, JSON route",
                {"consentkit, JSON route, valid cookie": 1.03,
                 "consentkit, JSON route reading consent": 1.05})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
