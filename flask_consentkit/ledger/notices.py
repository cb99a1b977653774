"""The notices visitors decided under, kept once each, addressed by their content.

Storage only. A *notice* is everything a visitor was shown and told when they
chose: the banner's text in the language shown, the categories with their
descriptions, the services with their purposes, hosts, countries and cookies,
the privacy policy's version, address and effective date, the controller's
identity (``CONSENTKIT_CONTROLLER``) and the rule per audience applied. Its id
is the SHA-256 of its canonical JSON, and that id is what a receipt records in
``banner_hash``, a column the receipts' chain covers: a notice cannot be
changed without its id changing, and a receipt cannot be pointed at another
notice without breaking the chain. :meth:`NoticeStore.check` finds a stored
notice whose content no longer hashes to its id.

Notices live in ``consentkit_notices`` in the ledger's database; a notice is
written before the first receipt that names it, once per process.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from ..notice import NOTICE_SCHEMA, canonical, notice_id
from .schema import notices
from .store import Ledger

__all__ = ["NOTICE_SCHEMA", "NoticeStore", "canonical", "notice_id"]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class NoticeStore:
    """The notices in the ledger's database (SQLite or PostgreSQL)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._kept: set[str] = set()
        self._lock = threading.Lock()

    def keep(self, content: Mapping[str, Any], ident: str | None = None) -> str:
        """Store ``content`` unless it is stored already; its id.

        One short transaction the first time this process sees the notice, none
        after; ``ident``, the id the caller already knows, spares hashing the
        notice again on every decision. Raises what the database raises (the
        caller decides what a receipt without its notice is worth).
        """
        if ident is not None and ident in self._kept:
            return ident
        text = canonical(content)
        ident = hashlib.sha256(text.encode()).hexdigest()
        if ident in self._kept:
            return ident
        dialect = postgresql if self.ledger.dialect == "postgresql" else sqlite
        stmt = dialect.insert(notices).values(notice_id=ident, created_at=_now(), content=text)
        with self.ledger.engine.connect() as conn, conn.begin():
            conn.execute(stmt.on_conflict_do_nothing(index_elements=[notices.c.notice_id]))
        with self._lock:
            if len(self._kept) >= 10_000:
                self._kept.clear()
            self._kept.add(ident)
        return ident

    def get(self, ident: str) -> dict[str, Any] | None:
        """The notice ``ident`` as it was shown, or ``None`` when none is kept under it."""
        with self.ledger.engine.connect() as conn:
            text = conn.execute(
                select(notices.c.content).where(notices.c.notice_id == ident)).scalar()
        if text is None:
            return None
        content: dict[str, Any] = json.loads(text)
        return content

    def check(self) -> Iterator[str]:
        """A line for each stored notice whose content is not what its id says."""
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(select(notices.c.notice_id, notices.c.content)
                                .order_by(notices.c.notice_id))
            for ident, text in rows:
                try:
                    again = notice_id(json.loads(text))
                except ValueError:
                    yield f"notice {ident}: its content is not JSON any more"
                    continue
                if again != ident:
                    yield (f"notice {ident}: its content was changed (it now hashes to "
                           f"{again})")
