"""Per-request cost of the extension on a JSON route, against bare Flask in the same run.

    python bench/bench_core.py

Budgets: a request with a valid consent cookie on a JSON route costs ≤ 1.03× the
same route on bare Flask (issue 14, stricter than DESIGN.md's 1.05×); a JSON route
whose view reads the consent, ≤ 1.05× (DESIGN.md).

Two more rows show the least any extension working this way could cost, in the
same run: bare Flask with one ``after_request`` hook that does nothing, and the
same app whose second route reads the consent cookie by hand (the ``Cookie``
header's pair, a dict lookup for the verified value) and whose hook adds
``Vary: Cookie`` to such a response, as it must.
"""

from __future__ import annotations

import sys

from _common import compare, report, wsgi_caller
from flask import Flask, Response, g, request

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


def least() -> Flask:
    """Bare Flask with the least an extension must do: a response hook, and for a view
    that reads the consent, the cookie's verified value looked up and ``Vary: Cookie``."""
    app = bare()
    verified: dict[str | None, frozenset[str]] = {}

    @app.get("/api/personal")
    def personal() -> dict[str, object]:
        value = None
        for part in request.environ.get("HTTP_COOKIE", "").split(";"):
            part = part.strip()
            if part.startswith("consentkit="):
                value = part[len("consentkit="):]
        granted = verified.get(value)
        if granted is None:
            granted = verified[value] = frozenset({"necessary", "analytics"})
        g.varies = True
        return {"ok": "analytics" in granted, "items": [1, 2, 3]}

    @app.after_request
    def hook(response: Response) -> Response:
        if g.get("varies"):
            response.headers.add("Vary", "Cookie")
        return response

    return app


def consent_cookie(app: Flask) -> str:
    client = app.test_client()
    client.post("/consent/", json={"action": "accept_all"},
                headers={"Origin": "http://localhost"})
    cookie = client.get_cookie("consentkit")
    assert cookie is not None
    return f"consentkit={cookie.value}"


def main() -> int:
    plain, kit, floor = bare(), with_kit(), least()
    cookie = {"Cookie": consent_cookie(kit)}
    cases = {
        "bare Flask, JSON route": wsgi_caller(plain, "/api", headers=cookie),
        "consentkit, JSON route, valid cookie": wsgi_caller(kit, "/api", headers=cookie),
        "consentkit, JSON route reading consent": wsgi_caller(kit, "/api/personal",
                                                              headers=cookie),
        "least: one hook, JSON route": wsgi_caller(floor, "/api", headers=cookie),
        "least: reading the cookie, Vary": wsgi_caller(floor, "/api/personal",
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
