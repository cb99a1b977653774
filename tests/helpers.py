"""Small helpers shared by the core tests."""

from __future__ import annotations

import time
from typing import Any

from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from flask_consentkit.state import COOKIE_SALT

from .conftest import SECRET

SAME_ORIGIN = {"Origin": "http://localhost"}


def forge(payload: Any, *, key: str = SECRET, salt: str = COOKIE_SALT,
          signed_at: float | None = None) -> str:
    """Sign ``payload`` the way the extension does (optionally at another time)."""

    class Clock(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(signed_at if signed_at is not None else time.time())

    return URLSafeTimedSerializer(key, salt=salt, signer=Clock).dumps(payload)


def payload(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"v": "1", "g": ["analytics"], "t": int(time.time()),
                            "i": "AAAAAAAAAAAAAAAAAAAAAA"}
    data.update(overrides)
    return data


def decide(client: Any, action: str = "accept_all", **extra: Any) -> Any:
    """POST a JSON decision from the app's own origin."""
    body = {"action": action, **extra}
    return client.post("/consent/", json=body, headers=SAME_ORIGIN)


def state(client: Any) -> dict[str, Any]:
    result: dict[str, Any] = client.get("/consent/state").get_json()
    return result


def consent_cookie(client: Any, name: str = "consentkit") -> str | None:
    cookie = client.get_cookie(name)
    return cookie.value if cookie else None
