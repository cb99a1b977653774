"""``flask consent scan``: the third-party hosts of a page, and how each is classified.

Most pages here are streamed without ``gated_stream()``, which the server's
rewrite leaves as they are: the scan then sees the elements as the view wrote
them. ``rewrite=True`` serves them plainly, and the scan sees what the rewrite
made of them. Catalogue keys relied on: ``google-fonts``, ``hotjar``; the
tests with a catalogue of their own build it with ``parse_catalogue``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask, Response

from flask_consentkit.cli import cli
from flask_consentkit.cli.scan import Reference, _Seen, classify_hosts
from flask_consentkit.urls import Target
from flask_consentkit.vendors import VendorRegistry, parse_catalogue
from tests.conftest import make_app

FONTS = "fonts.googleapis.com"


def page(body: str, head: str = "") -> str:
    # a streamed page gets no banner put in: it links to the cookie settings itself
    return (f"<!doctype html><html><head><title>t</title>{head}</head>"
            f'<body>{body}<a href="/consent/">Cookie settings</a></body></html>')


def serve(html: str, rewrite: bool) -> Response:
    if rewrite:
        return Response(html, mimetype="text/html")
    return Response(iter([html]), mimetype="text/html")  # streamed: left as it is


def app_with(tmp_path: Path, body: str, head: str = "", rewrite: bool = False,
             **config: Any) -> Flask:
    app = make_app(tmp_path, **config)

    @app.get("/p")
    def p() -> Response:
        return serve(page(body, head), rewrite)

    return app


def scan_json(app: Flask, *args: str) -> tuple[Result, dict[str, Any]]:
    result = app.test_cli_runner().invoke(cli, ["scan", "--format", "json", *args])
    return result, json.loads(result.stdout)


def hosts(data: dict[str, Any], path: str = "/p") -> dict[str, dict[str, Any]]:
    found = [f for f in data["findings"] if f["kind"] == "host" and f["path"] == path]
    assert len({f["name"] for f in found if not f["gpc"]}) == len(
        [f for f in found if not f["gpc"]]), "one finding per host per page"
    return {f["name"]: f for f in found if not f["gpc"]}


HOTJAR_IMG = '<img src="https://static.hotjar.com/c/pixel.gif" alt="">'
UNKNOWN_IMG = '<img src="https://cdn.unknown-vendor.example/a.png" alt="">'
PAYMENTS = {"name": "Payments", "category": "necessary", "hosts": ["js.payments.example"]}


@pytest.mark.parametrize("csp, services, body, host, status, vendor, category", [
    # enforced: the browser is stopped, so what matters is whether the app named it
    ("enforce", [], HOTJAR_IMG, "static.hotjar.com", "undeclared", "hotjar", "analytics"),
    ("report-only", [], UNKNOWN_IMG, "cdn.unknown-vendor.example", "leak", None, None),
    ("enforce", ["hotjar"], HOTJAR_IMG, "static.hotjar.com", "ok", "hotjar", "analytics"),
    ("enforce", [], UNKNOWN_IMG, "cdn.unknown-vendor.example", "undeclared", None, None),
    # no policy, or one that only reports: an active element reaches it
    (False, ["hotjar"], HOTJAR_IMG, "static.hotjar.com", "leak", "hotjar", "analytics"),
    ("report-only", ["hotjar"], HOTJAR_IMG, "static.hotjar.com", "leak", "hotjar",
     "analytics"),
    (False, [], HOTJAR_IMG, "static.hotjar.com", "leak", "hotjar", "analytics"),
    (False, [], UNKNOWN_IMG, "cdn.unknown-vendor.example", "leak", None, None),
    # what waits for consent reaches nothing, whatever the policy
    (False, ["hotjar"], '<img data-consent="analytics" '
     'data-consent-src="https://static.hotjar.com/c/pixel.gif">', "static.hotjar.com", "ok",
     "hotjar", "analytics"),
    # a service the app declares necessary is reached by everyone, and that is fine
    ("enforce", [PAYMENTS], '<script src="https://js.payments.example/v3"></script>',
     "js.payments.example", "ok", "payments", "necessary"),
    (False, [PAYMENTS], '<script src="https://js.payments.example/v3"></script>',
     "js.payments.example", "ok", "payments", "necessary"),
])
def test_classification(tmp_path: Path, csp: Any, services: list[Any], body: str, host: str,
                        status: str, vendor: str | None, category: str | None) -> None:
    app = app_with(tmp_path, body, CONSENTKIT_CSP=csp, CONSENTKIT_SERVICES=services)
    result, data = scan_json(app)
    found = hosts(data)
    assert set(found) == {host}
    f = found[host]
    assert (f["status"], f["vendor"], f["category"], f["leak"]) == (
        status, vendor, category, status == "leak")
    assert result.exit_code == (0 if status == "ok" else 1), result.output
    assert data["csp"] == (csp or "off")


@pytest.mark.parametrize("csp", [False, "report-only", "enforce"])
def test_what_the_servers_rewrite_gates_is_no_leak(tmp_path: Path, csp: Any) -> None:
    """Served plainly, the rewrite keeps these from the browser until consent."""
    app = app_with(tmp_path, HOTJAR_IMG + UNKNOWN_IMG, rewrite=True, CONSENTKIT_CSP=csp,
                   CONSENTKIT_SERVICES=["hotjar"])
    result, data = scan_json(app)
    found = hosts(data)
    assert {h: (f["status"], f["leak"], f["elements"]) for h, f in found.items()} == {
        "static.hotjar.com": ("ok", False, ["<img src> (gated)"]),
        "cdn.unknown-vendor.example": ("undeclared", False, ["<img src> (gated)"]),
    }
    assert result.exit_code == 1  # the undeclared host


def test_the_messages_say_what_to_do(tmp_path: Path) -> None:
    app = app_with(tmp_path, HOTJAR_IMG + UNKNOWN_IMG)
    result = app.test_cli_runner().invoke(cli, ["scan"])
    out = result.output
    assert result.exit_code == 1
    assert ("UNDECLARED static.hotjar.com [analytics] — catalogue: Hotjar, not declared: add "
            '"hotjar" to CONSENTKIT_SERVICES so that the preferences page names it (the browser '
            "policy allows it once analytics is granted)") in out
    assert ("UNDECLARED cdn.unknown-vendor.example — unknown host: in neither "
            "CONSENTKIT_SERVICES nor the catalogue: the browser policy allows it for nobody, so "
            "it cannot work even after consent; declare it: CONSENTKIT_SERVICES = [..., "
            '{"name": "...", "category": "...", "hosts": ["cdn.unknown-vendor.example"]}]') in out
    assert "2 undeclared host(s): cdn.unknown-vendor.example, static.hotjar.com" \
        in out.splitlines()[-1]

    app = app_with(tmp_path, HOTJAR_IMG, CONSENTKIT_CSP=False, CONSENTKIT_SERVICES=["hotjar"])
    out = app.test_cli_runner().invoke(cli, ["scan"]).output
    assert ("LEAK static.hotjar.com [analytics] — declared: Hotjar: the page has no browser "
            "policy (CONSENTKIT_CSP = False) and its <img src> is active: the browser fetches it "
            "before consent; output it only when current_consent.allows('analytics') or set "
            'CONSENTKIT_CSP = "enforce"') in out
    assert "1 leak(s) before consent: static.hotjar.com" in out.splitlines()[-1]


@pytest.mark.parametrize("csp, status", [("enforce", "undeclared"), (False, "leak")])
def test_an_app_that_blocks_the_vendors_it_did_not_declare(tmp_path: Path, csp: Any,
                                                           status: str) -> None:
    app = app_with(tmp_path, HOTJAR_IMG, CONSENTKIT_CSP=csp,
                   CONSENTKIT_UNDECLARED_VENDORS="blocked")
    result, data = scan_json(app)
    f = hosts(data)["static.hotjar.com"]
    assert (f["status"], f["vendor"], f["category"]) == (status, "hotjar", "analytics")
    assert f["source"] == "catalogue: Hotjar, not declared"
    assert ('this app allows only the vendors it declares (CONSENTKIT_UNDECLARED_VENDORS = '
            '"blocked"), so no visitor\'s browser may reach it, even after consent; add "hotjar" '
            "to CONSENTKIT_SERVICES") in f["detail"]
    assert result.exit_code == 1


def test_a_catalogue_of_its_own(tmp_path: Path) -> None:
    """Classification follows the app's registry, whatever the shipped catalogue holds."""
    app = app_with(tmp_path, '<img src="https://px.tracker-one.example/p.gif">'
                   '<img src="https://cdn.widgets-two.example/w.png">'
                   '<img src="https://api.nobody.example/x">', CONSENTKIT_CSP=False,
                   CONSENTKIT_SERVICES=[{"name": "Widgets", "category": "functional",
                                         "hosts": ["*.widgets-two.example"]}])
    catalogue = parse_catalogue([("test.json", {"vendors": [
        {"key": "tracker-one", "name": "Tracker One", "category": "marketing",
         "hosts": ["*.tracker-one.example"]},
    ]})])
    ext = app.extensions["consentkit"]
    ext.vendors = VendorRegistry(ext.settings.category_keys, ext.settings.services,
                                             catalogue)
    _result, data = scan_json(app)
    found = hosts(data)
    assert {h: (f["status"], f["vendor"], f["category"]) for h, f in found.items()} == {
        "px.tracker-one.example": ("leak", "tracker-one", "marketing"),
        "cdn.widgets-two.example": ("leak", "widgets", "functional"),
        "api.nobody.example": ("leak", None, None),
    }
    assert "catalogue: Tracker One, not declared" in found["px.tracker-one.example"]["source"]
    assert found["cdn.widgets-two.example"]["source"] == "declared: Widgets"


def _registry(tmp_path: Path, services: list[Any]) -> VendorRegistry:
    app = make_app(tmp_path, CONSENTKIT_SERVICES=services)
    registry: VendorRegistry = app.extensions["consentkit"].vendors
    return registry


def test_a_connection_no_policy_stops_leaks_even_when_enforced(tmp_path: Path) -> None:
    registry = _registry(tmp_path, ["google-fonts"])
    target = Target("fonts.gstatic.com", "/")
    preconnect = Reference("https://fonts.gstatic.com", "<link rel=preconnect>", True,
                           connect=True)
    stylesheet = Reference("https://fonts.gstatic.com/s.css", "<link rel=stylesheet>", True)
    for ref, status in ((preconnect, "leak"), (stylesheet, "ok")):
        (verdict,) = classify_hosts([_Seen(ref, target, ref.url)], registry, "enforce", (), ())
        assert (verdict["status"], verdict["vendor"]) == (status, "google-fonts")
    (verdict,) = classify_hosts([_Seen(preconnect, target, preconnect.url)], registry,
                                "enforce", (), ())
    assert "opens a connection before consent, which no policy stops" in verdict["detail"]


def test_the_worst_reference_decides(tmp_path: Path) -> None:
    registry = _registry(tmp_path, ["google-fonts"])
    target = Target(FONTS, "/css2")
    gated = Reference(f"https://{FONTS}/css2", "<link rel=stylesheet> (gated)", False)
    active = Reference(f"https://{FONTS}/css2", "<link rel=stylesheet>", True)
    seen = [_Seen(gated, target, gated.url), _Seen(active, target, active.url)]
    (verdict,) = classify_hosts(seen, registry, "off", (), ())
    assert verdict["status"] == "leak"
    assert verdict["elements"] == ("<link rel=stylesheet> (gated)", "<link rel=stylesheet>")
    (verdict,) = classify_hosts(seen[:1], registry, "off", (), ())
    assert verdict["status"] == "ok"


# -- every kind of element, as the browser spells it ------------------------------------

SPELLINGS = [
    f"https://{FONTS}/css2",
    "https://fonts&#46;googleapis&#46;com/css2",  # character references: HTML's, not the URL's
    "https://fonts&period;googleapis&period;com/css2",
    "https://fonts%2Egoogleapis%2Ecom/css2",  # percent-encoded host
    "https:\\\\fonts.googleapis.com\\css2",  # backslashes are slashes in http(s) URLs
    "https://fonts.google&#9;apis.com/css2",  # a tab is removed anywhere
    "https://fonts.google\tapis.com/css2",
    "https://fonts.googleapis.com:443/css2",  # the default port
    "https://fonts.googleapis.com./css2",  # a trailing dot
    "HTTPS://FONTS.GoogleAPIs.COM/css2",
    "//fonts.googleapis.com/css2",  # scheme-relative
    "  https://fonts.googleapis.com/css2\n",
]


@pytest.mark.parametrize("rewrite", [False, True])
@pytest.mark.parametrize("url", SPELLINGS)
def test_browser_spellings_of_a_host(tmp_path: Path, url: str, rewrite: bool) -> None:
    app = app_with(tmp_path, f'<img src="{url}" alt="">', rewrite=rewrite, CONSENTKIT_CSP=False,
                   CONSENTKIT_SERVICES=["google-fonts"])
    result, data = scan_json(app)
    found = hosts(data)
    assert list(found) == [FONTS], found
    assert found[FONTS]["vendor"] == "google-fonts"
    if rewrite:  # the server reads it as the browser does, and gates it
        assert found[FONTS]["status"] == "ok" and found[FONTS]["elements"] == [
            "<img src> (gated)"]
        assert result.exit_code == 0, result.output
    else:
        assert found[FONTS]["status"] == "leak" and found[FONTS]["elements"] == ["<img src>"]
        assert result.exit_code == 1


@pytest.mark.parametrize("url", ["/css2", "data:image/png;base64,AAAA", "blob:x",
                                 "javascript:void(0)", "about:blank", "http://localhost/x",
                                 "https://localhost:8443/x", "#top", ""])
def test_the_pages_own_urls_are_no_host(tmp_path: Path, url: str) -> None:
    app = app_with(tmp_path, f'<img src="{url}" alt="">', CONSENTKIT_CSP=False)
    result, data = scan_json(app)
    assert hosts(data) == {}
    assert result.exit_code == 0, result.output


F = f"https://{FONTS}"


@pytest.mark.parametrize("body, head, element", [
    (f'<script src="{F}/a.js"></script>', "", "<script src>"),
    (f'<script type="module" src="{F}/a.js"></script>', "", "<script src>"),
    (f'<iframe src="{F}/frame" title="f"></iframe>', "", "<iframe src>"),
    (f'<img src="{F}/a.png">', "", "<img src>"),
    (f'<img src="/own.png" srcset="/own2.png 2x, {F}/b.png 3x">', "", "<img srcset>"),
    (f'<picture><source srcset="{F}/c.webp 1x" type="image/webp"><img src="/x.png"></picture>',
     "", "<source srcset>"),
    (f'<video src="/v.mp4" poster="{F}/p.jpg"></video>', "", "<video poster>"),
    (f'<audio><source src="{F}/a.mp3"></audio>', "", "<source src>"),
    ("", f'<link rel="stylesheet" href="{F}/css2?family=Lora">', "<link rel=stylesheet>"),
    ("", f'<link rel="icon" href="{F}/favicon.ico">', "<link rel=icon>"),
    ("", f'<link rel="preload" as="font" href="{F}/f.woff2" crossorigin>',
     "<link rel=preload>"),
    ("", f'<style>@import url("{F}/css2?family=Lora");</style>', "<style> @import"),
    ("", f"<style>@import '{F}/css2';</style>", "<style> @import"),
    ("", f"<style>body {{ background: url({F}/bg.png) }}</style>", "<style> url()"),
    ("", f'<style>.x {{ background-image: image-set("{F}/a.png" 1x) }}</style>',
     "<style> image-set()"),
    (f"<div style=\"background-image: url('{F}/bg.png')\">x</div>", "", 'style="" url()'),
    (f'<object data="{F}/o.svg" type="image/svg+xml"></object>', "", "<object data>"),
    (f'<embed src="{F}/e.svg">', "", "<embed src>"),
    (f'<svg><image href="{F}/i.png" width="1" height="1"/></svg>', "", "<svg image>"),
    (f'<svg><image xlink:href="{F}/i.png"/></svg>', "", "<svg image>"),
    (f'<svg><script href="{F}/s.js"></script></svg>', "", "<svg script>"),
    (f"<script>var s = document.createElement('script'); s.src = '{F}/a.js';</script>", "",
     "inline <script>"),
    ("<script>s.src = 'https://' + 'fonts.googleapis.com/css2?family=' + family;</script>", "",
     "inline <script>"),
    ('<script>load("//fonts.googleapis" + ".com/css2");</script>', "", "inline <script>"),
    ("<script>u = `https://fonts.googleapis.com/css2?f=${f}`;</script>", "", "inline <script>"),
    (f"<noscript><img src=\"{F}/n.gif\"></noscript>", "", "<img src> in <noscript>"),
    (f'<table background="{F}/t.png"><tr><td>x</td></tr></table>', "", "<table background>"),
    (f'<input type="image" src="{F}/b.png" alt="go">', "", "<input type=image src>"),
    (f'<svg><use href="{F}/sprite.svg#i"/></svg>', "", "<svg use>"),
    (f'<iframe srcdoc="&lt;img src=&quot;{F}/x.png&quot;&gt;" title="d"></iframe>', "",
     "<iframe srcdoc> <img src>"),
])
def test_every_kind_of_element(tmp_path: Path, body: str, head: str, element: str) -> None:
    app = app_with(tmp_path, body, head, CONSENTKIT_CSP=False,
                   CONSENTKIT_SERVICES=["google-fonts"])
    _result, data = scan_json(app)
    found = hosts(data)
    assert list(found) == [FONTS], data["findings"]
    assert found[FONTS]["elements"] == [element]
    assert found[FONTS]["status"] == "leak"

    # served plainly: whatever the rewrite made of it, the host is still seen — set aside
    # until consent ("(gated)"), or left as it was and then a leak
    app = app_with(tmp_path, body, head, rewrite=True, CONSENTKIT_CSP=False,
                   CONSENTKIT_SERVICES=["google-fonts"])
    _result, data = scan_json(app)
    found = hosts(data)
    assert list(found) == [FONTS], data["findings"]
    (label,) = found[FONTS]["elements"]
    assert (found[FONTS]["status"], label) in (("ok", f"{element} (gated)"), ("leak", element))
    assert found[FONTS]["url"].startswith(("https://fonts.googleapis.com/",
                                           "http://fonts.googleapis.com/"))  # absolute


@pytest.mark.parametrize("body", [
    f'<a href="{F}/">a link is not fetched</a>',
    f'<form action="{F}/"><button>go</button></form>',
    f'<link rel="canonical" href="{F}/">',
    f'<script type="application/ld+json">{{"url": "{F}/"}}</script>',
    f'<script type="application/json">["{F}/a.js"]</script>',
    f'<textarea>&lt;img src="{F}/a.png"&gt; <img src="{F}/b.png"></textarea>',
    f'<!-- <img src="{F}/c.png"> -->',
    f"<script>// s.src = '{F}/a.js'\n</script>",
    "<script>s.src = 'https://fonts.' + tld + '/css2';</script>",  # the host is not known
    f'<svg xmlns="http://www.w3.org/2000/svg"><a href="{F}/">x</a></svg>',
])
def test_what_fetches_nothing(tmp_path: Path, body: str) -> None:
    app = app_with(tmp_path, body, CONSENTKIT_CSP=False)
    result, data = scan_json(app)
    assert hosts(data) == {}
    assert result.exit_code == 0, result.output


def test_base_href_decides_where_relative_urls_go(tmp_path: Path) -> None:
    app = app_with(tmp_path, '<img src="/before.png"><base href="https://fonts.googleapis.com/">'
                   '<img src="after.png">', CONSENTKIT_CSP=False,
                   CONSENTKIT_SERVICES=["google-fonts"])
    _result, data = scan_json(app)
    assert hosts(data)[FONTS]["url"] == "https://fonts.googleapis.com/after.png"


def test_the_apps_own_stylesheets_are_read(tmp_path: Path) -> None:
    app = app_with(tmp_path, "", '<link rel="stylesheet" href="/site.css">',
                   CONSENTKIT_CSP=False, CONSENTKIT_SERVICES=["google-fonts"])

    @app.get("/site.css")
    def site_css() -> Response:
        return Response('@import url("/parts.css"); body { background: url(/bg.png) }',
                        mimetype="text/css")

    @app.get("/parts.css")
    def parts_css() -> Response:
        return Response('@import url("https://fonts.googleapis.com/css2?family=Lora");',
                        mimetype="text/css")

    _result, data = scan_json(app)
    found = hosts(data)
    assert list(found) == [FONTS]
    assert found[FONTS]["elements"] == [
        "<link rel=stylesheet> → /site.css @import → /parts.css @import"]


def test_link_headers(tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_CSP=False, CONSENTKIT_SERVICES=["google-fonts"])

    @app.get("/p")
    def p() -> Response:
        response = serve(page("<p>x</p>"), rewrite=False)
        response.headers["Link"] = (f'<{F}/css2>; rel="preload"; as="style", '
                                    '</own.css>; rel=preload; as=style')
        return response

    _result, data = scan_json(app)
    assert hosts(data)[FONTS]["elements"] == ["Link: rel=preload"]


def test_one_finding_per_host_per_page(tmp_path: Path) -> None:
    app = app_with(tmp_path, f'<img src="{F}/a.png"><img src="{F}/b.png" srcset="{F}/c.png">'
                   f'<script src="{F}/d.js"></script>', CONSENTKIT_CSP=False,
                   CONSENTKIT_SERVICES=["google-fonts"])

    @app.get("/q")
    def q() -> Response:
        return serve(page(f'<img src="{F}/a.png">'), rewrite=False)

    _result, data = scan_json(app)
    fonts = [(f["path"], f["gpc"]) for f in data["findings"] if f["name"] == FONTS]
    # the visitor with GPC got the same: said once, for the plain visit
    assert sorted(fonts) == [("/p", False), ("/q", False)]
    assert hosts(data)[FONTS]["elements"] == ["<img src>", "<img srcset>", "<script src>"]


def test_a_page_that_differs_with_gpc(tmp_path: Path) -> None:
    app = make_app(tmp_path, CONSENTKIT_CSP=False)

    @app.get("/p")
    def p() -> Response:
        from flask import request

        extra = '<img src="https://ads.gpc-only.example/x">' \
            if request.headers.get("Sec-GPC") else ""
        return serve(page(f"<p>x</p>{extra}"), rewrite=False)

    _result, data = scan_json(app)
    found = [(f["path"], f["gpc"]) for f in data["findings"]
             if f["name"] == "ads.gpc-only.example"]
    assert found == [("/p", True)]


def test_host_finding_json_shape(tmp_path: Path) -> None:
    app = app_with(tmp_path, HOTJAR_IMG)
    _result, data = scan_json(app)
    f = hosts(data)["static.hotjar.com"]
    assert f == {
        "kind": "host", "name": "static.hotjar.com", "path": "/p", "gpc": False,
        "category": "analytics", "source": "catalogue: Hotjar, not declared",
        "leak": False,
        "detail": 'add "hotjar" to CONSENTKIT_SERVICES so that the preferences page names it '
                  "(the browser policy allows it once analytics is granted)",
        "status": "undeclared", "vendor": "hotjar", "elements": ["<img src>"],
        "url": "https://static.hotjar.com/c/pixel.gif",
    }
