"""Google Consent Mode v2: the ``gtag('consent', 'default', …)`` call from the visitor's state.

The server knows the visitor's choice before any tag loads, so the default it
emits is already the visitor's *current* state: a returning visitor who granted
analytics gets ``analytics_storage: "granted"`` at once, and no
``wait_for_update`` race is needed. A choice made later in the page is sent by
the banner's script as ``gtag('consent', 'update', …)`` from the same mapping
(``ext.services["consent_mode"]``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from markupsafe import Markup

from ..config import CONSENT_MODE_TYPES
from ..extension import get_kit_state
from ..state import ConsentState, get_state


def consent_types(mapping: Mapping[str, tuple[str, ...] | list[str]],
                  state: ConsentState) -> dict[str, str]:
    """Every Consent Mode v2 type as ``"granted"`` or ``"denied"`` for ``state``.

    A type is granted when every category that maps to it is granted; a type no
    category maps to is denied (fail closed).
    """
    needs: dict[str, list[str]] = {t: [] for t in CONSENT_MODE_TYPES}
    for category, types in mapping.items():
        for t in types:
            needs.setdefault(t, []).append(category)
    return {
        t: "granted" if cats and all(state.allows(c) for c in cats) else "denied"
        for t, cats in needs.items()
    }


def _script_json(value: object) -> str:
    """JSON that is safe inside a ``<script>`` element."""
    return (json.dumps(value, sort_keys=False, separators=(",", ":"))
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def consent_mode_defaults() -> Markup:
    """The Jinja global: a ``<script>`` that sets Consent Mode defaults from the visitor's state.

    Put it in ``<head>`` before any Google tag. It carries the request's CSP
    nonce when the app uses one, and ``data-consent="necessary"`` so the
    gating never treats it as a tracker.
    """
    ext = get_kit_state()
    mapping = ext.settings.consent_mode
    types = consent_types(mapping, get_state())
    nonce = ext.kit.csp_nonce()
    nonce_attr = Markup(' nonce="{}"').format(nonce) if nonce else Markup("")
    script = (
        "window.dataLayer=window.dataLayer||[];"
        "window.gtag=window.gtag||function(){dataLayer.push(arguments);};"
        f"gtag('consent','default',{_script_json(types)});"
    )
    if types.get("ad_storage") == "denied":
        script += "gtag('set','ads_data_redaction',true);"
    return Markup('<script{} data-consent="necessary" data-consentkit-consent-mode="{}">'
                  ).format(nonce_attr, _script_json({k: list(v) for k, v in mapping.items()})) \
        + Markup(script) + Markup("</script>")
