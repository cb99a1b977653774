"""The receipts ledger: proof of every consent decision.

:class:`~.store.Ledger` (the store and its hash chain), :func:`~.recorder.install`
(wiring into ``init_app``) and the data-subject endpoints in :mod:`.views`.
"""

from __future__ import annotations

from ..errors import LedgerUnavailable
from .recorder import install
from .store import Draft, Ledger, LedgerError, VerifyResult

__all__ = ["Draft", "Ledger", "LedgerError", "LedgerUnavailable", "VerifyResult", "install"]
