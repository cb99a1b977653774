"""The receipts' hash chain: digests that survive erasure.

Every receipt carries two digests and a link:

``personal_digest``
    ``sha256`` over a JSON array of a random per-receipt ``personal_salt`` and
    the personal columns (``consent_id``, ``page_path``, ``ip_prefix``,
    ``country``) — a *hiding commitment* to them.

``digest``
    ``sha256`` over a JSON object of every column that never changes — ``seq``,
    ``receipt_id``, ``created_at``, ``action``, the category lists, the policy
    version, banner hash and language, ``method``, ``previous_receipt_id`` —
    plus ``personal_digest`` and ``prev_digest``; and ``rule`` (the rule per
    audience applied, schema version 3) when it is not ``NULL``, so that the digests
    of receipts written before it existed are unchanged.

``prev_digest``
    the ``digest`` of the receipt with the previous ``seq`` (the *genesis*
    value, 64 zeros, for the first receipt; after pruning, the digest of the
    last pruned receipt, kept in the ``anchor`` row of ``consentkit_meta``).

Erasure nulls the personal columns **and the salt**, sets ``erased_at`` and
keeps both digests. The chain therefore still verifies over the non-personal
content and the stored commitment, while what remains cannot be linked back to
the visitor: without the salt, knowing someone's consent id and guessing the
page does not reproduce ``personal_digest``. A receipt that is not erased is
checked in full: its commitment is recomputed from the salt and the personal
columns, so editing a consent id or a page path is detected as well.

Editing any column covered by ``digest`` breaks that receipt's digest;
rewriting the digest too breaks the next receipt's ``prev_digest``; deleting
or reordering receipts breaks ``seq`` continuity and the links; deleting the
newest receipts disagrees with the ``head`` row (``"<seq>:<digest>"``) that
each append updates in the same transaction.
"""

from __future__ import annotations

import hashlib
import operator
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .._compat import json_encoder

#: ``prev_digest`` of the very first receipt.
GENESIS = "0" * 64

#: Columns nulled on erasure.
PERSONAL_COLUMNS: tuple[str, ...] = (
    "consent_id",
    "page_path",
    "ip_prefix",
    "country",
    "personal_salt",
)

#: Columns covered by ``digest`` directly (``personal_digest`` and
#: ``prev_digest`` are added to them).
CHAINED_COLUMNS: tuple[str, ...] = (
    "seq",
    "receipt_id",
    "created_at",
    "action",
    "granted",
    "denied",
    "withdrawn",
    "policy_version",
    "banner_hash",
    "language",
    "method",
    "previous_receipt_id",
)


#: a row's values of :data:`CHAINED_COLUMNS`, in order
_chained = operator.itemgetter(*CHAINED_COLUMNS)


def new_salt() -> str:
    """128 random bits, hex: the salt of one receipt's personal commitment."""
    return secrets.token_hex(16)


#: ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)``,
#: with the encoder made once.
_encode = json_encoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _canonical(value: Any) -> bytes:
    return _encode(value).encode()


def timestamp(value: datetime) -> str:
    """The canonical text of ``created_at`` (naive UTC, microseconds)."""
    return value.replace(tzinfo=None).isoformat(timespec="microseconds")


def personal_digest(row: Mapping[str, Any]) -> str:
    """The commitment to a receipt's personal columns and its salt."""
    return hashlib.sha256(_canonical([
        row["personal_salt"],
        row["consent_id"],
        row["page_path"],
        row["ip_prefix"],
        row["country"],
    ])).hexdigest()


def receipt_digest(row: Mapping[str, Any]) -> str:
    """The chained digest of a receipt (see the module docstring)."""
    content = dict(zip(CHAINED_COLUMNS, _chained(row), strict=True))
    content["created_at"] = timestamp(row["created_at"])
    content["personal_digest"] = row["personal_digest"]
    content["prev_digest"] = row["prev_digest"]
    rule = row.get("rule")
    if rule is not None:  # receipts before schema version 3 have none: digests unchanged
        content["rule"] = rule
    return hashlib.sha256(_canonical(content)).hexdigest()


def encode_link(seq: int, digest: str) -> str:
    """``"<seq>:<digest>"``, the form kept in ``consentkit_meta``."""
    return f"{seq}:{digest}"


def decode_link(value: str | None) -> tuple[int, str] | None:
    """The inverse of :func:`encode_link`; ``None`` for a missing or garbled value."""
    if not value:
        return None
    seq, _, digest = value.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        return None
    return int(seq), digest
