"""The scan's fast path finds exactly what the careful walk finds, on any markup.

The reference is the careful walk itself: the tokenizer applied to every tag
(:data:`flask_consentkit.gating.html._NEXT` from one element to the next), as
the scan worked before it learned to jump between the places that matter.
"""

from __future__ import annotations

import dataclasses

from hypothesis import example, given, settings
from hypothesis import strategies as st

from flask_consentkit.gating import html as gating_html
from flask_consentkit.gating.html import Site, TrackerMatcher, scan

from .pages import read, realistic_page

MATCHER = TrackerMatcher()


def careful_scan(body: bytes, *, final: bool = True) -> tuple[list[Site], int]:
    """:func:`scan` walking every tag, as the reference the fast path must equal."""
    h = gating_html
    low = body.lower()
    n = len(body)
    sites: list[Site] = []
    pos = 0
    while True:
        m = h._NEXT.match(low, pos)
        assert m is not None
        t1, close = m.span(2)
        if t1 >= 0:
            a0, a1 = m.span(1)
            site = h._script_site(body, low, a0 - 7, a0, a1, t1, close, MATCHER)
            if site is not None:
                sites.append(site)
            pos = m.end()
            continue
        name = m.group(3)
        if name is None:
            start = m.start(5) if m.start(5) >= 0 else m.end()
            if start < n and not final:
                return sites, start
            return sites, n
        t0, a0, a1, t1 = m.start(3) - 1, m.start(4), m.end(4), m.end()
        if name == b"script":
            close = h._script_end(low, t1)
            after = h._end_tag_end(low, close, 6) if close >= 0 else -1
            if after < 0:
                if not final:
                    return sites, t0
                close = n if close < 0 else close
                after = n
            site = h._script_site(body, low, t0, a0, a1, t1, close, MATCHER)
            if site is not None:
                sites.append(site)
            pos = after
            continue
        if name in (b"img", b"link"):
            site_of = h._image_site if name == b"img" else h._link_site
            site = site_of(body, low, t0, a0, a1, t1, MATCHER)
            if site is not None:
                sites.append(site)
            pos = t1
            continue
        if name == b"plaintext":
            return sites, n
        found = h._RAW_END[name].search(low, t1)
        after = h._end_tag_end(low, found.start(), len(name)) if found is not None else -1
        if after < 0:
            if not final:
                return sites, t0
            after = n
        if name == b"iframe":
            site = h._iframe_site(body, low, t0, a0, a1, t1, MATCHER)
            if site is not None:
                sites.append(site)
        pos = after


def same(body: bytes) -> None:
    for final in (True, False):
        fast_sites, fast_consumed = scan(body, matcher=MATCHER, final=final)
        ref_sites, ref_consumed = careful_scan(body, final=final)
        assert fast_consumed == ref_consumed, (body, final)
        assert [dataclasses.astuple(s) for s in fast_sites] == [
            dataclasses.astuple(s) for s in ref_sites], (body, final)


PIECES = [
    "<p>", "</p>", "<P CLASS=x>", "<!--", "-->", "--!>", "<!-->", "<!", "<?php x ?>", "</>",
    "</ p>", "<script>", "</script>", "</SCRIPT >", "<SCRIPT\n>", "<script/>", "<scripts>",
    " x ", "<", ">", '"', "'", "=", " = ", "/", "\t", "\n", "\f",
    "<iframe src='https://www.youtube.com/embed/x'>", "</iframe>",
    "<IFRAME data-consent=marketing>",
    "<textarea>", "</textarea>", "<title>", "</title>", "<style>", "</style >", "<xmp>",
    "<noembed>", "</noframes>", "<plaintext>", "<noscript>", "</noscript>",
    "<img src='https://www.facebook.com/tr?id=1&ev=PageView'>", "<IMG\tsrc=x>", "<imgx>",
    "fbq('init','1')", "<script src=https://connect.facebook.net/a/fbevents.js>",
    "<script type='text/plain' data-consent='analytics'>", "<script data-consent=ads>",
    "<a title='<script>'>", '<a title="a>b" data-x=\'<img src=x>\'>', '<div a="', "<div b='",
    "<div c=<script>", '<div d"e="<script>">', "<div =\"x>\">", "<a f = \"<!--\">",
    "var s = '<script>';", "<!--<script>", "</script -->", "x<!--y-->z",
    "<!doctype html>", '<!DOCTYPE x PUBLIC "a>b">', "gtag('config')",
    "<link rel=preload as=script href='https://www.googletagmanager.com/gtag/js?id=G-1'>",
    "<LINK rel=stylesheet href=/site.css>", "<linkx>", "<li>", '<link title="a>b" rel=preload',
    " href=https://connect.facebook.net/en_US/fbevents.js>", '<img alt="x>y" ',
    "src='https://www.facebook.com/tr?id=1'>", "<!-- <img src=https://www.facebook.com/tr> -->",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
@example(['<div title="', "<script>", '">', "</script>"])
@example(["<a title='x>y'>", "<script>", "fbq('init','1')", "</script>"])
@example(['<div d"e="<script>">', "<script>", "</script>"])
def test_fast_path_equals_the_careful_walk_on_generated_markup(parts):
    same("".join(parts).encode())


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="<>!-/=\"' \tscriptimgframelk", max_size=80))
def test_fast_path_equals_the_careful_walk_on_noise(text):
    same(text.encode())


def test_fast_path_equals_the_careful_walk_on_real_pages():
    same(realistic_page(60_000))
    same(read("vendor_snippets.html"))


def test_every_special_element_and_a_comment_is_a_candidate():
    for name in gating_html._SPECIAL.split(b"|"):
        for after in b"\t\n\f\r />":
            assert gating_html._CANDIDATE.match(b"<" + name + bytes([after]))
        assert gating_html._CANDIDATE.match(b"<" + name + b"x") is None
    assert gating_html._CANDIDATE.match(b"<!--")
