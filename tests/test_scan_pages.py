"""``flask consent scan``: the pages it visits and the checks on each page.

The banner check, paths that answer an error, the sitemap sampling and the
routes left unvisited, the browsers' violation reports, the JSON document.
No catalogue key is relied on.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask, Response, abort, redirect, render_template_string, send_file

from flask_consentkit.cli import cli
from tests.conftest import make_app


def page(body: str) -> str:
    return f"<!doctype html><html><head><title>t</title></head><body>{body}</body></html>"


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(cli, ["scan", *args])


def run_json(app: Flask, *args: str) -> tuple[Result, dict[str, Any]]:
    result = run(app, "--format", "json", *args)
    return result, json.loads(result.stdout)


def failures(data: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(f["kind"], f["name"], f["path"]) for f in data["findings"] if f["status"] != "ok"}


# -- the banner --------------------------------------------------------------------------


def test_every_page_shows_the_banner(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    result, data = run_json(app)
    assert result.exit_code == 0, result.output
    assert not [f for f in data["findings"] if f["kind"] == "banner"]


@pytest.mark.parametrize("route, why", [
    ("/streamed", "it is streamed, which the extension leaves alone: put {{ consent_banner() }} "
                  "in its template (and wrap the stream with gated_stream())"),
    ("/file", "it is sent as a file (send_file), which the extension leaves alone: serve it "
              "through a template, or put the banner in it"),
    ("/headless", "its body does not start like a document, so the extension took it for a "
                  "fragment: start it with <!doctype html>"),
])
def test_a_page_the_banner_cannot_go_into(tmp_path: Path, route: str, why: str) -> None:
    app = make_app(tmp_path)
    (tmp_path / "static.html").write_text(page("<p>a file</p>"))

    @app.get("/streamed")
    def streamed() -> Response:
        return Response(iter([page("<p>x</p>")]), mimetype="text/html")

    @app.get("/file")
    def file() -> Response:
        return send_file(tmp_path / "static.html", mimetype="text/html")

    @app.get("/headless")
    def headless() -> str:
        return "<head><title>t</title></head><body><p>x</p>"

    result = run(app)
    assert result.exit_code == 1
    assert (f'FAIL no consent banner — GET {route}: no element with id="consentkit-banner" '
            f"and no cookie-settings control: {why}") in result.output
    assert "3 page(s) failed a check: /file, /headless, /streamed" \
        in result.output.splitlines()[-1]
    _result, data = run_json(app)
    assert failures(data) == {("banner", "no consent banner", p)
                              for p in ("/streamed", "/file", "/headless")}


def test_a_page_without_a_body_end_still_gets_the_banner(tmp_path: Path) -> None:
    app = make_app(tmp_path)

    @app.get("/unclosed")
    def unclosed() -> str:
        return "<!doctype html><html><head><title>t</title></head><body><p>x</p>"

    result = run(app)
    assert result.exit_code == 0, result.output


def test_with_auto_inject_off_the_app_places_the_banner(tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_AUTO_INJECT=False)

    @app.get("/placed")
    def placed() -> str:
        return render_template_string(page("<p>x</p>{{ consent_banner() }}"))

    @app.get("/settings-link")
    def settings_link() -> str:
        return page('<footer><a href="/consent/?next=/settings-link">Cookie settings</a></footer>')

    result, data = run_json(app)
    assert result.exit_code == 1
    # "/" of make_app has nothing; the two others place the banner or a settings link
    assert failures(data) == {("banner", "no consent banner", "/")}
    banner = next(f for f in data["findings"] if f["kind"] == "banner")
    assert "CONSENTKIT_AUTO_INJECT is off and the page does not place it" in banner["detail"]
    assert banner["status"] == "fail" and banner["leak"] is False


@pytest.mark.parametrize("body", [
    "<p>a fragment for htmx</p>",  # not a document: no banner can go in
    '<div id="consentkit-banner"></div>',
    '<a data-consentkit-reopen href="/elsewhere">Privacy choices</a>',
])
def test_pages_that_need_no_banner_of_their_own(tmp_path: Path, body: str) -> None:
    app = make_app(tmp_path, CONSENTKIT_AUTO_INJECT=False)
    app.view_functions["index"] = lambda: body if body.startswith("<p>") else page(body)
    result = run(app)
    assert result.exit_code == 0, result.output


def test_nothing_to_ask_needs_no_banner(tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_CATEGORIES=["necessary"], CONSENTKIT_AUTO_INJECT=False)
    result = run(app)
    assert result.exit_code == 0, result.output


# -- paths that answer an error --------------------------------------------------------


@pytest.mark.parametrize("path, status", [("/missing", 404), ("/private", 403),
                                          ("/gone-away", 410), ("/api?x=1", None)])
def test_a_path_that_answers_an_error_fails(tmp_path: Path, path: str,
                                            status: int | None) -> None:
    app = make_app(tmp_path)

    @app.get("/private")
    def private() -> str:
        abort(403)

    @app.get("/gone-away")
    def gone_away() -> Any:
        return redirect("/gone")

    @app.get("/gone")
    def gone() -> str:
        abort(410)

    result, data = run_json(app, "--path", path)
    if status is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1
    assert failures(data) == {("status", f"HTTP {status}", path)}
    text = run(app, "--path", path).output
    assert f"FAIL HTTP {status} — GET " in text and f"answered {status}" in text


def test_a_discovered_route_that_answers_404_is_no_failure(tmp_path: Path) -> None:
    app = make_app(tmp_path)

    @app.get("/drafts")
    def drafts() -> str:
        abort(404)  # nothing published yet

    result = run(app)
    assert result.exit_code == 0, result.output


# -- the sitemap and the routes with parameters ------------------------------------------


def sitemap_app(tmp_path: Path, xml: str | bytes, **config: Any) -> Flask:
    app = make_app(tmp_path, **config)

    @app.get("/items/<int:item>")
    def item(item: int) -> str:
        if item == 404:
            abort(404)
        extra = '<img src="https://cdn.items.example/i.png">' if item == 2 else ""
        return page(f"<p>item {item}</p>{extra}")

    @app.get("/tags/<name>")
    def tag(name: str) -> str:
        return page(f"<p>{name}</p>")

    @app.get("/users/<int:uid>/posts/<slug>")
    def post(uid: int, slug: str) -> str:
        return page("<p>post</p>")

    @app.get("/feed", defaults={"number": 1})
    @app.get("/feed/<int:number>")
    def feed(number: int) -> str:
        return page(f"<p>feed {number}</p>")

    @app.post("/items/<int:item>/vote")
    def vote(item: int) -> str:
        return ""

    @app.get("/sitemap.xml")
    def sitemap() -> Response:
        return Response(xml, mimetype="application/xml")

    return app


def urlset(*locs: str) -> str:
    entries = "".join(f"<url><loc>{loc}</loc><lastmod>2026-01-01</lastmod></url>" for loc in locs)
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>')


SITEMAP = urlset(*(f"http://localhost/items/{i}" for i in range(1, 6)),
                 "https://other-site.example/items/9", "http://localhost/", "http://localhost/feed/2")


def test_the_sitemap_samples_the_routes_with_parameters(tmp_path: Path) -> None:
    app = sitemap_app(tmp_path, SITEMAP)
    result, data = run_json(app, "--max-per-route", "2")
    assert data["sitemap"] == {"read": ["/sitemap.xml"], "urls": 7,
                               "sampled": ["/items/1", "/items/2", "/feed/2"], "other_sites": 1,
                               "problems": []}
    assert {"/items/1", "/items/2", "/feed/2"} <= set(data["paths"])
    assert "/items/3" not in data["paths"]
    # the sampled pages are scanned like any other
    assert [(f["name"], f["path"], f["status"]) for f in data["findings"]
            if f["kind"] == "host"] == [("cdn.items.example", "/items/2", "undeclared")]
    assert data["unvisited"] == [
        {"rule": "/tags/<name>", "endpoint": "tag"},
        {"rule": "/users/<int:uid>/posts/<slug>", "endpoint": "post"},
    ]
    assert result.exit_code == 1  # the host of /items/2; the unvisited routes are information

    text = run(app).output
    assert ("Not visited (routes with parameters that no --path and no sitemap URL matched; "
            "pass --path or list them in /sitemap.xml):\n  /tags/<name> (tag)\n"
            "  /users/<int:uid>/posts/<slug> (post)\n") in text
    assert "on /items/2" in text


def test_the_default_is_three_per_route_counting_the_paths_given(tmp_path: Path) -> None:
    app = sitemap_app(tmp_path, SITEMAP)
    _result, data = run_json(app)
    assert data["sitemap"]["sampled"] == ["/items/1", "/items/2", "/items/3", "/feed/2"]
    _result, data = run_json(app, "--path", "/items/9", "--path", "/tags/x")
    assert data["sitemap"]["sampled"] == ["/items/1", "/items/2", "/feed/2"]
    assert data["unvisited"] == [{"rule": "/users/<int:uid>/posts/<slug>", "endpoint": "post"}]
    _result, data = run_json(app, "--max-per-route", "0")
    assert data["sitemap"]["read"] == [] and data["sitemap"]["sampled"] == []
    assert {r["rule"] for r in data["unvisited"]} == {
        "/items/<int:item>", "/feed/<int:number>", "/tags/<name>",
        "/users/<int:uid>/posts/<slug>"}


def test_a_sitemap_index_and_robots_txt(tmp_path: Path) -> None:
    index = ('<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/'
             'sitemap/0.9"><sitemap><loc>http://localhost/maps/items.xml.gz</loc></sitemap>'
             "<sitemap><loc>https://cdn.other.example/map.xml</loc></sitemap></sitemapindex>")
    app = sitemap_app(tmp_path, index)

    @app.get("/maps/items.xml.gz")
    def items_map() -> Response:
        return Response(gzip.compress(urlset("http://localhost/items/4").encode()),
                        mimetype="application/gzip")

    @app.get("/robots.txt")
    def robots() -> Response:
        return Response("User-agent: *\nAllow: /\nSitemap: http://localhost/maps/tags.xml\n"
                        "Sitemap: https://elsewhere.example/sitemap.xml\n", mimetype="text/plain")

    @app.get("/maps/tags.xml")
    def tags_map() -> Response:
        return Response(urlset("/tags/news", "http://localhost/users/1/posts/hello"),
                        mimetype="text/xml")

    _result, data = run_json(app)
    assert data["sitemap"]["read"] == ["/sitemap.xml", "/maps/tags.xml", "/maps/items.xml.gz"]
    assert data["sitemap"]["sampled"] == ["/tags/news", "/users/1/posts/hello", "/items/4"]
    assert data["unvisited"] == [{"rule": "/feed/<int:number>", "endpoint": "feed"}]


def test_a_sitemap_url_that_answers_404_fails(tmp_path: Path) -> None:
    app = sitemap_app(tmp_path, urlset("http://localhost/items/404", "http://localhost/tags/a"))
    result, data = run_json(app)
    assert result.exit_code == 1
    assert failures(data) == {("status", "HTTP 404", "/items/404")}


def test_a_broken_sitemap_is_a_note(tmp_path: Path) -> None:
    app = sitemap_app(tmp_path, "<urlset><url><loc>http://localhost/items/1</loc>")
    result, data = run_json(app)
    assert result.exit_code == 0, result.output
    assert data["sitemap"]["problems"][0].startswith("/sitemap.xml is not a sitemap:")
    assert data["notes"] == [f"sitemap: {data['sitemap']['problems'][0]}"]
    assert {r["endpoint"] for r in data["unvisited"]} == {"item", "tag", "post", "feed"}


# -- what the browsers were stopped from reaching ----------------------------------------


@pytest.mark.parametrize("ledger", [False, True])
def test_blocked_by_browsers_is_shown_as_information(tmp_path: Path, ledger: bool) -> None:
    config = {"CONSENTKIT_LEDGER_URL": f"sqlite:///{tmp_path}/ledger.db"} if ledger else {}
    app = make_app(tmp_path, **config)
    client = app.test_client()
    for _ in range(3):
        response = client.post("/consent/csp-report", content_type="application/csp-report",
                               data=json.dumps({"csp-report": {
                                   "document-uri": "http://localhost/story?x=1",
                                   "blocked-uri": "https://px.blocked.example/p.gif",
                                   "effective-directive": "img-src"}}))
        assert response.status_code == 204
    result, data = run_json(app)
    assert result.exit_code == 0, result.output
    (row,) = data["blocked_by_browsers"]
    assert (row["host"], row["directive"], row["path"], row["count"]) == (
        "px.blocked.example", "img-src", "/story", 3)
    assert row["first_seen"] <= row["last_seen"]
    text = run(app).output
    assert "Blocked by visitors' browsers (the policy's violation reports):\n" \
        "  px.blocked.example (img-src) on /story: 3× between " in text
    assert text.splitlines()[-1].startswith("OK:")


def test_json_document(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    result, data = run_json(app)
    assert result.exit_code == 0
    assert set(data) == {"ok", "paths", "csp", "leaks", "failures", "findings", "unvisited",
                         "sitemap", "blocked_by_browsers", "notes"}
    assert data["ok"] is True and data["csp"] == "enforce"
    assert data["paths"] == ["/", "/api", "/consent/"]
    assert data["blocked_by_browsers"] == [] and data["unvisited"] == []
    assert data["sitemap"] == {"read": [], "urls": 0, "sampled": [], "other_sites": 0,
                               "problems": []}
