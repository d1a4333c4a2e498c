"""A request's JSON body, read and checked at the door: size, syntax and nesting.

Everything a handler gets from here is JSON that the rest of the app can walk, log and store
without meeting a surprise: anything else is a :class:`BodyError` (413 or 422) naming where.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

MAX_BODY_BYTES = 1_000_000
MAX_DEPTH = 32  # a /predict batch is 3 levels deep; nothing the app reads is deeper than that


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


def parse_body(raw: bytes) -> Any:
    """The body as JSON, nested at most MAX_DEPTH levels.

    Raises:
        BodyError: 422 for text that is not JSON or is nested deeper than that.
    """
    try:
        body = json.loads(raw)
    except RecursionError:  # the parser's own limit (about 1,000 levels) was reached
        raise BodyError(422, ["body"], f"JSON nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as err:
        raise BodyError(422, ["body"], f"not valid JSON: {err}") from None
    if isinstance(body, dict | list):
        check_json(body)
    return body


def check_json(body: Any) -> None:
    """Walks the parsed body once (without recursion) and refuses what the app cannot use.

    Raises:
        BodyError: 422 naming the place (``["body", "records", 3, "carrier"]``).
    """
    # Only containers carry their place on the stack; a scalar's is built if it is refused.
    stack: list[tuple[Any, list[Any]]] = [(body, ["body"])]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_DEPTH:
            raise BodyError(422, loc, f"JSON nested more than {MAX_DEPTH} levels deep")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(item, dict | list):
                stack.append((item, [*loc, key]))
