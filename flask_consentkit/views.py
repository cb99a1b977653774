"""The blueprint's endpoints: the choice, the state, the preferences page, gpc.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    render_template,
    request,
)
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.urls import iri_to_uri

from . import csp, jsonbody, signals
from .appstate import get_kit_state
from .config import Settings
from .errors import (
    ConsentBadRequest,
    ConsentForbidden,
    ConsentPayloadTooLarge,
    ConsentRateLimited,
    ConsentUnsupportedMediaType,
)
from .gpc import gpc_status, privacy_signal, signal_headers
from .state import (
    ConsentState,
    consent_keys,
    decide,
    get_state,
    query_args,
    request_consent,
    withdrawn_by,
)
from .urls import safe_next

ACTIONS = ("accept_all", "reject_all", "save")
log = logging.getLogger("flask_consentkit.csp")
_PACKAGE = Path(__file__).parent


def _static_folder() -> str:
    """``flask_consentkit/static`` in a wheel, the top-level ``static/`` in a checkout."""
    installed = _PACKAGE / "static"
    return str(installed if installed.is_dir() else _PACKAGE.parent / "static")


bp = Blueprint(
    "consentkit",
    __name__,
    template_folder="templates",
    static_folder=_static_folder(),
    static_url_path="/static",
)


def register(app: Flask, settings: Settings) -> None:
    """Register the blueprint (with the views :mod:`.rights` and :mod:`.receipts` add to
    it: :meth:`.ConsentKit.init_app` imports them first) and ``/.well-known/gpc.json``."""
    app.register_blueprint(bp, url_prefix=settings.url_prefix or "/")
    app.add_url_rule("/.well-known/gpc.json", "consentkit_gpc", gpc_json)


# -- cross-site protection and safe redirects ---------------------------------


def _origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def require_same_origin() -> None:
    """Refuse a write that a page of another site could have sent (403).

    Works without a session cookie: ``Sec-Fetch-Site``, then ``Origin``, then
    ``Referer`` are checked against the app's own origin and
    ``CONSENTKIT_TRUSTED_ORIGINS``. On HTTPS a request that carries neither
    ``Origin`` nor ``Referer`` is refused too.
    """
    settings = get_kit_state().settings
    fetch_site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if fetch_site == "cross-site":
        raise ConsentForbidden("Cross-site requests cannot change consent (Sec-Fetch-Site).")
    allowed = {f"{request.scheme}://{request.host}".lower(), *settings.trusted_origins}
    origin = request.headers.get("Origin")
    if origin is not None:
        origin = origin.strip().lower()
        if origin == "null" or origin not in allowed:
            raise ConsentForbidden("This origin may not change consent here.")
        return
    referer = request.headers.get("Referer")
    if referer:
        if _origin_of(referer) not in allowed:
            raise ConsentForbidden("This referring page may not change consent here.")
        return
    if request.is_secure:
        raise ConsentForbidden(
            "A consent change over HTTPS must carry an Origin or Referer header."
        )


# -- reading the choice ---------------------------------------------------------


def _bounded_body(settings: Settings) -> bytes:
    """The request body, at most ``CONSENTKIT_MAX_BODY`` bytes, else 413.

    Reads one byte past the limit so that a body without a declared length
    (chunked) is refused rather than silently truncated.
    """
    limit = settings.max_body
    too_large = ConsentPayloadTooLarge(f"A consent request body may be at most {limit} bytes.")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    request.max_content_length = limit + 1
    try:
        data = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise too_large from None
    if len(data) > limit:
        raise too_large
    return data


def _read_choice(settings: Settings) -> tuple[str, list[str], str | None, str, bool]:
    """``(action, categories, next, source, is_json)`` from a form or a JSON body."""
    body = _bounded_body(settings)
    if request.is_json:
        try:
            data: Any = jsonbody.loads(body)
        except jsonbody.JSONBodyError as e:
            raise ConsentBadRequest(str(e)) from None
        if not isinstance(data, dict):
            raise ConsentBadRequest('Send a JSON object such as {"action": "accept_all"}.')
        action, categories = data.get("action"), data.get("categories", [])
        source = data.get("source", "api")
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise ConsentBadRequest('"categories" must be a list of category keys.')
        next_url, is_json = None, True
    elif request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = request.form
        except RequestEntityTooLarge:
            raise ConsentPayloadTooLarge(
                f"A consent request body may be at most {settings.max_body} bytes."
            ) from None
        action = form.get("action")
        categories = form.getlist("categories")
        source = form.get("source", "preferences")
        next_url, is_json = form.get("next"), False
    else:
        raise ConsentBadRequest(
            "Send the choice as a form (application/x-www-form-urlencoded) or as JSON."
        )
    if action not in ACTIONS:
        raise ConsentBadRequest(
            f"Unknown action {action!r}; use one of: {', '.join(ACTIONS)}."
        )
    known = set(settings.category_keys) | consent_keys(settings)
    unknown = [c for c in categories if c not in known]
    if unknown:
        raise ConsentBadRequest(
            f"Unknown categor{'y' if len(unknown) == 1 else 'ies'} "
            f"{', '.join(repr(c[:40]) for c in unknown[:5])}; known: {', '.join(sorted(known))}."
        )
    allowed_sources = ("banner", "preferences") if not is_json else ("banner", "preferences", "api")
    if source not in allowed_sources:
        raise ConsentBadRequest(f"Unknown source {str(source)[:40]!r}; use one of "
                                f"{', '.join(allowed_sources)}.")
    return action, categories, next_url, source, is_json





def _granted_for(action: str, categories: list[str], settings: Settings, source: str
                 ) -> tuple[set[str], str]:
    optional = set(settings.optional_keys)
    if action == "reject_all":
        return set(), source
    if action == "save":
        # the separate consent to transfers abroad is given on its own line only
        return set(categories) & consent_keys(settings), source
    granted = set(optional)
    if "marketing" in granted and privacy_signal(settings):
        granted.discard("marketing")
        return granted, "gpc"
    return granted, source


def _send_signals(state: ConsentState, previous: ConsentState) -> None:
    """``previous`` is what the visitor had before this decision: their last choice or, when
    undecided, the defaults (``necessary`` only; under the opt-out model every category but
    what a privacy signal keeps off), so that opting out of a default is a withdrawal."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    before = previous.granted
    if state.granted - before:
        signals.consent_given.send(app, state=state, previous=previous)
    if state.granted != before or not previous.decided:
        signals.consent_changed.send(app, state=state, previous=previous)
    if before - state.granted:
        signals.consent_withdrawn.send(app, state=state, previous=previous)


# -- endpoints ---------------------------------------------------------------


@bp.post("/")
def choose() -> Response:
    """Record the visitor's choice; 303 back to ``next`` (form) or the state (JSON)."""
    ext = get_kit_state()
    settings = ext.settings
    require_same_origin()
    action, categories, next_url, source, is_json = _read_choice(settings)
    previous = get_state()
    granted, source = _granted_for(action, categories, settings, source)
    if action == "accept_all" and previous.decided:
        # "Accept all" is no consent to transfers abroad, nor does it take one back
        granted |= previous.granted & (consent_keys(settings) - set(settings.optional_keys))
    state = decide(settings, granted, previous=previous, source=source)
    ctx = request_consent()
    ctx.decision = state
    # what the visitor had, decided or not: the opt-out model's defaults are withdrawn too
    ctx.withdrawn = withdrawn_by(previous, state)
    recorder = ext.recorder
    if recorder is not None:
        recorder(action=action, state=state, previous=previous)
    _send_signals(state, previous)
    if is_json:
        response = jsonify(_state_body(settings, state))
    else:
        response = current_app.response_class(status=303)
        response.headers["Location"] = iri_to_uri(safe_next(next_url))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/")
def preferences() -> str:
    """The preferences page: every category, its services and cookies, toggles."""
    settings = get_kit_state().settings
    return render_template(
        "consentkit/preferences.html",
        settings=settings,
        state=get_state(),
        next_url=safe_next(query_args(strict=True).get("next")),
    )


@bp.get("/notice")
def notice() -> str:
    """The information notice: controller, purposes, data and services, duration,
    revocation, deletion and transfers abroad, as a page of its own (no JavaScript)."""
    settings = get_kit_state().settings
    return render_template("consentkit/notice.html", settings=settings,
                           next_url=safe_next(query_args(strict=True).get("next")))


@bp.get("/opt-out")
def opt_out() -> str:
    """"Do Not Sell or Share My Personal Information": the opt-out of the sale and sharing
    of personal information (``marketing``), one button, no JavaScript."""
    settings = get_kit_state().settings
    return render_template("consentkit/opt_out.html", settings=settings,
                           next_url=safe_next(query_args(strict=True).get("next")))


@bp.get("/state")
def state_json() -> Response:
    """The visitor's state as JSON, with what a Global Privacy Control signal did (``gpc``)."""
    settings = get_kit_state().settings
    response = jsonify(_state_body(settings, get_state()))
    response.headers["Cache-Control"] = "no-store"
    for header in signal_headers(settings):  # the opt-out model's default depends on them
        response.vary.add(header)
    return response


def _state_body(settings: Settings, state: ConsentState) -> dict[str, Any]:
    """The JSON of ``state``, with what a Global Privacy Control signal did (``gpc``)."""
    body = state.to_json(settings.max_age)
    body["gpc"] = gpc_status(settings, state.granted if state.decided else ())
    return body


def gpc_json() -> Response:
    """``/.well-known/gpc.json``: this site honours Global Privacy Control."""
    settings = get_kit_state().settings
    response = current_app.response_class(
        json.dumps({"gpc": settings.honor_gpc, "lastUpdate": settings.gpc_last_update}),
        mimetype="application/json",
    )
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@bp.errorhandler(HTTPException)
def _error(error: HTTPException) -> Response | HTTPException:
    """Errors of the consent endpoints: JSON for JSON clients, plain text otherwise."""
    wants_json = request.is_json or (
        request.accept_mimetypes.best_match(["application/json", "text/html"])
        == "application/json"
    )
    code = error.code or 500
    if wants_json:
        response = jsonify(error=error.description, status=code)
    else:
        response = current_app.response_class(
            f"{code} {error.name}: {error.description}\n", mimetype="text/plain"
        )
    response.status_code = code
    for key, value in error.get_headers():
        if key.lower() not in ("content-type", "content-length"):
            response.headers[key] = value
    return response


@bp.post("/csp-report")
def csp_report() -> Response:
    """The browser policy's violation reports, counted as aggregates only.

    ``204`` when counted (or when there was nothing to count), ``400`` for a body
    that is not a report, ``413`` past 64 KB, ``415`` for another content type,
    ``429`` when this process already counted its share this second.
    """
    ext = get_kit_state()
    mimetype = request.mimetype
    if mimetype not in csp.REPORT_TYPES:
        raise ConsentUnsupportedMediaType(
            f"send a report as one of {', '.join(sorted(csp.REPORT_TYPES))}")
    if not ext.report_bucket.take():
        raise ConsentRateLimited("too many reports; try again in a second.", retry_after=1)
    if request.content_length is not None and request.content_length > csp.MAX_REPORT_BODY:
        raise ConsentPayloadTooLarge(f"a report may be at most {csp.MAX_REPORT_BODY} bytes.")
    request.max_content_length = csp.MAX_REPORT_BODY + 1
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise ConsentPayloadTooLarge(
            f"a report may be at most {csp.MAX_REPORT_BODY} bytes.") from None
    if len(body) > csp.MAX_REPORT_BODY:
        raise ConsentPayloadTooLarge(f"a report may be at most {csp.MAX_REPORT_BODY} bytes.")
    try:
        counts = csp.parse_reports(body, request.url)
    except csp.ReportError as e:
        raise ConsentBadRequest(f"not a CSP violation report: {e}.") from None
    if counts:
        try:
            ext.violations.add(counts)
        except Exception:  # noqa: BLE001 - a report is never worth a 500
            log.warning("flask-consentkit: could not store %d violation report(s)",
                        sum(counts.values()), exc_info=True)
        undeclared = ext.undeclared_hosts
        for host, directive, path in counts:
            undeclared.saw(host, path, f"tried to reach ({directive}, reported by a browser)")
    return current_app.response_class(status=204)
