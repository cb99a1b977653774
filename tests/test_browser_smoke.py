"""The browser fixtures themselves work: a real page is served and rendered."""

from __future__ import annotations

import pytest

from .conftest import make_app

pytestmark = pytest.mark.browser


def test_page_renders_in_chromium(live_server, page, tmp_path):
    server = live_server(make_app(tmp_path))
    page.goto(server.url + "/")
    assert page.text_content("p") == "hi"
