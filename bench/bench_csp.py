"""What the browser policy costs per HTML response, against bare Flask in the same run.

    python bench/bench_csp.py

The page is rendered from a Jinja template compiled once, with a per-request
token in it (a CSRF field), as an app's pages are. The same app is measured
with ``CONSENTKIT_CSP = False`` and with the policy on, for a visitor who
accepted everything (the longest header) and for a new visitor; the difference
is the policy's cost: noting the header for the visitor's set of categories
(built once per set) and writing it.

Budget (issue 11): the policy header costs no more than a few microseconds.
"""

from __future__ import annotations

import secrets
import sys

from _common import compare, report, wsgi_caller
from flask import Flask

from flask_consentkit import ConsentKit

SECRET = "bench-secret-key-bench-secret-key"
TEMPLATE = (
    "<!doctype html><html lang=en><head><title>{{ title }}</title></head><body>"
    "<form method=post><input type=hidden name=csrf value='{{ token }}'></form>"
    "{% for p in paragraphs %}<p>{{ p }}</p>{% endfor %}</body></html>"
)
PARAGRAPHS = ["A keeper on the Caspian coast counts ships and stars. " * 6] * 40


def app(kit: bool = True, **config: object) -> Flask:
    app = Flask("bench")
    app.config.update(SECRET_KEY=SECRET, CONSENTKIT_LEDGER_URL=None,
                      **{"CONSENTKIT_AUTO_INJECT": False, **config})
    if kit:
        ConsentKit(app)
    template = app.jinja_env.from_string(TEMPLATE)

    @app.get("/")
    def page() -> str:
        return template.render(title="Story", token=secrets.token_urlsafe(24),
                               paragraphs=PARAGRAPHS)

    return app


def cookie(kit: Flask) -> dict[str, str]:
    client = kit.test_client()
    client.post("/consent/", json={"action": "accept_all"}, headers={"Origin": "http://localhost"})
    value = client.get_cookie("consentkit")
    assert value is not None
    return {"Cookie": f"consentkit={value.value}"}


def main() -> int:
    bare = app(kit=False)
    off, on = app(CONSENTKIT_CSP=False), app()
    # with the default banner, which reads the visitor's consent on every page anyway
    banner_off = app(CONSENTKIT_CSP=False, CONSENTKIT_AUTO_INJECT=True)
    banner_on = app(CONSENTKIT_AUTO_INJECT=True)
    accepted = cookie(on)
    cases = {
        "bare Flask, template page": wsgi_caller(bare, "/"),
        "consentkit, policy off, accepted all": wsgi_caller(off, "/", headers=accepted),
        "consentkit, policy on, accepted all": wsgi_caller(on, "/", headers=accepted),
        "consentkit, policy off, new visitor": wsgi_caller(off, "/"),
        "consentkit, policy on, new visitor": wsgi_caller(on, "/"),
        "+ banner, policy off, accepted all": wsgi_caller(banner_off, "/", headers=accepted),
        "+ banner, policy on, accepted all": wsgi_caller(banner_on, "/", headers=accepted),
    }
    results = compare(cases, n=1000)
    report("HTML page rendered from a template, per-request token (median of rounds)",
           results, "bare Flask, template page")
    for who in ("accepted all", "new visitor"):
        delta = results[f"consentkit, policy on, {who}"] - results[f"consentkit, policy off, {who}"]
        print(f"  the policy's cost, {who:<13} {delta * 1e6:+6.1f} µs  (reading the consent "
              "cookie included: nothing else on this page reads it)")
    delta = (results["+ banner, policy on, accepted all"]
             - results["+ banner, policy off, accepted all"])
    print(f"  the policy's cost with the banner, accepted all {delta * 1e6:+6.1f} µs")
    policy = on.extensions["consentkit"].policy
    everything = frozenset(on.extensions["consentkit"].settings.category_keys)
    for name, granted in (("new visitor", frozenset({"necessary"})),
                          ("accepted all", everything)):
        print(f"  header for {name:<13} {len(policy.value(granted).encode()):6d} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
