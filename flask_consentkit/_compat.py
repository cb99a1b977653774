"""Every private API of Flask, werkzeug and Python the extension reads, in one place.

Each is a fast path for code that runs on every request, and each has a public
fallback that gives the same answer more slowly. ``FAST_PATHS`` says which fast
paths the installed versions allow; ``tests/test_compat.py`` fails when one of
them is off, so that a release of Flask or werkzeug that renames a private name
is noticed instead of quietly costing time on every request.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

from flask import Flask, has_app_context
from werkzeug.datastructures import Headers

try:
    # The context variables behind ``g``/``current_app`` and ``request``: reading
    # them costs a fraction of a LocalProxy lookup. Imported one by one: Flask's
    # main branch merges the two contexts and drops ``_cv_request``.
    from flask.globals import _cv_app
except ImportError:  # pragma: no cover - exercised by test_compat with the name removed
    _cv_app = None  # type: ignore[assignment]
try:
    from flask.globals import _cv_request
except ImportError:  # pragma: no cover
    _cv_request = None  # type: ignore[assignment]

try:
    # Python's own parser of regular expressions: the gating reads the literals every
    # match of a tracker's pattern holds, to look for all of them in one search.
    from re import _constants as _re_constants  # type: ignore[attr-defined]
    from re import _parser as _re_parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    _re_constants = _re_parser = None
#: the opcodes of :func:`parse_regex`'s trees
re_constants: Any = _re_constants

try:
    # json's C encoder, which ``JSONEncoder.encode`` builds anew on every call (with
    # Python steps around it); the ledger encodes two values per receipt
    from json.encoder import c_make_encoder as _c_make_encoder  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    _c_make_encoder = None

_HEADERS_LIST = type(getattr(Headers([("A", "b")]), "_list", None)) is list
_FIRST_REQUEST = isinstance(getattr(Flask("consentkit-compat"), "_got_first_request", None),
                            bool)

#: which fast paths the installed Flask and werkzeug allow
FAST_PATHS: dict[str, bool] = {
    "app context variable": _cv_app is not None,
    "request context variable": _cv_request is not None,
    "headers list": _HEADERS_LIST,
    "first request flag": _FIRST_REQUEST,
    "json C encoder": _c_make_encoder is not None,
    "regular expression parser": _re_parser is not None
    and all(hasattr(re_constants, name) for name in (
        "LITERAL", "AT", "SUBPATTERN", "ATOMIC_GROUP", "BRANCH", "MAX_REPEAT", "MIN_REPEAT",
        "POSSESSIVE_REPEAT")),
}


def _public_app_context() -> Any | None:
    """:func:`app_context` through Flask's public proxy."""
    if not has_app_context():
        return None
    from flask.globals import app_ctx

    return app_ctx._get_current_object()  # type: ignore[attr-defined]


#: ``app_context()``: the current app context, or ``None`` outside one; made like
#: :data:`request_context` (read it as ``_compat.app_context``)
app_context: Callable[[], Any | None] = (
    functools.partial(_cv_app.get, None) if _cv_app is not None else _public_app_context)


def _no_request_context() -> Any | None:
    """:func:`request_context` without the context variable: ``None``; callers then go
    through Flask's public proxies, which give the same objects."""
    return None


#: ``request_context()``: the current request context (``.app``, ``.request``), or
#: ``None`` outside one. With the context variable, its ``get`` bound to the default:
#: a call made in C, without a Python frame, on a path each response takes several
#: times. Callers read it as ``_compat.request_context``, so that the tests can turn
#: the fast path off.
request_context: Callable[[], Any | None] = (
    functools.partial(_cv_request.get, None) if _cv_request is not None
    else _no_request_context)


def header_list(headers: Any) -> list[tuple[str, str]] | None:
    """werkzeug's own list of ``(name, value)`` pairs behind ``headers``, or ``None``.

    The list itself: a change to it changes the headers. ``None`` where werkzeug
    keeps them otherwise; callers then use the public ``Headers`` methods.
    """
    items = getattr(headers, "_list", None) if _HEADERS_LIST else None
    return items if type(items) is list else None


def header_items(headers: Any) -> Any:
    """The ``(name, value)`` pairs of ``headers``, for reading, as cheaply as possible:
    werkzeug's own list behind a ``Headers``, anything else (a list of pairs) as it is."""
    return getattr(headers, "_list", headers) if _HEADERS_LIST else headers


def serving(app: Flask) -> bool:
    """Has ``app`` begun serving requests (after which it may not be set up further)?

    ``False`` where Flask does not say: the caller then asks again next time,
    which is correct, only slower.
    """
    return getattr(app, "_got_first_request", False) is True if _FIRST_REQUEST else False



def parse_regex(pattern: str, flags: int) -> Any | None:
    """Python's parse tree of ``pattern`` (``re._parser.parse``), or ``None`` without it.

    Read with the opcodes of :data:`re_constants`; ``None`` only costs speed (the
    caller then runs every pattern on every text).
    """
    if not FAST_PATHS["regular expression parser"]:
        return None
    return _re_parser.parse(pattern, flags)


def json_encoder(*, sort_keys: bool, separators: tuple[str, str], ensure_ascii: bool
                 ) -> Callable[[Any], str]:
    """``json.JSONEncoder(sort_keys=…, separators=…, ensure_ascii=…).encode``, for values
    without reference cycles: the same text, with json's C encoder made once.

    Without the C encoder, the public ``encode`` itself.
    """
    public = json.JSONEncoder(sort_keys=sort_keys, separators=separators,
                              ensure_ascii=ensure_ascii)
    if _c_make_encoder is None:
        return public.encode
    item_separator, key_separator = separators
    # the arguments JSONEncoder.iterencode gives it, without the cycle check (markers)
    encoder = _c_make_encoder(None, public.default,
                              encode_basestring_ascii if ensure_ascii else encode_basestring,
                              None, key_separator, item_separator, sort_keys, False, True)
    join = "".join

    def encode(value: Any) -> str:
        return join(encoder(value, 0))

    return encode
