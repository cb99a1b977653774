"""Wiring the browser's policy into an app (see :mod:`.csp` for the policy itself).

:func:`install` is called by :meth:`ConsentKit.init_app`. It registers:

- ``ext.vendors`` — the app's :class:`~.vendors.VendorRegistry`;
- ``ext.policy`` — its :class:`~.csp.BrowserPolicy` (absent with
  ``CONSENTKIT_CSP = False``);
- ``ext.violations`` — where the browsers' reports are counted: the
  ledger's database, or this process's memory when receipts are off;
- a response processor that, for every HTML response, reads the visitor's
  choice and notes the header value for it, and drops ``Link:`` headers that
  would connect to a host the visitor does not allow;
- :class:`PolicyHeader` around ``app.wsgi_app``, which writes that header
  after every hook of the app has run.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request

from .cache import Kept
from .csp import BrowserPolicy, Mode, TokenBucket, filter_link_header
from .ledger.violations import MemoryViolations, Violations, ViolationStore
from .regions import restricted_view
from .responses import first_header
from .state import environ_and_consent, state_of
from .urls import Target
from .vendors import VendorRegistry

if TYPE_CHECKING:
    from .appstate import ConsentKitState

logger = logging.getLogger("flask_consentkit.csp")

#: where the processor leaves the response's header values for :class:`PolicyHeader`
ENVIRON_KEY = "consentkit.policy"
#: the report endpoint below ``CONSENTKIT_URL_PREFIX``
REPORT_PATH = "/csp-report"


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


def install(app: Flask, ext: ConsentKitState) -> None:
    """Wire the vendors, the policy and its reports into ``app``."""
    settings = ext.settings
    registry = VendorRegistry(settings.category_keys, settings.services,
                              undeclared=settings.undeclared_vendors == "catalogue")
    ext.vendors = registry
    ext.undeclared_hosts = UndeclaredHosts(registry)
    ledger = ext.ledger
    violations: Violations = ViolationStore(ledger) if ledger is not None else MemoryViolations()
    ext.violations = violations
    ext.report_bucket = TokenBucket()
    if settings.csp is False:
        return
    mode: Mode = "enforce" if settings.csp == "enforce" else "report-only"
    policy = BrowserPolicy(registry, mode, settings.url_prefix + REPORT_PATH)
    ext.policy = policy

    #: Reporting-Endpoints per script root (few: one, mostly)
    endpoints: Kept[str, str] = Kept("reporting endpoints", 16, 16 << 10)

    def endpoints_of(root: str) -> str:
        value = policy.reporting_endpoints(root)
        endpoints.put(root, value, len(value))
        return value

    def note_policy(response: Response, ext: ConsentKitState) -> Response:
        # run on documents only (``documents_only``): HTML, XHTML and SVG
        environ, ctx = environ_and_consent()
        granted = state_of(ctx).granted
        root = environ.get("SCRIPT_NAME", "")
        view = restricted_view(ext)  # None unless a rule per audience forbids services
        environ[ENVIRON_KEY] = (policy.value(granted, root, view),
                                endpoints.get(root) or endpoints_of(root))
        ctx.varies = True
        if first_header(response.headers, "Link") is not None:
            hosts = view.registry if view is not None else registry

            def allows(target: Target) -> bool:
                return hosts.allows(target, granted)

            values = response.headers.getlist("Link")
            del response.headers["Link"]
            for value in values:
                kept = filter_link_header(value, allows, request.url)
                if kept is not None:
                    response.headers.add("Link", kept)
        return response

    note_policy.documents_only = True  # type: ignore[attr-defined]
    note_policy.page_output = False  # type: ignore[attr-defined]  # runs on kept pages too
    ext.processors.append(note_policy)
    app.wsgi_app = PolicyHeader(app.wsgi_app, policy.header)  # type: ignore[method-assign]


class PolicyHeader:
    """WSGI middleware that writes the policy noted for the response, last of all.

    Written at the WSGI level rather than in an ``after_request`` hook: no hook
    of the app can replace it (Flask-Talisman *sets* ``Content-Security-Policy``,
    which removes every other header of that name), and the value — up to ~10 KB
    when everything is granted, made only of validated host sources — is not
    scanned for newlines again by werkzeug on every response.
    """

    def __init__(self, wsgi_app: Any, header: str) -> None:
        self.wsgi_app = wsgi_app
        self.header = header

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            noted = environ.get(ENVIRON_KEY)
            if noted is not None:
                headers.append((self.header, noted[0]))
                headers.append(("Reporting-Endpoints", noted[1]))
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)
