"""What an app may replace: the hooks of the extension object (``ConsentKit(…)``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, request

from flask_consentkit import ConsentKit
from flask_consentkit.appstate import get_kit_state

from .conftest import SECRET

PAGE = "<!doctype html><html><head><title>t</title></head><body><p>hi</p></body></html>"
GATED = ('<!doctype html><html><body><iframe data-consent="marketing" '
         'data-consent-src="https://www.youtube.com/embed/x" title="Video"></iframe></body></html>')


def _app(tmp_path: Path, kit: ConsentKit) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(SECRET_KEY=SECRET, TESTING=True, CONSENTKIT_LEDGER_URL=None)
    kit.init_app(app)
    app.add_url_rule("/", "index", lambda: PAGE)
    app.add_url_rule("/gated", "gated", lambda: GATED)
    return app


def test_the_apps_translations_come_first_and_fall_back_per_message(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    def translate(key: str, lang: str, **params: Any) -> str | None:
        seen.append((key, lang))
        if key == "banner.accept":
            return {"az": "Hamısını qəbul et!", "en": "Yes to all"}[lang]
        if key == "placeholder.text":
            return "Needs {category} (ours)"  # placeholders are filled as in the catalogs
        return None  # the extension's catalog

    app = _app(tmp_path, ConsentKit(translate=translate))
    client = app.test_client()
    english = client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Yes to all" in english and "Reject all" in english
    azerbaijani = client.get("/?lang=az").get_data(as_text=True)
    assert "Hamısını qəbul et!" in azerbaijani
    assert ("banner.accept", "az") in seen
    gated = client.get("/gated?lang=en").get_data(as_text=True)
    assert "Needs Marketing (ours)" in gated


def test_a_failing_translate_hook_is_logged_and_the_catalog_answers(
        tmp_path: Path, caplog: Any) -> None:
    def translate(key: str, lang: str, **params: Any) -> str | None:
        raise RuntimeError("catalog offline")

    app = _app(tmp_path, ConsentKit(translate=translate))
    with caplog.at_level(logging.ERROR, logger="flask_consentkit.banner"):
        response = app.test_client().get("/")
    assert response.status_code == 200
    assert "Accept all" in response.get_data(as_text=True)
    assert "translate hook failed" in caplog.text


def test_the_apps_locale_selector_is_a_hook_of_the_extension(tmp_path: Path) -> None:
    kit = ConsentKit(locale_selector=lambda: request.args.get("ui"))
    app = _app(tmp_path, kit)
    client = app.test_client()
    assert 'lang="ru"' in client.get("/?ui=ru-RU").get_data(as_text=True)
    assert 'lang="tr"' in client.get("/", headers={"Accept-Language": "tr"}).get_data(as_text=True)
    kit.locale_selector = lambda: "az"  # an attribute too, read per request
    assert 'lang="az"' in client.get("/").get_data(as_text=True)


def test_the_nonce_getter_is_a_hook_of_the_extension(tmp_path: Path) -> None:
    app = _app(tmp_path, ConsentKit(nonce_getter=lambda: "n0nce-of-the-app"))
    body = app.test_client().get("/").get_data(as_text=True)
    assert 'nonce="n0nce-of-the-app"' in body


def test_one_extension_object_serves_two_apps_each_with_its_own_state(tmp_path: Path) -> None:
    kit = ConsentKit()
    one, two = _app(tmp_path / "one", kit), _app(tmp_path / "two", kit)
    assert get_kit_state(one).kit is get_kit_state(two).kit is kit
    assert get_kit_state(one).banner is not get_kit_state(two).banner
    assert get_kit_state(one).ledger is None  # off parts are None, typed as optional
