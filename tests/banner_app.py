"""A test app for the banner: a page with gated markup, a CSP option and services."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from flask import Flask, g

from .conftest import make_app

SERVICES = [
    {
        "name": "Plausible",
        "category": "analytics",
        "purpose": {"en": "Counts visits without profiles",
                    "az": "Profil yaratmadan ziyarətləri sayır"},
        "policy_url": "/privacy",
        "cookies": ["_pl"],
    },
    {
        "name": "VideoHost",
        "category": "marketing",
        "purpose": "Embedded videos",
        "policy_url": "/privacy",
        "cookies": ["_vh", "_vh_*"],
    },
]

CONSENT_MODE = {
    "analytics": ["analytics_storage"],
    "marketing": ["ad_storage", "ad_user_data", "ad_personalization"],
}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Story</title>
<script{nonce}>window.gtagCalls = []; window.gtag = function () {{ window.gtagCalls.push(
  Array.prototype.slice.call(arguments)); }}; window.pageMarker = "original";</script>
</head><body>
<header><nav aria-label="Main"><a href="/page" id="first-link">Home</a></nav></header>
<main><h1>A story</h1>
<p id="content">Once upon a time on the Caspian coast.</p>
<script type="text/plain" data-consent="analytics"{nonce}>
  window.analyticsRan = (window.analyticsRan || 0) + 1;</script>
<script type="text/plain" data-consent="performance" data-type="module"{nonce}>
  window.moduleRan = typeof import.meta.url === "string";</script>
<script type="text/plain" data-consent="marketing" data-consentkit-neutralised{nonce}>
  window.marketingRan = true;</script>
<div class="consentkit-placeholder" data-consent-placeholder="functional"><p>Video blocked.</p>
<a href="/consent/?next=/page#consentkit-cat-functional" data-consentkit-open="functional"
   role="button">Allow video</a></div>
<iframe data-consent="functional" data-consent-src="/embed" title="A video"></iframe>
<p><a href="/privacy" id="last-link">Privacy</a></p>
</main>
</body></html>"""

CSP = ("default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
       "img-src 'self'; frame-src 'self'; connect-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'")


def banner_app(tmp_path: Path | None = None, *, csp: bool = False, **config: Any) -> Flask:
    """An app whose ``/page`` carries gated scripts, an iframe and a placeholder."""
    config.setdefault("CONSENTKIT_PRIVACY_POLICY_URL", "/privacy")
    config.setdefault("CONSENTKIT_SERVICES", SERVICES)
    # the declared services are all on this site: no choice widens the browser policy,
    # so choices are applied in place (no reload)
    config.setdefault("CONSENTKIT_UNDECLARED_VENDORS", "blocked")
    app = make_app(tmp_path, **config)
    app.extensions["consentkit"].consent_mode = CONSENT_MODE

    if csp:
        @app.before_request
        def _nonce() -> None:
            g.csp_nonce = secrets.token_urlsafe(16)

        @app.after_request
        def _csp(response: Any) -> Any:
            response.headers["Content-Security-Policy"] = CSP.format(nonce=g.csp_nonce)
            return response

    @app.get("/page")
    def page() -> str:
        nonce = g.get("csp_nonce")
        return PAGE.format(nonce=f' nonce="{nonce}"' if nonce else "")

    @app.get("/embed")
    def embed() -> str:
        return "<!doctype html><html lang=en><title>embed</title><body><p>video</p></body></html>"

    @app.get("/privacy")
    def privacy() -> str:
        return ("<!doctype html><html lang=en><title>Privacy</title><body><main><h1>Privacy"
                "</h1></main></body></html>")

    return app
