"""The scanner's data: the known-cookie table, and reading a page as a browser reads it."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from flask_consentkit.cli.scan import (
    _deleting,
    css_urls,
    decode_attribute,
    lookup_known,
    read_page,
    script_urls,
    srcset_urls,
)

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "flask_consentkit" / "cli" / "known_cookies.json"


def _derive_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "derive_cookie_table", ROOT / "scripts" / "derive_cookie_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_table_is_derived_from_the_database(testdata: Path) -> None:
    derive = _derive_module()
    with (testdata / "open-cookie-database.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    table, conflicts = derive.derive(rows)
    assert derive.dump(table) == TABLE.read_text(encoding="utf-8")
    assert conflicts == [
        "chk: functional vs marketing -> marketing",
        "dc: functional vs marketing -> marketing",
        "euconsent: functional vs marketing -> marketing",
        "token: functional vs marketing -> marketing",
    ]
    # facts only: none of the database's prose ships
    text = TABLE.read_text(encoding="utf-8")
    for row in rows[:200]:
        if len(row["Description"]) > 30:
            assert row["Description"] not in text
        if row["Retention period"] not in ("", "session") and len(row["Retention period"]) > 8:
            assert row["Retention period"] not in text
    data = json.loads(text)
    assert "Apache-2.0" in data["source"]["license"]
    assert (TABLE.with_suffix(".LICENSE")).read_text().lstrip().startswith("Apache License")


@pytest.mark.parametrize("name, platform, category, prefix", [
    ("_ga", "Google Analytics", "analytics", False),
    ("_ga_ABC123", "Google Analytics", "analytics", True),
    ("_fbp", "Facebook", "marketing", False),
    ("token", "Adform / Xandr", "marketing", False),  # a resolved conflict
    ("XSRF-TOKEN", None, "security", False),
    ("ce_need_secure_cookie", None, None, False),  # trimmed in the table
])
def test_lookup_known(name: str, platform: str | None, category: str | None,
                      prefix: bool) -> None:
    entry = lookup_known(name)
    assert entry is not None
    if platform is not None:
        assert entry.platform == platform
    if category is not None:
        assert entry.category == category
    assert entry.prefix is prefix


def test_unknown_cookie() -> None:
    assert lookup_known("zz_visitor") is None


def refs(doc: str) -> list[tuple[str, str, bool]]:
    return [(r.url, r.element, r.active) for r in read_page(doc).refs]


def test_references_on_a_page() -> None:
    doc = """<!doctype html><html><head>
    <link rel="preconnect" href="https://fonts.gstatic.com">
    <link rel="canonical" href="https://storyforge.example/">
    <link rel="stylesheet" href="https://fonts.googleapis.com/css2?family=Lora">
    <link rel="preload" as="image" href="/hero.jpg" imagesrcset="https://img.example/h.jpg 2x">
    <script async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>
    <script type="text/plain" data-consent="analytics"
            src="https://static.hotjar.com/c/hotjar-1.js"></script>
    <script type="application/ld+json">{"@context": "https://schema.org"}</script>
    <script type="importmap">{"imports": {"vue": "https://unpkg.com/vue@3/dist/vue.js"}}</script>
    </head><body>
    <iframe src="https://www.youtube.com/embed/abc"></iframe>
    <iframe src="about:blank"></iframe>
    <iframe data-consent="marketing" data-consent-src="https://player.vimeo.com/video/1"></iframe>
    <img src="/static/cover.jpg"
         srcset="https://cdn.example/a.jpg 1x, https://cdn2.example/b.jpg 2x">
    <picture><source srcset="https://cdn3.example/c.webp" type="image/webp"></picture>
    <video poster="https://poster.example/p.jpg"><source src="https://media.example/v.mp4">
    <track src="https://subs.example/en.vtt"></video>
    <object data="https://obj.example/o.svg"></object><embed src="https://embed.example/e">
    <input type="image" src="https://button.example/b.png"><input type="text" src="https://no.example/">
    <svg><image href="https://svg.example/i.png"/><use xlink:href="https://sprite.example/s.svg#a"/>
    <script href="https://svgscript.example/s.js"></script></svg>
    <div style="background: url('https://style.example/bg.png')"></div>
    <table background="https://table.example/t.png"></table>
    <noscript><img src="https://www.facebook.com/tr?id=1&amp;ev=PageView"></noscript>
    <a href="https://elsewhere.example/">a link is not fetched</a>
    <form action="https://form.example/"></form>
    </body></html>"""
    assert refs(doc) == [
        ("https://fonts.gstatic.com", "<link rel=preconnect>", True),
        ("https://fonts.googleapis.com/css2?family=Lora", "<link rel=stylesheet>", True),
        ("/hero.jpg", "<link rel=preload>", True),
        ("https://img.example/h.jpg", "<link rel=preload> imagesrcset", True),
        ("https://www.googletagmanager.com/gtag/js?id=G-1", "<script src>", True),
        ("https://static.hotjar.com/c/hotjar-1.js", "<script src> (gated)", False),
        ("https://unpkg.com/vue@3/dist/vue.js", '<script type="importmap">', True),
        ("https://www.youtube.com/embed/abc", "<iframe src>", True),
        ("https://player.vimeo.com/video/1", "<iframe src> (gated)", False),
        ("/static/cover.jpg", "<img src>", True),
        ("https://cdn.example/a.jpg", "<img srcset>", True),
        ("https://cdn2.example/b.jpg", "<img srcset>", True),
        ("https://cdn3.example/c.webp", "<source srcset>", True),
        ("https://poster.example/p.jpg", "<video poster>", True),
        ("https://media.example/v.mp4", "<source src>", True),
        ("https://subs.example/en.vtt", "<track src>", True),
        ("https://obj.example/o.svg", "<object data>", True),
        ("https://embed.example/e", "<embed src>", True),
        ("https://button.example/b.png", "<input type=image src>", True),
        ("https://svg.example/i.png", "<svg image>", True),
        ("https://sprite.example/s.svg#a", "<svg use>", True),
        ("https://svgscript.example/s.js", "<svg script>", True),
        ("https://style.example/bg.png", 'style="" url()', True),
        ("https://table.example/t.png", "<table background>", True),
        ("https://www.facebook.com/tr?id=1&ev=PageView", "<img src> in <noscript>", True),
    ]


@pytest.mark.parametrize("doc, urls", [
    # what is not markup to a browser holds no element
    ("<!-- <img src='https://a.example/x'> -->", []),
    ("<!--> <img src='https://b.example/x'>", ["https://b.example/x"]),  # an empty comment
    ("<textarea><img src='https://c.example/x'></textarea>", []),
    ("<title><img src='https://d.example/x'></title>", []),
    ("<style>/* <img src='https://e.example/x'> */</style>", []),
    ("<iframe><img src='https://f.example/x'></iframe>", []),
    # "</script>" in a string ends the script all the same
    ("<script>var s = \"</script><img src='https://g.example/x'>\";</script>",
     ["https://g.example/x"]),
    # the escape states: after "<!--<script>" the first "</script>" does not end it
    ("<script><!--<script>\nx='</script>'; y='https://h.example/a.js'</script>-->"
     "</script><img src='https://i.example/x'>",
     ["https://h.example/a.js", "https://i.example/x"]),
    ("<script><!--\nz='https://j0.example/a.js'--></script><img src='https://j1.example/x'>",
     ["https://j0.example/a.js", "https://j1.example/x"]),
    # a ">" inside a quoted value does not end the tag; unquoted and odd attributes
    ("<img alt='a>b' src=https://j.example/x>", ["https://j.example/x"]),
    ('<img src="https://k.example/1" src="https://l.example/2">', ["https://k.example/1"]),
    ('<img =x src="https://m.example/x">', ["https://m.example/x"]),
    ('<IMG SRC="https://n.example/x">', ["https://n.example/x"]),
    ('<img src="https://o.example/x"', []),  # cut off by the end of the document
    # an iframe's srcdoc is a document of its own; so is markup a script writes
    ('<iframe srcdoc="&lt;img src=&quot;https://p.example/x&quot;&gt;"></iframe>',
     ["https://p.example/x"]),
    ("<script>document.write('<script src=\"https://q.example/a.js\"></scr'+'ipt>')</script>",
     ["https://q.example/a.js"]),
    ("<script type='text/template'><img src='https://r.example/x'></script>", []),
    # <noscript> is markup only to a browser without scripting, which runs no script
    ("<noscript><iframe src='https://t.example/ns.html'></iframe>"
     "<script src='https://u.example/a.js'></script></noscript>", ["https://t.example/ns.html"]),
    ("<script language='vbscript'>x = \"https://s.example/x\"</script>", []),
])
def test_markup_is_read_as_a_browser_reads_it(doc: str, urls: list[str]) -> None:
    assert [r.url for r in read_page(doc).refs] == urls


def test_what_the_servers_rewrite_set_aside() -> None:
    doc = """
    <img data-consent="analytics" data-consent-src="https://a.example/x"
         data-consent-srcset="https://b.example/y 2x" data-consentkit-neutralised>
    <div data-consent-style="background: url(https://c.example/z)"></div>
    <style type="text/plain" data-consent="functional">@import "https://d.example/s.css";</style>
    <style type="text/less">@import "https://e.example/not-css.css";</style>
    <svg><image data-consent-xlink-href="https://f.example/i.png"/></svg>
    <video data-consent-poster="https://g.example/p.jpg"></video>
    <object data-consent-data="https://h.example/o"></object>
    <table data-consent-background="https://i.example/t.png"></table>
    <link rel="stylesheet" data-consent-href="https://j.example/s.css">
    <script type="text/plain" data-consent="analytics">s.src = 'https://k.example/a.js'</script>
    """
    assert refs(doc) == [
        ("https://a.example/x", "<img src> (gated)", False),
        ("https://b.example/y", "<img srcset> (gated)", False),
        ("https://c.example/z", 'style="" url() (gated)', False),
        ("https://d.example/s.css", "<style> @import (gated)", False),
        ("https://f.example/i.png", "<svg image> (gated)", False),
        ("https://g.example/p.jpg", "<video poster> (gated)", False),
        ("https://h.example/o", "<object data> (gated)", False),
        ("https://i.example/t.png", "<table background> (gated)", False),
        ("https://j.example/s.css", "<link rel=stylesheet> (gated)", False),
        ("https://k.example/a.js", "inline <script> (gated)", False),
    ]


@pytest.mark.parametrize("value, decoded", [
    ("https://www&#46;googletagmanager&#x2E;com/", "https://www.googletagmanager.com/"),
    ("https://www&period;x&period;com/", "https://www.x.com/"),
    ("https://x.com/?a=1&amp;b=2", "https://x.com/?a=1&b=2"),
    ("https://x.com/?a=1&copy=2", "https://x.com/?a=1&copy=2"),  # legacy, before "="
    ("https://x.com/?a=1&copyx", "https://x.com/?a=1&copyx"),  # legacy, before a letter
    ("&copy 2026", "\u00a9 2026"),
    ("&#0;&#x110000;", "\ufffd\ufffd"),
    ("&#128;", "\u20ac"),  # the Windows-1252 table
])
def test_decode_attribute(value: str, decoded: str) -> None:
    assert decode_attribute(value) == decoded


@pytest.mark.parametrize("value, urls", [
    ("a.jpg", ["a.jpg"]),
    ("a.jpg 1x, b.jpg 2x", ["a.jpg", "b.jpg"]),
    ("a.jpg 100w,b.jpg 200w", ["a.jpg", "b.jpg"]),
    ("https://x.example/a,b.jpg 1x, https://y.example/c.jpg", ["https://x.example/a,b.jpg",
                                                              "https://y.example/c.jpg"]),
    ("a.jpg,, b.jpg,", ["a.jpg", "b.jpg"]),
    ("a.jpg (x, y) 1x, b.jpg", ["a.jpg", "b.jpg"]),
    ("  ", []),
])
def test_srcset(value: str, urls: list[str]) -> None:
    assert srcset_urls(value) == urls


def test_css_urls() -> None:
    css = r"""
    @charset "utf-8";
    @namespace svg url(http://www.w3.org/2000/svg);
    @import url("https://a.example/a.css") screen;
    @import 'https://b.example/b.css';
    @import url(https://c.example/c.css);
    /* @import "https://comment.example/x.css"; url(https://comment.example/y.png) */
    body { background: url(https://d\2e example/bg.png) no-repeat; }
    .e { background-image: url( 'https://e.example/e.png' ); }
    .f { background-image: image-set("https://f.example/1x.png" 1x,
                                       url(https://g.example/2x.png) 2x); }
    @font-face { src: url("https://h.example/h.woff2") format("woff2"), local(Lora); }
    .i { content: "url(https://not.example/x)"; background: u\72l(https://i.example/i.png); }
    .j { background: url(https://bad.example/a b); }
    """
    assert css_urls(css) == [
        ("https://a.example/a.css", "@import"),
        ("https://b.example/b.css", "@import"),
        ("https://c.example/c.css", "@import"),
        ("https://d.example/bg.png", "url()"),
        ("https://e.example/e.png", "url()"),
        ("https://f.example/1x.png", "image-set()"),
        ("https://g.example/2x.png", "url()"),
        ("https://h.example/h.woff2", "url()"),
        ("https://i.example/i.png", "url()"),
    ]


@pytest.mark.parametrize("code, urls", [
    ("s.src = 'https://www.googletagmanager.com/gtm.js?id=' + id;",
     ["https://www.googletagmanager.com/gtm.js?id="]),
    ('load("//static.hotjar.com/c/hotjar-" + h + ".js")', ["//static.hotjar.com/c/hotjar-"]),
    ("var u = 'https://' + 'www.' + 'example-cdn.com/a.js';", ["https://www.example-cdn.com/a.js"]),
    ("ga.src = ('https:' == document.location.protocol ? 'https://ssl' : 'http://www')"
     " + '.google-analytics.com/ga.js';",
     ["https://ssl.google-analytics.com/ga.js", "http://www.google-analytics.com/ga.js"]),
    ("x = 'https:\\/\\/connect.facebook.net\\/en_US\\/fbevents.js'",
     ["https://connect.facebook.net/en_US/fbevents.js"]),
    ("x = '\\x68ttps://esc\\u002eexample/a'; y = '\\u{68}ttps://esc2.example/b'",
     ["https://esc.example/a", "https://esc2.example/b"]),
    ("t = `https://tpl.example/a.js?v=${v}`", ["https://tpl.example/a.js?v="]),
    # the host goes on in a variable: not a host
    ("u = 'https://cdn.' + region + '.example.com/a.js'; w = `https://${h}/x`", []),
    ("u = 'https://' + host + '/a.js'", []),
    ("u = 'https://assets.example' + tld + '/a.js'", []),  # "assets.example.<tld>"
    # comments, regular expressions and namespace names are no fetch
    ("// 'https://comment.example/a.js'\n/* 'https://comment2.example/b.js' */", []),
    ("var re = /'https:\\/\\/regex.example'/g; var n = 'http://www.w3.org/2000/svg';", []),
    ("var a = 1 / 2, b = 'https://after-division.example/x'", ["https://after-division.example/x"]),
    ("<!-- 'https://html-comment.example/x'\nvar c = 'https://real.example/y'",
     ["https://real.example/y"]),
    ("var d = 'not a url', e = 'https://nodot', f = '/same/origin.js'", []),
])
def test_script_urls(code: str, urls: list[str]) -> None:
    assert script_urls(code)[0] == urls


@pytest.mark.parametrize("header, deleting", [
    ("a=1; Path=/", False),
    ("a=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/", True),
    ("a=1; Max-Age=0", True),
    ("a=1; Max-Age=3600", False),
    ("a=1; Expires=Thu, 01 Jan 2099 00:00:00 GMT", False),
    ("a=1; Expires=not a date", False),
])
def test_deleting(header: str, deleting: bool) -> None:
    assert _deleting(header) is deleting
