"""Small helpers on responses and their headers, shared by every processor.

A low module: it knows Flask's and werkzeug's response objects (through
:mod:`._compat` where it reads their private parts) and nothing of consent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from flask import Response
from werkzeug.http import parse_list_header

from ._compat import header_items, header_list
from .cache import Kept


def first_header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of header ``name`` (any case), or ``None``.

    ``headers.get(name)`` of werkzeug builds and catches an exception for a
    header that is absent, the common case on the per-request path.
    """
    name = name.lower()
    key: str
    value: str
    for key, value in header_items(headers):
        if key.lower() == name:
            return value
    return None


#: the media types of documents, which the HTML rewrite, the banner and the browser
#: policy may change (each processor narrows it further: the rewrite leaves SVG alone)
DOCUMENT_TYPES = frozenset({"text/html", "application/xhtml+xml", "image/svg+xml"})
HTML_UTF8 = "text/html; charset=utf-8"


def content_type_and_cookies(headers: Iterable[tuple[str, str]]) -> tuple[str | None, bool]:
    """``(the first Content-Type, whether a Set-Cookie is there)``, in one pass."""
    content_type: str | None = None
    cookies = False
    key: str
    value: str
    for key, value in header_items(headers):
        if len(key) == 12 and content_type is None and key.lower() == "content-type":
            content_type = value
        elif len(key) == 10 and key.lower() == "set-cookie":
            cookies = True
    return content_type, cookies


def is_document(headers: Iterable[tuple[str, str]]) -> bool:
    """Is the response with ``headers`` an HTML, XHTML or SVG document?"""
    return is_document_type(first_header(headers, "Content-Type"))


#: ``Content-Type`` values of Flask's own answers that are no documents (``jsonify``,
#: a ``Response`` with another common mimetype): told apart without parsing them
_NOT_DOCUMENTS = frozenset({
    "application/json", "text/plain; charset=utf-8", "text/css; charset=utf-8",
    "text/javascript; charset=utf-8", "application/javascript; charset=utf-8",
    "text/csv; charset=utf-8", "application/octet-stream", "image/png", "image/jpeg",
})


def is_document_type(content_type: str | None) -> bool:
    """Is ``content_type`` (a ``Content-Type`` value) that of a document?"""
    return content_type is not None and (
        content_type == HTML_UTF8
        or (content_type not in _NOT_DOCUMENTS
            and content_type.split(";", 1)[0].strip().lower() in DOCUMENT_TYPES))


def response_body(response: Response) -> bytes:
    """``response.get_data()``, without the flattening when the body is one ``bytes``.

    The caller has checked that the response is neither streamed nor passed through.
    """
    body = response.response
    if type(body) is list and len(body) == 1 and type(body[0]) is bytes:
        return body[0]
    return response.get_data()


def replace_body(response: Response, data: bytes, old: bytes) -> None:
    """``response.set_data(data)``, with less work for ``Content-Length``.

    Left alone when the length cannot change; else rewritten in place when
    werkzeug wrote it (its own spelling, one header), else set as werkzeug does.
    """
    response.response = [data]
    if len(data) == len(old) or not response.automatically_set_content_length:
        return
    headers = header_list(response.headers)
    if headers is not None:
        for index, (key, _) in enumerate(headers):
            if key == "Content-Length":
                headers[index] = (key, str(len(data)))
                return
    response.headers["Content-Length"] = str(len(data))


#: the largest error page read whole so that it can be gated and get the banner
MAX_ERROR_PAGE = 1 << 20


def settle_error_page(response: Response) -> None:
    """Read an error page whose body is an iterator, but of a known small length, whole.

    Flask turns an ``HTTPException`` (``abort(404)``, an unknown URL) into a
    response by running it as a WSGI app, so its body is an iterator although it
    is one small page: read whole, it is gated and gets the banner like any
    page, instead of being taken for a stream.
    """
    length = response.content_length
    if (not response.direct_passthrough and length is not None
            and length <= MAX_ERROR_PAGE):
        response.make_sequence()


_PLAIN_VARY = re.compile(r"[A-Za-z0-9-]+(?:, [A-Za-z0-9-]+)*")


#: the ``Vary`` value written for each tuple of tokens (our own header names: a few
#: tuples, the same on most responses); joining them anew cost ~3,000 instructions
_JOINED: Kept[tuple[str, ...], str] = Kept("Vary values", 64, 4096)


def add_vary(response: Response, *tokens: str) -> None:
    """``response.vary.add(token)`` for each token, without the parse and rewrite when
    it is cheap.

    An absent header is added; a header of plain comma-separated names gets the
    same value werkzeug's ``HeaderSet`` would write; anything else goes through it.
    ``tokens`` are the extension's own header names (no newline, which werkzeug's
    ``add`` checks for).
    """
    current = first_header(response.headers, "Vary")
    if current is None:
        value = _JOINED.get(tokens)
        if value is None:
            value = ", ".join(dict.fromkeys(tokens))
            _JOINED.put(tokens, value, len(value))
        items = header_list(response.headers)
        if items is not None:
            items.append(("Vary", value))  # what ``add`` does, less its check of our names
        else:
            response.headers.add("Vary", value)
    elif _PLAIN_VARY.fullmatch(current):
        have = current.lower().split(", ")
        new = [t for t in dict.fromkeys(tokens) if t.lower() not in have]
        if new:
            response.headers.set("Vary", ", ".join([current, *new]))
    else:
        for token in tokens:
            response.vary.add(token)


#: directives that would let a shared cache keep a response: ``public``, ``s-maxage`` and
#: ``private="…"`` (which keeps only the fields it names from shared caches)
_SHARED_CACHE = frozenset({"public", "s-maxage", "private"})


def make_private(response: Response) -> None:
    """``Cache-Control: private``: no shared cache may keep ``response``, which depends on
    the client's address. ``no-store`` (stricter) is left as it is; ``public``, ``s-maxage``
    and a ``private`` naming fields give way to a plain ``private``; the other directives
    (``max-age``, ``no-cache`` …) stay, for the browser's own cache."""
    values = response.headers.getlist("Cache-Control")
    if not values:
        response.headers["Cache-Control"] = "private"
        return
    items = parse_list_header(", ".join(values))
    names = [item.partition("=")[0].strip().lower() for item in items]
    if "no-store" in names:
        return
    kept = [item for item, name in zip(items, names, strict=True) if name not in _SHARED_CACHE]
    response.headers["Cache-Control"] = ", ".join(["private", *kept])


def fill_holes(out: bytes, fills: Sequence[bytes]) -> bytes:
    """``out`` with its runs of NULs, in order, replaced by ``fills`` (as many bytes each).

    Markup may be put in before and between the holes first (the banner is): none of it
    holds a NUL.
    """
    parts: list[bytes] = []
    at = 0
    for fill in fills:
        hole = out.find(b"\0", at)
        assert hole >= 0 and out[hole:hole + len(fill)] == b"\0" * len(fill)
        parts.append(out[at:hole])
        parts.append(fill)
        at = hole + len(fill)
    parts.append(out[at:])
    return b"".join(parts)
