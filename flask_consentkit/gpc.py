"""Global Privacy Control as the visitor is told of it: received, honoured, what it keeps off.

A request with ``Sec-GPC: 1`` (and ``CONSENTKIT_HONOR_GPC``, the default) keeps the
categories of :data:`GPC_OFF` off on "Accept all" (see ``views._granted_for``). California's
regulations (11 CCR §7025(c)(6)) ask the business to display whether it processed the
signal, e.g. "Opt-Out Request Honored": the banner and the preferences page say so in the
visitor's language, and ``GET /consent/state`` carries :func:`gpc_status`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .state import current_request

if TYPE_CHECKING:
    from .config import Settings

#: the categories a Global Privacy Control signal keeps off (selling and sharing: ads)
GPC_OFF: tuple[str, ...] = ("marketing",)


def gpc_received() -> bool:
    """True when this request carries ``Sec-GPC: 1`` (any other value is no signal)."""
    # the environ itself: request.headers.get() raises and catches for an absent header
    return str(current_request().environ.get("HTTP_SEC_GPC", "")).strip() == "1"


def gpc_covers(settings: Settings) -> tuple[str, ...]:
    """The app's categories that a Global Privacy Control signal keeps off."""
    return tuple(k for k in settings.optional_keys if k in GPC_OFF)


def gpc_status(settings: Settings, granted: Iterable[str]) -> dict[str, Any]:
    """``{"received", "honoured", "off", "overridden"}`` for a visitor who granted ``granted``.

    ``honoured``: the signal was received, the app honours it and it keeps every one of its
    categories off; ``off``: those categories; ``overridden``: the ones the visitor switched
    on themselves in the settings despite the signal (then it is not ``honoured``).
    """
    received = gpc_received()
    covered = gpc_covers(settings) if received and settings.honor_gpc else ()
    granted = frozenset(granted)
    overridden = [k for k in covered if k in granted]
    return {
        "received": received,
        "honoured": bool(received and settings.honor_gpc and not overridden),
        "off": [k for k in covered if k not in granted],
        "overridden": overridden,
    }


def signal_headers(settings: Settings) -> tuple[str, ...]:
    """The request headers of the privacy signals the app honours (``Sec-GPC``, ``DNT``):
    what a response that depends on :func:`privacy_signal` varies by."""
    return (("Sec-GPC",) if settings.honor_gpc else ()) + (("DNT",) if settings.honor_dnt else ())


def privacy_signal(settings: Settings, environ: Mapping[str, Any] | None = None) -> bool:
    """True when the browser asks not to be tracked and the app honours it.

    ``environ``: the request's, when the caller holds it already.
    """
    # the environ itself: request.headers.get() raises and catches for an absent header
    if environ is None:
        environ = current_request().environ
    if settings.honor_gpc and environ.get("HTTP_SEC_GPC", "").strip() == "1":
        return True
    return settings.honor_dnt and environ.get("HTTP_DNT", "").strip() == "1"
