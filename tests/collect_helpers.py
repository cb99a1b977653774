"""Helpers shared by the technical-data tests (no test functions here)."""

from __future__ import annotations

from typing import Any

import geoip2.database
from flask import Flask
from flask.testing import FlaskClient

from flask_consentkit import technical_data

from .conftest import SAME_ORIGIN

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1")


class CountingReader(geoip2.database.Reader):
    """geoip2's own reader, counting the lookups made through it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads: list[str] = []

    def city(self, ip_address: Any) -> Any:
        self.reads.append(str(ip_address))
        return super().city(ip_address)

    def country(self, ip_address: Any) -> Any:
        self.reads.append(str(ip_address))
        return super().country(ip_address)


def add_probe(app: Flask) -> None:
    """``GET /td`` answers the request's technical data as JSON."""

    @app.get("/td")
    def td() -> dict[str, Any]:
        return technical_data().as_dict()


def grant(client: FlaskClient, *categories: str) -> None:
    response = client.post("/consent/", json={"action": "save", "categories": list(categories)},
                           headers=SAME_ORIGIN)
    assert response.status_code == 200, response.data


def probe(client: FlaskClient, ip: str, ua: str = IPHONE, **headers: str) -> dict[str, Any]:
    response = client.get("/td", environ_overrides={"REMOTE_ADDR": ip},
                          headers={"User-Agent": ua, **headers})
    assert response.status_code == 200
    data: dict[str, Any] = response.get_json()
    return data
