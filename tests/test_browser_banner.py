"""The banner in a real Chromium: with and without JavaScript, keyboard, CSP, layout."""

from __future__ import annotations

from typing import Any

import pytest

from .banner_app import banner_app

pytestmark = pytest.mark.browser

BUTTONS = "#consentkit-banner .ck-btn"


def state(page: Any, server: Any) -> dict[str, Any]:
    """The visitor's consent as the server sees it (same cookies as the page)."""
    result: dict[str, Any] = page.request.get(server.url + "/consent/state").json()
    return result


@pytest.fixture
def server(live_server: Any, tmp_path: Any) -> Any:
    return live_server(banner_app(tmp_path))


def test_new_visitor_sees_the_banner_and_a_decided_one_does_not(server, page):
    page.goto(server.url + "/page")
    banner = page.locator("#consentkit-banner")
    assert banner.is_visible()
    assert page.locator(BUTTONS).count() == 3
    assert page.locator(".ck-reopen").is_hidden()
    assert state(page, server)["decided"] is False
    page.click("#consentkit-banner [value=reject_all]")
    banner.wait_for(state="hidden")
    page.reload()
    assert page.locator("#consentkit-banner").is_hidden()
    assert page.locator(".ck-reopen").is_visible()


def test_accept_all_with_js_activates_gated_markup_in_place(server, page):
    page.goto(server.url + "/page")
    assert page.evaluate("window.analyticsRan") is None
    assert page.get_attribute("iframe", "src") is None
    page.click("#consentkit-banner [value=accept_all]")
    page.wait_for_function("window.analyticsRan === 1")
    assert page.evaluate("window.pageMarker") == "original"  # no reload
    assert page.evaluate("window.marketingRan") is True  # neutralised tracker too
    page.wait_for_function("window.moduleRan === true")  # data-type="module" kept
    assert page.get_attribute("iframe", "src") == "/embed"
    assert page.locator("[data-consent-placeholder]").count() == 0
    assert page.locator("#consentkit-banner").is_hidden()
    assert state(page, server)["granted"] == [
        "analytics", "functional", "marketing", "necessary", "performance"
    ]
    # the activated script is not run twice by a second activation
    page.evaluate("window.consentkit.activate(['analytics'])")
    assert page.evaluate("window.analyticsRan") == 1
    assert page.locator(".ck-status").text_content() == "Your choice has been saved."


def test_reject_all_with_js_keeps_everything_inert(server, page):
    page.goto(server.url + "/page")
    page.click("#consentkit-banner [value=reject_all]")
    page.locator("#consentkit-banner").wait_for(state="hidden")
    got = state(page, server)
    assert got["decided"] is True and got["granted"] == ["necessary"]
    assert got["source"] == "banner"
    assert page.evaluate("window.analyticsRan") is None
    assert page.get_attribute("iframe", "src") is None
    assert page.evaluate("window.pageMarker") == "original"
    assert page.evaluate("window.gtagCalls")[-1] == ["consent", "update", {
        "analytics_storage": "denied", "ad_storage": "denied", "ad_user_data": "denied",
        "ad_personalization": "denied"}]


def test_settings_then_save_with_js_grants_only_what_was_ticked(server, page):
    page.goto(server.url + "/page")
    page.click("#consentkit-banner [data-consentkit-settings]")
    dialog = page.locator("#consentkit-preferences")
    assert dialog.is_visible()
    boxes = dialog.locator("input[name=categories]")
    assert [boxes.nth(i).is_checked() for i in range(boxes.count())] == [
        True, False, False, False, False
    ]  # only "necessary", which is disabled
    assert dialog.locator("#consentkit-cat-necessary").is_disabled()
    assert dialog.get_by_text("Plausible", exact=True).count() == 1
    page.check("#consentkit-cat-analytics")
    dialog.locator("button[value=save]").click()
    page.wait_for_function("window.analyticsRan === 1")
    assert dialog.is_hidden()
    assert page.locator("#consentkit-banner").is_hidden()
    assert state(page, server)["granted"] == ["analytics", "necessary"]
    assert page.evaluate("window.marketingRan") is None
    assert page.evaluate("window.gtagCalls")[-1][2]["analytics_storage"] == "granted"
    assert page.evaluate("window.gtagCalls")[-1][2]["ad_storage"] == "denied"


@pytest.mark.parametrize("action, granted", [
    ("accept_all", ["analytics", "functional", "marketing", "necessary", "performance"]),
    ("reject_all", ["necessary"]),
])
def test_first_layer_without_js_posts_and_returns(server, nojs_page, action, granted):
    page = nojs_page
    page.goto(server.url + "/page?lang=en")
    assert page.locator("#consentkit-banner").is_visible()
    page.click(f"#consentkit-banner [value={action}]")
    page.wait_for_load_state()
    assert page.url == server.url + "/page?lang=en"
    assert page.locator("#consentkit-banner").is_hidden()
    assert page.locator(".ck-reopen").is_visible()
    assert state(page, server)["granted"] == granted


def test_settings_without_js_opens_the_preferences_page(server, nojs_page):
    page = nojs_page
    page.goto(server.url + "/page?lang=az")
    page.click("#consentkit-banner [data-consentkit-settings]")
    page.wait_for_url("**/consent/**")
    assert page.locator("html").get_attribute("lang") == "az"
    assert page.locator("h1").text_content() == "Kuki tənzimləmələri"
    page.check("#consentkit-cat-performance")
    page.click("button[value=save]")
    page.wait_for_url(server.url + "/page?lang=az")
    got = state(page, server)
    assert got["granted"] == ["necessary", "performance"]
    assert got["source"] == "preferences"


def test_reopen_and_withdraw_with_js(server, page):
    page.goto(server.url + "/page")
    page.click("#consentkit-banner [value=accept_all]")
    page.wait_for_function("window.analyticsRan === 1")
    reopen = page.locator(".ck-reopen")
    reopen.click()
    banner = page.locator("#consentkit-banner")
    assert banner.is_visible()
    assert page.evaluate("document.activeElement.id") == "consentkit-banner"
    with page.expect_navigation():  # a withdrawal reloads: running scripts cannot be stopped
        page.click("#consentkit-banner [value=reject_all]")
    assert state(page, server)["granted"] == ["necessary"]
    assert page.evaluate("window.analyticsRan") is None
    assert page.locator("#consentkit-banner").is_hidden()


def test_reopen_and_withdraw_without_js(server, nojs_page):
    page = nojs_page
    page.goto(server.url + "/page")
    page.click("#consentkit-banner [value=accept_all]")
    page.wait_for_load_state()
    page.click(".ck-reopen")
    page.wait_for_url("**/consent/**")
    assert page.is_checked("#consentkit-cat-marketing")  # the current choice is shown
    page.click("button[value=reject_all]")
    page.wait_for_url(server.url + "/page")
    assert state(page, server)["granted"] == ["necessary"]


def test_escape_closes_preferences_and_a_reopened_banner(server, page):
    page.goto(server.url + "/page")
    settings = page.locator("#consentkit-banner [data-consentkit-settings]")
    settings.click()
    assert page.locator("#consentkit-preferences").is_visible()
    page.keyboard.press("Escape")
    page.locator("#consentkit-preferences").wait_for(state="hidden")
    page.wait_for_function("document.activeElement.hasAttribute('data-consentkit-settings')")
    # the first layer of an undecided visitor stays: silence is not a choice
    page.keyboard.press("Escape")
    assert page.locator("#consentkit-banner").is_visible()
    page.click("#consentkit-banner [value=reject_all]")
    page.locator("#consentkit-banner").wait_for(state="hidden")
    page.locator(".ck-reopen").click()
    page.keyboard.press("Escape")
    page.locator("#consentkit-banner").wait_for(state="hidden")
    assert page.evaluate("document.activeElement.className") == "ck-reopen"


def test_placeholder_opens_the_preferences_at_its_category(server, page):
    page.goto(server.url + "/page")
    page.click("[data-consentkit-open=functional]")
    assert page.locator("#consentkit-preferences").is_visible()
    assert page.evaluate("document.activeElement.id") == "consentkit-cat-functional"
    page.keyboard.press("Space")
    page.click("#consentkit-preferences button[value=save]")
    page.wait_for_function("document.querySelector('iframe').getAttribute('src') === '/embed'")
    assert page.locator("[data-consent-placeholder]").count() == 0
    assert state(page, server)["granted"] == ["functional", "necessary"]


def test_keyboard_only_path_through_every_control(server, page):
    page.goto(server.url + "/page")
    focused = "document.activeElement"
    assert page.evaluate(f"{focused}.id") == "consentkit-banner"  # focus moved into it
    order = []
    for _ in range(4):
        page.keyboard.press("Tab")
        order.append(page.evaluate(f"{focused}.textContent.trim()"))
    assert order == ["Privacy policy", "Accept all", "Reject all", "Settings"]
    page.keyboard.press("Enter")
    assert page.locator("#consentkit-preferences").is_visible()
    assert page.evaluate(f"{focused}.id") == "consentkit-cat-functional"
    seen = []
    for _ in range(20):  # the modal dialog keeps focus inside it
        seen.append(page.evaluate(f"{focused}.id || {focused}.value || "
                                  f"{focused}.textContent.trim()"))
        if seen[-1] == "reject_all":
            break
        page.keyboard.press("Tab")
    details = "Services and cookies"  # the analytics and marketing services
    assert seen == ["consentkit-cat-functional", "consentkit-cat-analytics", details,
                    "consentkit-cat-performance", "consentkit-cat-marketing", details,
                    "save", "accept_all", "reject_all"]
    for _ in range(4):  # back onto the marketing toggle
        page.keyboard.press("Shift+Tab")
    assert page.evaluate(f"{focused}.id") == "consentkit-cat-marketing"
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate(f"{focused}.value") == "save"
    page.keyboard.press("Enter")
    page.locator("#consentkit-preferences").wait_for(state="hidden")
    assert state(page, server)["granted"] == ["marketing", "necessary"]
    # focus lands on the reopen control; Enter reopens the banner
    assert page.evaluate(f"{focused}.className") == "ck-reopen"
    page.keyboard.press("Enter")
    assert page.evaluate(f"{focused}.id") == "consentkit-banner"


def test_focus_is_not_trapped_on_the_first_layer(server, page):
    page.goto(server.url + "/page")
    page.focus("#first-link")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('#consentkit')") is None


@pytest.mark.parametrize("width", [1280, 320])
def test_first_layer_buttons_have_equal_prominence(browser, server, width):
    height = 568 if width == 320 else 800  # a small phone: iPhone SE, first generation
    context = browser.new_context(viewport={"width": width, "height": height},
                                  reduced_motion="reduce")
    try:
        page = context.new_page()
        for lang in ("en", "az", "ru", "tr"):
            page.goto(server.url + f"/page?lang={lang}")
            boxes = [b.bounding_box() for b in page.locator(BUTTONS).all()]
            assert len(boxes) == 3
            for box in boxes:  # all three visible without scrolling, side by side or stacked
                assert 0 <= box["y"] and box["y"] + box["height"] <= height
            for box in boxes[1:]:
                assert abs(box["width"] - boxes[0]["width"]) <= 2
                assert abs(box["height"] - boxes[0]["height"]) <= 2
            styles = page.eval_on_selector_all(BUTTONS, """buttons => buttons.map(b => {
                const s = getComputedStyle(b);
                return [b.tagName, s.color, s.backgroundColor, s.fontSize, s.fontWeight,
                        s.borderTopColor, s.borderTopWidth, s.borderRadius];
            })""")
            assert styles[0] == styles[1] == styles[2]
            assert page.evaluate("document.documentElement.scrollWidth") <= width
    finally:
        context.close()


def test_no_layout_shift_and_no_request_to_other_origins(server, page):
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server.url + "/page")
    before = page.locator("#content").bounding_box()
    shift = page.evaluate("""() => new Promise(resolve => {
        let total = 0;
        new PerformanceObserver(list => {
            for (const e of list.getEntries()) total += e.value;
        }).observe({type: 'layout-shift', buffered: true});
        requestAnimationFrame(() => requestAnimationFrame(() => resolve(total)));
    })""")
    assert shift == 0
    assert page.evaluate("getComputedStyle(document.getElementById('consentkit-banner'))"
                         ".position") == "fixed"
    page.click("#consentkit-banner [value=accept_all]")
    page.wait_for_function("window.analyticsRan === 1")
    assert page.locator("#content").bounding_box() == before
    assert requests and all(url.startswith(server.url + "/") for url in requests)


def test_dark_mode_and_reduced_motion(browser, server):
    for scheme, motion, animation in (("dark", "reduce", "none"), ("light", "no-preference",
                                                                   "ck-in")):
        context = browser.new_context(color_scheme=scheme, reduced_motion=motion)
        try:
            page = context.new_page()
            page.goto(server.url + "/page")
            banner = page.locator("#consentkit-banner")
            background = banner.evaluate("e => getComputedStyle(e).backgroundColor")
            assert background == ("rgb(28, 28, 33)" if scheme == "dark" else "rgb(255, 255, 255)")
            assert banner.evaluate("e => getComputedStyle(e).animationName") == animation
        finally:
            context.close()


def test_strict_csp_has_no_violations(live_server, browser, tmp_path):
    server = live_server(banner_app(tmp_path, csp=True))
    context = browser.new_context()
    try:
        page = context.new_page()
        page.add_init_script("""window.cspViolations = [];
            document.addEventListener('securitypolicyviolation',
                e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));""")
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        page.goto(server.url + "/page")
        assert page.locator("#consentkit-banner").evaluate(
            "e => getComputedStyle(e).position") == "fixed"  # the stylesheet loaded
        page.click("#consentkit-banner [data-consentkit-settings]")
        page.check("#consentkit-cat-analytics")
        page.click("#consentkit-preferences button[value=save]")
        page.locator("#consentkit-banner").wait_for(state="hidden")
        # (wait_for_function would need 'unsafe-eval'; the page itself must not)
        assert page.evaluate("window.analyticsRan") == 1  # activated under the nonce
        page.goto(server.url + "/consent/")
        assert page.evaluate("window.cspViolations") == []
        assert not [m for m in console if "Content Security Policy" in m]
    finally:
        context.close()
    context = browser.new_context(java_script_enabled=False)
    try:  # the plain forms under the same policy
        page = context.new_page()
        console.clear()
        page.on("console", lambda m: console.append(m.text))
        page.goto(server.url + "/page")
        page.click("#consentkit-banner [value=reject_all]")
        page.wait_for_load_state()
        assert page.url == server.url + "/page"
        assert page.locator(".ck-reopen").is_visible()
        assert not [m for m in console if "Content Security Policy" in m]
    finally:
        context.close()


AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def axe(page: Any, source: str) -> list[str]:
    # let the slide-in and fade-in finish: half-transparent text has lower contrast
    page.evaluate("Promise.all(document.getAnimations().map(a => a.finished))")
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(source)
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})",
                           AXE_TAGS)
    return [f"{v['id']}: {[n['target'] for n in v['nodes']]}" for v in result["violations"]]


@pytest.mark.parametrize("lang", ["az", "en", "ru", "tr"])
def test_axe_finds_no_violations(server, page, axe_source, lang):
    page.goto(server.url + f"/page?lang={lang}")
    assert page.locator("#consentkit").get_attribute("lang") == lang
    assert axe(page, axe_source) == []
    page.click("#consentkit-banner [data-consentkit-settings]")
    page.locator("#consentkit-preferences").wait_for()
    page.click("#consentkit-preferences summary >> nth=0")
    assert axe(page, axe_source) == []
    page.goto(server.url + f"/consent/?lang={lang}")
    assert axe(page, axe_source) == []


def test_axe_in_dark_mode(browser, server, axe_source):
    context = browser.new_context(color_scheme="dark")
    try:
        page = context.new_page()
        page.goto(server.url + "/page")
        assert axe(page, axe_source) == []
        page.goto(server.url + "/consent/?next=/page")
        assert axe(page, axe_source) == []
        page.click("button[value=reject_all]")
        page.wait_for_url("**/page")
        assert page.locator(".ck-reopen").is_visible()  # decided: the reopen control
        assert axe(page, axe_source) == []
    finally:
        context.close()


def test_a_failed_fetch_falls_back_to_the_plain_form(server, page):
    def block_json(route: Any) -> None:
        if "json" in (route.request.headers.get("content-type") or ""):
            route.abort()
        else:
            route.continue_()

    page.route("**/consent/**", block_json)
    page.goto(server.url + "/page")
    with page.expect_navigation():
        page.click("#consentkit-banner [value=accept_all]")
    assert page.url == server.url + "/page"
    assert "marketing" in state(page, server)["granted"]


def test_a_page_without_gtag_or_gated_markup_has_no_script_errors(server, page):
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/")
    page.click("#consentkit-banner [data-consentkit-settings]")
    page.check("#consentkit-cat-analytics")
    page.click("#consentkit-preferences button[value=save]")
    page.locator(".ck-reopen").wait_for()
    page.click(".ck-reopen")
    page.click("#consentkit-banner [value=accept_all]")
    page.locator("#consentkit-banner").wait_for(state="hidden")
    assert errors == []
    assert len(state(page, server)["granted"]) == 5


def test_forced_colors_fall_back_to_native_checkboxes(browser, server):
    context = browser.new_context(forced_colors="active")
    try:
        page = context.new_page()
        page.goto(server.url + "/consent/")
        toggle = page.locator("#consentkit-cat-analytics")
        assert toggle.evaluate("e => getComputedStyle(e).appearance") == "auto"
        toggle.check()
        assert toggle.is_checked()
    finally:
        context.close()
