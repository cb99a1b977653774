"""Gating inside a Flask app: which responses are rewritten, placeholders, helpers, streams."""

from __future__ import annotations

import gzip
import logging
import re
import secrets

import pytest
from flask import Response, g, render_template_string, request

from flask_consentkit import ConsentConfigError
from flask_consentkit.extension import get_kit_state
from flask_consentkit.gating import gated_stream

from .conftest import SAME_ORIGIN, make_app
from .pages import read, realistic_page

GTAG = b'<script async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>'
GATED = b'<script type="text/plain" data-consent="analytics" src="/a.js"></script>'
EMBED = (b'<iframe data-consent="marketing" data-consent-src="https://www.youtube.com/embed/x" '
         b'title="Trailer"></iframe>')


def choose(client, *categories: str) -> None:
    """Record a choice the way the banner's script does."""
    response = client.post("/consent/", json={"action": "save", "categories": list(categories)},
                           headers=SAME_ORIGIN)
    assert response.status_code == 200


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)

    @app.get("/page")
    def page() -> Response:
        body = request.args.get("body", "").encode() or GTAG + GATED + EMBED
        return Response(b"<!doctype html><html><body>" + body + b"</body></html>",
                        mimetype="text/html")

    @app.get("/story")
    def story() -> Response:
        return Response(realistic_page(), mimetype="text/html")

    @app.get("/json")
    def json_view() -> Response:
        return Response(GTAG, mimetype="application/json")

    @app.get("/stream")
    def stream() -> Response:
        def generate():
            yield "<!doctype html><html><body><scr"
            yield 'ipt async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>'
            yield EMBED.decode()
            yield "</body></html>"

        return Response(gated_stream(generate()), mimetype="text/html")

    @app.get("/raw-stream")
    def raw_stream() -> Response:
        return Response(iter([GTAG]), mimetype="text/html")

    @app.get("/gzipped")
    def gzipped() -> Response:
        response = Response(gzip.compress(GTAG), mimetype="text/html")
        response.headers["Content-Encoding"] = "gzip"
        return response

    return app


def test_before_consent_nothing_runs(client):
    body = client.get("/page").get_data()
    assert b'<script type="text/plain" data-consent="analytics" data-consentkit-neutralised async' \
        in body
    assert GATED in body
    assert EMBED in body  # no src
    assert body.index(b'<div class="consentkit-placeholder"') < body.index(EMBED)


def test_after_consent_everything_runs_on_the_server(client):
    choose(client, "analytics", "marketing")
    body = client.get("/page").get_data()
    assert GTAG in body
    assert b'<script data-consent="analytics" src="/a.js"></script>' in body
    assert b'<iframe src="https://www.youtube.com/embed/x"' in body
    assert b"consentkit-placeholder" not in body


def test_reject_all_keeps_everything_inert(client):
    client.post("/consent/", json={"action": "reject_all"}, headers=SAME_ORIGIN)
    body = client.get("/page").get_data()
    assert GTAG not in body and GATED in body and b"consentkit-placeholder" in body


def test_gated_response_varies_on_cookie_and_keeps_content_length_right(client):
    response = client.get("/story")
    assert "Cookie" in response.headers.get("Vary", "")
    assert int(response.headers["Content-Length"]) == len(response.get_data())


def test_page_without_scripts_does_not_read_consent(tmp_path):
    # the banner and the browser policy read it otherwise
    app = make_app(tmp_path, CONSENTKIT_AUTO_INJECT=False, CONSENTKIT_CSP=False)

    @app.get("/plain")
    def plain() -> str:
        return "<!doctype html><body><script>boot()</script><p>x</p></body>"

    client = app.test_client()
    for path in ("/", "/plain"):
        response = client.get(path)
        assert "Vary" not in response.headers, path
    assert client.get("/plain").get_data() == (
        b"<!doctype html><body><script>boot()</script><p>x</p></body>")


def test_non_html_responses_are_not_rewritten(client):
    assert client.get("/json").get_data() == GTAG


def test_compressed_body_is_skipped_with_a_warning(client, caplog):
    with caplog.at_level(logging.WARNING, "flask_consentkit.gating"):
        body = client.get("/gzipped").get_data()
        client.get("/gzipped")
    assert gzip.decompress(body) == GTAG
    assert len([r for r in caplog.records if "compressed" in r.getMessage()]) == 1


def test_gating_runs_before_a_compression_hook_registered_earlier():
    from flask import Flask

    from flask_consentkit import ConsentKit

    app = Flask(__name__)
    app.config.update(SECRET_KEY="s" * 32, CONSENTKIT_LEDGER_URL=None,
                      CONSENTKIT_AUTO_INJECT=False)

    @app.after_request
    def compress(response: Response) -> Response:  # what a compression extension does
        if response.mimetype == "text/html" and not response.direct_passthrough:
            response.set_data(gzip.compress(response.get_data()))
            response.headers["Content-Encoding"] = "gzip"
        return response

    ConsentKit(app)  # after the compression extension, as the README says

    @app.get("/")
    def index() -> Response:
        return Response(GTAG, mimetype="text/html")

    body = gzip.decompress(app.test_client().get("/").get_data())
    assert body.startswith(b'<script type="text/plain" data-consent="analytics"')


def test_streamed_body_is_gated_through_the_helper(client):
    body = client.get("/stream").get_data()
    assert b'<script type="text/plain" data-consent="analytics" data-consentkit-neutralised' in body
    assert b'class="consentkit-placeholder"' in body
    choose(client, "analytics", "marketing")
    response = client.get("/stream")
    assert GTAG in response.get_data()
    assert "Cookie" in response.headers["Vary"]


def test_raw_stream_is_left_alone_with_a_warning_that_names_the_helper(client, caplog):
    with caplog.at_level(logging.WARNING, "flask_consentkit.gating"):
        assert client.get("/raw-stream").get_data() == GTAG
    assert any("gated_stream()" in r.getMessage() for r in caplog.records)


def test_tracker_warning_is_logged_once_per_tracker(client, caplog):
    with caplog.at_level(logging.WARNING, "flask_consentkit.gating"):
        for _ in range(3):
            client.get("/page")
    tag_manager = [r for r in caplog.records if r.name == "flask_consentkit.gating"
                   and "Google Tag Manager" in r.getMessage()]
    assert len(tag_manager) == 1
    assert 'data-consent="analytics"' in tag_manager[0].getMessage()


# -- the placeholder -----------------------------------------------------------------


def test_placeholder_is_accessible_and_opens_the_category(client):
    body = client.get("/page?x=1").get_data().decode()
    start = body.index('<div class="consentkit-placeholder"')
    placeholder = body[start:body.index("</div>", start) + 6]
    assert 'data-consent-placeholder="marketing"' in placeholder
    assert 'role="group" aria-label="Trailer"' in placeholder
    assert ('<a href="/consent/?next=/page%3Fx%3D1#consentkit-cat-marketing" '
            'data-consentkit-open="marketing" role="button">Open cookie settings</a>'
            in placeholder)
    assert "allow “Marketing” cookies" in placeholder


def test_placeholder_link_follows_the_script_root_and_host_of_each_request(app, client):
    for _ in range(2):  # the second time from what was kept
        assert 'href="/consent/?next=/page#' in client.get("/page").get_data(as_text=True)
        mounted = client.get("/page", environ_overrides={"SCRIPT_NAME": "/shop"})
        assert 'href="/shop/consent/?next=/page#' in mounted.get_data(as_text=True)


def test_a_page_with_a_new_csp_nonce_on_every_request_is_gated_the_same(app):
    @app.get("/nonced")
    def nonced() -> Response:
        g.csp_nonce = secrets.token_urlsafe(16)
        page = realistic_page().replace(b"r4nd0m", g.csp_nonce.encode())
        return Response(page, mimetype="text/html")

    client = app.test_client()
    bodies = []
    for _ in range(3):
        response = client.get("/nonced")
        nonce = response.get_data(as_text=True).split('nonce="', 1)[1].split('"', 1)[0]
        bodies.append((nonce, response.get_data()))
    (first, body), *others = bodies
    assert b"data-consentkit-neutralised" in body and b"consentkit-placeholder" in body
    for nonce, other in others:
        assert nonce != first and first.encode() not in other
        assert other == body.replace(first.encode(), nonce.encode())


def test_placeholder_in_the_visitors_language(client):
    body = client.get("/page", headers={"Accept-Language": "az"}).get_data().decode()
    assert "Məzmun bloklanıb" in body


def test_placeholder_falls_back_to_english_without_a_catalog(app, client):
    get_kit_state(app).translate = None
    body = client.get("/page").get_data().decode()
    assert ">Choose cookie settings</a>" in body
    assert "consent to Marketing cookies" in body


def test_placeholder_link_leads_back_after_the_choice(client):
    body = client.get("/page?x=1").get_data().decode()
    href = body.split('<a href="', 1)[1].split('"', 1)[0]
    next_url = href.split("next=", 1)[1].split("#", 1)[0]
    response = client.post("/consent/", data={"action": "accept_all", "next": "/page?x=1"},
                           headers=SAME_ORIGIN)
    assert response.headers["Location"] == "/page?x=1"
    from urllib.parse import unquote

    assert unquote(next_url) == "/page?x=1"


def test_placeholder_uses_the_translation_service(app, client):
    texts = {
        "placeholder.title": "Məzmun bloklanıb",
        "placeholder.text": "{category} kukiləri üçün razılıq lazımdır.",
        "placeholder.button": "Kuki ayarları",
        "category.marketing.label": "Marketinq",
    }
    get_kit_state(app).translate = lambda key, **p: texts[key].format(**p)
    body = client.get("/page").get_data().decode("utf-8")
    assert "Məzmun bloklanıb" in body
    assert "Marketinq kukiləri üçün razılıq lazımdır." in body
    assert ">Kuki ayarları</a>" in body


def test_a_broken_translation_falls_back_to_english(app, client):
    def broken(key, **params):
        raise KeyError(key)

    get_kit_state(app).translate = broken
    assert b"Choose cookie settings" in client.get("/page").get_data()


def test_placeholder_escapes_the_iframe_title(client):
    body = client.get("/page", query_string={
        "body": '<iframe data-consent="marketing" data-consent-src="x" title="a&quot;<b>"></iframe>'
    }).get_data().decode()
    assert 'aria-label="a&#34;&lt;b&gt;"' in body


# -- Jinja helpers -------------------------------------------------------------------


def render(app, source: str, **context) -> str:
    with app.test_request_context("/"):
        return render_template_string(source, **context)


def test_consent_script_writes_escaped_gated_markup(app):
    html = render(app, "{{ consent_script('analytics', src=url, async=true, defer=false, "
                       "data_site='a\"b', type='module') }}", url="/a.js?x=1&y=<2>")
    assert html == ('<script type="text/plain" data-consent="analytics" data-type="module" '
                    'src="/a.js?x=1&amp;y=&lt;2&gt;" async data-site="a&#34;b"></script>')


def test_consent_script_carries_the_csp_nonce(app):
    with app.test_request_context("/"):
        from flask import g

        g.csp_nonce = "n0nce"
        html = render_template_string("{{ consent_script('marketing', src='/m.js') }}")
    assert 'nonce="n0nce"' in html


def test_consent_iframe_writes_escaped_gated_markup(app):
    html = render(app, "{{ consent_iframe('marketing', src=u, title='Trailer <1>', "
                       "allowfullscreen=true, width=560) }}",
                  u="https://www.youtube.com/embed/x?a=1&b=2")
    assert html == ('<iframe data-consent="marketing" data-consent-src="https://www.youtube.com/'
                    'embed/x?a=1&amp;b=2" title="Trailer &lt;1&gt;" allowfullscreen width="560">'
                    "</iframe>")


def test_helpers_refuse_unknown_categories_and_missing_titles(app):
    with pytest.raises(ConsentConfigError, match="analytcs"):
        render(app, "{{ consent_script('analytcs', src='/a.js') }}")
    with pytest.raises(ValueError, match="title"):
        render(app, "{{ consent_iframe('marketing', src='/x', title=' ') }}")


def test_helper_output_is_activated_on_the_server(app, client):
    @app.get("/helpers")
    def helpers() -> str:
        return render_template_string(
            "<!doctype html><body>{{ consent_script('analytics', src='/a.js') }}"
            "{{ consent_iframe('marketing', src='https://www.youtube.com/embed/x', "
            "title='Trailer') }}</body>")

    assert b'type="text/plain"' in client.get("/helpers").get_data()
    choose(client, "analytics", "marketing")
    body = client.get("/helpers").get_data()
    assert b'<script data-consent="analytics" src="/a.js"></script>' in body
    assert b'<iframe src="https://www.youtube.com/embed/x"' in body


def test_vendor_snippets_page_through_the_app(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_AUTO_INJECT=False)

    @app.get("/vendors")
    def vendors() -> Response:
        return Response(read("vendor_snippets.html"), mimetype="text/html")

    client = app.test_client()
    body = client.get("/vendors").get_data()
    assert body.count(b"data-consentkit-neutralised") == 17
    # every host is a catalogue vendor's; each loads once its category is granted too
    choose(client, "analytics", "marketing", "functional", "performance")
    assert client.get("/vendors").get_data() == read("vendor_snippets.html")


def test_page_with_only_a_tracking_pixel_is_gated(tmp_path):
    # without the banner and the browser policy, which read the consent of every page
    app = make_app(tmp_path, CONSENTKIT_AUTO_INJECT=False, CONSENTKIT_CSP=False)
    pixel = (b'<noscript><img height="1" width="1" srcset="https://www.facebook.com/tr?id=1 1x" '
             b'src="https://www.facebook.com/tr?id=1&amp;ev=PageView&amp;noscript=1"></noscript>')

    @app.get("/pixel")
    def pixel_page() -> Response:
        return Response(b"<!doctype html><body><img src='/logo.png' alt=''>" + pixel
                        + b"</body>", mimetype="text/html")

    @app.get("/images")
    def images_page() -> Response:
        return Response(b"<!doctype html><body><img src='/logo.png' alt=''></body>",
                        mimetype="text/html")

    client = app.test_client()
    body = client.get("/pixel").get_data()
    assert b"facebook.com/tr" in body and b' src="https://www.facebook.com' not in body
    assert re.search(rb"<img[^>]*\ssrcset=", body) is None
    assert (b'<img data-consent="marketing" data-consent-src="https://www.facebook.com/tr?id=1'
            b'&amp;ev=PageView&amp;noscript=1" data-consent-srcset="https://www.facebook.com/tr'
            b'?id=1 1x" data-consentkit-neutralised height="1"') in body
    # an ordinary image page is not even read for consent
    assert "Vary" not in client.get("/images").headers
    choose(client, "marketing")
    assert pixel in client.get("/pixel").get_data()
