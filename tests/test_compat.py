"""The private APIs of Flask, werkzeug and Python, read in one place (``_compat.py``).

Each fast path must be on with the versions installed: when a release renames
a private name, the extension still works through the public fallback, but
more slowly on every request; these tests say so instead of letting it pass.
The fallbacks themselves are exercised by switching the fast paths off.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_consentkit import ConsentKit, _compat

ORIGIN = {"Origin": "http://localhost"}


@pytest.mark.parametrize("name", sorted(_compat.FAST_PATHS))
def test_each_fast_path_is_on_with_the_installed_flask_and_werkzeug(name: str) -> None:
    assert _compat.FAST_PATHS[name], (
        f"the {name} fast path is off: a private name of Flask, werkzeug or Python changed; "
        "update flask_consentkit/_compat.py")


def _app() -> Flask:
    app = Flask("compat")
    app.config.update(SECRET_KEY="compat-secret-key-compat-secret-key",
                      CONSENTKIT_LEDGER_URL=None)
    ConsentKit(app)

    @app.get("/page")
    def page() -> str:
        return "<!doctype html><html><body><p>Hello</p></body></html>"

    return app


def _visit(app: Flask) -> tuple[list[str], list[str], bool]:
    a, b = app.test_client(), app.test_client()
    assert a.post("/consent/", json={"action": "accept_all"}, headers=ORIGIN).status_code == 200
    granted_a = a.get("/consent/state").get_json()["granted"]
    granted_b = b.get("/consent/state").get_json()["granted"]
    page = b.get("/page")
    return granted_a, granted_b, b"consentkit-banner" in page.data


@pytest.fixture
def slow_paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every fast path off, as with a Flask and werkzeug that renamed their private names."""
    monkeypatch.setattr(_compat, "_cv_app", None)
    monkeypatch.setattr(_compat, "app_context", _compat._public_app_context)
    monkeypatch.setattr(_compat, "_cv_request", None)
    monkeypatch.setattr(_compat, "request_context", _compat._no_request_context)
    monkeypatch.setattr(_compat, "_HEADERS_LIST", False)
    monkeypatch.setattr(_compat, "_FIRST_REQUEST", False)
    yield


@pytest.mark.parametrize("fast", [True, False], ids=["fast paths", "public fallbacks"])
def test_both_paths_give_each_visitor_their_own_consent(request: pytest.FixtureRequest,
                                                        fast: bool) -> None:
    if not fast:
        request.getfixturevalue("slow_paths")
    granted_a, granted_b, banner = _visit(_app())
    assert "marketing" in granted_a
    assert granted_b == ["necessary"]
    assert banner


def test_requests_inside_an_outer_app_context_do_not_share_a_visitors_consent() -> None:
    # flask consent scan and many test suites send requests inside an app context they
    # pushed; Flask then gives every request that context's ``g``
    app = _app()
    with app.app_context():
        granted_a, granted_b, banner = _visit(app)
    assert "marketing" in granted_a
    assert granted_b == ["necessary"]  # the new visitor is not taken for the first one
    assert banner


def test_header_helpers_read_and_change_the_same_headers() -> None:
    from werkzeug.datastructures import Headers

    headers = Headers([("Content-Type", "text/html"), ("Content-Length", "3")])
    items = _compat.header_list(headers)
    assert items is not None
    items[1] = ("Content-Length", "4")
    assert headers["Content-Length"] == "4"
    assert list(_compat.header_items(headers)) == [("Content-Type", "text/html"),
                                                   ("Content-Length", "4")]


def test_request_context_is_flasks_own_inside_a_request_and_none_outside() -> None:
    from flask import Flask, request

    app = Flask(__name__)
    assert _compat.request_context is not _compat._no_request_context  # the fast one
    assert _compat.request_context() is None
    with app.test_request_context("/x"):
        found = _compat.request_context()
        assert found is not None and found.request is request._get_current_object()
        assert found.app is app
    assert _compat.request_context() is None


def test_app_context_is_flasks_own_inside_one_and_none_outside() -> None:
    from flask import Flask

    app = Flask(__name__)
    assert _compat.app_context is not _compat._public_app_context  # the fast one
    assert _compat.app_context() is None
    with app.app_context() as pushed:
        assert _compat.app_context() is pushed
        assert _compat._public_app_context() is pushed
    assert _compat.app_context() is None


def test_header_items_gives_lists_of_pairs_back_as_they_are() -> None:
    pairs = [("Vary", "Cookie")]
    assert _compat.header_items(pairs) is pairs


def test_without_the_regex_parser_trackers_are_still_found(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    from flask_consentkit.gating.html import TrackerMatcher, required_literals

    snippet = (b"<script>(function(w,d,s,l,i){j.src='https://www.googletagmanager.com/gtm.js"
               b"?id='+i;})(window,document,'script','dataLayer','GTM-X');</script>")
    fast = TrackerMatcher().find_script(snippet)
    assert fast is not None
    monkeypatch.setitem(_compat.FAST_PATHS, "regular expression parser", False)
    assert required_literals(r"googletagmanager\.com/gtm\.js") is None
    slow = TrackerMatcher().find_script(snippet)
    assert slow is not None and slow.name == fast.name


class _Level(enum.IntEnum):
    LOW = 1


_KEYS = st.text() | st.integers() | st.floats() | st.booleans() | st.none()
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text()
    | st.just(_Level.LOW),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)


def _outcome(encode: Any, value: Any) -> tuple[str, str]:
    try:
        return "text", encode(value)
    except (TypeError, ValueError) as exc:  # keys of types that cannot be sorted together
        return "error", type(exc).__name__


@settings(max_examples=400, deadline=None)
@given(value=_JSON, ensure_ascii=st.booleans())
def test_the_json_encoder_writes_what_json_dumps_writes(value: Any, ensure_ascii: bool) -> None:
    # the receipts' digests are over this text: a byte of difference breaks every chain
    encode = _compat.json_encoder(sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=ensure_ascii)
    assert _outcome(encode, value) == _outcome(
        lambda v: json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=ensure_ascii),
        value)


def test_without_the_c_encoder_json_encoder_is_the_public_one(monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.setattr(_compat, "_c_make_encoder", None)
    encode = _compat.json_encoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert getattr(encode, "__self__", None).__class__ is json.JSONEncoder
    assert encode({"b": "é", "a": [1, None]}) == '{"a":[1,null],"b":"\\u00e9"}'


def test_the_context_helpers_are_read_through_the_module_so_the_slow_paths_test_reaches_them(
) -> None:
    # ``slow_paths`` replaces ``_compat.request_context`` and ``_compat.app_context``: a
    # module that imported either by name would keep the fast one and go untested
    import ast
    from pathlib import Path

    package = Path(_compat.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("_compat"):
                names = {alias.name for alias in node.names}
                bad = names & {"request_context", "app_context", "_cv_app", "_cv_request"}
                if bad:
                    offenders.append(f"{path.relative_to(package)}: {sorted(bad)}")
    assert offenders == []

