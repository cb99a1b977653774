"""The banner's kept markup: each thing it depends on changes it (issue 14).

Every ingredient of the banner's cache keys — language, choice, page and query,
nonce, privacy signal, policy news, script root, the app's URL defaults, the app's
own templates — is changed in turn, and the
banner served must change with it; and what is kept stays within its budget.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask, g, request
from jinja2 import DictLoader

from flask_consentkit import ConsentKit
from flask_consentkit import banner as banner_module

from .conftest import SAME_ORIGIN, SECRET

PAGE = "<!doctype html><html><head><title>t</title></head><body><p>hi</p></body></html>"


def _app(**config: object) -> Flask:
    app = Flask("cachekeys")
    app.config.update(SECRET_KEY=SECRET, CONSENTKIT_LEDGER_URL=None, **config)
    return app


def _banner(html: str) -> str:
    start = html.index('id="consentkit"')
    return html[start:]


def test_an_app_that_overrides_only_the_actions_partial_gets_each_visitors_own_markup():
    app = _app()
    # the app's own _actions.html carries a per-visitor value (a CSRF token, say)
    app.jinja_loader = DictLoader({"consentkit/_actions.html":
                                   '<input type="hidden" name="csrf" value="{{ g.token }}">'
                                   '<button name="action" value="accept_all">OK</button>'})
    ConsentKit(app)

    @app.before_request
    def token() -> None:
        g.token = request.args.get("t", "none")

    @app.get("/")
    def index() -> str:
        return PAGE

    client = app.test_client()
    first = client.get("/?t=visitor-one").get_data(as_text=True)
    second = client.get("/?t=visitor-two").get_data(as_text=True)
    assert 'value="visitor-one"' in first
    assert 'value="visitor-two"' in second and "visitor-one" not in second


def test_url_defaults_of_the_app_reach_the_banners_links():
    app = _app()
    ConsentKit(app)

    @app.url_value_preprocessor
    def tenant_of_request(endpoint: str | None, values: dict | None) -> None:
        g.tenant = request.args.get("tenant", "none")

    @app.url_defaults
    def tenant_in_links(endpoint: str, values: dict) -> None:
        if endpoint.startswith("consentkit.") and "filename" not in values:
            values.setdefault("tenant", g.tenant)

    @app.get("/")
    def index() -> str:
        return PAGE

    client = app.test_client()
    alpha = _banner(client.get("/?tenant=alpha").get_data(as_text=True))
    beta = _banner(client.get("/?tenant=beta").get_data(as_text=True))
    assert "tenant=alpha" in alpha
    assert "tenant=beta" in beta and "tenant=alpha" not in beta


@pytest.mark.parametrize("change", ["language", "choice", "page", "query", "nonce",
                                    "privacy signal", "policy news", "script root"])
def test_each_ingredient_of_the_key_changes_the_banner(change: str) -> None:
    app = _app()
    kit = ConsentKit(app)

    @app.get("/<name>")
    def page(name: str) -> str:
        return PAGE

    if change == "nonce":
        kit.nonce_getter = lambda: request.args.get("n")

    client = app.test_client()
    if change == "policy news":  # a choice made for the policy version before this one
        old = _app(CONSENTKIT_POLICY_VERSION="0")
        ConsentKit(old)
        earlier = old.test_client()
        earlier.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
        cookie = earlier.get_cookie("consentkit")
        assert cookie is not None
    base = _banner(client.get("/a?lang=en&n=AAAAAAAA").get_data(as_text=True))
    if change == "language":
        other = client.get("/a?lang=az&n=AAAAAAAA")
    elif change == "choice":
        client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
        other = client.get("/a?lang=en&n=AAAAAAAA")
    elif change == "page":
        other = client.get("/b?lang=en&n=AAAAAAAA")
    elif change == "query":
        other = client.get("/a?lang=en&n=AAAAAAAA&story=2")
    elif change == "privacy signal":
        other = client.get("/a?lang=en&n=AAAAAAAA", headers={"Sec-GPC": "1"})
    elif change == "policy news":
        client.set_cookie("consentkit", cookie.value)
        other = client.get("/a?lang=en&n=AAAAAAAA")
    elif change == "script root":
        other = client.get("/a?lang=en&n=AAAAAAAA", environ_overrides={"SCRIPT_NAME": "/site"})
    else:
        other = client.get("/a?lang=en&n=BBBBBBBB")
    assert _banner(other.get_data(as_text=True)) != base


def test_what_the_banner_keeps_of_pages_stays_within_its_budget(monkeypatch) -> None:
    monkeypatch.setattr(banner_module, "_KEEP_TOTAL", 300_000)
    app = _app()
    ConsentKit(app)
    # six pages that fit the budget, each served with eight banners (four languages,
    # undecided and decided): the outputs kept with them count too
    pages = {f"p{i}": (PAGE.replace("<p>hi</p>", f"<p>{i}</p>" + "x" * 40_000)).encode()
             for i in range(6)}

    @app.get("/<name>")
    def page(name: str) -> bytes:
        return pages[name]

    undecided, decided = app.test_client(), app.test_client()
    decided.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    for name in pages:
        for client in (undecided, decided):
            for lang in ("en", "az", "ru", "tr"):
                assert client.get(f"/{name}?lang={lang}").status_code == 200
    banner = app.extensions["consentkit"].banner
    held = (sum(len(body) for (body, *_), _ in banner._pages._data.values())
            + sum(len(out) for (_, _, out), _ in banner._outputs._data.values()))
    assert held <= 300_000, held
    assert banner._pages.bytes + banner._outputs.bytes == held
    assert re.search(r"consentkit-banner", undecided.get("/p1?lang=en").get_data(as_text=True))
