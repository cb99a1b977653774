"""``ConsentLogFilter``: no full IP address in the app's logs without consent.

Attach it to the handlers that write logs you keep (access logs are kept 12
months)::

    from flask_consentkit import ConsentLogFilter

    handler = logging.FileHandler("access.log")
    handler.addFilter(ConsentLogFilter())

Every IPv4 and IPv6 address in a record's message is replaced by its
anonymised form (IPv4 /24, IPv6 /48) unless the current visitor granted the
category that governs IP addresses (``CONSENTKIT_COLLECTION_RULES["ip"]``,
``analytics`` by default). Outside a request — including the access lines that
werkzeug's and gunicorn's servers write after the response — the visitor's
choice is unknown, so addresses are always anonymised there.
"""

from __future__ import annotations

import logging
import re

from flask import current_app, has_request_context

from ..state import get_state, request_consent
from .ip import anonymize

# IPv6 (with an optional embedded IPv4 tail and zone) first, then IPv4; each
# candidate is checked with ``ipaddress`` before it is replaced, so times such
# as 12:30:45 stay as they are.
_ADDRESS = re.compile(
    r"(?<![\w:.])(?:"
    r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4})(?:%[\w.]+)?"
    r"|(?:\d{1,3}\.){3}\d{1,3}"
    r")(?![\w:]|\.\d)"
)


def _replace(match: re.Match[str]) -> str:
    text = match.group(0)
    return anonymize(text) or text


def scrub(text: str) -> str:
    """``text`` with every IP address replaced by its anonymised form."""
    return _ADDRESS.sub(_replace, text)


class ConsentLogFilter(logging.Filter):
    """A logging filter that anonymises IP addresses unless the visitor allowed them.

    :param category: the category whose grant lets full addresses through;
        by default the one ``CONSENTKIT_COLLECTION_RULES`` gives for ``ip``.

    The filter never drops a record; it rewrites ``record.msg`` (and clears
    ``record.args``) only when the formatted message held an address.
    """

    def __init__(self, name: str = "", *, category: str | None = None) -> None:
        super().__init__(name)
        self.category = category

    def filter(self, record: logging.LogRecord) -> bool:
        if not super().filter(record):
            return False
        if self._allowed():
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - let the handler report a broken format
            return True
        scrubbed = scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True

    def _allowed(self) -> bool:
        """True when the current visitor granted full addresses in logs."""
        if not has_request_context():
            return False
        ext = current_app.extensions.get("consentkit")
        if ext is None:
            return False
        category = self.category or ext.settings.collection_rules["ip"]
        ctx = request_consent()
        varies = ctx.varies  # logging must not change the response's Vary header
        try:
            return get_state().allows(category)
        finally:
            ctx.varies = varies
