"""The JSON of a request body, parsed with a nesting limit.

Every endpoint of the extension that reads JSON (the choice, erase, the policy's
violation reports) parses it here. The bodies they expect are a few levels deep;
a deeper one (``[[[[…]]]]`` fits thousands of levels in 4 KB) is refused with
:class:`JSONBodyError` before it is parsed, so it can never reach the
interpreter's recursion limit and turn into a 500.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: The deepest nesting of arrays and objects a request body may have.
MAX_DEPTH = 32

_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_BRACKET = re.compile(rb"[\[\]{}]")


class JSONBodyError(ValueError):
    """A body that is not JSON, or (``too_deep``) JSON nested deeper than the limit.

    Its message is a sentence fit for the client.
    """

    def __init__(self, message: str, too_deep: bool = False) -> None:
        super().__init__(message)
        self.too_deep = too_deep


def depth(body: bytes) -> int:
    """How deeply the arrays and objects of ``body`` nest (brackets in strings ignored)."""
    level = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub(b"", body)):
        if bracket in b"[{":
            level += 1
            deepest = max(deepest, level)
        else:
            level -= 1
    return deepest


def loads(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads(body)``, refusing nesting deeper than ``max_depth``.

    :raises JSONBodyError: when ``body`` is not JSON, or nests too deeply.
    """
    too_deep = JSONBodyError(f"The JSON body is nested more than {max_depth} levels deep.",
                             too_deep=True)
    # the cheap count first: an ordinary body has fewer brackets than the limit
    if body.count(b"[") + body.count(b"{") > max_depth and depth(body) > max_depth:
        raise too_deep
    try:
        return json.loads(body)
    except RecursionError:  # an encoding the scan above does not read (UTF-16, UTF-32)
        raise too_deep from None
    except (ValueError, UnicodeDecodeError):
        raise JSONBodyError("The body is not valid JSON.") from None
