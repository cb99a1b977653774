"""A notice's identity: the SHA-256 of its canonical JSON (pure; no storage, no HTTP).

The banner builds the notice of a request (:meth:`flask_consentkit.banner.Banner.notice`),
the ledger keeps it (:mod:`flask_consentkit.ledger.notices`); both compute its id here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

#: the version of a notice's shape (``content["schema"]``)
NOTICE_SCHEMA = 1

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(content: Mapping[str, Any]) -> str:
    """The one JSON text of ``content`` its id is computed from."""
    return _ENCODER.encode(content)


def notice_id(content: Mapping[str, Any]) -> str:
    """The SHA-256 hex of the canonical JSON of ``content``."""
    return hashlib.sha256(canonical(content).encode()).hexdigest()
