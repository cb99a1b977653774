"""The browser policy in Chromium, next to an app's own strict policy (Flask-Talisman)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask, render_template_string, request

from flask_consentkit import ConsentKit

from .conftest import SECRET

pytestmark = pytest.mark.browser
talisman = pytest.importorskip(
    "flask_talisman", reason="flask-talisman is a test dependency: pip install -e '.[test]'")

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Own</title>
<style nonce="{{ csp_nonce() }}">#own { color: rgb(1, 2, 3); }</style>
<script nonce="{{ csp_nonce() }}">
  window.ownRan = true;
  window.wasm = typeof WebAssembly.compile === "function";
  new WebAssembly.Module(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]));
  window.wasmCompiled = true;
  var s = document.createElement("script");
  s.src = "/own.js";  /* inserted by trusted code: allowed by 'strict-dynamic' */
  document.head.appendChild(s);
  var t = document.createElement("script");
  /* a tag a tag manager adds later: no literal the server's rewrite could recognise */
  t.src = "https://www.googletag" + "manager.com/gtm" + ".js?id=GTM-TEST";
  document.head.appendChild(t);
  var w = new Worker(URL.createObjectURL(new Blob(["postMessage(6 * 7)"])));
  w.onmessage = function (e) { window.workerSaid = e.data; };
</script>
</head><body><p id="own">Our own page</p></body></html>"""


def wait_for(page: Any, expression: str, timeout: float = 5.0) -> None:
    """Poll ``expression`` (``page.wait_for_function`` compiles a string: the app's
    policy, which has no 'unsafe-eval', refuses that)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, expression
        page.wait_for_timeout(50)


def make(strict_dynamic: bool) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True, CONSENTKIT_LEDGER_URL=None)
    # a 3D app compiles WebAssembly: its own policy allows that, ours must not refuse it
    script_src = ["'self'", "'wasm-unsafe-eval'"] + (
        ["'strict-dynamic'"] if strict_dynamic else [])
    talisman.Talisman(
        app, force_https=False, session_cookie_secure=False,
        content_security_policy={"default-src": "'self'", "script-src": script_src,
                                 "style-src": "'self'", "worker-src": "blob:",
                                 "img-src": "'self' data:"},
        content_security_policy_nonce_in=["script-src", "style-src"],
    )
    ConsentKit(app, nonce_getter=lambda: request.csp_nonce)  # type: ignore[attr-defined]

    @app.get("/")
    def home() -> str:
        return render_template_string(PAGE)

    @app.get("/own.js")
    def own_js() -> Any:
        return app.response_class("window.ownInserted = true;", mimetype="text/javascript")

    return app


@pytest.mark.parametrize("strict_dynamic", [False, True], ids=["nonce", "strict-dynamic"])
def test_the_apps_own_scripts_and_styles_run_and_the_banner_works(
        live_server, browser, strict_dynamic):
    server = live_server(make(strict_dynamic))
    context = browser.new_context()
    outside: list[str] = []
    context.route("**/*", lambda route: (outside.append(route.request.url), route.abort())
                  if urlsplit(route.request.url).hostname != "127.0.0.1" else route.continue_())
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text)
            if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: violations.append(str(e)))
    try:
        response = page.goto(server.url + "/", wait_until="load")
        headers = response.headers_array()
        policies = [h["value"] for h in headers if h["name"].lower() == "content-security-policy"]
        assert len(policies) == 2  # the app's and ours, both enforced
        wait_for(page, "window.workerSaid === 42")
        assert page.evaluate("window.ownRan && window.wasmCompiled") is True
        assert page.evaluate("getComputedStyle(document.getElementById('own')).color") \
            == "rgb(1, 2, 3)"
        if strict_dynamic:
            wait_for(page, "window.ownInserted === true")
        # the tag manager's script is the only thing refused, and by our policy
        assert outside == []
        ours = [v for v in violations if "googletagmanager" not in v]
        assert ours == [], ours
        # the banner's script and style carry the nonce: the banner works
        assert page.evaluate("getComputedStyle(document.getElementById('consentkit-banner'))"
                             ".position") == "fixed"
        page.click("#consentkit-banner [value=reject_all]")
        wait_for(page, "document.getElementById('consentkit-banner').hidden")
        assert [v for v in violations if "googletagmanager" not in v] == []
    finally:
        context.close()


def test_chromium_reports_what_it_blocked(live_server, browser, tmp_path):
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True,
                      CONSENTKIT_LEDGER_URL=f"sqlite:///{tmp_path}/l.db")
    ConsentKit(app)

    @app.get("/story")
    def story() -> str:
        return ('<!doctype html><html lang="en"><title>s</title><body>'
                # built at run time: the server's rewrite cannot see it, the browser can
                "<script>new Image().src = 'https://pixel.tracker-nobody-' + "
                "'declared.example/p.gif?u=1';</script></body></html>")

    server = live_server(app)
    context = browser.new_context()

    def without_report_to(route: Any) -> None:
        # Chromium prefers report-to and delivers those reports in batches, about a
        # minute later (or never, with background networking off, as here); browsers
        # without the Reporting API (Firefox, Safari) use report-uri. Test that path.
        response = route.fetch()
        headers = dict(response.headers)
        policy = headers["content-security-policy"]
        assert "; report-to consentkit-csp" in policy
        headers["content-security-policy"] = policy.replace("; report-to consentkit-csp", "")
        route.fulfill(response=response, headers=headers)

    context.route(f"{server.url}/story*", without_report_to)
    try:
        context.new_page().goto(server.url + "/story?secret=1", wait_until="load")
        store = app.extensions["consentkit"].violations
        deadline = time.monotonic() + 20
        while not store.top() and time.monotonic() < deadline:
            time.sleep(0.2)
        (row,) = store.top()
        assert (row["host"], row["directive"], row["path"]) == (
            "pixel.tracker-nobody-declared.example", "img-src", "/story")
    finally:
        context.close()
