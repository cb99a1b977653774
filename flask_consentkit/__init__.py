"""flask-consentkit: lawful tracking by construction for Flask apps."""

from __future__ import annotations

from .categories import Category, Service
from .config import Settings
from .errors import (
    ConsentBadRequest,
    ConsentConfigError,
    ConsentForbidden,
    ConsentKitError,
    ConsentPayloadTooLarge,
    ConsentRateLimited,
)
from .extension import AlreadyRegisteredError, ConsentKit, requires_consent
from .signals import consent_changed, consent_given, consent_withdrawn
from .state import ConsentState, current_consent

__all__ = [
    "AlreadyRegisteredError",
    "Category",
    "ConsentBadRequest",
    "ConsentConfigError",
    "ConsentForbidden",
    "ConsentKit",
    "ConsentKitError",
    "ConsentPayloadTooLarge",
    "ConsentRateLimited",
    "ConsentState",
    "Service",
    "Settings",
    "consent_changed",
    "consent_given",
    "consent_withdrawn",
    "current_consent",
    "requires_consent",
]
