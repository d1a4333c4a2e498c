"""A request's JSON body, read and checked at the door: size, syntax, nesting and strings.

Everything a handler gets from here is JSON that the rest of the app can walk, log and store
without meeting a surprise: anything else is a :class:`BodyError` (413 or 422) naming where.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

MAX_BODY_BYTES = 1_000_000
MAX_DEPTH = 32  # a /predict batch is 3 levels deep; nothing the app reads is deeper than that
DEFAULT_MAX_STRING_BYTES = 1024  # each string (value or key), in UTF-8; FLYWHEEL_MAX_STRING_BYTES


class BodyError(ValueError):
    """A body the app refuses: ``status`` (413 or 422), ``loc`` and ``message`` say why."""

    def __init__(self, status: int, loc: list[Any], message: str):
        super().__init__(f"{loc}: {message}")
        self.status, self.loc, self.message = status, loc, message


async def read_body(declared_length: str | None, chunks: AsyncIterator[bytes]) -> bytes:
    """The body's bytes, refused (413) past MAX_BODY_BYTES, whether or not it is chunked."""
    if declared_length is not None and declared_length.isdigit():
        if int(declared_length) > MAX_BODY_BYTES:
            raise BodyError(413, ["body"], f"body over {MAX_BODY_BYTES} bytes")
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyError(413, ["body"], f"body over {MAX_BODY_BYTES} bytes")
        parts.append(chunk)
    return b"".join(parts)


def parse_body(raw: bytes, max_string_bytes: int = DEFAULT_MAX_STRING_BYTES) -> Any:
    """The body as JSON, nested at most MAX_DEPTH levels, every string valid Unicode and at most
    ``max_string_bytes`` long in UTF-8.

    Raises:
        BodyError: 422 for text that is not JSON, or breaks one of those rules.
    """
    try:
        body = json.loads(raw)
    except RecursionError:  # the parser's own limit (about 1,000 levels) was reached
        raise BodyError(422, ["body"], f"JSON nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as err:
        raise BodyError(422, ["body"], f"not valid JSON: {err}") from None
    if isinstance(body, dict | list):
        check_json(body, max_string_bytes)
    elif isinstance(body, str):
        _check_string(body, ["body"], max_string_bytes)
    return body


def check_json(body: dict | list, max_string_bytes: int = DEFAULT_MAX_STRING_BYTES) -> None:
    """Walks the parsed body once (without recursion) and refuses what the app cannot use: too
    deep, a string that is not valid Unicode (a lone surrogate such as ``"\\ud800"``, which JSON
    can spell but UTF-8 cannot store), or a string longer than ``max_string_bytes``.

    Raises:
        BodyError: 422 naming the place (``["body", "records", 3, "carrier"]``).
    """
    # Only containers carry their place on the stack; a scalar's is built if it is refused.
    stack: list[tuple[Any, list[Any]]] = [(body, ["body"])]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_DEPTH:
            raise BodyError(422, loc, f"JSON nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_string(key, loc, max_string_bytes, what="key")
                if isinstance(item, dict | list):
                    stack.append((item, [*loc, key]))
                elif isinstance(item, str):
                    _check_string(item, [*loc, key], max_string_bytes)
        else:
            for index, item in enumerate(value):
                if isinstance(item, dict | list):
                    stack.append((item, [*loc, index]))
                elif isinstance(item, str):
                    _check_string(item, [*loc, index], max_string_bytes)


def _check_string(text: str, loc: list[Any], limit: int, what: str = "string") -> None:
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise BodyError(
                422, _printable(loc), f"{what} is not valid Unicode (a lone surrogate)"
            ) from None
    if size > limit:
        raise BodyError(422, _printable(loc), f"{what} longer than {limit} bytes (UTF-8)")


def _printable(loc: list[Any]) -> list[Any]:
    """``loc`` as the answer can carry it: keys that are not valid Unicode escaped, long ones
    cut (the answer names the place; it does not echo a megabyte)."""
    out: list[Any] = []
    for part in loc:
        if isinstance(part, str):
            part = part.encode("utf-8", "backslashreplace").decode("utf-8")
            part = part if len(part) <= 64 else f"{part[:64]}..."
        out.append(part)
    return out
