"""Consent-gated collection of technical data: IP, location, browser, OS, device.

The one public entry point is :func:`~flask_consentkit.collect.technical.technical_data`;
the modules here are its parts (:mod:`.ip`, :mod:`.geo`, :mod:`.useragent`) and the
:class:`~flask_consentkit.collect.logfilter.ConsentLogFilter` for the app's logs.
"""

from __future__ import annotations

from .logfilter import ConsentLogFilter
from .technical import TechnicalData, install, technical_data

__all__ = ["ConsentLogFilter", "TechnicalData", "install", "technical_data"]
