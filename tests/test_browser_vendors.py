"""Vendors' install snippets, pasted unmarked: no third party is reached before consent.

Each file in ``tests/vendors/`` is a page that loads what one vendor's official
install snippet loads, the way it loads it, written from the vendor's
documentation (its URL is on the file's first line). The pages are served as
they are by an app with ``ConsentKit(app)`` defaults; a real Chromium loads
them with every request to another host aborted and recorded, and:

- before any choice, after "Reject all" and with JavaScript off, nothing leaves
  the machine;
- after "Accept all" the page reloads under the new policy and the vendor makes
  its first request, to one of its catalogue hosts.

Adding a vendor is adding one file (``<!-- vendor: KEY | docs: URL | loads: … -->``
on its first line, ``also: KEY`` for a vendor whose loader is another's).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask, Response, abort

from flask_consentkit import ConsentKit
from flask_consentkit.urls import Target
from flask_consentkit.vendors import load_catalogue

from .conftest import SECRET

VENDORS = Path(__file__).parent / "vendors"
HEADER = re.compile(r"^<!-- vendor: (?P<key>[a-z0-9-]+)(?: \| also: (?P<also>[a-z0-9, -]+))?"
                    r" \| docs: (?P<docs>https://\S+) \| loads: (?P<loads>.+) -->$")
PAGES = sorted(p.stem for p in VENDORS.glob("*.html"))
LOOPBACK = {"127.0.0.1", "localhost", "[::1]"}


def header(name: str) -> re.Match[str]:
    first = (VENDORS / f"{name}.html").read_text("utf-8").split("\n", 1)[0]
    match = HEADER.match(first)
    assert match, f"{name}.html: the first line must be <!-- vendor: KEY | docs: URL | loads: … -->"
    return match


def test_the_corpus_covers_at_least_sixty_catalogue_vendors():
    catalogue = load_catalogue()
    keys = set()
    for name in PAGES:
        match = header(name)
        assert match["key"] == name, f"{name}.html names vendor {match['key']!r}"
        assert match["key"] in catalogue, f"{name}: {match['key']!r} is not a catalogue key"
        for other in filter(None, (match["also"] or "").replace(",", " ").split()):
            assert other in catalogue, f"{name}: also {other!r} is not a catalogue key"
        keys.add(match["key"])
        page = (VENDORS / f"{name}.html").read_text("utf-8")
        assert "data-consent" not in page and 'type="text/plain"' not in page, \
            f"{name}: the corpus is pasted unmarked, as a careless site owner would"
    assert len(keys) >= 60


def vendor_hosts(name: str) -> list[Any]:
    catalogue = load_catalogue()
    match = header(name)
    keys = [match["key"], *filter(None, (match["also"] or "").replace(",", " ").split())]
    return [pattern for key in keys for pattern in catalogue.get(key).hosts]  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def site_url(browser: Any) -> Iterator[str]:
    from .conftest import LiveServer

    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True, CONSENTKIT_LEDGER_URL=None)
    ConsentKit(app)

    @app.get("/vendors/<name>")
    def vendor_page(name: str) -> Response:
        if name not in PAGES:
            abort(404)
        return Response((VENDORS / f"{name}.html").read_bytes(), mimetype="text/html")

    server = LiveServer(app)
    yield server.url
    server.stop()


class Outside:
    """Every request a page (or a context) sends to another host: recorded and aborted."""

    def __init__(self, target: Any) -> None:
        self.urls: list[str] = []
        target.route("**/*", self._route)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOOPBACK:
            route.continue_()
        else:
            self.urls.append(url)
            route.abort()

    def take(self) -> list[str]:
        urls, self.urls = self.urls, []
        return urls


TABS = 6  # corpus pages loaded at once, each in its own tab


class Tabs:
    """``TABS`` pages of one context (one consent cookie), each with its own record of the
    requests it sent to other hosts; ``stray`` records what no page's route saw (a service
    worker's, a popup's)."""

    def __init__(self, context: Any) -> None:
        self.stray = Outside(context)
        self.pages = [context.new_page() for _ in range(TABS)]
        self.outside = [Outside(page) for page in self.pages]

    def load(self, site_url: str, names: list[str], wait: int = 100) -> None:
        """Load ``names`` (at most ``TABS``) at once, one a tab: every page to its ``load``
        event, then ``wait`` ms for loaders that wait for a tick after load."""
        for page, outside, name in zip(self.pages, self.outside, names, strict=False):
            outside.take()
            page.goto(f"{site_url}/vendors/{name}", wait_until="commit")
        for page, _ in zip(self.pages, names, strict=False):
            page.wait_for_load_state("load")
        self.pages[0].wait_for_timeout(wait)


def batches(names: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(names), TABS):
        yield names[start:start + TABS]


def settle(page: Any, url: str, wait: int = 100) -> None:
    page.goto(url, wait_until="load")
    page.wait_for_timeout(wait)  # loaders that wait for a tick after load


def hits(urls: list[str], name: str) -> list[str]:
    patterns = vendor_hosts(name)
    out = []
    for url in urls:
        parts = urlsplit(url)
        target = Target((parts.hostname or "").rstrip("."), parts.path or "/")
        if any(p.matches(*target) for p in patterns):
            out.append(url)
    return out


pytestmark = pytest.mark.browser


def visit_all(tabs: Tabs, site_url: str) -> dict[str, list[str]]:
    """Every corpus page: ``{page: [urls it sent to other hosts]}`` for those that did."""
    reached = {}
    for names in batches(PAGES):
        tabs.load(site_url, names)
        for outside, name in zip(tabs.outside, names, strict=False):
            if urls := outside.take():
                reached[name] = urls
    if urls := tabs.stray.take():
        reached["(no page)"] = urls
    return reached


@pytest.mark.parametrize("choice", ["none", "reject_all", "javascript-off"])
def test_no_vendor_reaches_its_hosts_before_consent_after_reject_or_without_javascript(
        browser: Any, site_url: str, choice: str) -> None:
    context = browser.new_context(java_script_enabled=choice != "javascript-off")
    try:
        tabs = Tabs(context)
        if choice == "reject_all":
            page = tabs.pages[0]
            settle(page, f"{site_url}/vendors/{PAGES[0]}")
            page.click("#consentkit-banner [value=reject_all]")
            page.wait_for_function("document.getElementById('consentkit-banner').hidden")
        assert visit_all(tabs, site_url) == {}
    finally:
        context.close()


def test_after_accept_all_every_vendor_makes_its_first_request(browser: Any,
                                                               site_url: str) -> None:
    context = browser.new_context()
    try:
        tabs = Tabs(context)
        page = tabs.pages[0]
        settle(page, f"{site_url}/vendors/{PAGES[0]}")
        with page.expect_navigation(wait_until="load"):  # the new policy needs a reload
            page.click("#consentkit-banner [value=accept_all]")
        missed = {}
        for names in batches(PAGES):
            tabs.load(site_url, names, wait=0)
            urls: dict[str, list[str]] = {name: [] for name in names}
            for _ in range(30):  # up to 3 s for each loader's first request
                for outside, name in zip(tabs.outside, names, strict=False):
                    if name in urls:
                        urls[name] += outside.take()
                        if hits(urls[name], name):
                            del urls[name]
                if not urls:
                    break
                page.wait_for_timeout(100)
            missed.update(urls)
        assert missed == {}, "these vendors reached none of their catalogue hosts"
    finally:
        context.close()


@pytest.mark.parametrize("name", ["google-tag", "youtube", "hotjar", "meta-pixel"])
def test_accept_all_on_the_vendors_page_reloads_it_and_the_vendor_loads(
        browser: Any, site_url: str, name: str) -> None:
    context = browser.new_context()
    try:
        outside = Outside(context)
        page = context.new_page()
        settle(page, f"{site_url}/vendors/{name}")
        assert outside.take() == []
        page.click("#consentkit-banner [value=reject_all]")
        page.wait_for_function("document.getElementById('consentkit-banner').hidden")
        page.wait_for_timeout(150)
        assert outside.take() == []  # nothing to reload for: the policy did not widen
        page.click("[data-consentkit-reopen]")
        with page.expect_navigation(wait_until="load"):
            page.click("#consentkit-banner [value=accept_all]")
        page.wait_for_timeout(400)
        urls = outside.take()
        assert hits(urls, name), urls
    finally:
        context.close()
