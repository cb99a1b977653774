"""Pages that change on every request (a CSRF field), through the whole extension.

The gating keeps such a page once, with holes where the token goes; the banner is
put into that kept output, and the request's token goes in last. Each answer must
be exactly what a fresh app (nothing kept) answers for the same page.
"""

from __future__ import annotations

import secrets

from flask import Flask, render_template_string, request

from flask_consentkit import ConsentKit

from .conftest import SAME_ORIGIN, SECRET

PAGE = """<!doctype html><html><head><title>Story</title>
<meta name="csrf" content="{{ token }}">
<script src="https://www.googletagmanager.com/gtag/js?id=G-ABC123" async></script></head>
<body><h1>Story</h1>
<form method="post" action="/comment"><input type="hidden" name="csrf_token" value="{{ token }}">
<textarea name="c"></textarea></form>
<iframe src="https://www.youtube.com/embed/xyz" title="Trailer"></iframe>
<p data-x="{{ token }}">{{ text }}</p>
<footer>The end</footer>
</body></html>"""


def _app() -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True, CONSENTKIT_LEDGER_URL=None,
                      CONSENTKIT_SERVICES=["youtube", "google-analytics"])
    ConsentKit(app)

    @app.get("/story")
    def story() -> str:
        return render_template_string(PAGE, token=request.headers["X-Token"],
                                      text="Once upon a time")

    return app


def _answer(app: Flask, token: str, granted: str | None, lang: str) -> bytes:
    client = app.test_client()
    if granted:
        client.post("/consent/", json={"action": "save", "categories": [granted]},
                    headers=SAME_ORIGIN)
    response = client.get(f"/story?lang={lang}", headers={"X-Token": token})
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(response.get_data()))
    return response.get_data()


def test_each_answer_holds_its_own_token_and_equals_a_fresh_apps() -> None:
    kept = _app()
    for round_ in range(3):
        for granted in (None, "analytics", "marketing"):
            for lang in ("en", "az"):
                token = secrets.token_urlsafe(32)
                body = _answer(kept, token, granted, lang)
                assert b"\0" not in body
                assert body.count(token.encode()) == 3
                assert b'id="consentkit"' in body  # the banner went in
                fresh = _answer(_app(), token, granted, lang)
                assert body == fresh, (round_, granted, lang)
    # the page was kept once with its holes (else this test would test nothing new)
    scans = kept.extensions["consentkit"].gating.scans
    holed = [doc for docs in scans._scans.values() for doc in docs if doc.holes]
    assert len(holed) == 1 and len(holed[0].holes) == 3
    # and its whole output (gating and banner) was kept with the holes, per request key
    # (three choices, two languages), rounds two and three answered from it
    outputs = kept.extensions["consentkit"].page_outputs
    kept_holed = [outputs.get(key) for key in outputs]
    assert sum(1 for entry in kept_holed if entry is not None and entry[0] is holed[0]) == 6


def test_a_token_of_another_length_is_a_page_of_its_own() -> None:
    app = _app()
    short, long_ = "abc123", secrets.token_urlsafe(48)
    for token in (short, long_, short, long_):
        body = _answer(app, token, None, "en")
        assert body.count(token.encode()) == 3 and b"\0" not in body


def test_a_page_seen_before_gets_the_same_answer_headers_included() -> None:
    app = _app()

    @app.get("/same")
    def same() -> str:
        return render_template_string(PAGE, token="fixed-token-of-the-page", text="x")

    client = app.test_client()
    first, again = client.get("/same?lang=ru"), client.get("/same?lang=ru")
    assert first.get_data() == again.get_data()
    assert first.headers["Vary"] == again.headers["Vary"] == "Accept-Language, Sec-GPC, Cookie"
    assert first.headers["Content-Security-Policy"] == again.headers["Content-Security-Policy"]
    assert len(app.extensions["consentkit"].page_outputs) == 1  # kept whole once
    client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    decided = client.get("/same?lang=ru")
    assert decided.get_data() != first.get_data()  # the choice is in the key
    assert decided.get_data() == _app_answer("/same?lang=ru", accept=True)


def _app_answer(path: str, *, accept: bool) -> bytes:
    fresh = _app()

    @fresh.get("/same")
    def same() -> str:
        return render_template_string(PAGE, token="fixed-token-of-the-page", text="x")

    client = fresh.test_client()
    if accept:
        client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    return client.get(path).get_data()


def test_a_host_flask_refuses_gets_its_400_page_without_our_links() -> None:
    app = _app()
    app.register_error_handler(400, lambda e: (
        '<!doctype html><html><body><iframe src="https://www.youtube.com/embed/x">'
        "</iframe></body></html>", 400))
    response = app.test_client().get("/story", headers={"Host": "0..0", "X-Token": "t"})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert 'id="consentkit"' not in body  # the banner's links cannot be built
    assert "youtube.com/embed" not in body.split("data-consent-src", 1)[0]  # still gated
    assert 'href="/consent/?next=' in body  # the placeholder's link, without url_for


def test_a_page_that_changes_in_a_scripts_text_is_read_whole_each_time() -> None:
    """A token in a script's text is where trackers are looked for: no holes there."""
    def app_() -> Flask:
        app = _app()

        @app.get("/inline")
        def inline() -> str:
            token = request.headers["X-Token"]
            return render_template_string(
                "<!doctype html><html><head><title>t</title></head><body><p>story</p>"
                "<script>var t = '{{ token }}'; var u = 'https://{{ host }}/p.gif';</script>"
                "<p>end</p></body></html>", token=token, host=request.headers["X-Host"])

        return app

    kept = app_()
    scans = kept.extensions["consentkit"].gating.scans
    for token, host in (("a" * 20, "cdn.example.org"), ("b" * 20, "cdn.example.org"),
                        ("c" * 20, "www.google-analytics.com"), ("d" * 20, "cdn.example.org")):
        headers = {"X-Token": token, "X-Host": host}
        body = kept.test_client().get("/inline", headers=headers).get_data()
        assert body == app_().test_client().get("/inline", headers=headers).get_data()
        assert token.encode() in body and host.encode() in body
    assert not any(doc.holes for docs in scans._scans.values() for doc in docs)
