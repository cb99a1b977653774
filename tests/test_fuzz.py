"""Property-based tests: arbitrary cookies, headers and bodies never cause a 500,
never grant anything, and a POST from another origin never changes the state."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import make_app

APP = make_app()
PATHS = ["/consent/", "/consent/state", "/", "/api", "/.well-known/gpc.json"]

header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                             exclude_characters="\x7f"), max_size=200)
cookie_text = st.text(alphabet=string.ascii_letters + string.digits + "-_.=+/%:!~*'()",
                      max_size=600)
header_names = st.sampled_from(["Origin", "Referer", "Sec-Fetch-Site", "Sec-GPC", "DNT",
                                "Content-Type", "Accept", "Accept-Language", "X-Forwarded-For",
                                "Host"])
fuzz = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def granted(client):
    return client.get("/consent/state").get_json()["granted"]


@fuzz
@given(value=cookie_text | st.binary(max_size=300).map(lambda b: b.hex()))
def test_arbitrary_cookie_never_grants_anything(value):
    client = APP.test_client()
    response = client.get("/consent/state", headers={"Cookie": f"consentkit={value}"})
    assert response.status_code == 200
    assert response.get_json()["granted"] == ["necessary"]
    assert response.get_json()["decided"] is False


@fuzz
@given(path=st.sampled_from(PATHS), method=st.sampled_from(["GET", "POST", "HEAD"]),
       headers=st.dictionaries(header_names, header_text, max_size=5),
       cookie=cookie_text)
def test_arbitrary_headers_never_cause_a_500(path, method, headers, cookie):
    client = APP.test_client()
    headers = {**headers, "Cookie": f"consentkit={cookie}"}
    response = client.open(path, method=method, headers=headers)
    assert response.status_code < 500


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
choice_objects = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(["accept_all", "reject_all", "save"]) | st.text(max_size=20)
        | json_values,
        "categories": st.lists(st.sampled_from(["analytics", "marketing", "necessary"])
                               | st.text(max_size=12), max_size=6) | json_values,
        "source": st.sampled_from(["banner", "preferences", "api"]) | json_values,
    },
)
bodies = st.one_of(
    choice_objects.map(lambda d: ("json", d)),
    json_values.map(lambda d: ("json", d)),
    st.binary(max_size=6000).map(lambda b: ("raw", b)),
    st.dictionaries(st.sampled_from(["action", "categories", "next", "source"]) | st.text(
        max_size=8), st.text(max_size=60), max_size=5).map(lambda d: ("form", d)),
)
content_types = st.sampled_from(["application/json", "application/x-www-form-urlencoded",
                                 "multipart/form-data", "text/plain", "application/xml", ""])


def post(client, body, content_type, headers):
    kind, data = body
    if kind == "json":
        return client.post("/consent/", json=data, headers=headers)
    if kind == "form":
        return client.post("/consent/", data=data, headers=headers)
    return client.post("/consent/", data=data, headers={**headers,
                                                         "Content-Type": content_type})


@fuzz
@given(body=bodies, content_type=content_types)
def test_arbitrary_bodies_never_cause_a_500(body, content_type):
    client = APP.test_client()
    response = post(client, body, content_type, {"Origin": "http://localhost"})
    assert response.status_code in (200, 303, 400, 413)
    if response.status_code >= 400:
        assert granted(client) == ["necessary"]


foreign = st.one_of(
    st.fixed_dictionaries({"Origin": st.sampled_from(
        ["null", "https://evil.example", "http://localhost:1", "http://127.0.0.1",
         "http://localhost.evil", "file://", ""])}),
    st.fixed_dictionaries({"Sec-Fetch-Site": st.just("cross-site")},
                          optional={"Origin": st.just("http://localhost")}),
    st.fixed_dictionaries({"Referer": st.sampled_from(
        ["https://evil.example/", "http://evil/http://localhost/", "null", "//localhost"])}),
)


@fuzz
@given(headers=foreign, body=bodies)
def test_posts_from_another_origin_never_change_the_state(headers, body):
    client = APP.test_client()
    client.post("/consent/", json={"action": "save", "categories": ["analytics"]},
                headers={"Origin": "http://localhost"})
    before = client.get("/consent/state").get_json()
    response = post(client, body, "application/json", headers)
    assert response.status_code == 403
    assert client.get("/consent/state").get_json() == before
