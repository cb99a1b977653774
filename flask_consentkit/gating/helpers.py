"""Jinja globals that write gated markup: ``consent_script`` and ``consent_iframe``.

Both always write the inert form; the response's rewrite activates it on the
server when the category is granted, and the banner's script activates it in
place after a choice. Every value is escaped.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from .. import configkeys
from ..appstate import get_kit_state
from ..errors import ConsentConfigError


def _check_category(category: str, helper: str) -> None:
    keys = get_kit_state().settings.category_keys
    if category not in keys:
        raise ConsentConfigError(
            configkeys.CATEGORIES,
            f"{helper}({category!r}, …) names a category the app does not have; "
            f"use one of {list(keys)}.",
        )


def _attr_name(name: str) -> str:
    """``data_id`` → ``data-id``; a trailing ``_`` (``class_``, ``async_``) is dropped."""
    name = name.rstrip("_").replace("_", "-")
    if not name or any(c in name for c in " \"'>/=\t\n\f\r<&"):
        raise ValueError(f"{name!r} is not a usable attribute name")
    return name


def _attrs(attrs: dict[str, Any]) -> Markup:
    out = Markup("")
    for raw_name, value in attrs.items():
        if value is None or value is False:
            continue
        name = _attr_name(raw_name)
        if value is True:
            out += Markup(" {}").format(name)
        else:
            out += Markup(' {}="{}"').format(name, value)
    return out


def consent_script(category: str, src: str | None = None, **attrs: Any) -> Markup:
    """``<script type="text/plain" data-consent="CATEGORY" src="…" …></script>``.

    A ``type`` (e.g. ``"module"``) becomes ``data-type`` and is restored when the
    script is activated. The request's CSP nonce is added unless ``nonce`` is
    given. ``True`` writes a bare attribute (``async=True``), ``False`` or
    ``None`` leaves it out.
    """
    _check_category(category, "consent_script")
    ext = get_kit_state()
    script_type = attrs.pop("type", None)
    if "nonce" not in attrs:
        attrs["nonce"] = ext.kit.csp_nonce()
    lead: dict[str, Any] = {"type": "text/plain", "data-consent": category}
    if script_type:
        lead["data-type"] = script_type
    if src is not None:
        lead["src"] = src
    return Markup("<script{}{}></script>").format(_attrs(lead), _attrs(attrs))


def consent_iframe(category: str, src: str, title: str, **attrs: Any) -> Markup:
    """``<iframe data-consent="CATEGORY" data-consent-src="…" title="…" …></iframe>``.

    ``title`` is required: it names the embed for screen readers and on the
    placeholder shown until consent.
    """
    _check_category(category, "consent_iframe")
    if not title or not str(title).strip():
        raise ValueError("consent_iframe() needs a title that names the embed for screen readers")
    attrs.pop("src", None)
    lead = {"data-consent": category, "data-consent-src": src, "title": title}
    return Markup("<iframe{}{}></iframe>").format(_attrs(lead), _attrs(attrs))

