"""``flask consent scan``: the example app passes; a leaky app fails with names.

Hosts, pages and the sitemap have tests of their own (``test_scan_hosts.py``,
``test_scan_pages.py``); the catalogue keys used here are ``youtube``,
``google-tag``, ``meta-pixel`` and ``hotjar``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask, Response, redirect, session

from example_app import create_app
from flask_consentkit.cli import cli
from flask_consentkit.cli.scan import scan_paths
from flask_consentkit.signals import technical_data_collected
from tests.conftest import make_app

# the extension sets this aside until consent: with Meta undeclared, it is still a finding
META_PRELOAD = ('<link rel="preload" as="script" '
                'href="https://connect.facebook.net/en_US/fbevents.js">')
# a page streamed without gated_stream() is not rewritten: its script reaches Meta
META_SCRIPT = '<script async src="https://connect.facebook.net/en_US/fbevents.js"></script>'
SETTINGS_LINK = '<a href="/consent/">Cookie settings</a>'  # no banner is put in a stream


def run_scan(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(cli, ["scan", *args])


def page(body: str) -> str:
    return f"<!doctype html><html><head><title>t</title></head><body>{body}</body></html>"


EXAMPLE = {"TESTING": True, "CONSENTKIT_LEDGER_URL": None,
           "SECRET_KEY": "test-secret-key-that-is-long-enough"}


@pytest.fixture
def example(tmp_path: Path) -> Flask:
    # the example's marketing embed is YouTube's, which it declares
    return create_app(EXAMPLE)


def test_example_app_passes(example: Flask) -> None:
    result = run_scan(example, "--path", "/story/lighthouse", "--path", "/story/caravan")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Scanned ")
    assert "browser policy: enforce" in result.output.splitlines()[0]
    assert "OK: nothing but necessary cookies" in result.output
    assert "ok   www.youtube-nocookie.com [marketing] — declared: YouTube" in result.output
    assert "Not visited" not in result.output

    result = run_scan(example, "--format", "json", "--path", "/story/lighthouse")
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["leaks"] == 0 and result.exit_code == 0
    assert data["failures"] == 0 and data["unvisited"] == [] and data["csp"] == "enforce"
    assert {"/", "/about", "/consent/", "/story/lighthouse"} <= set(data["paths"])
    assert "/beacon" not in data["paths"]  # POST only
    assert not any(p.startswith(("/static", "/consent/static", "/consent/state"))
                   for p in data["paths"])
    embed = [f for f in data["findings"] if f["kind"] == "host"]
    assert {(f["name"], f["status"], f["vendor"]) for f in embed} == {
        ("www.youtube-nocookie.com", "ok", "youtube")}
    # the sitemap lists every story: /story/caravan is visited without a --path
    assert {f["path"] for f in embed} == {"/story/lighthouse", "/story/caravan", "/watch"}


def test_example_app_without_its_embed_declared(tmp_path: Path) -> None:
    result = run_scan(create_app({**EXAMPLE, "CONSENTKIT_SERVICES": []}),
                      "--path", "/story/lighthouse")
    assert result.exit_code == 1
    assert ("UNDECLARED www.youtube-nocookie.com [marketing] — catalogue: YouTube embeds and "
            'IFrame API, not declared: add "youtube" to CONSENTKIT_SERVICES') in result.output
    assert "in <iframe src> (gated)" in result.output
    assert "1 undeclared host(s): www.youtube-nocookie.com" in result.output.splitlines()[-1]


def test_routes_scanned(tmp_path: Path) -> None:
    app = make_app(tmp_path)

    @app.get("/items/<int:item>")
    def item(item: int) -> str:
        return "item"

    @app.get("/feed", defaults={"page": 1})
    @app.get("/feed/<int:page>")
    def feed(page: int) -> str:
        return "feed"

    @app.post("/beacon")
    def beacon() -> str:
        return ""

    assert scan_paths(app, ["/items/3", "/"]) == [
        "/", "/api", "/consent/", "/feed", "/items/3"]


@pytest.fixture
def leaky(tmp_path: Path) -> Flask:
    app = make_app(
        tmp_path,
        CONSENTKIT_COOKIES={"necessary": ["csrftoken"], "marketing": ["promo"]},
        CONSENTKIT_CSP=False,  # so that the preload reaches Meta
    )

    @app.get("/leaky")
    def leaky_page() -> Response:
        response = app.response_class(page(f"<p>story</p>{META_PRELOAD}"), mimetype="text/html")
        response.set_cookie("_ga_ABC123", "GA1.1.1")  # Google Analytics, undeclared
        response.set_cookie("zz_visitor", "42")  # nobody knows it
        response.set_cookie("csrftoken", "x")  # declared necessary
        response.set_cookie("XSRF-TOKEN", "y")  # a security cookie in the database
        response.set_cookie("promo", "z")  # declared marketing: the extension drops it
        response.delete_cookie("old_tracker")  # removing a cookie is no leak
        return response

    @app.get("/streamed")
    def streamed() -> Response:
        return app.response_class(iter([page(META_SCRIPT + SETTINGS_LINK)]),
                                  mimetype="text/html")

    @app.get("/signed-in")
    def signed_in() -> str:
        session["seen"] = True
        return page("<p>hello</p>")

    @app.get("/gpc-only")
    def gpc_only() -> Response:
        from flask import request

        response = app.response_class(page("<p>x</p>"), mimetype="text/html")
        if request.headers.get("Sec-GPC") == "1":
            response.set_cookie("_fbp", "fb.1")
        return response

    return app


def test_leaky_route_fails_with_names(leaky: Flask) -> None:
    result = run_scan(leaky)
    assert result.exit_code == 1
    out = result.output
    assert "LEAK _ga_ABC123 [analytics] — Open Cookie Database: Google Analytics (prefix '_ga_')" \
        in out
    assert "LEAK zz_visitor — unknown" in out
    assert "ok   csrftoken [necessary] — declared" in out
    assert "ok   XSRF-TOKEN [security]" in out
    assert "promo" not in out and "old_tracker" not in out
    assert "LEAK connect.facebook.net [marketing] — catalogue: Meta Pixel (Facebook/Instagram " \
        "ads), not declared: the page has no browser policy (CONSENTKIT_CSP = False) and its " \
        "<script src> is active: the browser fetches it before consent; mark the script " \
        'type="text/plain" data-consent="marketing" or set CONSENTKIT_CSP = "enforce"; and add ' \
        '"meta-pixel" to CONSENTKIT_SERVICES' in out
    assert "       in <script src>\n       on /streamed\n" in out
    # the preload the server set aside is no leak, but Meta is still not declared
    assert "UNDECLARED connect.facebook.net [marketing] — catalogue: Meta Pixel" in out
    assert "       in <link rel=preload> (gated)\n       on /leaky\n" in out
    assert "LEAK _fbp [marketing]" in out and "on /gpc-only (GPC)" in out
    assert "ok   session [necessary] — the app's session cookie" in out
    assert "FAIL:" in out and "_ga_ABC123" in out.splitlines()[-2]
    assert "connect.facebook.net" in out.splitlines()[-2]
    assert "Declare each cookie in CONSENTKIT_COOKIES" in out


def test_leaky_route_json(leaky: Flask) -> None:
    result = run_scan(leaky, "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    leaks = {(f["kind"], f["name"]) for f in data["findings"] if f["leak"]}
    assert ("cookie", "_ga_ABC123") in leaks
    assert ("cookie", "zz_visitor") in leaks
    meta = {f["path"]: (f["status"], f["leak"], f["vendor"]) for f in data["findings"]
            if f["name"] == "connect.facebook.net"}
    assert meta == {"/leaky": ("undeclared", False, "meta-pixel"),
                    "/streamed": ("leak", True, "meta-pixel")}
    ga = next(f for f in data["findings"] if f["name"] == "_ga_ABC123" and not f["gpc"])
    assert ga == {"kind": "cookie", "name": "_ga_ABC123", "path": "/leaky", "gpc": False,
                  "category": "analytics",
                  "source": "Open Cookie Database: Google Analytics (prefix '_ga_')",
                  "leak": True, "detail": "", "status": "leak"}
    csrf = next(f for f in data["findings"] if f["name"] == "csrftoken")
    assert csrf["status"] == "ok" and csrf["leak"] is False
    assert data["leaks"] == len([f for f in data["findings"] if f["leak"]])
    assert data["failures"] == len([f for f in data["findings"] if f["status"] != "ok"])


@pytest.mark.parametrize("csp", ["enforce", "report-only", False])
def test_gated_and_neutralised_trackers_pass(tmp_path: Path, csp: Any) -> None:
    app = make_app(tmp_path, CONSENTKIT_SERVICES=["google-tag", "youtube"], CONSENTKIT_CSP=csp)

    @app.get("/gated")
    def gated() -> str:
        return page(
            '<script type="text/plain" data-consent="analytics" '
            'src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>'
            '<iframe data-consent="marketing" data-consent-src="https://www.youtube.com/embed/x"'
            ' title="v"></iframe>'
            # forgotten attribute: the extension neutralises it on the server
            '<script async src="https://www.googletagmanager.com/gtag/js?id=G-2"></script>'
        )

    result = run_scan(app)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Scanned 4 path(s)")
    # what waits for consent is still listed: after consent the browser loads it
    assert "ok   www.googletagmanager.com [analytics] — declared: Google tag" in result.output
    assert "in <script src> (gated)" in result.output
    assert "ok   www.youtube.com [marketing]" in result.output


@pytest.mark.parametrize("csp, status", [
    (False, "LEAK"), ("report-only", "LEAK"), ("enforce", "UNDECLARED")])
def test_active_trackers_the_extension_does_not_see(tmp_path: Path, csp: Any,
                                                    status: str) -> None:
    app = make_app(tmp_path, CONSENTKIT_CSP=csp)

    @app.get("/preload")
    def preload() -> Response:  # streamed without gated_stream(): not rewritten
        return app.response_class(iter([page(
            '<link rel="preload" as="script" href="https://static.hotjar.com/c/hotjar-1.js">'
            + SETTINGS_LINK)]), mimetype="text/html")

    @app.get("/feed.xml")
    def feed() -> Response:  # not HTML: the scanner only reads pages
        return app.response_class("<script src='https://static.hotjar.com/x.js'></script>",
                                  mimetype="application/xml")

    result = run_scan(app)
    assert result.exit_code == 1
    assert f"{status} static.hotjar.com [analytics] — catalogue: Hotjar, not declared" \
        in result.output
    assert "in <link rel=preload>" in result.output
    assert "/feed.xml" not in result.output


def test_route_that_raises_is_reported(tmp_path: Path) -> None:
    app = make_app(tmp_path)

    @app.get("/broken")
    def broken() -> str:
        raise RuntimeError("the story store is down")

    for testing in (True, False):
        app.testing = testing
        result = run_scan(app)
        assert result.exit_code == 1
        assert "LEAK RuntimeError — GET /broken raised RuntimeError: the story store is down" \
            in result.output
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_technical_data_collected(tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_COLLECTION_RULES={"user_agent": "necessary"})

    @app.get("/visit")
    def visit() -> str:
        technical_data_collected.send(app, data={"ip": "203.0.113.0", "browser": "Firefox",
                                                 "city": None})
        return page("<p>visit</p>")

    result = run_scan(app)
    assert result.exit_code == 1
    assert "LEAK ip [analytics] — technical_data() signal" in result.output
    assert "ok   browser [necessary]" in result.output
    assert "city" not in result.output


def test_redirects(tmp_path: Path) -> None:
    app = make_app(tmp_path)

    @app.get("/go")
    def go() -> Any:
        return redirect("/landing")

    @app.get("/away")
    def away() -> Any:
        return redirect("https://ads.example.net/click?id=1")

    @app.get("/landing")
    def landing() -> Response:
        response = app.response_class(page("<p>x</p>"), mimetype="text/html")
        response.set_cookie("_hjSession_123", "1")
        return response

    result = run_scan(app, "--format", "json")
    data = json.loads(result.stdout)
    hj = {f["path"] for f in data["findings"] if f["name"] == "_hjSession_123"}
    assert hj == {"/go", "/landing"}
    off = [f for f in data["findings"] if f["kind"] == "redirect"]
    assert off and off[0]["name"] == "https://ads.example.net/click?id=1" \
        and off[0]["leak"] is False


@pytest.mark.parametrize("path", ["story", "//evil.example/x", "https://x.example/"])
def test_bad_path(example: Flask, path: str) -> None:
    result = run_scan(example, "--path", path)
    assert result.exit_code == 2
    assert "is not a path on this app" in result.output


def test_not_registered(tmp_path: Path) -> None:
    app = Flask(__name__)
    result = app.test_cli_runner().invoke(cli, ["scan"])
    assert result.exit_code == 1
    assert "flask-consentkit is not registered on this app" in result.output
