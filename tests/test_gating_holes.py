"""Pages that change on every request, in a token only (a CSRF field, a nonce the app
did not make known): the scan of the page is reused, with the token's bytes as holes.

Whatever the markup around the token and wherever the token is, the output of the
cached path equals a fresh scan and rewrite of that very page; and a page whose
only change is such a token is scanned once, not once per request.
"""

from __future__ import annotations

import secrets

from hypothesis import example, given, settings
from hypothesis import strategies as st

from flask_consentkit.gating import html as gating_html
from flask_consentkit.gating.html import (
    FilledDocument,
    HostRules,
    ScanCache,
    TrackerMatcher,
    rewrite,
)

from .pages import realistic_page
from .test_gating_fastpath import PIECES
from .test_gating_hosts import registry

MATCHER = TrackerMatcher()
HOSTS = HostRules(registry())
TOKEN = "\x01TOKEN\x01"  # where the token goes in a generated page

#: contexts a token is found in on real pages, and some where it must not be a hole
CONTEXTS = [
    '<input type="hidden" name="csrf_token" value="{t}">',
    "<input type=hidden name=csrf value='{t}'>",
    '<meta name="csrf-token" content="{t}">',
    '<meta http-equiv="refresh" content="{t}">',
    '<script nonce="{t}">window.x = 1;</script>',
    '<script nonce="{t}" src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>',
    '<script>var token = "{t}"; fbq("init", "1");</script>',
    '<div id="{t}" class="{t}" data-token="{t}"></div>',
    '<img data-src="{t}" src="/own.png">',
    '<img src="//{t}.example/p.gif">',
    '<a href="/story?t={t}">next</a>',
    '<iframe title="{t}" src="https://www.youtube.com/embed/x"></iframe>',
    '<div style="color: red" data-x="{t}"></div>',
    '<!-- <input value="{t}"> -->',
    '<textarea name="n">{t}</textarea>',
    '<form action="/post"><input name="a" value="{t}"><input name="b" value="{t}"></form>',
    '<svg><a id="{t}"><use href="#i"/></a></svg>',
    '<input value="{t}-->">',
    '<input value="x{t}">',
]

#: token bytes, and some that are not (a token with them must not be taken for a hole)
TOKENS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                          "-_.+/=~<>&\"' ", min_size=4, max_size=48)


class Gate:
    def __init__(self, granted: frozenset[str]) -> None:
        self.granted = granted

    def allows(self, category: str) -> bool:
        return category in self.granted

    def placeholder(self, category: str, title: str | None) -> bytes:
        return f"<div class=ph data-c={category}>{title}</div>".encode()

    def report(self, key: str, message: str) -> None:
        pass


GATES = [Gate(frozenset({"necessary"})), Gate(frozenset({"necessary", "analytics"})),
         Gate(frozenset({"necessary", "analytics", "marketing", "functional"}))]


def _same(template: str, tokens: list[str]) -> None:
    """Each page of ``template`` with each token: cached output == a fresh rewrite."""
    for hosts in (None, HOSTS):
        cache = ScanCache()
        for token in tokens:
            body = template.replace(TOKEN, token).encode()
            for gate in GATES:
                cached, _ = rewrite(body, gate, matcher=MATCHER, cache=cache, hosts=hosts,
                                    own="example.com")
                fresh, _ = rewrite(body, gate, matcher=MATCHER, hosts=hosts, own="example.com")
                assert cached == fresh, (template, token, gate.granted)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=12), st.sampled_from(CONTEXTS),
       st.lists(st.sampled_from(PIECES), max_size=12),
       st.lists(TOKENS, min_size=3, max_size=3))
@example([], CONTEXTS[0], [], ["abcd", "wxyz", "a-b_"])
@example(["<script>"], CONTEXTS[0], ["</script>"], ["abcd", "wxyz", "qqqq"])
@example(['<div title="'], CONTEXTS[1], ['">'], ["abcd", "wxyz", "qqqq"])
@example(["<!--"], CONTEXTS[0], ["-->"], ["ab--", "abcd", "----"])
@example(["<textarea>"], CONTEXTS[0], [], ["abcd", "wxyz", "qqqq"])
def test_a_page_that_differs_only_by_a_token_gets_the_output_of_a_fresh_rewrite(
        before, context, after, tokens):
    template = "".join(before) + context.replace("{t}", TOKEN) + "".join(after)
    # the tokens all have one length, as a page's tokens of one kind do
    size = max(len(t) for t in tokens)
    _same(template, [(t * size)[:size] for t in tokens])


def test_on_a_real_page_every_context_gives_the_output_of_a_fresh_rewrite():
    page = realistic_page(20_000).decode()
    body_at = page.index("<body")
    for context in CONTEXTS:
        template = page[:body_at] + context.replace("{t}", TOKEN) + page[body_at:]
        _same(template, [secrets.token_urlsafe(24) for _ in range(4)])


def test_a_csrf_field_is_scanned_once_not_once_per_request(monkeypatch):
    page = realistic_page(50_000)
    body_at = page.index(b"<body")
    template = (page[:body_at] + b'<form><input type="hidden" name="csrf_token" value="'
                + TOKEN.encode() + b'"></form>' + page[body_at:])
    scans = []
    real_scan = gating_html.scan

    def counting(*args, **kwargs):
        scans.append(1)
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(gating_html, "scan", counting)
    cache = ScanCache()
    outputs = []
    for _ in range(20):
        token = secrets.token_urlsafe(24)
        body = template.replace(TOKEN.encode(), token.encode())
        out, _ = rewrite(body, GATES[1], matcher=MATCHER, cache=cache, own="example.com")
        assert token.encode() in out
        outputs.append(out)
    assert len(scans) == 2  # the first page, then the page with its hole; never again
    assert isinstance(cache.entry(body, MATCHER, own="example.com"), FilledDocument)
    assert len(cache) == 2


def test_a_token_in_a_tracker_tag_or_a_script_is_scanned_each_time(monkeypatch):
    page = realistic_page(20_000)
    body_at = page.index(b"<body")
    for context in (CONTEXTS[5], CONTEXTS[6]):
        template = page[:body_at] + context.replace("{t}", TOKEN).encode() + page[body_at:]
        cache = ScanCache()
        kinds = set()
        for _ in range(4):
            body = template.replace(TOKEN.encode(), secrets.token_urlsafe(24).encode())
            kinds.add(type(cache.entry(body, MATCHER, own="example.com")).__name__)
        assert "FilledDocument" not in kinds, context
