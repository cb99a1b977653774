"""Wiring the browser's policy into an app (see :mod:`.csp` for the policy itself).

:func:`install` is called by :meth:`ConsentKit.init_app`. It registers:

- ``ext.services["vendors"]`` — the app's :class:`~.vendors.VendorRegistry`;
- ``ext.services["policy"]`` — its :class:`~.csp.BrowserPolicy` (absent with
  ``CONSENTKIT_CSP = False``);
- ``ext.services["violations"]`` — where the browsers' reports are counted: the
  ledger's database, or this process's memory when receipts are off;
- a response processor that, for every HTML response, reads the visitor's
  choice and notes the header value for it, and drops ``Link:`` headers that
  would connect to a host the visitor does not allow;
- a last ``after_request`` hook that writes the header. It runs after every
  other hook of the app, so that an extension which *sets* its own
  ``Content-Security-Policy`` (Flask-Talisman replaces every header of that
  name) does not remove ours.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from flask import Flask, Response, request

from .csp import BrowserPolicy, Mode, TokenBucket, filter_link_header
from .ledger.violations import MemoryViolations, Violations, ViolationStore
from .state import get_state, peek_request_consent, request_consent
from .urls import Target
from .vendors import VendorRegistry

if TYPE_CHECKING:
    from .extension import ConsentKitState

logger = logging.getLogger("flask_consentkit.csp")

#: the report endpoint below ``CONSENTKIT_URL_PREFIX``
REPORT_PATH = "/csp-report"
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "image/svg+xml"})


class UndeclaredHosts:
    """Logs each third-party host the app did not declare once, with the line that would."""

    def __init__(self, registry: VendorRegistry) -> None:
        self.registry = registry
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def saw(self, host: str, page: str, how: str) -> None:
        if host in self._seen:
            return
        with self._lock:
            if host in self._seen or len(self._seen) >= 10_000:
                return
            self._seen.add(host)
        target = Target(host, "/")
        declared = self.registry.vendor_for(target)
        if declared is not None and declared.declared:
            return
        vendor = self.registry.catalogue.find(target)
        if vendor is not None:
            guess = (f"the catalogue's guess: {vendor.name} ({vendor.category}); declare it with "
                     f'CONSENTKIT_SERVICES = [..., "{vendor.key}"]')
        else:
            guess = ("the catalogue does not know it, so no visitor's browser may reach it; "
                     "declare it with CONSENTKIT_SERVICES = [..., {\"name\": \"...\", "
                     f"\"category\": \"...\", \"hosts\": [\"{host}\"]}}]")
        logger.warning("flask-consentkit: %s %s an undeclared host, %s; %s",
                       page, how, host, guess)


def _is_html(response: Response) -> bool:
    mimetype = response.mimetype
    return mimetype in HTML_TYPES


def install(app: Flask, ext: ConsentKitState) -> None:
    """Wire the vendors, the policy and its reports into ``app``."""
    settings = ext.settings
    registry = VendorRegistry(settings.category_keys, settings.services,
                              undeclared=settings.undeclared_vendors == "catalogue")
    ext.services["vendors"] = registry
    ext.services["undeclared_hosts"] = UndeclaredHosts(registry)
    ledger = ext.services.get("ledger")
    violations: Violations = ViolationStore(ledger) if ledger is not None else MemoryViolations()
    ext.services["violations"] = violations
    ext.services["report_bucket"] = TokenBucket()
    if settings.csp is False:
        return
    mode: Mode = "enforce" if settings.csp == "enforce" else "report-only"
    policy = BrowserPolicy(registry, mode, settings.url_prefix + REPORT_PATH)
    ext.services["policy"] = policy

    def note_policy(response: Response, ext: ConsentKitState) -> Response:
        if not _is_html(response):
            return response
        ctx = request_consent()
        state = ctx.decision if ctx.decision is not None else get_state()
        granted = state.granted
        ctx.policy = policy.value(granted, request.script_root)
        ctx.varies = True
        if "Link" in response.headers:

            def allows(target: Target) -> bool:
                return registry.allows(target, granted)

            values = response.headers.getlist("Link")
            del response.headers["Link"]
            for value in values:
                kept = filter_link_header(value, allows, request.url)
                if kept is not None:
                    response.headers.add("Link", kept)
        return response

    def write_policy(response: Response) -> Response:
        ctx = peek_request_consent()
        if ctx is not None and ctx.policy is not None:
            response.headers.add(policy.header, ctx.policy)
            response.headers.add("Reporting-Endpoints",
                                 policy.reporting_endpoints(request.script_root))
        return response

    ext.processors.append(note_policy)
    # after_request hooks run last-registered first: the first one runs after all others
    app.after_request_funcs.setdefault(None, []).insert(0, write_policy)
