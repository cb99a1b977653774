"""``ConsentLogFilter``: no full IP address in the app's logs without consent.

Attach it to the handlers that write logs you keep (access logs are kept 12
months)::

    from flask_consentkit import ConsentLogFilter

    handler = logging.FileHandler("access.log")
    handler.addFilter(ConsentLogFilter())

Every IPv4 and IPv6 address in a record — its message, exception text, stack
and ``extra`` fields; alone, with a port (``203.0.113.7:51234``,
``[2001:db8::1]:443``) or after a ``key:`` — is replaced by its anonymised
form (IPv4 /24, IPv6 /48) unless the current visitor granted the
category that governs IP addresses (``CONSENTKIT_COLLECTION_RULES["ip"]``,
``analytics`` by default). Outside a request — including the access lines that
werkzeug's and gunicorn's servers write after the response — the visitor's
choice is unknown, so addresses are always anonymised there.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any

from flask import current_app, has_request_context

from ..state import get_state, request_consent
from .ip import anonymize

_TRACEBACKS = logging.Formatter()

# A run of the characters addresses are written with (hex digits, ``:``, ``.``, a
# zone), starting where a word does not go on, or at the ``:`` or the hex digits
# just before a ``:`` after a key (``remote_addr:203.0.113.7``, ``src:2001:db8::1``).
# Each run is then read by ``ipaddress`` whole or with what an address is often
# written with cut off — a ``key:`` before it, a ``:port`` or a full stop after it —
# so times such as 12:30:45 and versions such as v1.2.3.4.5 stay as they are.
_RUN = re.compile(
    r"(?=[0-9A-Fa-f:])(?:(?<![\w.:%])|(?<=[^\W\da-fA-F])(?=[0-9A-Fa-f]*:))"
    r"(?=[0-9A-Fa-f]*[:.][0-9A-Fa-f]*[:.])"  # two separators at least: most runs stop here
    r"[0-9A-Fa-f:.]++(?:%[\w.]+)?"
)
_PORT = re.compile(r":\d{1,5}$")


def _starts(run: str) -> list[int]:
    """Where an address may begin in ``run``: its start, or just after a ``:`` (8 at most)."""
    starts = [0]
    at = run.find(":")
    while at != -1 and len(starts) < 9:
        starts.append(at + 1)
        at = run.find(":", at + 1)
    return starts


def _ends(run: str) -> list[int]:
    """Where an address may end in ``run``: its end, before trailing ``.``/``:`` or a port."""
    ends = [len(run)]
    bare = run.rstrip(".:")
    if len(bare) < len(run):
        ends.append(len(bare))
    port = _PORT.search(bare)
    # a port follows IPv4 only: an IPv6 address takes one in brackets ([2001:db8::1]:443)
    if port is not None and "." in bare[:port.start()].rpartition(":")[2]:
        ends.append(port.start())
    return ends


def _replace(match: re.Match[str]) -> str:
    run = match.group(0)
    if run.count(":") < 2 and run.count(".") < 3:
        return run  # too few separators for any address
    for start in _starts(run):
        for end in _ends(run):
            if end - start >= 2:
                anonymised = anonymize(run[start:end])
                if anonymised is not None:
                    return run[:start] + anonymised + run[end:]
    return run


def scrub(text: str) -> str:
    """``text`` with every IP address replaced by its anonymised form.

    Addresses are found on their own and as they are written in URLs, access
    lines and ``key:value`` text: with a port (``203.0.113.7:51234``,
    ``[2001:db8::1]:443``, ``http://203.0.113.7:8080/``) and after a colon
    (``remote_addr:203.0.113.7``).
    """
    return _RUN.sub(_replace, text)


# what every LogRecord has; anything else on a record came from ``extra``
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime"}


def _scrub_value(value: Any, depth: int = 0) -> Any:
    """``value`` (an ``extra`` field) with its addresses anonymised; ``value`` itself if none."""
    if isinstance(value, str):
        scrubbed = scrub(value)
        return value if scrubbed == value else scrubbed
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return anonymize(str(value)) or value
    if depth < 4 and isinstance(value, list | tuple | dict):
        if isinstance(value, dict):
            items = {k: _scrub_value(v, depth + 1) for k, v in value.items()}
            changed = any(items[k] is not v for k, v in value.items())
            return items if changed else value
        elements = [_scrub_value(v, depth + 1) for v in value]
        if all(a is b for a, b in zip(elements, value, strict=True)):
            return value
        return elements if isinstance(value, list) else tuple(elements)
    return value


class ConsentLogFilter(logging.Filter):
    """A logging filter that anonymises IP addresses unless the visitor allowed them.

    :param category: the category whose grant lets full addresses through;
        by default the one ``CONSENTKIT_COLLECTION_RULES`` gives for ``ip``.

    The filter never drops a record. It rewrites ``record.msg`` (and clears
    ``record.args``) only when the formatted message held an address; likewise
    the exception's text (``record.exc_text``, and then ``record.exc_info`` is
    cleared so that no formatter prints the traceback anew), ``stack_info`` and
    the fields given with ``extra=`` (strings, ``ipaddress`` objects, and the
    strings in lists, tuples and dicts).
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
            message = None
        if message is not None:
            scrubbed = scrub(message)
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
        if record.exc_info or record.exc_text:
            text = record.exc_text or _TRACEBACKS.formatException(record.exc_info)  # type: ignore[arg-type]
            trace = scrub(text)
            if trace != text:
                # formatters print exc_text; with exc_info left some would format it anew
                record.exc_text, record.exc_info = trace, None
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _RECORD_FIELDS:
                scrubbed_value = _scrub_value(value)
                if scrubbed_value is not value:
                    record.__dict__[key] = scrubbed_value
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
