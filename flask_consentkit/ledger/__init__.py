"""The receipts ledger: storage of every consent decision's proof (no HTTP).

:class:`~.store.Ledger` (the store and its hash chain), the notices receipts name
(:mod:`.notices`), signing keys and checkpoints (:mod:`.signing`, :mod:`.checkpoints`),
the browser policy's violation aggregates (:mod:`.violations`). Turning a request's
decision into a receipt is :mod:`flask_consentkit.recording`'s; the visitor's
endpoints are :mod:`flask_consentkit.rights` and :mod:`flask_consentkit.receipts`.
"""

from __future__ import annotations

from ..errors import LedgerUnavailable
from .store import Draft, Ledger, LedgerError, VerifyResult

__all__ = ["Draft", "Ledger", "LedgerError", "LedgerUnavailable", "VerifyResult"]
