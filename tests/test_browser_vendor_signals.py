"""Vendors' consent signals in Chromium: the default before the tag, the update after a choice.

The page carries ``{{ vendor_consent_defaults() }}`` and then each vendor's own
install snippet (from ``tests/vendors/``, marked ``type="text/plain"
data-consent=…`` as the README says), with the vendor's script swapped for a
local stand-in. A stand-in does what the real script does with the snippet's
queue — reads it when it loads, then takes calls directly — and records both,
so the test sees the order in which the vendor got its calls.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, g, render_template_string

from .conftest import make_app

pytestmark = pytest.mark.browser

VENDORS = Path(__file__).parent / "vendors"
#: catalogue key: (category, the vendor's script in its snippet, the local stand-in)
TAGS = {
    "microsoft-clarity": ("analytics", "https://www.clarity.ms/tag/", "/vendor/clarity.js?"),
    "microsoft-uet": ("marketing", "https://bat.bing.com/bat.js", "/vendor/bat.js"),
    "meta-pixel": ("marketing", "https://connect.facebook.net/en_US/fbevents.js",
                   "/vendor/fbevents.js"),
    "tiktok-pixel": ("marketing", "https://analytics.tiktok.com/i18n/pixel/events.js",
                     "/vendor/tiktok.js"),
}
#: what each real script does with its queue, recording it: ``seen`` what it found when
#: it loaded, ``later`` what it was called with afterwards
STAND_INS = {
    "clarity.js": """
      seen.clarity = Array.prototype.map.call(window.clarity.q || [], function (a) {
        return Array.from(a); });
      window.clarity = function () { later.clarity.push(Array.from(arguments)); };""",
    "bat.js": """
      window.UET = function (o) {
        seen.uet = Array.from(o.q);
        this.push = function () { later.uet.push(Array.from(arguments)); };
      };""",
    "fbevents.js": """
      var f = window.fbq;
      seen.meta = f.queue.map(function (a) { return Array.from(a); });
      f.queue = [];
      f.callMethod = function () { later.meta.push(Array.from(arguments)); };""",
    "tiktok.js": """
      seen.tiktok = Array.prototype.filter.call(window.ttq, Array.isArray);
      window.ttq.push = function (a) { later.tiktok.push(a); };""",
}
RECORDER = """window.seen = {}; window.later = {clarity: [], uet: [], meta: [], tiktok: []};
addEventListener("pagehide", function () {
  sessionStorage.setItem("queues", JSON.stringify({
    uet: window.uetq && Array.from(window.uetq),
    tiktok: window.ttq && Array.prototype.filter.call(window.ttq, Array.isArray),
    clarity: window.clarity && Array.prototype.map.call(window.clarity.q || [],
                                                        function (a) { return Array.from(a); })
  }));
});"""
CSP = "script-src 'self' 'nonce-{nonce}'; object-src 'none'; base-uri 'none'"


def snippet(key: str) -> str:
    """The vendor's install snippet, its script swapped for the local stand-in."""
    category, vendor_url, local = TAGS[key]
    page = (VENDORS / f"{key}.html").read_text("utf-8")
    code = re.search(r"<script[^>]*>(.*?)</script>", page, re.S).group(1)  # type: ignore[union-attr]
    assert vendor_url in code, key
    return (f'<script type="text/plain" data-consent="{category}" nonce="{{{{ nonce }}}}">'
            f"{code.replace(vendor_url, local)}</script>")


def shop_app(tmp_path: Path, *, app_csp: bool = False, **config: Any) -> Flask:
    config.setdefault("CONSENTKIT_SERVICES", list(TAGS))
    app = make_app(tmp_path, **config)
    page = ("<!doctype html><html lang=en><head><meta charset=utf-8><title>Shop</title>"
            "{{ vendor_consent_defaults() }}"
            f'<script nonce="{{{{ nonce }}}}">{RECORDER}</script>'
            + "".join(snippet(k) for k in TAGS)
            + "</head><body><main><h1>Shop</h1><p>Caspian caviar.</p></main></body></html>")

    @app.before_request
    def _nonce() -> None:
        g.csp_nonce = secrets.token_urlsafe(12)

    if app_csp:
        @app.after_request
        def _csp(response: Response) -> Response:
            if response.mimetype == "text/html":
                response.headers["Content-Security-Policy"] = CSP.format(nonce=g.csp_nonce)
            return response

    @app.get("/shop")
    def shop() -> str:
        return render_template_string(page, nonce=g.csp_nonce)

    @app.get("/vendor/<name>")
    def vendor(name: str) -> Response:
        return Response(STAND_INS[name], mimetype="text/javascript",
                        headers={"Cache-Control": "no-store"})

    return app


def consent(*args: Any) -> list[Any]:
    return ["consent", *args]


def test_each_vendor_gets_its_default_before_its_tag_and_its_update_after_a_choice(
        live_server, tmp_path, page):
    # no policy of the extension's: every choice applies in place, without a reload
    server = live_server(shop_app(tmp_path, CONSENTKIT_CSP=False))
    page.goto(server.url + "/shop", wait_until="load")
    # before any choice: the defaults wait in each vendor's queue; no tag ran
    assert page.evaluate("Array.from(window.uetq)") == consent("default", {"ad_storage": "denied"})
    assert page.evaluate("Array.from(window.clarity.q[0])") == [
        "consentv2", {"ad_Storage": "denied", "analytics_Storage": "denied"}]
    assert page.evaluate("Array.from(window.ttq)") == [["holdConsent"]]
    assert page.evaluate("typeof window.fbq") == "undefined"  # Meta's base code must run
    assert page.evaluate("window.seen") == {}

    # analytics only: Clarity's tag runs now, its script finds the default, then the update
    page.click("#consentkit-banner [data-consentkit-settings]")
    page.check("#consentkit-cat-analytics")
    page.click("#consentkit-preferences button[value=save]")
    page.wait_for_function("window.seen.clarity !== undefined")
    assert page.evaluate("window.seen.clarity") == [
        ["consentv2", {"ad_Storage": "denied", "analytics_Storage": "denied"}],
        ["consentv2", {"ad_Storage": "denied", "analytics_Storage": "granted"}],
    ]
    assert page.evaluate("Array.from(window.uetq)") == [
        *consent("default", {"ad_storage": "denied"}), *consent("update", {"ad_storage": "denied"})]
    assert page.evaluate("Array.from(window.ttq).filter(Array.isArray)") == [
        ["holdConsent"], ["revokeConsent"]]

    # then everything: the marketing tags run, each vendor's script finds its default
    # first, the tag's own calls next and the update last; Clarity, loaded, is called
    page.evaluate("window.consentkit.open()")
    page.click("#consentkit-preferences button[value=accept_all]")
    page.wait_for_function("['uet', 'meta', 'tiktok'].every(k => window.seen[k])")
    assert page.evaluate("window.later.clarity") == [
        ["consentv2", {"ad_Storage": "granted", "analytics_Storage": "granted"}]]
    assert page.evaluate("window.seen.uet") == [
        *consent("default", {"ad_storage": "denied"}), *consent("update", {"ad_storage": "denied"}),
        *consent("update", {"ad_storage": "granted"})]
    assert page.evaluate("window.later.uet") == [["pageLoad"]]
    # Meta's base code ran (the stub did not stop it) and 'revoke' came before its 'init'
    assert page.evaluate("window.seen.meta") == [
        consent("revoke"), ["init", "000000000000000"], ["track", "PageView"], consent("grant")]
    assert page.evaluate("window.seen.tiktok") == [
        ["holdConsent"], ["revokeConsent"], ["page"], ["grantConsent"]]

    # a later choice reaches the loaded scripts directly
    page.evaluate("""document.dispatchEvent(new CustomEvent("consentkit:change",
        {detail: {granted: ["necessary", "analytics"]}}))""")
    assert page.evaluate("window.later.meta") == [consent("revoke")]
    assert page.evaluate("window.later.tiktok") == [["revokeConsent"]]
    assert page.evaluate("window.later.uet")[-1] == consent("update", {"ad_storage": "denied"})


def test_a_choice_that_reloads_sends_the_updates_first_under_the_apps_nonce(
        live_server, tmp_path, browser):
    server = live_server(shop_app(tmp_path, app_csp=True))
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(server.url + "/shop", wait_until="load")
        assert page.evaluate("Array.from(window.uetq)") == consent(
            "default", {"ad_storage": "denied"})  # the nonce'd defaults ran
        with page.expect_navigation(wait_until="load"):
            page.click("#consentkit-banner [value=accept_all]")
        # pushed before the page went away
        sent = json.loads(page.evaluate("sessionStorage.getItem('queues')"))
        assert sent["uet"] == [*consent("default", {"ad_storage": "denied"}),
                               *consent("update", {"ad_storage": "granted"})]
        assert sent["tiktok"] == [["holdConsent"], ["grantConsent"]]
        assert sent["clarity"] == [
            ["consentv2", {"ad_Storage": "denied", "analytics_Storage": "denied"}],
            ["consentv2", {"ad_Storage": "granted", "analytics_Storage": "granted"}]]
        # the reloaded page starts from the server's new defaults, then the tags run
        page.wait_for_function("['clarity', 'uet', 'meta', 'tiktok'].every(k => window.seen[k])")
        assert page.evaluate("window.seen.uet") == consent("default", {"ad_storage": "granted"})
        assert page.evaluate("window.seen.clarity") == [
            ["consentv2", {"ad_Storage": "granted", "analytics_Storage": "granted"}]]
        assert page.evaluate("window.seen.meta") == [
            consent("grant"), ["init", "000000000000000"], ["track", "PageView"]]
        assert page.evaluate("window.seen.tiktok") == [["grantConsent"], ["page"]]
        assert not [e for e in errors if "Content Security Policy" in e], errors
    finally:
        context.close()


def test_without_javascript_a_decided_visitors_defaults_are_in_the_first_response(
        live_server, tmp_path, nojs_page):
    server = live_server(shop_app(tmp_path))
    nojs_page.goto(server.url + "/shop")
    nojs_page.click("#consentkit-banner [data-consentkit-settings]")
    nojs_page.wait_for_url("**/consent/**")  # the preferences page
    nojs_page.check("#consentkit-cat-analytics")
    nojs_page.click("button[value=save]")
    nojs_page.wait_for_url(server.url + "/shop")
    response = nojs_page.goto(server.url + "/shop")
    html = response.text()
    assert "w.uetq.push('consent','default',{\"ad_storage\":\"denied\"})" in html
    assert ("w.clarity('consentv2',{\"ad_Storage\":\"denied\",\"analytics_Storage\":"
            "\"granted\"})") in html
    assert 'fv="revoke"' in html
    assert 'K("revokeConsent")' in html
    assert "gtag('consent','default',{\"ad_storage\":\"denied\"" in html
    assert '"analytics_storage":"granted"' in html
