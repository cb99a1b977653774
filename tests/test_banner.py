"""The banner on the server: where it is injected, what it says, the preferences page."""

from __future__ import annotations

import gzip
import json
import re
from typing import Any

import pytest
from flask import Response, g, render_template_string, stream_with_context

from flask_consentkit.banner import visible_text
from flask_consentkit.notice import notice_id

from .banner_app import banner_app
from .conftest import SAME_ORIGIN, make_app


def banner_of(html: str) -> str:
    start = html.index('<div id="consentkit"')
    return html[start:html.index("</body>", start)]


def decide(client: Any, action: str = "reject_all", **form: Any) -> None:
    response = client.post("/consent/", data={"action": action, **form}, headers=SAME_ORIGIN)
    assert response.status_code == 303


# -- injection ----------------------------------------------------------------


def test_banner_is_injected_before_the_last_body_end_of_html_pages(app_factory):
    app = app_factory()

    @app.get("/two")
    def two() -> str:
        return "<html><body><pre>&lt;/body&gt; </body> and</pre></BODY >\n</html>"

    client = app.test_client()
    html = client.get("/two").get_data(as_text=True)
    assert html.count('id="consentkit"') == 1
    assert html.index('id="consentkit"') > html.index("and</pre>")
    assert html.rstrip().endswith("</BODY >\n</html>")
    response = client.get("/")
    assert response.headers["Content-Length"] == str(len(response.get_data()))
    assert "Accept-Language" in response.vary and "Cookie" in response.vary


@pytest.mark.parametrize("route", ["json", "text", "stream", "gzip", "nobody", "head"])
def test_banner_is_not_injected_where_it_does_not_belong(app_factory, route):
    app = app_factory()
    page = "<html><body><p>x</p></body></html>"

    @app.get("/json")
    def json_() -> dict[str, str]:
        return {"html": page}

    @app.get("/text")
    def text() -> Response:
        return Response(page, mimetype="text/plain")

    @app.get("/stream")
    def stream() -> Response:
        return Response(stream_with_context(iter([page])), mimetype="text/html")

    @app.get("/gzip")
    def gz() -> Response:
        response = Response(gzip.compress(page.encode()), mimetype="text/html")
        response.headers["Content-Encoding"] = "gzip"
        return response

    @app.get("/nobody")
    def nobody() -> str:
        return "<p>a fragment for htmx</p>"

    @app.get("/head")
    def head() -> str:
        return page

    client = app.test_client()
    if route == "head":
        response = client.head("/head")
        assert response.get_data() == b""
        return
    data = client.get(f"/{route}").get_data()
    if route == "gzip":
        data = gzip.decompress(data)
    assert b"consentkit" not in data


def test_auto_inject_off_and_placed_by_hand(app_factory):
    app = app_factory(CONSENTKIT_AUTO_INJECT=False)

    @app.get("/manual")
    def manual() -> str:
        return render_template_string(
            "<html><body><main>{{ consent_banner() }}</main><p>end</p></body></html>")

    client = app.test_client()
    assert b"consentkit" not in client.get("/").get_data()
    html = client.get("/manual").get_data(as_text=True)
    assert html.count('id="consentkit"') == 1
    assert html.index('id="consentkit"') < html.index("<p>end</p>")
    # placed by hand while auto-injection is on: still only once
    app2 = app_factory()
    app2.add_url_rule("/manual", "manual", manual)
    html = app2.test_client().get("/manual").get_data(as_text=True)
    assert html.count('id="consentkit"') == 1


def test_banner_processor_runs_after_the_others(app):
    ext = app.extensions["consentkit"]
    banner = ext.banner
    # the page is gated before the banner goes in; the language it used is kept last
    assert ext.processors[-2:] == [banner.inject, banner.remember_language]


def test_only_necessary_categories_means_no_banner(app_factory):
    rules = {"ip": "necessary", "geo": "necessary", "user_agent": "necessary"}
    client = app_factory(CONSENTKIT_CATEGORIES=["necessary"],
                         CONSENTKIT_COLLECTION_RULES=rules).test_client()
    assert b"consentkit" not in client.get("/").get_data()


# -- what the banner shows ----------------------------------------------------------


def test_undecided_visitor_gets_the_open_banner_with_nothing_ticked(tmp_path):
    client = banner_app(tmp_path).test_client()
    html = banner_of(client.get("/page?x=1&lang=en").get_data(as_text=True))
    assert re.search(r'<section class="ck-banner"[^>]*>', html).group(0).find("hidden") < 0
    assert re.search(r'<a class="ck-reopen"[^>]*hidden', html)
    assert html.count('name="action" value="accept_all"') == 2  # first and second layer
    assert html.count('name="action" value="reject_all"') == 2
    assert 'data-consentkit-settings>Settings</button>' in html
    boxes = re.findall(r"<input class=\"ck-switch\"[^>]*>", html)
    assert len(boxes) == 5
    assert [("checked" in b) for b in boxes] == [True, False, False, False, False]
    assert "disabled" in boxes[0] and 'id="consentkit-cat-necessary"' in boxes[0]
    assert '<input type="hidden" name="next" value="/page?x=1&amp;lang=en">' in html
    assert '<input type="hidden" name="source" value="banner">' in html
    assert 'action="/consent/?lang=en"' in html
    assert '<a href="/privacy">Privacy policy</a>' in html
    # the first layer names every optional purpose
    text = visible_text(html)
    for purpose in ("features such as chat and maps", "visit statistics",
                    "speed and error measurement", "ads, social media and YouTube videos"):
        assert purpose in text


def test_first_layer_buttons_are_the_same_element_and_class():
    html = banner_app().test_client().get("/page").get_data(as_text=True)
    first = html[html.index('<section class="ck-banner"'):html.index("</section>")]
    buttons = re.findall(r"<button ([^>]*)>", first)
    assert len(buttons) == 3
    assert all('type="submit" class="ck-btn"' in b for b in buttons)


def test_decided_visitor_gets_a_closed_banner_and_the_reopen_control(tmp_path):
    client = banner_app(tmp_path).test_client()
    decide(client, "save", categories=["analytics"], source="banner")
    html = banner_of(client.get("/page").get_data(as_text=True))
    assert re.search(r'<section class="ck-banner"[^>]*hidden', html)
    reopen = re.search(r'<a class="ck-reopen"[^>]*>', html).group(0)
    assert "hidden" not in reopen and 'href="/consent/?next=/page&amp;lang=en"' in reopen
    checked = re.findall(r'id="consentkit-cat-(\w+)"[^>]*checked', html)
    assert checked == ["necessary", "analytics"]
    data = json.loads(re.search(r'id="consentkit-data">(.*?)</script>', html).group(1))
    assert data["decided"] is True and data["granted"] == ["analytics", "necessary"]
    assert data["consentMode"]["analytics"] == ["analytics_storage"]
    assert data["endpoint"] == "/consent/?lang=en"


def test_no_policy_link_when_the_app_has_none(client):
    assert "Privacy policy</a>" not in client.get("/").get_data(as_text=True)


def test_nonce_goes_on_the_script_and_stylesheet(app_factory):
    app = app_factory()

    @app.before_request
    def nonce() -> None:
        g.csp_nonce = 'abc"<x>'

    html = app.test_client().get("/").get_data(as_text=True)
    assert re.search(r'<link rel="stylesheet" href="/consent/static/consentkit.css" '
                     r'nonce="abc&#34;&lt;x&gt;">', html)
    assert re.search(r'<script src="/consent/static/consentkit.js" defer '
                     r'nonce="abc&#34;&lt;x&gt;"></script>', html)
    for page in (html, app.test_client().get("/consent/").get_data(as_text=True)):
        assert not re.search(r"\son[a-z]+\s*=", page)  # no inline event handlers
        assert not re.search(r"\sstyle\s*=|<style", page)  # no inline styles


def test_nonce_hook_of_the_extension_is_used(tmp_path):
    from flask import Flask

    from flask_consentkit import ConsentKit

    app = Flask(__name__)
    app.config.update(SECRET_KEY="x" * 32, CONSENTKIT_LEDGER_URL=None)
    ConsentKit(app, nonce_getter=lambda: "from-talisman")
    app.add_url_rule("/", "i", lambda: "<html><body></body></html>")
    html = app.test_client().get("/").get_data(as_text=True)
    assert html.count('nonce="from-talisman"') == 2


def test_a_nonce_from_a_property_of_flasks_own_request_class_is_used(tmp_path, monkeypatch):
    import flask
    from flask import Flask

    from flask_consentkit import ConsentKit

    monkeypatch.setattr(flask.Request, "csp_nonce", property(lambda self: "from-class"),
                        raising=False)
    app = Flask(__name__)
    app.config.update(SECRET_KEY="x" * 32, CONSENTKIT_LEDGER_URL=None)
    ConsentKit(app)
    app.add_url_rule("/", "i", lambda: "<html><body></body></html>")
    client = app.test_client()
    for _ in range(2):  # a page with a nonce is not kept: the second one too has it
        assert client.get("/").get_data(as_text=True).count('nonce="from-class"') == 2


def test_a_nonce_from_the_apps_own_g_class_is_used(tmp_path):
    from flask import Flask
    from flask.ctx import _AppCtxGlobals

    from flask_consentkit import ConsentKit

    class Globals(_AppCtxGlobals):
        def get(self, name, default=None):
            return "from-g-class" if name == "csp_nonce" else super().get(name, default)

    app = Flask(__name__)
    app.app_ctx_globals_class = Globals
    app.config.update(SECRET_KEY="x" * 32, CONSENTKIT_LEDGER_URL=None)
    ConsentKit(app)
    app.add_url_rule("/", "i", lambda: "<html><body></body></html>")
    html = app.test_client().get("/").get_data(as_text=True)
    assert html.count('nonce="from-g-class"') == 2


def test_kept_banners_and_pages_follow_each_request(app_factory):
    """The same page again is the same output; each path, choice and nonce gets its own."""
    app = app_factory()
    page = b"<html><body><main>story</main></body></html>"

    @app.get("/a")
    @app.get("/b")
    def same_bytes() -> Response:  # the very same object on every request
        return Response(page, mimetype="text/html")

    @app.get("/nonced")
    def nonced() -> Response:
        g.csp_nonce = f"n{len(nonces)}-{'x' * 20}"
        nonces.append(g.csp_nonce)
        return Response(page, mimetype="text/html")

    nonces: list[str] = []
    client = app.test_client()
    first, again = client.get("/a?x=1"), client.get("/a?x=1")
    assert first.get_data() == again.get_data()
    assert "next=/a?x%3D1" in first.get_data(as_text=True) or "/a?x=1" in first.get_data(
        as_text=True)
    other = client.get("/b").get_data(as_text=True)
    assert "/a?x=1" not in other and 'value="/b"' in other
    for response in (first, again):
        assert response.headers["Content-Length"] == str(len(response.get_data()))
    banner = app.extensions["consentkit"].banner
    kept = len(banner._encoded)
    for _ in range(3):
        html = client.get("/nonced").get_data(as_text=True)
        assert html.count(f'nonce="{nonces[-1]}"') == 2
    assert len(banner._encoded) == kept  # a banner with a nonce is not kept
    decide(client, "accept_all")
    decided = client.get("/a?x=1").get_data(as_text=True)
    assert decided != first.get_data(as_text=True)
    assert 'id="consentkit"' in decided


HOSTILE = '<b>"x"</b></script><script>alert(1)</script>'


def test_every_text_and_config_value_is_escaped(tmp_path):
    app = banner_app(
        tmp_path,
        CONSENTKIT_CATEGORIES=["necessary", {"key": "analytics", "label": HOSTILE,
                                             "description": HOSTILE}],
        CONSENTKIT_SERVICES=[{"name": HOSTILE, "category": "analytics", "purpose": HOSTILE,
                              "policy_url": "https://example.com/?a=1&b=\"2\"",
                              "cookies": ["_x"]}],
        CONSENTKIT_PRIVACY_POLICY_URL="/privacy?x=\"<y>",
        CONSENTKIT_COLLECTION_RULES={"user_agent": "analytics"},
    )
    app.extensions["consentkit"].consent_mode = {HOSTILE: ["ad_storage"]}
    client = app.test_client()
    for url in ("/page?next=%3C/script%3E", "/consent/?next=/%22%3E%3Cscript%3E"):
        html = client.get(url).get_data(as_text=True)
        assert "alert(1)</script>" not in html
        assert "<b>" not in html
        assert '"x"' not in html.replace('"x" ', "")  # quotes escaped as &#34;
        assert "&lt;b&gt;&#34;x&#34;&lt;/b&gt;&lt;/script&gt;" in html
        assert 'href="https://example.com/?a=1&amp;b=&#34;2&#34;"' in html
        assert 'href="/privacy?x=&#34;&lt;y&gt;"' in html
    html = client.get("/page").get_data(as_text=True)
    data_block = re.search(r'id="consentkit-data">(.*?)</script>', html, re.S).group(1)
    assert "</script>" not in data_block and "\\u003c/script\\u003e" in data_block
    assert HOSTILE in json.loads(data_block)["consentMode"]


# -- the choice round trip without JavaScript -------------------------------------------


def test_banner_form_round_trip(tmp_path):
    client = banner_app(tmp_path).test_client()
    response = client.post("/consent/?lang=az", data={
        "action": "accept_all", "next": "/page?lang=az", "lang": "az", "source": "banner",
    }, headers=SAME_ORIGIN)
    assert response.status_code == 303 and response.location == "/page?lang=az"
    state = client.get("/consent/state").get_json()
    assert state["source"] == "banner" and "marketing" in state["granted"]


# -- the preferences page --------------------------------------------------------


def test_preferences_page_lists_categories_services_and_cookies(tmp_path):
    client = banner_app(tmp_path, CONSENTKIT_COOKIES={"analytics": ["_ga", "_ga_*"]}).test_client()
    html = client.get("/consent/?next=/page&lang=en").get_data(as_text=True)
    assert '<html lang="en" dir="ltr">' in html
    assert html.count('id="consentkit"') == 0  # the page is not given a second banner
    assert "Accept-Language" in client.get("/consent/").vary
    for label in ("Strictly necessary", "Functional", "Analytics", "Performance", "Marketing"):
        assert f">{label}" in html
    assert "Count visits and show how the site is used" in html
    assert "<strong>Plausible</strong>: Counts visits without profiles" in html
    assert '<a href="/privacy" rel="noopener noreferrer">Plausible privacy policy</a>' in html
    for cookie in ("_pl", "_ga", "_ga_*", "_vh_*"):
        assert f"<code>{cookie}</code>" in html
    assert '<input type="hidden" name="source" value="preferences">' in html
    assert '<input type="hidden" name="next" value="/page">' in html
    assert "You have not chosen yet" in html
    boxes = re.findall(r"<input class=\"ck-switch\"[^>]*>", html)
    assert [("checked" in b) for b in boxes] == [True, False, False, False, False]
    # links to every language, the current one marked
    assert html.count("hreflang=") == 4
    assert re.search(r'hreflang="en" aria-current="true"', html)


def test_preferences_page_shows_the_current_choice(tmp_path):
    client = banner_app(tmp_path).test_client()
    decide(client, "save", categories=["functional", "marketing"])
    html = client.get("/consent/?lang=ru").get_data(as_text=True)
    assert '<html lang="ru" dir="ltr">' in html and "Ниже показан ваш текущий выбор." in html
    assert re.findall(r'id="consentkit-cat-(\w+)"[^>]*checked', html) == [
        "necessary", "functional", "marketing"]


def test_preferences_page_next_is_kept_on_this_site(client):
    html = client.get("/consent/?next=https://evil.example/").get_data(as_text=True)
    assert 'name="next" value="/"' in html and "evil" not in html


# -- services for the other subsystems ----------------------------------------------


def test_translate_service(app):
    translate = app.extensions["consentkit"].translate
    with app.test_request_context("/?lang=tr"):
        assert translate("placeholder.button") == "Çerez ayarlarını aç"
        assert translate("placeholder.text", category="Analitik") == (
            "Bu içerik başka bir hizmetten yükleniyor. Görmek için “Analitik” çerezlerine "
            "izin verin.")
        assert translate("category.marketing.label") == "Pazarlama"
        assert translate("no.such.key") == "no.such.key"
    with app.test_request_context("/", headers={"Accept-Language": "ru"}):
        assert translate("placeholder.title") == "Контент заблокирован"
    with app.app_context():  # outside a request: the default language
        assert translate("placeholder.title") == "Content blocked"


def test_translate_service_gives_the_apps_own_category_texts(app_factory):
    app = app_factory(CONSENTKIT_CATEGORIES=[
        "necessary", "analytics", "performance",
        {"key": "video", "label": {"en": "Videos", "az": "Videolar"}},
        "social"])
    translate = app.extensions["consentkit"].translate
    with app.test_request_context("/?lang=az"):
        assert translate("category.video.label") == "Videolar"
        assert translate("category.analytics.label") == "Analitik"
        assert translate("category.social.label") == "Social"
        assert translate("category.social.description") == ""
        assert translate("category.unknown.label") == "category.unknown.label"


def test_banner_fingerprint_is_the_id_of_the_notice_of_the_text_shown(tmp_path):
    app = banner_app(tmp_path)
    ext = app.extensions["consentkit"]
    fingerprint = ext.banner_fingerprint
    client = app.test_client()
    html = client.get("/page?lang=az").get_data(as_text=True)
    shown = visible_text(banner_of(html))
    with app.test_request_context("/consent/?lang=az", method="POST"):
        digest, lang = fingerprint()
        ident, _, notice = ext.notice()
    assert lang == "az"
    assert digest == ident == notice_id(notice)  # the SHA-256 of the notice kept
    assert notice["text"] == shown  # which holds the text shown
    assert "Hamısını rədd et" in shown and "Plausible" in shown
    with app.test_request_context("/consent/?lang=en", method="POST"):
        assert fingerprint()[0] != digest
    # another text means another fingerprint
    app2 = banner_app(tmp_path, CONSENTKIT_SERVICES=[], CONSENTKIT_CATEGORIES=[
        "necessary", {"key": "analytics", "description": "Other words"}],
        CONSENTKIT_COLLECTION_RULES={"user_agent": "analytics"})
    with app2.test_request_context("/consent/?lang=az", method="POST"):
        assert app2.extensions["consentkit"].banner_fingerprint()[0] != digest


def test_url_prefix_is_followed(app_factory):
    html = app_factory(CONSENTKIT_URL_PREFIX="/privacy-choices").test_client().get(
        "/").get_data(as_text=True)
    assert 'action="/privacy-choices/?lang=en"' in html
    assert 'href="/privacy-choices/static/consentkit.css"' in html
    assert 'formaction="/privacy-choices/"' in html


def test_an_overridden_template_is_rendered_on_every_request(tmp_path):
    folder = tmp_path / "templates" / "consentkit"
    folder.mkdir(parents=True)
    (folder / "banner.html").write_text(
        '<div id="consentkit" lang="{{ ui.lang }}">{{ request.path }} {{ ui.t("banner.accept") }}'
        "</div>")
    app = make_app(tmp_path)
    app.template_folder = str(tmp_path / "templates")

    @app.get("/other")
    def other() -> str:
        return "<html><body></body></html>"

    client = app.test_client()
    assert '<div id="consentkit" lang="en">/ Accept all</div>' in client.get("/").get_data(
        as_text=True)
    assert "/other Hamısını qəbul et" in client.get("/other?lang=az").get_data(as_text=True)


def test_a_privacy_signal_is_explained_in_the_banner(tmp_path):
    app = banner_app(tmp_path)
    client = app.test_client()
    note = "Global Privacy Control signal received; opt-out request honored"
    assert note not in client.get("/page").get_data(as_text=True)
    assert note in client.get("/page", headers={"Sec-GPC": "1"}).get_data(as_text=True)
    fingerprint = app.extensions["consentkit"].banner_fingerprint
    with app.test_request_context("/consent/", method="POST"):
        plain = fingerprint()
    with app.test_request_context("/consent/", method="POST", headers={"Sec-GPC": "1"}):
        assert fingerprint()[0] != plain[0]  # the text shown differs, so does its hash
    ignored = banner_app(tmp_path, CONSENTKIT_HONOR_GPC=False).test_client()
    assert note not in ignored.get("/page", headers={"Sec-GPC": "1"}).get_data(as_text=True)


def test_shipped_js_and_css_stay_within_six_kilobytes_gzipped(client):
    total = 0
    for name in ("consentkit.js", "consentkit.css"):
        response = client.get(f"/consent/static/{name}")
        assert response.status_code == 200
        total += len(gzip.compress(response.get_data(), 9))
        response.close()
    assert total <= 6 * 1024


def test_a_decided_visitors_reopened_banner_says_what_they_chose(tmp_path):
    client = banner_app(tmp_path).test_client()
    undecided = visible_text(banner_of(client.get("/page").get_data(as_text=True)))
    assert "Nothing optional is on until you choose" in undecided
    client.post("/consent/", json={"action": "save", "categories": ["analytics", "marketing"]},
                headers={"Origin": "http://localhost"})
    text = visible_text(banner_of(client.get("/page").get_data(as_text=True)))
    assert "You have allowed: Analytics, Marketing. Change it below or, category by " \
           "category, in “Settings”." in text
    assert "Nothing optional is on until you choose" not in text
    client.post("/consent/", json={"action": "reject_all"}, headers={"Origin": "http://localhost"})
    text = visible_text(banner_of(client.get("/page?lang=ru").get_data(as_text=True)))
    assert "Вы разрешили только строго необходимые cookie." in text


def test_long_button_labels_may_break_between_syllables():
    from flask_consentkit.banner import soft_hyphens

    assert soft_hyphens("Tənzimləmələr") == "Tənzim\u00adləmələr"
    assert soft_hyphens("Hamısını qəbul et") == "Hamısını qəbul et"  # short words: unchanged
    assert soft_hyphens("Seçimimi yadda saxla") == "Seçimimi yadda saxla"
    assert soft_hyphens("aaaaaaaaaaaaaa") == "aaaaaaaaaaaaaa"  # no syllable start: unchanged
