"""A real app's first day, in Chromium: flaskr with GA4, GTM, Yandex Metrica, the Meta pixel and
a YouTube embed, from the first visit through withdrawal and erasure.

Each flow covers a different corner, so that every dimension is met at least once without
running every combination: JavaScript on and off; 1280 px, 375 px and 320 px wide; az, en, ru
and tr; with and without Global Privacy Control; flaskr's stylesheet and a hostile one, light
and dark. Nothing leaves 127.0.0.1: requests to the vendors are recorded and aborted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from .helpers import forge, payload
from .thirdparty.flaskr.app import SECRET, VENDOR_COOKIES, create_app

pytestmark = pytest.mark.browser

ANALYTICS_COOKIES = {"_ga", "_ga_X", "_gid", "_ym_uid", "_hjSessionUser_1"}
HOSTILE_CSS = """
* { font-family: "Comic Sans MS", cursive; color: #f0f; background: #ff0; margin: 7px;
    padding: 9px; letter-spacing: 3px; text-transform: uppercase; line-height: 3;
    box-sizing: content-box; border: 3px dotted red; text-align: center; }
h2 { font: italic 40px/1 serif; color: #cce; text-decoration: underline; display: inline; }
p { color: #ddd; font-size: 9px; margin: 40px; float: left; width: 30%; }
button { background: #000; color: #111; border-radius: 0; padding: 30px; width: 50px;
         font-size: 30px; position: relative; top: 20px; }
input { width: 200px; height: 50px; appearance: auto; opacity: .2; }
label { color: #eee; font-size: 8px; display: block; float: right; }
dialog { background: #000; color: #000; position: static; width: 100px; padding: 0; }
a { color: #eee; }
"""


@pytest.fixture
def flaskr(tmp_path: Path, request: Any) -> Flask:
    app = create_app(tmp_path, **getattr(request, "param", {}))

    @app.get("/_plain")
    def plain() -> str:  # the same banner on a page without any stylesheet
        return "<!doctype html><title>plain</title><p>plain page</p>"

    @app.get("/_hostile")
    def hostile() -> str:
        return f"<!doctype html><title>hostile</title><style>{HOSTILE_CSS}</style><p>page</p>"

    return app


@pytest.fixture
def server(live_server: Any, flaskr: Flask) -> Any:
    return live_server(flaskr)


class Visitor:
    """A browser context that reaches only the test server; what else it asked for is kept."""

    def __init__(self, browser: Any, server: Any, **options: Any) -> None:
        self.server = server
        self.context = browser.new_context(reduced_motion="reduce", **options)
        self.elsewhere: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()

    def _route(self, route: Any) -> None:
        if route.request.url.startswith(self.server.url + "/"):
            route.continue_()
        else:
            self.elsewhere.append(route.request.url)
            route.abort()

    def goto(self, path: str) -> None:
        self.page.goto(self.server.url + path)

    def cookies(self) -> set[str]:
        return {c["name"] for c in self.context.cookies()}

    def vendors_set_their_cookies(self) -> None:
        """What GA4, Meta, Yandex and Hotjar's scripts would do once they run."""
        assert self.page.request.get(self.server.url + "/_vendors/cookies").status == 204
        assert set(VENDOR_COOKIES) <= self.cookies()

    def fraction(self) -> float:
        """How much of the screen the first layer covers."""
        box = self.page.locator("#consentkit-banner").bounding_box()
        assert box is not None
        return float(box["height"]) / self.page.viewport_size["height"]

    def fits(self) -> bool:
        width = self.page.viewport_size["width"]
        return bool(self.page.evaluate("document.documentElement.scrollWidth") <= width)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visitor(browser: Any, server: Any) -> Iterator[Any]:
    made: list[Visitor] = []

    def make(**options: Any) -> Visitor:
        made.append(Visitor(browser, server, **options))
        return made[-1]

    yield make
    for v in made:
        v.close()


def test_desktop_with_javascript_in_english(visitor: Any, flaskr: Flask) -> None:
    v = visitor(viewport={"width": 1280, "height": 800})
    v.goto("/")
    page = v.page
    banner = page.locator("#consentkit-banner")
    assert banner.is_visible()  # flaskr's pages have no <body>: the banner is there anyway
    assert v.elsewhere == []  # no vendor was even asked before consent
    # the invisible GTM frame has no placeholder; the YouTube embed has one, and no box
    assert page.locator(".consentkit-placeholder").count() == 1
    placeholder = page.locator(".consentkit-placeholder")
    assert placeholder.is_visible() and "Marketing" in placeholder.inner_text()
    frame = page.locator("iframe[title='YouTube video player']")
    assert frame.evaluate("e => getComputedStyle(e).display") == "none"
    # flaskr's heading rule (serif, blue) does not reach the banner's title
    title = page.locator("#consentkit-title")
    assert title.evaluate("e => getComputedStyle(e).fontFamily").startswith("system-ui")
    assert title.evaluate("e => getComputedStyle(e).color") == "rgb(27, 27, 31)"

    with page.expect_navigation():  # the choice widens the browser policy: a reload
        page.click("#consentkit-banner [value=accept_all]")
    page.wait_for_function("typeof window.gtag === 'function'")
    assert any("googletagmanager.com/gtag/js" in url for url in v.elsewhere)
    assert any("mc.yandex.ru/metrika/tag.js" in url for url in v.elsewhere)
    assert any("youtube.com/embed/" in url for url in v.elsewhere)
    v.vendors_set_their_cookies()
    assert "session" in v.cookies()

    # withdrawal from the reopened banner, which says what was chosen
    page.click(".ck-reopen")
    assert banner.is_visible()
    assert "You have allowed: Functional, Analytics, Performance, Marketing." in \
        banner.inner_text()
    with page.expect_navigation():
        page.click("#consentkit-banner [value=reject_all]")
    left = v.cookies()
    assert not set(VENDOR_COOKIES) & left  # HttpOnly ones included, none of them declared
    assert {"session", "theme", "consentkit"} <= left
    assert page.locator(".ck-reopen").is_visible()


def test_phone_without_javascript_in_russian_through_erasure(visitor: Any,
                                                             flaskr: Flask) -> None:
    v = visitor(viewport={"width": 375, "height": 812}, java_script_enabled=False)
    page = v.page
    v.goto("/?lang=ru")
    assert page.locator("#consentkit").get_attribute("lang") == "ru"
    assert v.fraction() <= 0.35 and v.fits()
    page.click("nav >> text=Log In")  # flaskr's own link, without ?lang=
    page.wait_for_url("**/auth/login")
    assert page.locator("#consentkit").get_attribute("lang") == "ru"
    assert "consentkit_lang" in v.cookies()

    page.click("#consentkit-banner [value=accept_all]")  # a plain form POST
    page.wait_for_url("**/auth/login")
    assert page.locator("#consentkit-banner").is_hidden()
    v.vendors_set_their_cookies()

    page.click(".ck-reopen")  # without JavaScript: the preferences page
    page.wait_for_url("**/consent/**")
    records = page.locator("#consentkit-records")
    assert "Записи о вашем согласии" in records.inner_text()
    with page.expect_download() as download:
        page.click("text=Скачать мои записи о согласии")
    exported = json.loads(Path(download.value.path()).read_text())
    assert [r["action"] for r in exported["receipts"]] == ["accept_all"]

    page.click("text=Удалить мои записи о согласии…")
    assert "Удалить записи о вашем согласии?" in records.inner_text()
    page.click("#consentkit-records button[type=submit]")  # the confirmation
    assert "удалены" in page.locator("#consentkit-records").inner_text()
    left = v.cookies()
    assert "consentkit" not in left and not set(VENDOR_COOKIES) & left
    assert "session" in left
    ledger = flaskr.extensions["consentkit"].ledger
    assert ledger.verify().erased == 1


def test_small_phone_with_javascript_in_azerbaijani_withdraws_one_category(
        visitor: Any) -> None:
    v = visitor(viewport={"width": 320, "height": 568}, extra_http_headers={"Sec-GPC": "1"})
    page = v.page
    v.goto("/?lang=az")
    assert page.locator(".ck-note").is_visible()  # the privacy signal is explained
    assert v.fraction() <= 0.50 and v.fits()
    placeholder = page.locator(".consentkit-placeholder").bounding_box()
    assert placeholder is not None and placeholder["x"] + placeholder["width"] <= 320

    page.click("#consentkit-banner [data-consentkit-settings]")
    page.locator("#consentkit-preferences").wait_for()
    page.check("#consentkit-cat-analytics")
    with page.expect_navigation():
        page.click("#consentkit-preferences [value=save]")
    v.vendors_set_their_cookies()

    page.click(".ck-reopen")
    assert "Siz bunlara icazə vermisiniz: Analitik." in page.locator(
        "#consentkit-banner").inner_text()
    page.click("#consentkit-banner [data-consentkit-settings]")
    page.uncheck("#consentkit-cat-analytics")
    with page.expect_navigation():
        page.click("#consentkit-preferences [value=save]")
    left = v.cookies()
    assert not ANALYTICS_COOKIES & left
    assert "_fbp" in left  # marketing was never granted, so nothing of it was withdrawn
    assert v.fits()


#: what changed in a new policy version, one short sentence per language
CHANGES = {"en": "We added Yandex Metrica for statistics.",
           "az": "Statistika üçün Yandex Metrica əlavə etdik.",
           "ru": "Добавили Яндекс Метрику для статистики.",
           "tr": "İstatistik için Yandex Metrica ekledik."}
CHANGED = {"CONSENTKIT_POLICY_VERSION": "2", "CONSENTKIT_POLICY_EFFECTIVE": "2026-11-01",
           "CONSENTKIT_POLICY_CHANGES": CHANGES}
#: the first layer's notices besides the purposes: the privacy signal's (every case, the
#: visitor sends Sec-GPC), the minimum age, the policy's change for a returning visitor
NOTICES = {"gpc": {}, "min-age": {"CONSENTKIT_MIN_AGE": 13}, "policy-changed": CHANGED,
           "all": {**CHANGED, "CONSENTKIT_MIN_AGE": 13}}


@pytest.mark.parametrize("flaskr", list(NOTICES.values()), ids=list(NOTICES), indirect=True)
@pytest.mark.parametrize("width, height, limit", [(375, 812, 0.35), (320, 568, 0.50)])
def test_the_first_layer_leaves_the_page_visible_in_every_language(
        visitor: Any, flaskr: Flask, width: int, height: int, limit: float) -> None:
    v = visitor(viewport={"width": width, "height": height},
                extra_http_headers={"Sec-GPC": "1"})
    settings = flaskr.extensions["consentkit"].settings
    returning = settings.policy_version != "1"
    if returning:  # a choice made under the previous version: asked again
        v.context.add_cookies([{"name": "consentkit", "value": forge(payload(v="1"), key=SECRET),
                                "url": v.server.url}])
    for lang in ("az", "en", "ru", "tr"):
        v.goto(f"/auth/register?lang={lang}")
        assert v.page.locator(".ck-note").is_visible()
        assert v.page.locator(".ck-gpc").is_visible()
        assert v.page.locator(".ck-age").is_visible() == bool(settings.min_age), lang
        assert v.page.locator(".ck-changed").is_visible() == returning, lang
        if returning:
            assert CHANGES[lang] in v.page.locator("#consentkit-banner").inner_text()
        assert v.fraction() <= limit, lang
        assert v.fits(), lang
        boxes = [b.bounding_box() for b in v.page.locator("#consentkit-banner .ck-btn").all()]
        assert all(b is not None and b["y"] + b["height"] <= height for b in boxes)


#: what the banner must keep, whatever the host page's stylesheet says
LOOK = ["fontFamily", "fontSize", "fontWeight", "fontStyle", "lineHeight", "color",
        "backgroundColor", "marginTop", "marginLeft", "paddingTop", "paddingLeft",
        "borderTopWidth", "borderTopStyle", "borderTopColor", "textTransform", "letterSpacing",
        "textAlign", "textDecorationLine", "display", "float", "position", "opacity",
        "width", "height"]
PARTS = ["#consentkit-banner", "#consentkit-title", "#consentkit-banner .ck-text",
         "#consentkit-banner .ck-btn", "#consentkit-banner a",
         "#consentkit-preferences", "#consentkit-preferences .ck-cat-label",
         "#consentkit-preferences .ck-switch", "#consentkit-preferences .ck-cat-desc",
         "#consentkit-preferences .ck-btn", "#consentkit-preferences .ck-close"]


def _look(page: Any) -> dict[str, list[str]]:
    return dict(page.evaluate("""([parts, props]) => Object.fromEntries(parts.map(sel => {
        const s = getComputedStyle(document.querySelector(sel));
        return [sel, props.map(p => s[p])];
    }))""", [PARTS, LOOK]))


def _contrast(page: Any, axe_source: str) -> list[str]:
    page.evaluate("Promise.all(document.getAnimations().map(a => a.finished))")
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(axe_source)
    result = page.evaluate("axe.run({include: ['#consentkit']}, "
                           "{runOnly: ['color-contrast', 'target-size']})")
    return [f"{v['id']}: {[n['target'] for n in v['nodes']]}" for v in result["violations"]]


@pytest.mark.parametrize("host", ["/auth/login", "/_hostile"])
def test_the_banner_keeps_its_look_and_contrast_under_the_host_pages_css(
        visitor: Any, axe_source: str, host: str) -> None:
    for scheme in ("light", "dark"):
        v = visitor(viewport={"width": 1280, "height": 800}, color_scheme=scheme)
        looks = []
        for path in ("/_plain?lang=tr", f"{host}?lang=tr"):
            v.goto(path)
            if path.startswith(host):  # the host's rules do apply to the host's page
                own = "body > p" if host == "/_hostile" else "nav h1"
                style = v.page.evaluate(
                    f"getComputedStyle(document.querySelector('{own}')).fontFamily")
                assert "serif" in style or "Comic Sans" in style, style
            v.page.click("#consentkit-banner [data-consentkit-settings]")
            v.page.locator("#consentkit-preferences").wait_for()
            looks.append(_look(v.page))
            assert _contrast(v.page, axe_source) == [], (scheme, path)
            v.page.keyboard.press("Escape")
            assert _contrast(v.page, axe_source) == [], (scheme, path)
        plain, hosted = looks
        for part in PARTS:
            assert dict(zip(LOOK, hosted[part], strict=True)) == \
                dict(zip(LOOK, plain[part], strict=True)), (scheme, part)
