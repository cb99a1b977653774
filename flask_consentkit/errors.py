"""Exceptions raised by flask-consentkit.

Errors a browser can see subclass the matching :mod:`werkzeug.exceptions` class,
so an app can customise them with ``@app.errorhandler(ConsentBadRequest)`` or
with the werkzeug class they extend.
"""

from __future__ import annotations

from werkzeug.exceptions import (
    BadRequest,
    Forbidden,
    RequestEntityTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    UnsupportedMediaType,
)


class ConsentKitError(Exception):
    """Base class of every error flask-consentkit raises."""


class ConsentConfigError(ConsentKitError, ValueError):
    """The app's ``CONSENTKIT_*`` configuration is wrong.

    Raised from :meth:`ConsentKit.init_app` with a message that names the key
    and says how to fix it. ``key`` holds the offending configuration key.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


class ConsentBadRequest(ConsentKitError, BadRequest):
    """A consent request the server cannot act on (400)."""


class ConsentForbidden(ConsentKitError, Forbidden):
    """A write that did not come from the app's own origin (403)."""


class ConsentPayloadTooLarge(ConsentKitError, RequestEntityTooLarge):
    """A consent request body over the size limit (413)."""


class ConsentUnsupportedMediaType(ConsentKitError, UnsupportedMediaType):
    """A body of a content type the endpoint does not read (415)."""


class ConsentRateLimited(ConsentKitError, TooManyRequests):
    """Too many data-subject requests from one visitor (429)."""

    def __init__(self, description: str | None = None, retry_after: int = 60) -> None:
        super().__init__(description)
        self.retry_after = retry_after


class LedgerUnavailable(ConsentKitError, ServiceUnavailable):
    """The ledger could not be reached for a visitor's request (503)."""
