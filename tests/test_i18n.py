"""The catalogs and the choice of language."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flask_consentkit import ConsentConfigError
from flask_consentkit.banner import I18N_FOLDER, load_catalogs

from .conftest import make_app

LANGUAGES = ("az", "en", "ru", "tr")
CATALOGS = {lang: json.loads((I18N_FOLDER / f"{lang}.json").read_text("utf-8"))
            for lang in LANGUAGES}
#: keys other subsystems rely on (the placeholders of gated embeds, category labels)
SEAM_KEYS = ["placeholder.title", "placeholder.text", "placeholder.button"] + [
    f"category.{c}.label"
    for c in ("necessary", "functional", "analytics", "performance", "marketing")
]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_catalog_has_every_message(lang):
    catalog, english = CATALOGS[lang], CATALOGS["en"]
    assert set(catalog) == set(english)
    for key, text in catalog.items():
        assert text.strip(), key
        params = set(re.findall(r"\{(\w+)\}", text))
        assert params == set(re.findall(r"\{(\w+)\}", english[key])), key
    for key in SEAM_KEYS:
        assert key in catalog
    assert "{category}" in catalog["placeholder.text"]
    assert catalog["language.dir"] in ("ltr", "rtl")
    assert "{purposes}" in catalog["banner.lead"]
    assert "{choice}" in catalog["banner.decided"]


@pytest.mark.parametrize("lang", ["az", "ru", "tr"])
def test_catalogs_are_written_in_their_language(lang):
    catalog, english = CATALOGS[lang], CATALOGS["en"]
    same = {k for k in english if catalog[k] == english[k]}
    assert same <= {"banner.purposes_separator", "language.dir"}
    letters = {"az": "əğışçöü", "ru": "абвгдежзийклмнопрстуфхцчшщыэюя", "tr": "ğışçöü"}[lang]
    assert any(ch in catalog["banner.lead"].lower() for ch in letters)


def test_catalog_files_are_valid_utf8_json_objects():
    for path in I18N_FOLDER.glob("*.json"):
        assert isinstance(json.loads(path.read_bytes().decode("utf-8")), dict)


# -- choosing the language ------------------------------------------------------


def lang_of(client, url: str = "/", **headers: str) -> str:
    html = client.get(url, headers=headers).get_data(as_text=True)
    found = re.search(r'<div id="consentkit" class="ck" lang="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_language_from_query_then_accept_language_then_default(app, client):
    assert lang_of(client, "/?lang=az", **{"Accept-Language": "ru"}) == "az"
    assert lang_of(app.test_client(), "/?lang=AZ-latn") == "az"
    client = app.test_client()  # a visitor who never asked for a language
    assert lang_of(client, "/", **{"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"}) == "ru"
    assert lang_of(client, "/", **{"Accept-Language": "de-DE,tr;q=0.7,en;q=0.6"}) == "tr"
    assert lang_of(client, "/", **{"Accept-Language": "az-Latn-AZ"}) == "az"
    assert lang_of(client, "/", **{"Accept-Language": "de, fr;q=0.5"}) == "en"
    assert lang_of(client, "/", **{"Accept-Language": "tr;q=0, ru;q=0.1"}) == "ru"
    assert lang_of(client, "/") == "en"
    # an unknown or hostile ?lang= is ignored, not echoed
    client = app.test_client()
    assert lang_of(client, "/?lang=xx", **{"Accept-Language": "tr"}) == "tr"
    html = client.get('/?lang="><script>').get_data(as_text=True)
    assert "<script>" not in html.replace('<script type="application/json"', "").replace(
        '<script src="/consent/static/consentkit.js"', "")


def _language_cookie(response):
    return [h for h in response.headers.getlist("Set-Cookie")
            if h.startswith("consentkit_lang=")]


def test_a_language_asked_for_survives_navigation(app, client):
    response = client.get("/?lang=az", headers={"Accept-Language": "en"})
    [cookie] = _language_cookie(response)
    # a session cookie that holds the code and nothing else, out of scripts' reach
    assert cookie.startswith("consentkit_lang=az;")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Max-Age" not in cookie and "Expires" not in cookie
    # the next page's links carry no ?lang=: the choice holds, even over the browser's
    assert lang_of(client, "/", **{"Accept-Language": "ru"}) == "az"
    assert _language_cookie(client.get("/?lang=az")) == []  # set once
    # the language the visitor would get anyway: the cookie goes
    response = client.get("/?lang=ru", headers={"Accept-Language": "ru"})
    [deleted] = _language_cookie(response)
    assert "Max-Age=0" in deleted or "1970" in deleted
    assert lang_of(client, "/", **{"Accept-Language": "tr"}) == "tr"


def test_no_language_cookie_without_an_explicit_choice(app, client):
    for url, headers in (("/", {"Accept-Language": "az"}), ("/?lang=az", {"Accept-Language": "az"}),
                         ("/?lang=xx", {}), ("/api?lang=az", {}), ("/consent/state?lang=az", {})):
        assert _language_cookie(client.get(url, headers=headers)) == [], url
    # a forged cookie for a language the app does not speak is ignored
    client.set_cookie("consentkit_lang", "de")
    assert lang_of(client, "/", **{"Accept-Language": "tr"}) == "tr"


def test_the_language_menu_and_the_banner_forms_keep_the_language(app, client):
    html = client.get("/consent/?next=/&lang=tr").get_data(as_text=True)
    assert 'href="/consent/?next=/&amp;lang=az"' in html  # the menu
    page = client.get("/").get_data(as_text=True)  # the cookie from the menu's page
    assert lang_of(client, "/") == "tr"
    assert 'action="/consent/?lang=tr"' in page
    assert '<input type="hidden" name="lang" value="tr">' in page
    assert "/consent/?next=/&amp;lang=tr" in page  # the reopen link and "Settings"


def test_query_language_must_be_configured(app_factory):
    client = app_factory(CONSENTKIT_LANGUAGES=["en", "az"],
                         CONSENTKIT_DEFAULT_LANGUAGE="az").test_client()
    assert lang_of(client, "/?lang=ru") == "az"
    assert lang_of(client, "/", **{"Accept-Language": "ru"}) == "az"
    assert lang_of(client, "/?lang=en") == "en"


def test_flask_babel_locale_selector_is_followed(tmp_path):
    flask_babel = pytest.importorskip(
        "flask_babel", reason="Flask-Babel is not installed (pip install -e '.[test]')")
    app = make_app(tmp_path)
    flask_babel.Babel(app, locale_selector=lambda: "ru_RU")
    client = app.test_client()
    assert lang_of(client, "/", **{"Accept-Language": "tr"}) == "ru"
    assert lang_of(client, "/?lang=az") == "az"
    # Babel without a selector of its own: the browser's language decides
    app = make_app(tmp_path)
    flask_babel.Babel(app)
    assert lang_of(app.test_client(), "/", **{"Accept-Language": "tr"}) == "tr"


def test_the_apps_own_locale_selector_is_followed(app_factory):
    app = app_factory()
    chosen = {"value": None}
    app.extensions["consentkit"].kit.locale_selector = lambda: chosen["value"]
    client = app.test_client()
    assert lang_of(client, "/", **{"Accept-Language": "ru"}) == "ru"  # None: no opinion
    chosen["value"] = "tr-TR"
    assert lang_of(client, "/", **{"Accept-Language": "ru"}) == "tr"
    chosen["value"] = "de"  # not a banner language: the browser's next
    assert lang_of(client, "/", **{"Accept-Language": "ru"}) == "ru"


def test_texts_follow_the_language(client):
    html = client.get("/?lang=ru").get_data(as_text=True)
    assert "Принять все" in html and "Отклонить все" in html and "Настроить" in html
    html = client.get("/?lang=tr").get_data(as_text=True)
    assert "Tümünü kabul et" in html and "Tümünü reddet" in html


def test_app_texts_can_be_translated(app_factory):
    app = app_factory(
        CONSENTKIT_CATEGORIES=[
            "necessary",
            {"key": "analytics", "label": {"en": "Statistics", "az": "Statistika"},
             "description": {"en": "Visits.", "az": "Ziyarətlər."}},
            "performance",
        ],
        CONSENTKIT_SERVICES=[{"name": "Matomo", "category": "analytics",
                              "purpose": {"en": "Counting", "ru": "Подсчёт"}}],
    )
    client = app.test_client()
    az = client.get("/consent/?lang=az").get_data(as_text=True)
    assert ">Statistika" in az and "Ziyarətlər." in az
    assert "Matomo</strong>: Counting" in az  # no az text: the default language's
    ru = client.get("/consent/?lang=ru").get_data(as_text=True)
    assert ">Statistics" in ru and "Matomo</strong>: Подсчёт" in ru
    assert "Производительность" in ru  # catalog text for a default category


def test_a_category_without_any_text_gets_a_readable_label(app_factory):
    rules = {"ip": "social_media", "geo": "social_media", "user_agent": "social_media"}
    app = app_factory(CONSENTKIT_CATEGORIES=["necessary", "social_media"],
                      CONSENTKIT_COLLECTION_RULES=rules)
    html = app.test_client().get("/consent/").get_data(as_text=True)
    assert ">Social media" in html


def test_a_configured_language_needs_a_catalog(app_factory):
    with pytest.raises(ConsentConfigError, match=r"no catalog for 'de'.*de\.json"):
        app_factory(CONSENTKIT_LANGUAGES=["en", "de"])


def test_adding_a_language_is_adding_one_catalog_file(tmp_path: Path):
    (tmp_path / "en.json").write_text((I18N_FOLDER / "en.json").read_text("utf-8"), "utf-8")
    (tmp_path / "de.json").write_text(json.dumps({"banner.accept": "Alle akzeptieren"}),
                                      "utf-8")
    catalogs = load_catalogs(("en", "de"), tmp_path)
    assert catalogs["de"]["banner.accept"] == "Alle akzeptieren"
    (tmp_path / "bad.json").write_text('["not", "an object"]', "utf-8")
    with pytest.raises(ConsentConfigError, match="flat JSON object"):
        load_catalogs(("bad",), tmp_path)
    (tmp_path / "broken.json").write_text("{", "utf-8")
    with pytest.raises(ConsentConfigError, match="cannot be read as JSON"):
        load_catalogs(("broken",), tmp_path)


#: the vendors the category descriptions name, by catalogue key
NAMED_VENDORS = {"YouTube": "youtube", "Dailymotion": "dailymotion", "Twitch": "twitch",
                 "VK": "vk-video", "Vimeo": "vimeo", "Wistia": "wistia", "Loom": "loom"}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_category_texts_match_how_the_catalogue_files_vendors(lang):
    from flask_consentkit.vendors import load_catalogue

    catalogue = load_catalogue()
    catalog = CATALOGS[lang]
    for category in ("functional", "analytics", "performance", "marketing"):
        text = catalog[f"category.{category}.description"] + " " + catalog[
            f"category.{category}.purpose"]
        for name, key in NAMED_VENDORS.items():
            vendor = catalogue.get(key)
            assert vendor is not None
            if re.search(rf"\b{name}\b", text):
                assert vendor.category == category, (lang, category, name)
    # every video vendor is named under its own category, nowhere else
    assert "Vimeo" in catalog["category.functional.description"]
    assert "YouTube" in catalog["category.marketing.description"]
    assert "YouTube" in catalog["category.marketing.purpose"]
    assert "A/B" in catalog["category.analytics.description"]
    assert "CDN" in catalog["category.functional.description"] or lang == "en"


def test_the_english_descriptions_name_what_the_catalogue_puts_in_each_category():
    en = CATALOGS["en"]
    for category, words in {
        "functional": ("chat", "maps", "fonts", "content delivery networks", "CAPTCHAs",
                       "comments", "audio and 3D embeds", "Vimeo"),
        "analytics": ("web analytics", "session recordings", "A/B tests"),
        "performance": ("real-user monitoring", "error tracking"),
        "marketing": ("ad networks", "tracking pixels", "social-media embeds", "YouTube",
                      "Dailymotion", "Twitch"),
    }.items():
        for word in words:
            assert word in en[f"category.{category}.description"], (category, word)
