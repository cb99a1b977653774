"""Vendors' consent signals from the visitor's state: Google Consent Mode v2 and the rest.

The server knows the visitor's choice before any tag loads, so the default it
emits is already the visitor's *current* state: a returning visitor who granted
analytics gets ``analytics_storage: "granted"`` at once, and no
``wait_for_update`` race is needed. A choice made later in the page is sent by
the banner's script as ``gtag('consent', 'update', …)`` from the same mapping
(``ext.consent_mode``).

Besides Google's, the script carries the default of each vendor with a consent
API that the app declares in ``CONSENTKIT_SERVICES`` by its catalogue key (or
names in the call), in a queue-style stub of the vendor's own kind, so that the
vendor's script finds it whenever it loads; and a listener for the banner's
``consentkit:change`` event that sends each of them its update (before the
page reloads, when the choice reloads it):

- ``microsoft-uet`` — UET consent mode, ``uetq.push('consent', 'default'|'update',
  {ad_storage})``: https://help.ads.microsoft.com/#apex/ads/en/60119/1
- ``microsoft-clarity`` — ``clarity('consentv2', {ad_Storage, analytics_Storage})``:
  https://learn.microsoft.com/clarity/clarity-consent-api-v2 and
  https://learn.microsoft.com/clarity/setup-and-installation/cmp-integration-guide
- ``meta-pixel`` — ``fbq('consent', 'revoke')`` before ``init``, ``'grant'`` once
  consented: https://developers.facebook.com/docs/facebook-pixel/implementation/gdpr
- ``tiktok-pixel`` — ``ttq.holdConsent()`` until a choice, then ``grantConsent()`` or
  ``revokeConsent()``: https://business-api.tiktok.com/portal/docs?id=1739585600931842

UET's and Clarity's storage types take their values from the Consent Mode
mapping (``ad_storage``, ``analytics_storage``), exactly as Google's do; Meta's
and TikTok's on/off switch follows the category the app files the service under
(``marketing`` in the catalogue).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from markupsafe import Markup

from ..appstate import ConsentKitState, get_kit_state
from ..categories import Service
from ..config import CONSENT_MODE_TYPES
from ..regions import restricted_view
from ..state import ConsentState, get_state
from ..vendors import load_catalogue

#: catalogue keys of the vendors whose consent API the script speaks (Google's
#: Consent Mode is always there)
VENDOR_SIGNALS: tuple[str, ...] = ("microsoft-uet", "microsoft-clarity", "meta-pixel",
                                   "tiktok-pixel")


def consent_types(mapping: Mapping[str, tuple[str, ...] | list[str]],
                  state: ConsentState) -> dict[str, str]:
    """Every Consent Mode v2 type as ``"granted"`` or ``"denied"`` for ``state``.

    A type is granted when every category that maps to it is granted; a type no
    category maps to is denied (fail closed).
    """
    needs = _needs(mapping)
    return {
        t: "granted" if cats and all(state.allows(c) for c in cats) else "denied"
        for t, cats in needs.items()
    }


def _needs(mapping: Mapping[str, tuple[str, ...] | list[str]]) -> dict[str, list[str]]:
    """Each Consent Mode type → the categories that must all be granted for it."""
    needs: dict[str, list[str]] = {t: [] for t in CONSENT_MODE_TYPES}
    for category, types in mapping.items():
        for t in types:
            needs.setdefault(t, []).append(category)
    return needs


def _script_json(value: object) -> str:
    """JSON that is safe inside a ``<script>`` element."""
    return (json.dumps(value, sort_keys=False, separators=(",", ":"))
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def signalled_vendors(ext: ConsentKitState, extra: Iterable[str] = ()) -> dict[str, Service]:
    """The vendors with a consent API the app uses, by catalogue key.

    Those declared in ``CONSENTKIT_SERVICES`` (by catalogue key, or a mapping
    with that ``key``), then the catalogue keys in ``extra`` (a catalogue vendor
    the app did not declare, under its catalogue category). Kept per app.
    """
    extra = tuple(extra)
    cache = ext.vendor_signals
    found = cache.get(extra)
    if found is None:
        found = {s.key: s for s in ext.settings.services if s.key in VENDOR_SIGNALS}
        catalogue = load_catalogue()
        for key in extra:
            if key not in VENDOR_SIGNALS:
                raise ValueError(f"vendor_consent_defaults(): {key!r} is not a vendor with a "
                                 f"consent API; use one of {', '.join(VENDOR_SIGNALS)}")
            vendor = catalogue.get(key)
            if key not in found and vendor is not None:
                found[key] = vendor
        cache[extra] = found = {k: found[k] for k in VENDOR_SIGNALS if k in found}
    return found


def vendor_consent_defaults(*vendors: str) -> Markup:
    """The Jinja global: a ``<script>`` with each vendor's consent default from the visitor's state.

    Put it in ``<head>`` before any tag. It sets Google Consent Mode's defaults
    and, for each vendor with a consent API the app declares in
    ``CONSENTKIT_SERVICES`` (or names here by catalogue key:
    ``vendor_consent_defaults("microsoft-clarity")``), that vendor's default in
    a stub of its own queue; and it sends each of them its update on a choice
    (the ``consentkit:change`` event of the banner's script). It carries the
    request's CSP nonce when the app uses one, and ``data-consent="necessary"``
    so the gating never treats it as a tracker.
    """
    ext = get_kit_state()
    mapping = ext.settings.consent_mode
    state = get_state()
    types = consent_types(mapping, state)
    nonce = ext.kit.csp_nonce()
    nonce_attr = Markup(' nonce="{}"').format(nonce) if nonce else Markup("")
    script = (
        "window.dataLayer=window.dataLayer||[];"
        "window.gtag=window.gtag||function(){dataLayer.push(arguments);};"
        f"gtag('consent','default',{_script_json(types)});"
    )
    if types.get("ad_storage") == "denied":
        script += "gtag('set','ads_data_redaction',true);"
    used = signalled_vendors(ext, vendors)
    view = restricted_view(ext) if used else None
    if view is not None:  # a rule per audience keeps these off: no stub, no default
        used = {k: s for k, s in used.items() if k not in view.forbidden}
    if used:
        script += _vendor_script(used, _needs(mapping), state)
    return Markup('<script{} data-consent="necessary" data-consentkit-consent-mode="{}">'
                  ).format(nonce_attr, _script_json({k: list(v) for k, v in mapping.items()})) \
        + Markup(script) + Markup("</script>")


#: the name it has always had; the same script
consent_mode_defaults = vendor_consent_defaults


def _vendor_script(used: Mapping[str, Service], needs: Mapping[str, list[str]],
                   state: ConsentState) -> str:
    """The stubs with each vendor's default, and the listener that sends its update.

    The defaults are literal values from the visitor's state (so that they are
    in the first response as they are). On a choice, ``G`` is the
    ``consentkit:change`` event's ``detail.granted``; ``S(cats)`` a Consent Mode
    type's value for them, as :func:`consent_types` computes it; ``O(cat)``
    whether a category is granted.
    """
    ads = needs.get("ad_storage", [])
    stats = needs.get("analytics_storage", [])

    def value(cats: list[str]) -> str:
        return "granted" if cats and all(state.allows(c) for c in cats) else "denied"

    def on(service: Service) -> bool:
        return state.allows(service.category)

    head = [
        "(function(w,d){",
        f"var G,A={_script_json(ads)},B={_script_json(stats)};",
        "function O(c){return G.indexOf(c)>=0}",
        "function S(n){return n.length&&n.every(O)?'granted':'denied'}",
    ]
    now: list[str] = []
    later: list[str] = []
    if "microsoft-uet" in used:
        # https://help.ads.microsoft.com/#apex/ads/en/60119/1 — a queue that bat.js replays
        uet = _script_json({"ad_storage": value(ads)})
        now.append(f"w.uetq=w.uetq||[];w.uetq.push('consent','default',{uet});")
        later.append("w.uetq.push('consent','update',{ad_storage:S(A)});")
    if "microsoft-clarity" in used:
        # https://learn.microsoft.com/clarity/clarity-consent-api-v2 — Clarity's own stub
        clarity = _script_json({"ad_Storage": value(ads), "analytics_Storage": value(stats)})
        now.append("w.clarity=w.clarity||function(){(w.clarity.q=w.clarity.q||[]).push(arguments)};"
                   f"w.clarity('consentv2',{clarity});")
        later.append("w.clarity('consentv2',{ad_Storage:S(A),analytics_Storage:S(B)});")
    if "meta-pixel" in used:
        # https://developers.facebook.com/docs/facebook-pixel/implementation/gdpr — 'revoke'
        # before 'init'. Meta's base code returns early when window.fbq exists, so the
        # value waits here until that code has made its queue and goes in front of it
        # (before its 'init'); a pixel already there gets it in front of its queue.
        meta = _script_json("grant" if on(used["meta-pixel"]) else "revoke")
        cat = _script_json(used["meta-pixel"].category)
        now.append(
            f"var M={cat},fv={meta},fp=1,ff=w.fbq;"
            "function fl(f){fp=0;if(f.queue&&!f.callMethod)f.queue.unshift(['consent',fv]);"
            "else f('consent',fv)}"
            "if(ff)fl(ff);else try{Object.defineProperty(w,'fbq',{configurable:true,"
            "enumerable:true,get:function(){if(fp&&ff&&(ff.queue||ff.callMethod)){"
            "Object.defineProperty(w,'fbq',{value:ff,writable:true,configurable:true,"
            "enumerable:true});fl(ff)}return ff},set:function(v){ff=v}})}catch(e){}")
        later.append("fv=O(M)?'grant':'revoke';if(!fp)w.fbq('consent',fv);")
    if "tiktok-pixel" in used:
        # https://business-api.tiktok.com/portal/docs?id=1739585600931842 — TikTok's
        # queue is the ttq array itself, one [method, ...args] per call; an undecided
        # visitor's pixel holds until the choice, a decided one's is told it
        tiktok = ("grantConsent" if on(used["tiktok-pixel"]) else "revokeConsent"
                  ) if state.decided else "holdConsent"
        cat = _script_json(used["tiktok-pixel"].category)
        now.append(
            f"var T={cat};w.ttq=w.ttq||[];"
            "function K(m){var q=w.ttq;typeof q[m]=='function'?q[m]():q.push([m])}"
            f"K({_script_json(tiktok)});")
        later.append("K(O(T)?'grantConsent':'revokeConsent');")
    tail = [
        "d.addEventListener('consentkit:change',function(e){",
        "G=(e.detail&&e.detail.granted)||['necessary'];",
        *later,
        "});})(window,document);",
    ]
    return "".join(head + now + tail)
