"""Global Privacy Control (and DNT when the app opts in)."""

from __future__ import annotations

from .conftest import make_app
from .helpers import SAME_ORIGIN, state

GPC = {**SAME_ORIGIN, "Sec-GPC": "1"}
ALL_BUT_MARKETING = ["analytics", "functional", "necessary", "performance"]


def test_accept_all_with_gpc_keeps_marketing_off(client):
    response = client.post("/consent/", json={"action": "accept_all"}, headers=GPC)
    assert response.get_json()["granted"] == ALL_BUT_MARKETING
    assert response.get_json()["source"] == "gpc"
    assert state(client)["granted"] == ALL_BUT_MARKETING


def test_form_accept_all_with_gpc(client):
    client.post("/consent/", data={"action": "accept_all", "source": "banner"}, headers=GPC)
    assert state(client)["granted"] == ALL_BUT_MARKETING
    assert state(client)["source"] == "gpc"


def test_explicit_save_with_marketing_grants_it(client):
    response = client.post("/consent/", json={"action": "save", "source": "preferences",
                                              "categories": ["marketing", "analytics"]},
                           headers=GPC)
    body = response.get_json()
    assert body["granted"] == ["analytics", "marketing", "necessary"]
    assert body["source"] == "preferences"


def test_without_gpc_accept_all_grants_marketing(client):
    response = client.post("/consent/", json={"action": "accept_all"}, headers=SAME_ORIGIN)
    assert "marketing" in response.get_json()["granted"]
    assert response.get_json()["source"] == "api"


def test_other_values_of_the_header_are_not_a_signal(client):
    for value in ("0", "yes", "true", ""):
        headers = {**SAME_ORIGIN, "Sec-GPC": value}
        response = client.post("/consent/", json={"action": "accept_all"}, headers=headers)
        assert "marketing" in response.get_json()["granted"], value


def test_gpc_can_be_turned_off(tmp_path):
    client = make_app(tmp_path, CONSENTKIT_HONOR_GPC=False).test_client()
    response = client.post("/consent/", json={"action": "accept_all"}, headers=GPC)
    assert "marketing" in response.get_json()["granted"]
    assert client.get("/.well-known/gpc.json").get_json()["gpc"] is False


def test_dnt_is_honoured_only_when_configured(tmp_path):
    dnt = {**SAME_ORIGIN, "DNT": "1"}
    plain = make_app(tmp_path).test_client()
    assert "marketing" in plain.post("/consent/", json={"action": "accept_all"},
                                     headers=dnt).get_json()["granted"]
    honouring = make_app(tmp_path, CONSENTKIT_HONOR_DNT=True).test_client()
    body = honouring.post("/consent/", json={"action": "accept_all"}, headers=dnt).get_json()
    assert body["granted"] == ALL_BUT_MARKETING


def test_gpc_without_a_decision_grants_nothing(client):
    assert client.get("/consent/state", headers={"Sec-GPC": "1"}).get_json()["granted"] == [
        "necessary"]
