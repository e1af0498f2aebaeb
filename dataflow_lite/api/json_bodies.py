"""JSON request bodies, read within bounds: their size, their nesting depth, their integers' digits.

Python's ``json`` recurses once per level of nesting (100,000 levels end in RecursionError) and
refuses integers of more than 4,300 digits with a ValueError: either would be a 500. Here the body
is refused before parsing when it is too large (413) or too deep (400), and an integer with too
many digits is refused while parsing (400); each message names the setting's limit.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Request

from dataflow_lite.api.errors import DataflowError

# A JSON string, unrolled so that long strings cost one pass; what is left holds no quotes.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def read_body(request: Request, max_bytes: int) -> bytes:
    """The request's body, or 413 naming ``max_bytes`` when it is larger."""
    length = request.content_length
    if length is None:
        # A chunked body carries no length: read one byte past the limit to know.
        data = request.stream.read(max_bytes + 1)
    elif length > max_bytes:
        data = b""
    else:
        data = request.get_data(cache=True)
    if length is not None and length > max_bytes or len(data) > max_bytes:
        raise DataflowError(
            413, f"the JSON body is larger than this server's limit of {max_bytes} bytes"
        )
    return data


def nesting_depth(text: str, limit: int) -> int:
    """How deeply arrays and objects nest in ``text``, counting no further than ``limit + 1``."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
        else:
            depth -= 1
    return deepest


def loads(text: str, max_depth: int, max_integer_digits: int) -> Any:
    """Parse ``text``; 400 naming the limit when it nests too deeply or an integer is too long.

    Raise json.JSONDecodeError for text that is not JSON, as ``json.loads`` does.
    """
    if nesting_depth(text, max_depth) > max_depth:
        raise DataflowError(
            400, f"the JSON body nests deeper than this server's limit of {max_depth} levels"
        )

    def integer(digits: str) -> int:
        if len(digits.lstrip("-")) > max_integer_digits:
            raise DataflowError(
                400,
                "the JSON body has an integer longer than this server's limit of "
                f"{max_integer_digits} digits",
            )
        return int(digits)

    return json.loads(text, parse_int=integer)
