"""flask-consentkit: lawful tracking by construction for Flask apps."""

from __future__ import annotations

from .categories import Category, Service
from .collect import ConsentLogFilter, TechnicalData, technical_data
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
from .signals import (
    consent_changed,
    consent_given,
    consent_withdrawn,
    technical_data_collected,
)
from .state import ConsentState, current_consent

__all__ = [
    "AlreadyRegisteredError",
    "Category",
    "ConsentBadRequest",
    "ConsentConfigError",
    "ConsentForbidden",
    "ConsentKit",
    "ConsentKitError",
    "ConsentLogFilter",
    "ConsentPayloadTooLarge",
    "ConsentRateLimited",
    "ConsentState",
    "Service",
    "Settings",
    "TechnicalData",
    "consent_changed",
    "consent_given",
    "consent_withdrawn",
    "current_consent",
    "requires_consent",
    "technical_data",
    "technical_data_collected",
]
