"""The HTML rewrite on its own: every rule, every hazard, on real pages."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_consentkit.gating.html import ScanCache, TrackerMatcher, gate_stream, rewrite
from flask_consentkit.gating.trackers import Tracker

from .pages import read, realistic_page

PLACEHOLDER = b'<div class="consentkit-placeholder" data-consent-placeholder="%s">%s</div>'


class StaticGate:
    """A gate with a fixed set of granted categories that records what it was asked."""

    def __init__(self, *granted: str) -> None:
        self.granted = {"necessary", *granted}
        self.asked: list[str] = []
        self.reports: dict[str, str] = {}

    def allows(self, category: str) -> bool:
        self.asked.append(category)
        return category in self.granted

    def placeholder(self, category: str, title: str | None) -> bytes:
        return PLACEHOLDER % (category.encode(), (title or "").encode())

    def report(self, key: str, message: str) -> None:
        self.reports.setdefault(key, message)


def run(html: str | bytes, *granted: str) -> str:
    data = html.encode() if isinstance(html, str) else html
    out, consumed = rewrite(data, StaticGate(*granted))
    assert consumed == len(data)
    return out.decode()


# -- gated scripts ----------------------------------------------------------------

GATED = '<script type="text/plain" data-consent="analytics" src="/a.js" async nonce="n1"></script>'


def test_gated_script_stays_inert_without_consent():
    assert run(GATED) == GATED
    assert run(GATED, "marketing") == GATED


def test_gated_script_becomes_a_classic_script_with_consent():
    assert run(GATED, "analytics") == (
        '<script data-consent="analytics" src="/a.js" async nonce="n1"></script>'
    )


def test_gated_module_gets_its_type_back_from_data_type():
    html = ('<script type="text/plain" data-type="module" data-consent="analytics" '
            'defer>import "/m.js";</script>')
    assert run(html, "analytics") == (
        '<script type="module" data-type="module" data-consent="analytics" '
        'defer>import "/m.js";</script>'
    )


def test_inline_gated_script_text_is_kept_byte_for_byte():
    body = "if (a < b && c > d) { track('x'); } // </div>"
    html = f"<script type='text/plain' data-consent='analytics'>{body}</script>"
    assert run(html, "analytics") == f"<script data-consent='analytics'>{body}</script>"


def test_marked_script_with_runnable_type_fails_closed():
    html = '<script data-consent="analytics" src="/a.js"></script>'
    gate = StaticGate()
    out, _ = rewrite(html.encode(), gate)
    assert out.decode() == ('<script type="text/plain" data-consent="analytics" '
                            'src="/a.js"></script>')
    assert "runnable:analytics" in gate.reports
    assert run(html, "analytics") == html


def test_marked_module_keeps_its_type_in_data_type_while_inert():
    html = '<script type="module" data-consent="analytics" src="/m.js"></script>'
    assert run(html) == ('<script type="text/plain" data-type="module" '
                         'data-consent="analytics" src="/m.js"></script>')


def test_unknown_category_never_runs():
    html = '<script type="text/plain" data-consent="analytcs" src="/a.js"></script>'
    assert run(html, "analytics", "marketing") == html


def test_necessary_scripts_always_run():
    html = '<script type="text/plain" data-consent="necessary">boot()</script>'
    assert run(html) == '<script data-consent="necessary">boot()</script>'


# -- iframes ------------------------------------------------------------------------

IFRAME = ('<iframe data-consent="marketing" data-consent-src="https://www.youtube.com/embed/x'
          '?a=1&amp;b=2" title="Trailer" allowfullscreen></iframe>')


def test_gated_iframe_gets_its_src_with_consent():
    assert run(IFRAME, "marketing") == (
        '<iframe src="https://www.youtube.com/embed/x?a=1&amp;b=2" data-consent="marketing" '
        'data-consent-src="https://www.youtube.com/embed/x?a=1&amp;b=2" title="Trailer" '
        "allowfullscreen></iframe>"
    )


def test_gated_iframe_without_consent_gets_a_placeholder_and_no_src():
    out = run(IFRAME)
    assert out == (PLACEHOLDER % (b"marketing", b"Trailer")).decode() + IFRAME
    assert " src=" not in out


def test_marked_iframe_with_a_src_loses_it_until_consent():
    html = ('<iframe data-consent="marketing" src="https://player.vimeo.com/video/1" '
            'title="V"></iframe>')
    out = run(html)
    assert ' src="' not in out.split("</div>", 1)[1]
    assert 'data-consent-src="https://player.vimeo.com/video/1"' in out
    assert run(html, "marketing") == html


def test_existing_src_is_replaced_by_the_consented_one():
    html = ('<iframe src="about:blank" data-consent="functional" '
            'data-consent-src="https://maps.example.net/embed" title="Map"></iframe>')
    assert run(html, "functional") == (
        '<iframe src="https://maps.example.net/embed" data-consent="functional" '
        'data-consent-src="https://maps.example.net/embed" title="Map"></iframe>'
    )
    assert run(html).endswith(html)


# -- forgotten markup: known trackers fail closed -------------------------------------


def test_every_vendor_snippet_is_neutralised_before_consent():
    gate = StaticGate()
    out, _ = rewrite(read("vendor_snippets.html"), gate)
    page = out.decode()
    runnable = [
        tag for tag in re.findall(r"<script\b[^>]*>", page, re.I)
        if 'type="text/plain"' not in tag and "ld+json" not in tag
    ]
    assert runnable == ['<script src="/static/app.js" defer>']
    for name in ("Google Tag Manager", "Google Analytics", "Meta Pixel", "Hotjar",
                 "Microsoft Clarity", "LinkedIn Insight Tag", "TikTok Pixel", "Yandex Metrica",
                 "YouTube embed", "Vimeo embed", "Vimeo player API",
                 "Google Tag Manager (noscript)", "Meta Pixel (noscript image)",
                 "LinkedIn Insight Tag (noscript image)", "Yandex Metrica (noscript image)"):
        assert f"tracker:{name}" in gate.reports, name
    # no iframe keeps a src: the GTM noscript frame, YouTube and Vimeo are all blocked
    assert re.findall(r"<iframe\b[^>]*\ssrc=", page) == []
    # YouTube and Vimeo get a placeholder; GTM's invisible frame (0 × 0) gets none
    assert page.count('class="consentkit-placeholder"') == 2
    # no tracking pixel keeps its src either
    assert re.findall(r"<img\b[^>]*\ssrc=", page) == []
    assert page.count("data-consentkit-neutralised") == 17


def test_neutralised_script_keeps_its_attributes_and_can_be_activated():
    html = ('<script async nonce="abc" src="https://www.googletagmanager.com/gtag/js?id=G-1">'
            "</script>")
    out = run(html)
    assert out == ('<script type="text/plain" data-consent="analytics" '
                   'data-consentkit-neutralised async nonce="abc" '
                   'src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>')
    assert run(out, "analytics") == ('<script data-consent="analytics" '
                                     'data-consentkit-neutralised async nonce="abc" '
                                     'src="https://www.googletagmanager.com/gtag/js?id=G-1">'
                                     "</script>")


def test_tracker_passes_once_its_category_is_granted():
    page = read("vendor_snippets.html")
    out, _ = rewrite(page, StaticGate("analytics", "marketing"))
    assert out == page


def test_only_the_missing_category_is_neutralised():
    out = run(read("vendor_snippets.html"), "analytics")
    assert "googletagmanager.com/gtag/js" in out
    assert 'data-consent="analytics"' not in out
    assert 'data-consent="marketing"' in out


def test_text_type_javascript_is_kept_in_data_type():
    html = '<script type="text/javascript" src="https://www.clarity.ms/tag/abc"></script>'
    assert run(html) == ('<script type="text/plain" data-consent="analytics" '
                         'data-consentkit-neutralised data-type="text/javascript" '
                         'src="https://www.clarity.ms/tag/abc"></script>')


def test_json_and_templates_are_not_scripts_to_gate():
    html = ('<script type="application/ld+json">{"url": "https://www.googletagmanager.com/'
            'gtag/js"}</script><script type="text/template"><div>fbq("init", "1")</div>'
            "</script>")
    assert run(html) == html


def test_other_consent_managers_markup_is_left_alone():
    page = read("other_managers.html")
    out, _ = rewrite(page, StaticGate())
    # already inert scripts stay as they are; the unmarked embeds carry no src at all
    assert out == page


def test_warning_names_each_tracker_once_per_gate_key():
    gate = StaticGate()
    rewrite(read("vendor_snippets.html") * 2, gate)
    assert len([k for k in gate.reports if k.startswith("tracker:")]) == 15


def test_an_app_can_add_trackers():
    extra = Tracker("Acme Beacon", "analytics",
                    re.compile(r"beacon\.Acme\.example/b\.js|acmeTrack\("), "script")
    matcher = TrackerMatcher([extra])
    out, _ = rewrite(b'<script src="https://beacon.acme.example/b.js"></script>'
                     b"<script>ACMETRACK('x')</script>", StaticGate(), matcher=matcher)
    assert out.count(b'type="text/plain" data-consent="analytics"') == 2


GTAG_URL = "https://www.googletagmanager.com/gtag/js?id=G-ABC"


@pytest.mark.parametrize("rel", ["preload", "modulepreload", "prefetch", "Stylesheet",
                                 "preload prefetch"])
def test_a_link_that_fetches_a_trackers_resource_loses_its_href_until_consent(rel):
    html = f'<link rel="{rel}" as="script" href="{GTAG_URL}" crossorigin>'
    assert run(html) == (f'<link data-consent="analytics" data-consent-href="{GTAG_URL}" '
                         f'data-consentkit-neutralised rel="{rel}" as="script" crossorigin>')
    assert run(html, "analytics") == html


@pytest.mark.parametrize("html", [
    f'<link rel="canonical" href="{GTAG_URL}">',  # not fetched
    '<link rel="preload" as="script" href="/static/app.js">',
    '<link rel="stylesheet" href="/static/site.css" title="googletagmanager.com/gtag/js">',
    f'<link rel="preload" href="{GTAG_URL}" data-consent="analytics">',  # the app's own gate
    f'<!-- <link rel="preload" href="{GTAG_URL}"> -->',
])
def test_other_links_are_left_alone(html):
    assert run(html) == html


def test_a_link_with_a_quoted_greater_than_is_read_whole():
    html = f'<link title="a > b" rel="preload" as="script" href="{GTAG_URL}">'
    assert "data-consent-href" in run(html)
    assert 'href="https' not in run(html).replace("data-consent-href", "")


# -- hazards: what must not fool the scan --------------------------------------------

TRACKER = '<script src="https://connect.facebook.net/en_US/fbevents.js"></script>'


@pytest.mark.parametrize("html", [
    f"<!-- {TRACKER} -->",
    f"<!--[if lt IE 9]>{TRACKER}<![endif]-->",
    f"<textarea>{TRACKER}</textarea>",
    f"<title>{TRACKER}</title>",
    f"<style>/* {TRACKER} */</style>",
    f"<xmp>{TRACKER}</xmp>",
    f"<noembed>{TRACKER}</noembed>",
    f"<iframe title='x'>{TRACKER}</iframe>",
    f'<div title="{TRACKER}">x</div>',
    f"<img alt='{TRACKER}'>",
    "<img src='/static/img/a.webp' alt='facebook.com/tr?id=1'>",
    "<script>var s = '<script src=\"/local.js\"><iframe src=x><\\/script>';</script>",
    "<script type='text/x-template'><script src=https://connect.facebook.net/en_US/fbevents.js>"
    "</script>",
    f"<plaintext>{TRACKER}",
])
def test_markup_that_is_not_a_script_is_not_touched(html):
    assert run(html) == html


def test_a_loader_that_writes_a_tracker_tag_from_a_string_is_neutralised_whole():
    html = ("<script>document.write('<script src=\"https://connect.facebook.net/en_US/"
            "fbevents.js\"><\\/script>');</script>")
    out = run(html)
    assert out == html.replace("<script>", '<script type="text/plain" data-consent="marketing" '
                               "data-consentkit-neutralised>", 1)


def test_script_inside_a_script_string_ends_where_the_browser_ends_it():
    # The browser ends the first script at the first "</script>": the tracker is a real tag.
    html = ("<script>document.write('<p>')</script>" + TRACKER)
    assert 'type="text/plain"' in run(html)


def test_escaped_script_data_double_escape_is_followed():
    # <!-- <script> inside a script: the first </script> does not end the outer script
    html = ("<script><!-- var x = '<script></script>'; --></script>" + TRACKER)
    out = run(html)
    assert out.startswith("<script><!-- var x")
    assert 'type="text/plain" data-consent="marketing"' in out


def test_greater_than_inside_quoted_attributes():
    html = ('<script data-note="a > b" data-x=\'1>0\' '
            'src="https://connect.facebook.net/en_US/fbevents.js"></script><p>after</p>')
    out = run(html)
    assert out == ('<script type="text/plain" data-consent="marketing" '
                   'data-consentkit-neutralised data-note="a > b" data-x=\'1>0\' '
                   'src="https://connect.facebook.net/en_US/fbevents.js"></script><p>after</p>')


@pytest.mark.parametrize("html", [
    '<SCRIPT SRC="https://connect.facebook.net/en_US/fbevents.js"></SCRIPT>',
    '<Script\tsrc="https://connect.facebook.net/en_US/fbevents.js"\n></sCrIpT >',
    '<script\nsrc = "https://connect.facebook.net/en_US/fbevents.js"\r\n></script>',
    '<script/src="https://connect.facebook.net/en_US/fbevents.js"></script>',
    "<script src=https://connect.facebook.net/en_US/fbevents.js></script>",
    "<script\fsrc='https://CONNECT.FACEBOOK.NET/en_US/fbevents.js'></script>",
])
def test_case_and_whitespace_variants_are_found(html):
    out = run(html)
    assert 'type="text/plain" data-consent="marketing"' in out
    # only the start tag changed
    assert out.endswith(html[html.index(">", html.index("fbevents")) + 1:])


def test_upper_case_gated_markup_is_activated():
    html = '<SCRIPT TYPE="TEXT/PLAIN" DATA-CONSENT="analytics" SRC="/a.js"></SCRIPT>'
    assert run(html, "analytics") == '<SCRIPT DATA-CONSENT="analytics" SRC="/a.js"></SCRIPT>'


def test_first_of_duplicate_attributes_wins():
    html = '<script type="text/plain" type="module" data-consent="analytics">x()</script>'
    assert run(html) == html
    assert run(html, "analytics") == '<script type="module" data-consent="analytics">x()</script>'


def test_unterminated_script_at_the_end_is_still_gated():
    html = "<p>x</p><script src='https://connect.facebook.net/en_US/fbevents.js'>"
    assert 'type="text/plain"' in run(html)


def test_tag_cut_off_at_the_end_is_left_as_is():
    html = '<p>x</p><script src="https://connect.facebook.net/en_US/fbevents.js'
    assert run(html) == html


def test_comment_end_variants():
    for comment in ("<!-->", "<!--->", "<!-- a --!>", "<!-- -- -->"):
        html = comment + TRACKER
        assert 'type="text/plain"' in run(html), comment


def test_unterminated_comment_and_raw_text_hide_the_rest_as_a_browser_does():
    out = run(TRACKER + "<!-- never closed " + TRACKER)
    assert out.count('type="text/plain"') == 1 and out.endswith("<!-- never closed " + TRACKER)
    out = run(TRACKER + "<textarea>" + TRACKER)
    assert out.count('type="text/plain"') == 1 and out.endswith("<textarea>" + TRACKER)


def test_raw_text_end_tag_needs_the_right_name():
    # "</textareax>" does not end a textarea; "</TEXTAREA >" does
    html = "<textarea></textareax>" + TRACKER + "</TEXTAREA >" + TRACKER
    out = run(html)
    assert out.count('type="text/plain"') == 1
    assert out.startswith("<textarea></textareax>" + TRACKER + "</TEXTAREA >")


def test_non_ascii_text_and_bytes_around_are_untouched():
    html = ("<p>Bakı — Москва — İstanbul ✓</p>" + TRACKER + "<p>ğüşöç</p>").encode("utf-8")
    out = run(html)
    assert out.startswith("<p>Bakı — Москва — İstanbul ✓</p><script type=")
    assert out.endswith("</script><p>ğüşöç</p>")


# -- whole pages ----------------------------------------------------------------------


def _strip_edits(text: str) -> str:
    """Undo the rewrite's edits so the rest can be compared byte for byte."""
    text = re.sub(r'<div class="consentkit-placeholder".*?</div>', "", text)
    return re.sub(r'<(script|iframe)\b[^>]*>', "<TAG>", text, flags=re.I)


@pytest.mark.parametrize("size", [50_000, 500_000])
def test_realistic_page_changes_only_the_tags_it_must(size):
    page = realistic_page(size)
    for granted in ((), ("analytics", "marketing")):
        out = run(page, *granted)
        assert _strip_edits(out) == _strip_edits(page.decode())
    blocked = run(page)
    assert '<script type="text/plain" data-consent="analytics" nonce="r4nd0m" async' in blocked
    assert "googletagmanager.com/gtag/js" in blocked
    assert blocked.count("data-consentkit-neutralised") == 3  # gtag.js, gtag config, Vimeo
    assert blocked.count('class="consentkit-placeholder"') == 2
    granted = run(page, "analytics", "marketing")
    assert '<script data-consent="analytics" nonce="r4nd0m" async src="/static/analytics.js">' \
        in granted
    assert 'src="https://www.youtube-nocookie.com/embed/aqz-KE-bpKQ"' in granted


def test_consent_is_not_asked_for_pages_without_gated_markup():
    page = b"<html><script>boot()</script><script src='/app.js'></script>" + b"<p>x</p>" * 100
    gate = StaticGate()
    out, _ = rewrite(page, gate)
    assert out is page
    assert gate.asked == []


# -- streaming ----------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_streamed_chunks_give_the_same_result_as_the_whole(chunk):
    page = realistic_page(20_000) + read("vendor_snippets.html")
    expected, _ = rewrite(page, StaticGate())
    pieces = [page[i:i + chunk] for i in range(0, len(page), chunk)]
    assert b"".join(gate_stream(pieces, StaticGate())) == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([
    "<p>", "</p>", "<!--", "-->", "<script>", "</script>", " x ", "<", ">", '"', "'",
    "<iframe src='https://www.youtube.com/embed/x'>", "</iframe>", "<textarea>",
    "</textarea>", "fbq('init','1')", "<script src=https://connect.facebook.net/a/fbevents.js>",
    "<script type='text/plain' data-consent='analytics'>", "<a title='<script>'>",
]), max_size=30), st.integers(min_value=1, max_value=20))
def test_any_chunking_of_any_markup_matches_the_whole(parts, chunk):
    page = "".join(parts).encode()
    expected, _ = rewrite(page, StaticGate())
    pieces = [page[i:i + chunk] for i in range(0, len(page), chunk)]
    assert b"".join(gate_stream(pieces, StaticGate())) == expected


# -- the scan cache -----------------------------------------------------------------


def test_cached_scan_gives_the_same_answer_for_every_visitor():
    cache = ScanCache()
    page = realistic_page(30_000)
    for granted in ((), ("analytics",), ("analytics", "marketing"), ()):
        expected, _ = rewrite(page, StaticGate(*granted))
        assert rewrite(page, StaticGate(*granted), cache=cache)[0] == expected
    assert len(cache) == 1


def test_cache_is_bounded_and_exact():
    cache = ScanCache(size=2, limit=100)
    small = [b"<script src='https://www.clarity.ms/tag/%d'></script>" % i for i in range(3)]
    for body in small:
        assert b'type="text/plain"' in rewrite(body, StaticGate(), cache=cache)[0]
    assert len(cache) <= 2
    big = b"<p>x</p>" * 50 + small[0]
    assert b'type="text/plain"' in rewrite(big, StaticGate(), cache=cache)[0]
    assert big not in cache  # larger than the limit: not kept


class PerRequestGate(StaticGate):
    """A gate whose placeholders name the request, as the extension's link does."""

    def __init__(self, request_id: str, *granted: str) -> None:
        super().__init__(*granted)
        self.request_id = request_id

    def placeholder(self, category: str, title: str | None) -> bytes:
        return b"<div data-for='%s'>%s</div>" % (self.request_id.encode(), category.encode())


@pytest.mark.parametrize("granted", [(), ("analytics",), ("marketing",),
                                     ("analytics", "marketing", "functional")])
def test_a_kept_output_is_the_same_as_a_fresh_rewrite_and_placeholders_stay_per_request(
        granted: tuple[str, ...]) -> None:
    cache = ScanCache()
    page = realistic_page(30_000)
    for request_id in ("first", "second", "third"):
        expected_gate = PerRequestGate(request_id, *granted)
        expected, _ = rewrite(page, expected_gate)
        gate = PerRequestGate(request_id, *granted)
        assert rewrite(page, gate, cache=cache)[0] == expected
        assert gate.reports == expected_gate.reports  # told on every request, as uncached
    if "marketing" not in granted:
        assert b"data-for='third'" in expected and b"data-for='first'" not in expected


def test_documents_that_differ_only_inside_are_told_apart() -> None:
    cache = ScanCache()
    head, tail = b"<html><head><title>t</title></head><body>", b"</body></html>" * 4
    gated = head + b"<script src='https://www.clarity.ms/tag/1'></script>" + tail
    plain = head + b"<script src='https://www.example.or/tag/1'></script>" + tail
    assert len(gated) == len(plain)
    for _ in range(2):
        assert b'type="text/plain"' in rewrite(gated, StaticGate(), cache=cache)[0]
        assert rewrite(plain, StaticGate(), cache=cache)[0] == plain
    assert len(cache) == 2


def test_kept_outputs_count_against_the_total() -> None:
    page = realistic_page(30_000)
    cache = ScanCache(total=len(page) + 10)
    for granted in ((), ("analytics",), ("analytics", "marketing")):
        expected, _ = rewrite(page, StaticGate(*granted))
        assert rewrite(page, StaticGate(*granted), cache=cache)[0] == expected
    assert cache._bytes <= cache.total


#: as long as each other (token_urlsafe(16)); words the scan looks for, dashes, underscores
NONCES = ["Zk3_q-9xY2bT0pLmN4vR8w", "AAAAAAAAAAAAAAAAAAAAAA", "type-src-data-consent_",
          "gtag--matomo-init_____"]


@pytest.mark.parametrize("granted", [(), ("analytics",), ("analytics", "marketing")])
def test_a_page_that_differs_only_by_its_nonce_is_scanned_once(granted):
    cache = ScanCache()
    template = realistic_page(30_000)
    assert template.count(b'nonce="r4nd0m"') > 3
    for nonce in NONCES:
        page = template.replace(b"r4nd0m", nonce.encode())
        expected, _ = rewrite(page, PerRequestGate(nonce, *granted))
        out, _ = rewrite(page, PerRequestGate(nonce, *granted), cache=cache,
                         nonce=lambda n=nonce: n)
        assert out == expected
        assert nonce.encode() in out
    assert len(cache) == 1  # the page with the nonce left out; no real page was kept


@pytest.mark.parametrize("page", [
    b"<p>a</p><script nonce='N'>var n = 'nonce=\"N\"';</script><p>b</p>",  # in a script's text
    b"<p>a</p><script nonce=\"N\" src=\"/x.js?N\"></script>",  # not a nonce attribute's value
    b"<p>a</p><script nonce=\"N\">gtag('config', 'G-1')</script>\0",  # the page holds a NUL
])
def test_a_nonce_anywhere_else_means_a_full_scan(page):
    nonce = "Zk3_q-9xY2bT0pLmN4vR8w"
    page = page.replace(b"N", nonce.encode())
    cache = ScanCache()
    expected, _ = rewrite(page, StaticGate())
    assert rewrite(page, StaticGate(), cache=cache, nonce=lambda: nonce)[0] == expected
    assert page in cache  # kept as it is, not with the nonce left out


def test_a_nonce_in_a_scripts_text_means_a_full_scan_on_every_page() -> None:
    """What the kept stand-in document says of its nonces (in a script's text) holds
    for every later page it stands for: each is scanned whole, none gets its output."""
    cache = ScanCache()
    for nonce in ("Zk3_q-9xY2bT0pLmN4vR8w", "Aa1_b-2cD3eF4gH5iJ6kL7", "Qq9_z-8yX7wV6uT5sR4pO3"):
        page = (b"<p>a</p><script nonce='N'>var n = 'nonce=\"N\"'; gtag('config', 'G-1')"
                b"</script><p>b</p>").replace(b"N", nonce.encode())
        expected, _ = rewrite(page, StaticGate())
        assert rewrite(page, StaticGate(), cache=cache, nonce=lambda n=nonce: n)[0] == expected
        assert page in cache


@pytest.mark.parametrize("nonce", ["short", "a/b+c=d/e+f=g/h+i=j", None])
def test_nonces_of_other_shapes_mean_a_full_scan(nonce):
    page = realistic_page(30_000).replace(b"r4nd0m", (nonce or "r4nd0m").encode())
    cache = ScanCache()
    expected, _ = rewrite(page, StaticGate())
    assert rewrite(page, StaticGate(), cache=cache, nonce=lambda: nonce)[0] == expected
    assert page in cache
