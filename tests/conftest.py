"""Shared fixtures: ``app``, ``client``, ``runner``, a live server and a real Chromium."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from flask_consentkit import ConsentKit

ROOT = Path(__file__).resolve().parent.parent
#: real-world test data (MaxMind test databases, uap-core's corpus, the Open Cookie
#: Database) with their licences: tests/testdata/SOURCES.txt
TESTDATA = ROOT / "tests" / "testdata"
CHROMIUM = os.environ.get("CONSENTKIT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SECRET = "test-secret-key-that-is-long-enough"


def make_app(tmp_path: Path | None = None, **config: Any) -> Flask:
    """A bare app with the extension; receipts off unless a ledger URL is given."""
    app = Flask(__name__, instance_path=str(tmp_path) if tmp_path else None)
    app.config.update(SECRET_KEY=SECRET, TESTING=True, CONSENTKIT_LEDGER_URL=None)
    app.config.update(config)
    ConsentKit(app)

    @app.get("/")
    def index() -> str:
        return "<!doctype html><html><head><title>t</title></head><body><p>hi</p></body></html>"

    @app.get("/api")
    def api() -> dict[str, bool]:
        return {"ok": True}

    return app


@pytest.fixture
def app_factory(tmp_path: Path) -> Callable[..., Flask]:
    def factory(**config: Any) -> Flask:
        return make_app(tmp_path, **config)

    return factory


@pytest.fixture
def app(app_factory: Callable[..., Flask]) -> Flask:
    return app_factory()


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


SAME_ORIGIN = {"Origin": "http://localhost"}


@pytest.fixture
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.skip(f"the test data is not at {TESTDATA} (it ships with the repository: "
                    "check out the whole tree)")
    return TESTDATA


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get("CONSENTKIT_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("CONSENTKIT_TEST_POSTGRES_URL is not set (e.g. "
                    "postgresql+psycopg://postgres@127.0.0.1:5432/test); .ci/run sets it")
    return url


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("CONSENTKIT_TEST_REDIS_URL")
    if not url:
        pytest.skip("CONSENTKIT_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/15); "
                    ".ci/run sets it")
    return url


# -- real browser -------------------------------------------------------------


class LiveServer:
    """A Flask app served on 127.0.0.1 in a thread, for the browser."""

    def __init__(self, app: Flask) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def live_server() -> Iterator[Callable[[Flask], LiveServer]]:
    """``live_server(app)`` serves ``app`` and returns a :class:`LiveServer`."""
    servers: list[LiveServer] = []

    def start(app: Flask) -> LiveServer:
        server = LiveServer(app)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright; skipped where it is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed (pip install -e '.[test]')")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; JavaScript on."""
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def nojs_page(browser: Any) -> Iterator[Any]:
    """A fresh page with JavaScript disabled."""
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    yield page
    context.close()


AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture
def axe_source() -> str:
    if not AXE.exists():
        pytest.skip("axe-core is not installed (npm ci)")
    return AXE.read_text()
