"""What the banner tells a visitor besides the purposes (issue 15): that Global Privacy Control
was received and honoured, that the policy changed (what and from when), the minimum age."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from flask_consentkit import ConsentConfigError
from flask_consentkit.banner import visible_text

from .conftest import make_app
from .helpers import SAME_ORIGIN, forge, payload

LANGUAGES = ("az", "en", "ru", "tr")
GPC = {"Sec-GPC": "1"}
#: "Opt-Out Request Honored" (11 CCR §7025(c)(6)) and "Global Privacy Control", per language
HONOURED = {"en": "opt-out request honored", "az": "imtina sorğusu yerinə yetirildi",
            "ru": "отказ выполнен", "tr": "vazgeçme talebi uygulandı"}
MARKETING = {"en": "Marketing", "az": "Marketinq", "ru": "Маркетинговые", "tr": "Pazarlama"}
CHANGES = {"en": "We added Yandex Metrica for statistics.",
           "az": "Statistika üçün Yandex Metrica əlavə etdik.",
           "ru": "Добавили Яндекс Метрику для статистики.",
           "tr": "İstatistik için Yandex Metrica ekledik."}
EFFECTIVE = {"en": "November 1, 2026", "az": "1 noyabr 2026", "ru": "1 ноября 2026 г.",
             "tr": "1 Kasım 2026"}


def first_layer(html: str) -> str:
    found = re.search(r'<section class="ck-banner".*?</section>', html, re.DOTALL)
    assert found is not None
    return visible_text(found.group(0))


def banner_text(client, lang: str, **headers: str) -> str:
    return first_layer(client.get(f"/?lang={lang}", headers=headers).get_data(as_text=True))


def page_text(client, lang: str, **headers: str) -> str:
    html = client.get(f"/consent/?lang={lang}", headers=headers).get_data(as_text=True)
    return visible_text(html)


def returning(app, version: str = "1", **forged):
    """A client of a visitor who chose analytics under policy ``version``."""
    client = app.test_client()
    client.set_cookie("consentkit", forge(payload(v=version), **forged))
    return client


# -- configuration ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["2026-13-01", "01.11.2026", "next week", "20261101",
                                   20261101, dt.datetime(2026, 11, 1, 9, 0), ""])
def test_a_bad_effective_date_says_how_to_write_it(tmp_path, value):
    with pytest.raises(ConsentConfigError) as caught:
        make_app(tmp_path, CONSENTKIT_POLICY_EFFECTIVE=value)
    assert caught.value.key == "CONSENTKIT_POLICY_EFFECTIVE"
    assert "2026-11-01" in str(caught.value)


@pytest.mark.parametrize("value", ["2026-11-01", dt.date(2026, 11, 1)])
def test_the_effective_date_is_a_day(tmp_path, value):
    settings = make_app(tmp_path, CONSENTKIT_POLICY_EFFECTIVE=value).extensions[
        "consentkit"].settings
    assert settings.policy_effective == "2026-11-01"
    assert make_app(tmp_path).extensions["consentkit"].settings.policy_effective is None


@pytest.mark.parametrize("value, fix", [
    (42, "one short sentence"),
    ({}, "one short sentence"),
    ({"en": 1}, "one short sentence"),
    ({"en": "New vendor.", "de": "Neuer Anbieter."}, "CONSENTKIT_LANGUAGES"),
    ({"en": "  "}, "empty"),
    ("x" * 121, "at most 120"),
    ({"az": "Yeni."}, "default language 'en'"),
])
def test_a_bad_summary_of_changes_says_what_to_fix(tmp_path, value, fix):
    with pytest.raises(ConsentConfigError) as caught:
        make_app(tmp_path, CONSENTKIT_POLICY_CHANGES=value)
    assert caught.value.key == "CONSENTKIT_POLICY_CHANGES"
    assert fix in str(caught.value)


@pytest.mark.parametrize("value", [0, -13, "13", 13.0, True, 100])
def test_a_bad_minimum_age_says_what_to_fix(tmp_path, value):
    with pytest.raises(ConsentConfigError) as caught:
        make_app(tmp_path, CONSENTKIT_MIN_AGE=value)
    assert caught.value.key == "CONSENTKIT_MIN_AGE"
    assert "e.g. 13" in str(caught.value)


# -- Global Privacy Control -------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_banner_says_gpc_was_received_and_honoured_and_what_it_keeps_off(client, lang):
    text = banner_text(client, lang, **GPC)
    note = text[text.index("Global Privacy Control") - 40:]
    assert HONOURED[lang] in note.lower()
    assert MARKETING[lang] in note
    assert "Global Privacy Control" not in banner_text(client, lang)
    assert "Global Privacy Control" not in banner_text(client, lang, **{"Sec-GPC": "0"})


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_preferences_page_says_so_too(client, lang):
    text = page_text(client, lang, **GPC)
    assert HONOURED[lang] in text.lower() and MARKETING[lang] in text
    assert "Global Privacy Control" not in page_text(client, lang)


def test_the_state_says_what_gpc_did(client):
    assert client.get("/consent/state").get_json()["gpc"] == {
        "received": False, "honoured": False, "off": [], "overridden": []}
    response = client.get("/consent/state", headers=GPC)
    assert response.get_json()["gpc"] == {
        "received": True, "honoured": True, "off": ["marketing"], "overridden": []}
    assert "Sec-GPC" in response.vary
    # "Accept all" with the signal: marketing stays off, and the state says why
    client.post("/consent/", json={"action": "accept_all"}, headers={**SAME_ORIGIN, **GPC})
    assert client.get("/consent/state", headers=GPC).get_json()["gpc"]["off"] == ["marketing"]


def test_a_category_the_visitor_switched_on_is_not_reported_as_off(client):
    client.post("/consent/", json={"action": "save", "source": "preferences",
                                   "categories": ["marketing"]}, headers={**SAME_ORIGIN, **GPC})
    body = client.get("/consent/state", headers=GPC).get_json()["gpc"]
    assert body == {"received": True, "honoured": False, "off": [], "overridden": ["marketing"]}
    assert "Global Privacy Control" not in page_text(client, "en", **GPC)


def test_a_site_that_does_not_honour_gpc_does_not_say_it_does(tmp_path):
    client = make_app(tmp_path, CONSENTKIT_HONOR_GPC=False).test_client()
    assert client.get("/consent/state", headers=GPC).get_json()["gpc"] == {
        "received": True, "honoured": False, "off": [], "overridden": []}
    assert "Global Privacy Control" not in banner_text(client, "en", **GPC)


def test_dnt_keeps_its_own_note(tmp_path):
    client = make_app(tmp_path, CONSENTKIT_HONOR_DNT=True).test_client()
    text = banner_text(client, "en", DNT="1")
    assert "Your browser asks not to be tracked" in text
    assert "Global Privacy Control" not in text


def test_the_cached_banner_follows_the_header(client):
    """The banner's markup is kept between requests: with and without the signal alike."""
    for _ in range(2):
        assert "Global Privacy Control" in banner_text(client, "en", **GPC)
        assert "Global Privacy Control" not in banner_text(client, "en")
    response = client.get("/", headers=GPC)
    assert "Sec-GPC" in response.vary


# -- policy changes -----------------------------------------------------------------


def changed_app(tmp_path, **config):
    return make_app(tmp_path, **{"CONSENTKIT_POLICY_VERSION": "2",
                                 "CONSENTKIT_POLICY_EFFECTIVE": "2026-11-01",
                                 "CONSENTKIT_POLICY_CHANGES": CHANGES, **config})


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_visitor_asked_again_after_a_version_bump_is_told_what_changed_and_from_when(
        tmp_path, lang):
    app = changed_app(tmp_path)
    for _ in range(2):  # the second time from the kept markup
        text = banner_text(returning(app), lang)
        assert EFFECTIVE[lang] in text and CHANGES[lang] in text
        # a first-time visitor is asked as usual, without the news
        fresh = banner_text(app.test_client(), lang)
        assert EFFECTIVE[lang] not in fresh and CHANGES[lang] not in fresh
        # so is a visitor whose cookie is not ours
        forged = returning(app, key="another-secret-key-that-is-long")
        assert CHANGES[lang] not in banner_text(forged, lang)


def test_the_news_is_linked_to_the_policy_and_replaces_the_undecided_line(tmp_path):
    client = returning(changed_app(tmp_path, CONSENTKIT_PRIVACY_POLICY_URL="/privacy"))
    html = client.get("/?lang=en").get_data(as_text=True)
    assert ('<a href="/privacy" class="ck-changed">Our privacy policy changed as of '
            'November 1, 2026.</a> We added Yandex Metrica for statistics.</p>') in html
    assert "Nothing optional is on until you choose" not in first_layer(html)


def test_the_state_of_an_outdated_choice_is_undecided(tmp_path):
    client = returning(changed_app(tmp_path))
    body = client.get("/consent/state").get_json()
    assert body["decided"] is False and body["granted"] == ["necessary"]
    assert body["policy_version"] is None
    # the visitor's new choice is for the current version, and the news is gone
    assert CHANGES["en"] in banner_text(client, "en")
    response = client.post("/consent/", json={"action": "reject_all"}, headers=SAME_ORIGIN)
    assert response.get_json()["policy_version"] == "2"
    assert CHANGES["en"] not in banner_text(client, "en")


def test_without_a_date_or_a_summary_it_still_says_the_policy_changed(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_POLICY_VERSION="2")
    assert "Our privacy policy has changed." in banner_text(returning(app), "en")
    assert "changed" not in banner_text(app.test_client(), "en")
    assert "changed" not in banner_text(returning(app, version="2"), "en")  # decided: no banner


def test_one_summary_for_every_language(tmp_path):
    client = returning(changed_app(tmp_path, CONSENTKIT_POLICY_CHANGES="Yandex Metrica."))
    for lang in LANGUAGES:
        assert "Yandex Metrica." in banner_text(client, lang)


def test_a_language_without_its_summary_gets_the_default_languages(tmp_path):
    client = returning(changed_app(tmp_path,
                                   CONSENTKIT_POLICY_CHANGES={"en": "New.", "az": "Yeni."}))
    assert "Yeni." in banner_text(client, "az")
    assert "New." in banner_text(client, "tr")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_preferences_page_shows_the_effective_date(tmp_path, lang):
    app = changed_app(tmp_path)
    text = page_text(app.test_client(), lang)
    assert EFFECTIVE[lang] in text and CHANGES[lang] in text
    assert EFFECTIVE[lang] in page_text(returning(app), lang)
    assert EFFECTIVE[lang] in page_text(returning(app, version="2"), lang)
    assert EFFECTIVE[lang] not in page_text(make_app(tmp_path).test_client(), lang)


def test_dates_are_written_for_the_language(app):
    banner = app.extensions["consentkit"].banner
    assert banner.format_date("2027-01-09", "en") == "January 9, 2027"
    assert banner.format_date("2027-05-31", "ru") == "31 мая 2027 г."
    assert banner.format_date("2027-08-15", "az") == "15 avqust 2027"
    assert banner.format_date("2027-02-28", "tr") == "28 Şubat 2027"


def test_the_fingerprint_of_the_banner_shown_includes_the_news(tmp_path):
    app = changed_app(tmp_path)
    fingerprint = app.extensions["consentkit"].banner_fingerprint
    with app.test_request_context("/?lang=en"):
        plain = fingerprint()
    cookie = {"Cookie": f"consentkit={forge(payload(v='1'))}"}
    with app.test_request_context("/?lang=en", headers=cookie):
        news = fingerprint()
    assert plain != news and plain[1] == news[1] == "en"


# -- the minimum age ------------------------------------------------------------------


@pytest.mark.parametrize("lang, line", [
    ("en", "This site is not meant for children under 13."),
    ("az", "Bu sayt 13 yaşdan kiçik uşaqlar üçün deyil."),
    ("ru", "Сайт не предназначен для детей: 13+."),
    ("tr", "Bu site 13 yaş altı çocuklar için değildir."),
])
def test_the_minimum_age_is_one_line_of_the_first_layer(tmp_path, lang, line):
    client = make_app(tmp_path, CONSENTKIT_MIN_AGE=13).test_client()
    assert line in banner_text(client, lang)
    assert line in banner_text(client, lang, **GPC)
    assert "13" not in banner_text(make_app(tmp_path).test_client(), lang)
    assert line not in page_text(client, lang)  # nothing more
