"""Screenshots of the banner and the preferences, taken by the test suite's Chromium.

Run from the project root (``npm ci`` is not needed; Debian's chromium is)::

    python docs/screenshots.py            # writes docs/screenshots/*.png

``tests/test_browser_banner_screenshots.py`` runs the same code into a temporary
folder, so CI proves the pictures in the README can be made from the code as it is.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"

#: name → viewport
SIZES = {"desktop": {"width": 960, "height": 600}, "mobile": {"width": 360, "height": 740}}
SCHEMES = ("light", "dark")
LANGUAGES = ("az", "en")


def shoot(browser: Any, base_url: str, out: Path) -> list[Path]:
    """Write ``{banner,preferences}-{desktop,mobile}-{light,dark}-{az,en}.png`` to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for size, viewport in SIZES.items():
        for scheme in SCHEMES:
            context = browser.new_context(viewport=viewport, color_scheme=scheme,
                                          reduced_motion="reduce")
            try:
                page = context.new_page()
                for lang in LANGUAGES:
                    page.goto(f"{base_url}/?lang={lang}")
                    page.locator("#consentkit-banner").wait_for()
                    path = out / f"banner-{size}-{scheme}-{lang}.png"
                    page.screenshot(path=str(path))
                    written.append(path)
                    page.click("#consentkit-banner [data-consentkit-settings]")
                    page.locator("#consentkit-preferences").wait_for()
                    page.evaluate("document.activeElement.blur()")
                    path = out / f"preferences-{size}-{scheme}-{lang}.png"
                    page.screenshot(path=str(path))
                    written.append(path)
            finally:
                context.close()
    return written


def example_app() -> Any:
    from example_app import create_app

    return create_app({"TESTING": True, "CONSENTKIT_LEDGER_URL": None})


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM, CHROMIUM_ARGS, LiveServer

    server = LiveServer(example_app())
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for path in shoot(browser, server.url, OUT):
                print(f"{path.relative_to(ROOT)}  {path.stat().st_size // 1024} KB")
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
