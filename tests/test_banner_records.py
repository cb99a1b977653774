"""The visitor's consent records on the preferences page: download, erase (confirmed), receipt.

All of it works without JavaScript: links and one form.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from .banner_app import banner_app
from .conftest import SAME_ORIGIN


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return banner_app(tmp_path, CONSENTKIT_LEDGER_URL=f"sqlite:///{tmp_path}/ledger.sqlite3")


def records_of(html: str) -> str:
    start = html.index('<section class="ck-records"')
    return html[start:html.index("</section>", start)]


def test_a_visitor_without_a_choice_has_no_records(app: Flask) -> None:
    html = app.test_client().get("/consent/?next=/page").get_data(as_text=True)
    section = records_of(html)
    assert "This site keeps no record of a choice from this browser yet." in section
    assert "/consent/export" not in section


def test_download_and_erase_links_for_a_visitor_with_records(app: Flask) -> None:
    client = app.test_client()
    client.post("/consent/", data={"action": "accept_all", "next": "/page"}, headers=SAME_ORIGIN)
    section = records_of(client.get("/consent/?next=/page&lang=en").get_data(as_text=True))
    assert '<a href="/consent/export" download="consent-records.json">' \
           "Download my consent records</a>" in section
    assert 'href="/consent/?next=/page&amp;lang=en&amp;erase=confirm#consentkit-records"' \
           in section
    assert "<form" not in section  # the erasure asks first
    assert "signed receipt" not in section  # no receipt service
    export = client.get("/consent/export")
    assert export.is_json and len(export.get_json()["receipts"]) == 1


def test_erasure_is_confirmed_then_done_without_javascript(app: Flask) -> None:
    client = app.test_client()
    client.post("/consent/", data={"action": "accept_all", "next": "/page"}, headers=SAME_ORIGIN)
    client.set_cookie("_vh", "video-host-cookie")  # a marketing cookie of a declared service
    confirm = client.get("/consent/?next=/page&lang=en&erase=confirm").get_data(as_text=True)
    section = records_of(confirm)
    form = re.search(r'<form class="ck-confirm" method="post" action="([^"]+)"', section)
    assert form is not None and form.group(1) == "/consent/erase?lang=en"
    back = re.search(r'<input type="hidden" name="next" value="([^"]+)">', section)
    assert back is not None
    assert "Erase your consent records?" in section and ">Cancel</a>" in section
    response = client.post(form.group(1), data={"next": back.group(1).replace("&amp;", "&")},
                           headers=SAME_ORIGIN)
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("/consent/?next=/page&lang=en&erased=1")
    assert client.get_cookie("consentkit") is None and client.get_cookie("_vh") is None
    done = records_of(client.get(location).get_data(as_text=True))
    assert "Your consent records have been erased and your choice forgotten." in done
    ledger = app.extensions["consentkit"].ledger
    assert ledger.verify().ok and ledger.verify().erased == 1


def test_the_signed_receipt_link_is_shown_only_with_a_receipt_service(app: Flask) -> None:
    client = app.test_client()
    client.post("/consent/", data={"action": "reject_all", "next": "/page"}, headers=SAME_ORIGIN)
    assert "signed receipt" not in client.get("/consent/").get_data(as_text=True)
    app.extensions["consentkit"].receipt_keyring = object()
    section = records_of(client.get("/consent/").get_data(as_text=True))
    assert '<a href="/consent/receipt" download="consent-receipt.jws">' \
           "Download my signed receipt</a>" in section


def test_no_records_section_without_a_ledger(tmp_path: Path) -> None:
    client = banner_app(tmp_path).test_client()  # CONSENTKIT_LEDGER_URL=None
    client.post("/consent/", data={"action": "accept_all", "next": "/page"}, headers=SAME_ORIGIN)
    assert "ck-records" not in client.get("/consent/").get_data(as_text=True)
    assert "#consentkit-records" not in client.get("/page").get_data(as_text=True)


def test_the_preferences_dialog_links_to_the_records(app: Flask) -> None:
    html = app.test_client().get("/page?lang=az").get_data(as_text=True)
    assert '<a href="/consent/?next=/page%3Flang%3Daz&amp;lang=az#consentkit-records">' \
           "Razılıq qeydləriniz</a>" in html


@pytest.mark.parametrize("lang", ["az", "en", "ru", "tr"])
def test_the_records_speak_the_visitors_language(app: Flask, lang: str) -> None:
    client = app.test_client()
    client.post("/consent/", data={"action": "accept_all", "next": "/"}, headers=SAME_ORIGIN)
    html = client.get(f"/consent/?lang={lang}&erase=confirm").get_data(as_text=True)
    ui: Any = app.extensions["consentkit"].banner
    for key in ("records.title", "records.download", "records.confirm", "records.erase_now",
                "records.cancel"):
        assert str(ui.translate(key, lang)).replace("“", "").replace("”", "")[:20] in \
            html.replace("“", "").replace("”", ""), (lang, key)
