"""Request bodies' JSON: deep nesting is a clear 400 on every endpoint that reads JSON,
never a 500 (``RecursionError``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask

from flask_consentkit import jsonbody

from .conftest import SAME_ORIGIN

DEEP_ARRAYS = "[" * 2048 + "]" * 2048  # 4 KB: the default CONSENTKIT_MAX_BODY
DEEP_OBJECTS = '{"a":' * 600 + "1" + "}" * 600


@pytest.fixture
def app(app_factory: Any) -> Flask:
    # TESTING propagates exceptions: a RecursionError would fail the test, not become a 500
    return app_factory()


@pytest.mark.parametrize("path", ["/consent/", "/consent/erase"])
@pytest.mark.parametrize("body", [DEEP_ARRAYS, DEEP_OBJECTS,
                                  '{"action": "accept_all", "x": ' + "[" * 40 + "]" * 40 + "}",
                                  ("[" * 1000 + "]" * 1000).encode("utf-16")],
                         ids=["arrays-4kb", "objects", "41-levels", "utf-16"])
def test_deep_json_is_a_clear_400(app: Flask, path: str, body: str | bytes) -> None:
    assert len(body) <= 4096
    response = app.test_client().post(path, data=body, content_type="application/json",
                                      headers={**SAME_ORIGIN, "Accept": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"] == (
        f"The JSON body is nested more than {jsonbody.MAX_DEPTH} levels deep.")


def test_deep_csp_report_is_a_clear_400(app: Flask) -> None:
    body = "[" * 30000 + "]" * 30000  # under the report limit of 64 KB
    response = app.test_client().post("/consent/csp-report", data=body,
                                      content_type="application/csp-report")
    assert response.status_code == 400
    assert b"nested more than 32 levels" in response.data


def test_nesting_within_the_limit_and_brackets_in_strings_are_read(app: Flask) -> None:
    client = app.test_client()
    nested = {"action": "accept_all", "x": json.loads("[" * 30 + "]" * 30)}
    assert client.post("/consent/", json=nested, headers=SAME_ORIGIN).status_code == 200
    in_string = {"action": "accept_all", "source": "[" * 3000}
    response = client.post("/consent/", json=in_string, headers=SAME_ORIGIN)
    assert response.status_code == 400 and "Unknown source" in response.get_json()["error"]
    erase = client.post("/consent/erase", json={"note": "{[" * 1000}, headers=SAME_ORIGIN)
    assert erase.status_code == 200


@pytest.mark.parametrize(("body", "deepest"), [
    (b"{}", 1), (b"1", 0), (b'{"a": [1, {"b": []}]}', 4), (b'["[[[[", "\\"[[["]', 1),
    (b"[" * 50, 50), (b"[[]][[]]", 2),
])
def test_depth(body: bytes, deepest: int) -> None:
    assert jsonbody.depth(body) == deepest


def test_loads() -> None:
    assert jsonbody.loads(b'{"a": [1]}') == {"a": [1]}
    with pytest.raises(jsonbody.JSONBodyError, match="not valid JSON") as bad:
        jsonbody.loads(b"{nope")
    assert not bad.value.too_deep
    with pytest.raises(jsonbody.JSONBodyError, match="nested more than 2") as deep:
        jsonbody.loads(b"[[[1]]]", max_depth=2)
    assert deep.value.too_deep
    # the interpreter's own limit is a fallback for what the scan cannot read
    with pytest.raises(jsonbody.JSONBodyError, match="nested") as recursion:
        jsonbody.loads(b"[" * 100000 + b"]" * 100000, max_depth=10**6)
    assert recursion.value.too_deep
