"""The known-tracker data: every vendor the issue names is recognised, ours is not."""

from __future__ import annotations

import re

import pytest

from flask_consentkit.gating.trackers import TRACKERS, Tracker, find_tracker, parse_trackers

# Each pair: a real snippet or URL from the vendor's own install instructions, and the vendor.
KNOWN = [
    ("https://www.googletagmanager.com/gtag/js?id=G-XXXXXXX", "Google Tag Manager"),
    ("(function(w,d,s,l,i){w[l]=w[l]||[];w[l].push({'gtm.start':new Date().getTime(),"
     "event:'gtm.js'});var f=d.getElementsByTagName(s)[0],j=d.createElement(s);"
     "j.async=true;j.src='https://www.googletagmanager.com/gtm.js?id='+i;"
     "f.parentNode.insertBefore(j,f);})(window,document,'script','dataLayer','GTM-XXXX');",
     "Google Tag Manager"),
    ("window.dataLayer = window.dataLayer || [];\nfunction gtag(){dataLayer.push(arguments);}\n"
     "gtag('js', new Date());\ngtag('config', 'G-XXXXXXX');", "Google Analytics"),
    ("https://www.google-analytics.com/analytics.js", "Google Analytics"),
    ("!function(f,b,e,v,n,t,s){if(f.fbq)return;n=f.fbq=function(){};"
     "s.src='https://connect.facebook.net/en_US/fbevents.js'}(window, document,'script');"
     "fbq('init', '1234');", "Meta Pixel"),
    ("(function(h,o,t,j,a,r){h.hj=h.hj||function(){};h._hjSettings={hjid:1,hjsv:6};"
     "r.src=t+h._hjSettings.hjid+j+h._hjSettings.hjsv;})(window,document,"
     "'https://static.hotjar.com/c/hotjar-','.js?sv=');", "Hotjar"),
    ('(function(c,l,a,r,i,t,y){t.src="https://www.clarity.ms/tag/"+i;})'
     '(window, document, "clarity", "script", "abcdef");', "Microsoft Clarity"),
    ('_linkedin_partner_id = "123"; window._linkedin_data_partner_ids = [];',
     "LinkedIn Insight Tag"),
    ("https://snap.licdn.com/li.lms-analytics/insight.min.js", "LinkedIn Insight Tag"),
    ('ttq.load(\'C1234\'); ttq.page();', "TikTok Pixel"),
    ("https://analytics.tiktok.com/i18n/pixel/events.js?sdkid=X", "TikTok Pixel"),
    ('(function(m,e,t,r,i,k,a){})(window, document, "script", '
     '"https://mc.yandex.ru/metrika/tag.js", "ym"); ym(12345, "init", {clickmap:true});',
     "Yandex Metrica"),
    ("https://mc.yandex.com.tr/metrika/tag.js", "Yandex Metrica"),
    ("https://www.youtube.com/embed/dQw4w9WgXcQ", "YouTube embed"),
    ("https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ?rel=0", "YouTube embed"),
    ("https://player.vimeo.com/video/76979871?h=8272103f6e", "Vimeo embed"),
    ("HTTPS://WWW.GOOGLETAGMANAGER.COM/GTAG/JS?ID=G-1", "Google Tag Manager"),
    ("https://www.facebook.com/tr?id=1&ev=PageView&noscript=1", "Meta Pixel (noscript image)"),
    ("https://mc.yandex.ru/watch/00000000", "Yandex Metrica (noscript image)"),
    ("https://px.ads.linkedin.com/collect/?pid=1&fmt=gif", "LinkedIn Insight Tag (noscript image)"),
    ("https://www.googletagmanager.com/ns.html?id=GTM-X", "Google Tag Manager (noscript)"),
]


@pytest.mark.parametrize(("text", "name"), KNOWN)
def test_known_trackers_are_recognised(text, name):
    tracker = find_tracker(text)
    assert tracker is not None and tracker.name == name


@pytest.mark.parametrize("text", [
    "gtag('consent', 'default', {'analytics_storage': 'denied'});",
    "/static/app.js",
    "https://cdn.jsdelivr.net/npm/three@0.160/build/three.module.js",
    "console.log('hello'); const tag = 'config';",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
])
def test_ordinary_scripts_and_consent_defaults_are_not_trackers(text):
    assert find_tracker(text) is None


def test_kind_filters_iframes_from_scripts():
    url = "https://www.youtube.com/embed/x"
    assert find_tracker(url, kind="script") is None
    tracker = find_tracker(url, kind="iframe")
    assert tracker is not None and tracker.category == "marketing"


def test_data_is_shaped_as_the_scanner_expects():
    assert len(TRACKERS) >= 15
    for t in TRACKERS:
        assert isinstance(t, Tracker)
        assert isinstance(t.pattern, re.Pattern) and t.kind in {"script", "iframe", "image"}
        assert t.category in {"analytics", "marketing", "functional", "performance"}
    with pytest.raises(AttributeError):
        TRACKERS[0].name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(("data", "message"), [
    ([], "must be an object"),
    ({"trackers": [{"name": "x", "category": "analytics", "kind": "img", "pattern": "x"}]},
     "kind 'img'"),
    ({"trackers": [{"name": "x", "category": "analytics", "kind": "script", "pattern": "("}]},
     "bad pattern"),
    ({"trackers": [{"name": "x", "category": "analytics", "kind": "script", "pattern": "a*"}]},
     "empty string"),
    ({"trackers": [{"name": "x", "kind": "script", "pattern": "a"}]}, "'category'"),
])
def test_bad_tracker_data_is_refused_with_a_reason(data, message):
    with pytest.raises(ValueError, match=message):
        parse_trackers(data)


def test_tracker_data_ships_in_the_wheel_as_package_data():
    import tomllib

    from .conftest import ROOT

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "flask_consentkit.gating" in config["packages"]
    assert "gating/*.json" in config["package-data"]["flask_consentkit"]
