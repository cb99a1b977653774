"""The consent cookie: attributes, validity, key rotation, and all that reads as undecided."""

from __future__ import annotations

import json
import os
import time

import pytest
from flask import Flask
from itsdangerous import URLSafeTimedSerializer

from flask_consentkit import ConsentKit, current_consent

from .conftest import SECRET, make_app
from .helpers import SAME_ORIGIN, consent_cookie, decide, forge, payload, state

UNDECIDED = {"decided": False, "granted": ["necessary"]}


def tamper_payload(token: str) -> str:
    """Change one character of the signed payload, keep the signature."""
    body, _, rest = token.partition(".")
    body = body or "."  # compressed payloads start with a dot
    i = len(body) // 2
    flipped = body[:i] + ("A" if body[i] != "A" else "B") + body[i + 1:]
    return f"{flipped}.{rest}"


def assert_undecided(client, value):
    response = client.get("/consent/state", headers={"Cookie": f"consentkit={value}"})
    assert response.status_code == 200
    result = response.get_json()
    assert {k: result[k] for k in UNDECIDED} == UNDECIDED
    assert result["consent_id"] is None


def test_no_cookie_means_only_necessary(client):
    result = state(client)
    assert result == {"decided": False, "granted": ["necessary"], "policy_version": None,
                      "consent_id": None, "decided_at": None, "expires_at": None,
                      "source": None, "gpc": {"received": False, "honoured": False, "off": [],
                                              "overridden": []}}


def test_decision_sets_a_signed_httponly_lax_cookie(client, app):
    response = decide(client, "save", categories=["analytics"])
    header = response.headers["Set-Cookie"]
    assert header.startswith("consentkit=")
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert f"Max-Age={app.config['CONSENTKIT_MAX_AGE']}" in header
    assert "Secure" not in header  # plain HTTP
    result = state(client)
    assert result["decided"] is True
    assert result["granted"] == ["analytics", "necessary"]
    assert len(result["consent_id"]) >= 16


def test_cookie_holds_nothing_personal(client):
    decide(client, "accept_all", )
    value = consent_cookie(client)
    data = URLSafeTimedSerializer(SECRET, salt="flask-consentkit.consent.v1").loads(value)
    assert set(data) <= {"v", "g", "t", "i", "s"}
    assert "127.0.0.1" not in json.dumps(data)


def test_secure_on_https(client):
    response = client.post("/consent/", json={"action": "reject_all"},
                           base_url="https://localhost", headers={"Origin": "https://localhost"})
    assert response.status_code == 200
    assert "Secure" in response.headers["Set-Cookie"]


def test_consent_id_is_kept_across_decisions(client):
    decide(client, "accept_all")
    first = state(client)["consent_id"]
    decide(client, "reject_all")
    assert state(client)["consent_id"] == first
    assert state(client)["granted"] == ["necessary"]


NOW = time.time
BAD_COOKIES = {
    "garbage": lambda: "garbage",
    "empty": lambda: "",
    "three-dots": lambda: "a.b.c",
    "control-escapes": lambda: "%00%01",
    "non-ascii": lambda: "é" * 10,
    "tampered-signature": lambda: forge(payload())[:-2] + "xx",
    "tampered-payload": lambda: tamper_payload(forge(payload())),
    "unknown-key": lambda: forge(payload(), key="an unknown key"),
    "other-policy-version": lambda: forge(payload(v="2")),
    "expired": lambda: forge(payload(t=int(NOW()) - 200 * 86400),
                             signed_at=NOW() - 200 * 86400),
    "decided-in-the-future": lambda: forge(payload(t=int(NOW()) + 86400)),
    "token-too-old": lambda: forge(payload(), signed_at=NOW() - 200 * 86400),
    "granted-not-a-list": lambda: forge(payload(g="analytics")),
    "granted-not-strings": lambda: forge(payload(g=[1, 2])),
    "time-not-a-number": lambda: forge(payload(t="yesterday")),
    "time-a-bool": lambda: forge(payload(t=True)),
    "id-too-short": lambda: forge(payload(i="short")),
    "id-missing": lambda: forge(payload(i=None)),
    "unknown-source": lambda: forge(payload(s="hacker")),
    "payload-a-list": lambda: forge(["analytics"]),
    "payload-a-string": lambda: forge("analytics"),
    "payload-null": lambda: forge(None),
    "flask-session-salt": lambda: forge(payload(), salt="cookie-session"),
    "default-salt": lambda: forge(payload(), salt="itsdangerous"),
    "fields-missing": lambda: forge({"v": "1", "g": ["analytics"]}),
    "oversized": lambda: forge(payload(pad=os.urandom(3000).hex())),
}


@pytest.mark.parametrize("make", BAD_COOKIES.values(), ids=BAD_COOKIES.keys())
def test_anything_wrong_reads_as_undecided(client, make):
    assert_undecided(client, make())


def test_the_oversized_case_really_is_over_4_kb():
    assert len(BAD_COOKIES["oversized"]()) > 4096


def test_flask_session_cookie_replayed_as_consent_is_refused():
    app = make_app()

    @app.get("/login")
    def login():
        from flask import session

        session.update(payload())
        return "ok"

    client = app.test_client()
    client.get("/login")
    session_value = client.get_cookie("session").value
    assert_undecided(client, session_value)


def test_unknown_categories_in_a_valid_cookie_are_ignored(client):
    client.set_cookie("consentkit", forge(payload(g=["analytics", "telepathy"])))
    assert state(client)["granted"] == ["analytics", "necessary"]


def test_policy_version_bump_voids_earlier_choices(tmp_path):
    old = make_app(tmp_path, CONSENTKIT_POLICY_VERSION="2026-01").test_client()
    decide(old, "accept_all")
    value = consent_cookie(old)
    new = make_app(tmp_path, CONSENTKIT_POLICY_VERSION="2026-11").test_client()
    new.set_cookie("consentkit", value)
    assert state(new)["decided"] is False
    decide(new, "accept_all")
    assert state(new)["policy_version"] == "2026-11"


def test_expiry_follows_max_age(tmp_path):
    client = make_app(tmp_path, CONSENTKIT_MAX_AGE=60).test_client()
    client.set_cookie("consentkit", forge(payload(t=int(time.time()) - 30),
                                          signed_at=time.time() - 30))
    assert state(client)["decided"] is True
    client.set_cookie("consentkit", forge(payload(t=int(time.time()) - 61),
                                          signed_at=time.time() - 61))
    assert state(client)["decided"] is False


def test_fallback_key_is_accepted_and_reissued_with_the_current_key(tmp_path):
    old_app = make_app(tmp_path, SECRET_KEY="old-key-old-key-old-key")
    client = old_app.test_client()
    decide(client, "save", categories=["analytics"])
    old_value = consent_cookie(client)
    decided_at = state(client)["decided_at"]

    rotated = make_app(tmp_path, SECRET_KEY="new-key-new-key-new-key",
                       SECRET_KEY_FALLBACKS=["old-key-old-key-old-key"])
    client = rotated.test_client()
    client.set_cookie("consentkit", old_value)
    response = client.get("/consent/state")
    assert response.get_json()["granted"] == ["analytics", "necessary"]
    new_value = consent_cookie(client)
    assert new_value != old_value
    assert "Max-Age=" in response.headers["Set-Cookie"]
    # the re-issued cookie is signed with the new key and keeps the decision time
    URLSafeTimedSerializer("new-key-new-key-new-key",
                           salt="flask-consentkit.consent.v1").loads(new_value)
    assert state(client)["decided_at"] == decided_at
    # a request with the current-key cookie is not re-issued again
    assert "Set-Cookie" not in client.get("/consent/state").headers

    # once the fallback is removed, the old cookie is worthless
    retired = make_app(tmp_path, SECRET_KEY="new-key-new-key-new-key").test_client()
    retired.set_cookie("consentkit", old_value)
    assert state(retired)["decided"] is False
    retired.set_cookie("consentkit", new_value)
    assert state(retired)["decided"] is True


def test_responses_that_read_consent_vary_on_cookie(tmp_path):
    app = make_app(tmp_path)

    @app.get("/personal")
    def personal():
        return {"analytics": current_consent.allows("analytics")}

    client = app.test_client()
    assert "Cookie" in client.get("/personal").headers.get("Vary", "")
    assert "Cookie" in client.get("/consent/state").headers.get("Vary", "")
    # a route that never asks is untouched and costs nothing
    assert "Vary" not in client.get("/api").headers


def test_state_is_resolved_once_per_request(tmp_path):
    app = make_app(tmp_path)
    calls = []
    codec = app.extensions["consentkit"].codec
    original = codec.loads

    def counting(value, now=None):
        calls.append(value)
        return original(value, now)

    codec.loads = counting

    @app.get("/twice")
    def twice():
        return {"a": current_consent.allows("analytics"), "b": current_consent.decided}

    app.test_client().get("/twice")
    assert len(calls) == 1


def test_cookie_lifetime_counts_from_the_decision_not_the_reissue(tmp_path):
    app = make_app(tmp_path, CONSENTKIT_MAX_AGE=3600, SECRET_KEY="k2-k2-k2-k2-k2",
                   SECRET_KEY_FALLBACKS=[SECRET])
    client = app.test_client()
    client.set_cookie("consentkit", forge(payload(t=int(time.time()) - 600),
                                          signed_at=time.time() - 600))
    response = client.get("/consent/state")
    max_age = int(response.headers["Set-Cookie"].split("Max-Age=")[1].split(";")[0])
    assert 2990 <= max_age <= 3000


def test_consent_cookie_is_not_written_on_plain_requests(client):
    decide(client)
    assert "Set-Cookie" not in client.get("/consent/state").headers
    assert "Set-Cookie" not in client.get("/").headers


def test_get_never_changes_state(client):
    for path in ("/consent/?action=accept_all", "/consent/state?action=accept_all",
                 "/?action=accept_all"):
        response = client.get(path, headers=SAME_ORIGIN)
        assert "Set-Cookie" not in response.headers
    assert state(client)["decided"] is False


def test_a_second_app_with_its_own_salted_cookie_shares_nothing():
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, CONSENTKIT_LEDGER_URL=None,
                      CONSENTKIT_COOKIE_NAME="ck")
    ConsentKit(app)
    client = app.test_client()
    decide(client, "accept_all")
    assert client.get_cookie("ck") is not None
    assert client.get_cookie("consentkit") is None
