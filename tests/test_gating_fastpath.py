"""The scan's fast path finds exactly what the careful walk finds, on any markup.

The reference is the careful walk: the tokenizer applied to every tag of HTML
content (:data:`flask_consentkit.gating.html._SKIP_HTML` from one element to the
next). The fast path jumps from one place that may need attention to the next
and must agree with it on every document, with and without the app's hosts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import example, given, settings
from hypothesis import strategies as st

from flask_consentkit.gating import html as gating_html
from flask_consentkit.gating.html import HostRules, TrackerMatcher, scan

from .pages import read, realistic_page
from .test_gating_hosts import registry

MATCHER = TrackerMatcher()
HOSTS = HostRules(registry())


@contextmanager
def careful() -> Iterator[None]:
    gating_html._Reader.careful = True
    try:
        yield
    finally:
        gating_html._Reader.careful = False


def same(body: bytes) -> None:
    for hosts in (None, HOSTS):
        for final in (True, False):
            fast_sites, fast_consumed = scan(body, matcher=MATCHER, final=final, hosts=hosts,
                                             own="example.com")
            with careful():
                ref_sites, ref_consumed = scan(body, matcher=MATCHER, final=final, hosts=hosts,
                                               own="example.com")
            assert fast_consumed == ref_consumed, (body, final)
            assert [dataclasses.astuple(s) for s in fast_sites] == [
                dataclasses.astuple(s) for s in ref_sites], (body, final, hosts)


PIECES = [
    "<p>", "</p>", "<P CLASS=x>", "<!--", "-->", "--!>", "<!-->", "<!", "<?php x ?>", "</>",
    "</ p>", "<script>", "</script>", "</SCRIPT >", "<SCRIPT\n>", "<script/>", "<scripts>",
    " x ", "<", ">", '"', "'", "=", " = ", "/", "\t", "\n", "\f",
    "<iframe src='https://www.youtube.com/embed/x'>", "</iframe>",
    "<IFRAME data-consent=marketing>",
    "<textarea>", "</textarea>", "<title>", "</title>", "<style>", "</style >", "<xmp>",
    "<noembed>", "</noframes>", "<plaintext>", "<noscript>", "</noscript>",
    "<img src='https://www.facebook.com/tr?id=1&ev=PageView'>", "<IMG\tsrc=x>", "<imgx>",
    "<img src=/own.png>", "<img srcset='/a.png 1x, //cdn.tracker.example/b.png 2x'>",
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
    "<svg>", "</svg>", "<svg width=24><use href='#i'/></svg>", "<math>", "<mi>", "</math>",
    "<foreignObject>", "<image href=//cdn.tracker.example/i.png>", "<![CDATA[", "]]>",
    "<div style='background:url(//cdn.tracker.example/bg.png)'>", "<td background=//x.example/b>",
    "<a href='https://elsewhere.example/'>", "style=\"", "background=", "<path d='M0'/>",
    "<title>Play</title>", "<g>", "</g>", "<body background='https://cdn.tracker.example/b'>",
    "<a title=\"<img alt=\">", "<a t=\"<svg><path d=\">", "<a title=\"<svg>\">", "<p x=\"</title>",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
@example(['<div title="', "<script>", '">', "</script>"])
@example(["<a title='x>y'>", "<script>", "fbq('init','1')", "</script>"])
@example(['<div d"e="<script>">', "<script>", "</script>"])
@example(['<a title="', "<svg width=24><use href='#i'/></svg>", '">', "<style>"])
@example(["<a f = \"<!--\">", "<img src='https://www.facebook.com/tr?id=1'>", "-->"])
def test_fast_path_equals_the_careful_walk_on_generated_markup(parts):
    same("".join(parts).encode())


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="<>!-/=\"' \tscriptimgframelkvy:()", max_size=80))
def test_fast_path_equals_the_careful_walk_on_noise(text):
    same(text.encode())


def test_fast_path_equals_the_careful_walk_on_real_pages():
    same(realistic_page(60_000))
    same(read("vendor_snippets.html"))
    same(read("other_managers.html"))
