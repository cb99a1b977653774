"""The README's screenshots are made by this suite's Chromium from the code as it is."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.browser


def _screenshots_module() -> Any:
    path = ROOT / "docs" / "screenshots.py"
    spec = importlib.util.spec_from_file_location("docs_screenshots", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_screenshots_are_made_by_the_real_browser(browser, live_server, tmp_path: Path):
    shots = _screenshots_module()
    server = live_server(shots.example_app())
    written = shots.shoot(browser, server.url, tmp_path)
    names = {p.name for p in written}
    assert len(names) == 16
    for kind in ("banner", "preferences"):
        for size in ("desktop", "mobile"):
            for scheme in ("light", "dark"):
                for lang in ("az", "en"):
                    assert f"{kind}-{size}-{scheme}-{lang}.png" in names
    for path in written:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert 5_000 < len(data) <= 100 * 1024, path.name
    readme = (ROOT / "README.md").read_text()
    for name in ("banner-desktop-light-en.png", "preferences-mobile-dark-az.png"):
        assert f"docs/screenshots/{name}" in readme
        assert (ROOT / "docs" / "screenshots" / name).is_file()
