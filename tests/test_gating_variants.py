"""Each way a page can name a tracker, as Chromium reads it, is gated by the rewrite.

Every page of ``tests/pages/variants/`` marks its trackers' tags with
``data-tracker``. The rewrite must edit exactly those tags and no other byte,
and the rewritten page, read by html5lib (the HTML standard's parser) with
scripting on and off, must hold no element that fetches from a host the
visitor does not allow. The same pages are served to Chromium in
``test_browser_html_variants.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flask_consentkit.gating.html import scan

from .test_gating_hosts import HOSTS, OWN, Gate, run
from .test_gating_hosts import sites as scan_sites

VARIANTS = Path(__file__).resolve().parent / "pages" / "variants"
PAGES = sorted(p.stem for p in VARIANTS.glob("*.html"))

html5lib = pytest.importorskip(
    "html5lib", reason="html5lib is a test dependency: pip install -e '.[test]'")

XLINK = "{http://www.w3.org/1999/xlink}href"
HTML_NS = "{http://www.w3.org/1999/xhtml}"
SVG_NS = "{http://www.w3.org/2000/svg}"
FETCH_HTML = {
    "img": ("src", "srcset"), "source": ("src", "srcset"), "video": ("src", "poster"),
    "audio": ("src",), "track": ("src",), "embed": ("src",), "object": ("data",),
    "iframe": ("src",), "script": ("src",), "frame": ("src",), "base": ("href",),
    "body": ("background",), "table": ("background",), "td": ("background",),
    "th": ("background",), "tr": ("background",),
}
FETCH_SVG = {name: ("href", XLINK) for name in ("image", "script", "use", "feImage")}
RUNNABLE = {"", "module", "text/javascript", "application/javascript"}
LINK_RELS = {"preconnect", "dns-prefetch", "preload", "modulepreload", "prefetch", "prerender",
             "stylesheet", "icon", "manifest"}


def read(name: str) -> bytes:
    return (VARIANTS / f"{name}.html").read_bytes()


def fetched_urls(body: bytes, scripting: bool) -> list[tuple[str, str]]:
    """``(element, url)`` of everything the page fetches, as html5lib reads it."""
    from flask_consentkit.gating.html import css_urls, srcset_urls

    tree = html5lib.parse(body, scripting=scripting, namespaceHTMLElements=True)
    out: list[tuple[str, str]] = []
    for element in tree.iter():
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag.startswith(HTML_NS):
            name, table = tag[len(HTML_NS):], FETCH_HTML
        elif tag.startswith(SVG_NS):
            name, table = tag[len(SVG_NS):], FETCH_SVG
        else:
            name, table = tag, {}
        attrs = element.attrib
        names = table.get(name, ())
        if name == "link" and tag.startswith(HTML_NS):
            if LINK_RELS & set(attrs.get("rel", "").lower().split()):
                names = ("href", "imagesrcset")
        if name == "input" and tag.startswith(HTML_NS) and attrs.get(
                "type", "").lower() == "image":
            names = ("src",)
        if name == "script" and tag.startswith(HTML_NS) and attrs.get(
                "type", "").strip().lower() not in RUNNABLE:
            names = ()  # an inert script fetches nothing
        for attr in names:
            value = attrs.get(attr)
            if value is None:
                continue
            for url in (srcset_urls(value) if attr.endswith("srcset") else [value]):
                out.append((name, url))
        for url in css_urls(attrs.get("style", "")):
            out.append((name + "[style]", url))
        if name == "style" and "type" not in attrs:
            for url in css_urls("".join(element.itertext())):
                out.append(("style", url))
    return out


def leaks(body: bytes, *granted: str) -> list[tuple[str, str, str]]:
    """What html5lib, with scripting on or off, would still fetch from a host not allowed."""
    effective = frozenset({"necessary", *granted})
    found = []
    for scripting in (True, False):
        for element, url in fetched_urls(body, scripting):
            target = HOSTS.target(url.strip())
            if target is None or target.host == OWN:
                continue
            if not HOSTS.decide(target)[0] & effective:
                found.append(("on" if scripting else "off", element, url))
    return found


@pytest.mark.parametrize("name", PAGES)
def test_without_the_rewrite_the_page_fetches_a_tracker(name):
    if name in {"link_preconnect", "base_href"}:
        pytest.skip("a connection or a base URL, not a fetch html5lib can tell")
    assert leaks(read(name)), name


@pytest.mark.parametrize("name", PAGES)
def test_the_tracker_is_neutralised_and_every_other_byte_kept(name):
    body = read(name)
    sites = scan_sites(body.decode())
    tagged = [m.start() for m in re.finditer(rb"<[a-zA-Z][^>]*?\sdata-tracker", body)]
    # exactly the marked tags are edited, each a whole start tag (a style sheet is also
    # closed into a <template> after its end)
    sites = [s for s in sites if s.denied != b"</template>"]
    assert [s.start for s in sites] == tagged, name
    for site in sites:
        assert body[site.start:site.start + 1] == b"<" and body[site.end - 1:site.end] == b">"
        assert site.denied is not None
    out = run(body.decode()).encode()
    kept = b"".join(re.split(rb"<[a-zA-Z][^>]*?\sdata-tracker[^>]*>", body))
    rewritten_kept = re.sub(rb"<div data-ph='[^']*'></div>|<template data-consentkit-"
                            rb"neutralised>|</template>", b"",
                            b"".join(re.split(rb"<[a-zA-Z][^>]*?\sdata-tracker[^>]*>", out)))
    assert rewritten_kept == kept
    assert leaks(out) == [], name


@pytest.mark.parametrize("name", PAGES)
def test_with_its_category_granted_the_page_is_served_as_written(name):
    body = read(name)
    everything = ("analytics", "marketing", "functional", "performance")
    assert run(body.decode(), *everything).encode() == body


def test_a_style_sheet_is_made_inert_with_its_type_and_activated_by_taking_it_back():
    out = run(read("style_import").decode())
    assert ('<template data-consentkit-neutralised><style type="text/plain" data-consent='
            '"marketing" data-consentkit-neutralised data-tracker>@import') in out
    assert out.count("</template>") == 1 and "</style></template>" in out


def test_html_breakout_tags_end_foreign_content():
    # after <p>, <style> is HTML again (raw text): the <img> inside is text, left alone
    for breakout in ("<p>", "<div>", "<b>", "<font color=red>", "</p>", "</br>"):
        html = f'<svg>{breakout}<style><img src="//cdn.tracker.example/p.gif"></style></svg>'
        assert scan(html.encode(), hosts=HOSTS, own=OWN)[0] == [], breakout
    # a <font> without those attributes, and any other element, keeps it foreign
    for inside in ("<font>", "<g>", "<desc></desc>", "<foo>"):
        html = f'<svg>{inside}<style><img src="//cdn.tracker.example/p.gif"></style></svg>'
        assert len(scan(html.encode(), hosts=HOSTS, own=OWN)[0]) == 1, inside


@pytest.mark.parametrize("html", [
    '<math><mi><style><img src="//cdn.tracker.example/p.gif"></style></mi></math>',
    '<math><annotation-xml encoding="text/html"><style><img src="//cdn.tracker.example/p.gif">'
    "</style></annotation-xml></math>",
    '<svg><foreignObject><textarea><img src="//cdn.tracker.example/p.gif"></textarea>'
    "</foreignObject></svg>",
    '<svg><desc><title><img src="//cdn.tracker.example/p.gif"></title></desc></svg>',
    '<svg><![CDATA[ <img src="//cdn.tracker.example/p.gif"> ]]></svg>',
    '<div><svg></div><style><img src="//cdn.tracker.example/p.gif"></style>',
])
def test_integration_points_and_cdata_are_read_as_the_standard_says(html):
    """Raw text inside an integration point, CDATA in foreign content: nothing to gate."""
    assert scan(html.encode(), hosts=HOSTS, own=OWN)[0] == []
    assert leaks(html.encode()) == []


def test_an_element_inside_a_noscript_is_gated_for_both_readings():
    body = read("noscript_breakout")
    out = run(body.decode()).encode()
    on = fetched_urls(body, scripting=True)
    off = fetched_urls(body, scripting=False)
    assert on and not off  # only a browser with scripting on sees that <img>
    assert leaks(out) == []


def test_the_gtm_frame_and_invisible_frames_get_no_placeholder():
    for name in ("gtm_noscript", "iframe_invisible"):
        assert "data-ph" not in run(read(name).decode()), name
    assert run(read("iframe_unknown_host").decode()).count("<div data-ph=") == 1


def test_a_page_whose_only_tracker_is_a_link_is_looked_at():
    from flask_consentkit.gating.html import could_need_gating

    for name in ("link_preload_only", "link_preconnect", "style_attribute", "style_import",
                 "svg_image", "body_background", "input_image", "noscript_pixel"):
        assert could_need_gating(read(name)), name
    assert not could_need_gating(b"<!doctype html><title>x</title><p>Hello</p><a href=/x>x</a>")


def test_the_google_ads_tag_needs_marketing_even_with_analytics_granted():
    out = run(read("google_ads_tag").decode(), "analytics")
    assert out.count('type="text/plain" data-consent="marketing"') == 2


def test_without_a_registry_the_known_trackers_still_are_found_under_any_spelling():
    from flask_consentkit.gating.html import rewrite

    for name in ("charref_dot", "charref_hex_slash", "charref_named", "trailing_dot",
                 "port_443", "backslashes"):
        out, _ = rewrite(read(name), Gate())
        assert b'type="text/plain" data-consent="analytics"' in out, name


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_a_streamed_variant_is_rewritten_as_the_whole(chunk):
    from flask_consentkit.gating.html import gate_stream

    for name in PAGES:
        body = read(name)
        expected = run(body.decode()).encode()
        pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)]
        out = b"".join(gate_stream(pieces, Gate(), hosts=HOSTS, own=OWN))
        assert out == expected, name


@pytest.mark.parametrize("html", [
    '<a title="<img alt="><noscript>">x<p title="</noscript><img src=//cdn.tracker.example/t>">',
    '<a title="<svg>"><title></svg><p x="</title><img src=//cdn.tracker.example/t>">',
    '<a t="<svg><path d="><noscript>"/></svg><p title="</noscript>'
    '<img src=//cdn.tracker.example/t>">',
])
def test_what_is_passed_over_unread_hides_no_element(html):
    """An image or an icon is passed over without knowing whether it is markup or text in
    an attribute value; then it must not hold a real <noscript> or <title> start."""
    assert leaks(run(html).encode()) == []
