"""A request's JSON body read and checked at the door (the app's answers are in
test_hostile_input.py, over HTTP)."""

from __future__ import annotations

import asyncio
import json

import pytest

from pipeline.serving.body import MAX_BODY_BYTES, MAX_DEPTH, BodyError, parse_body, read_body


def _refused(raw: bytes, **kw) -> BodyError:
    with pytest.raises(BodyError) as caught:
        parse_body(raw, **kw)
    return caught.value


def test_a_plain_body_comes_back_parsed():
    body = {"records": [{"carrier": "UA", "distance": 1.5}]}
    assert parse_body(json.dumps(body).encode()) == body


def test_nesting_deeper_than_the_limit_names_the_place():
    deep = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    err = _refused(deep)
    assert err.status == 422 and "nested more than" in err.message
    assert err.loc[0] == "body" and len(err.loc) == MAX_DEPTH + 1
    assert "nested more than" in _refused(b"[" * 10_000 + b"]" * 10_000).message  # the parser's own


def test_a_lone_surrogate_or_a_long_string_is_refused_where_it_is():
    err = _refused(b'{"records": [{"carrier": "\\ud800"}]}')
    assert err.loc == ["body", "records", 0, "carrier"] and "lone surrogate" in err.message
    err = _refused(json.dumps({"records": [{"note": "x" * 20}]}).encode(), max_string_bytes=10)
    assert err.loc == ["body", "records", 0, "note"] and "longer than 10 bytes" in err.message
    err = _refused(json.dumps({"k" * 100: 1}).encode(), max_string_bytes=10)
    assert "key longer" in err.message and err.loc == ["body"]
    # Multi-byte text counts in UTF-8 bytes, not characters: 4 characters, 8 bytes.
    assert _refused(json.dumps({"x": "éééé"}).encode(), max_string_bytes=7).status == 422
    assert parse_body(json.dumps({"x": "éééé"}).encode(), max_string_bytes=8) == {"x": "éééé"}


def test_text_that_is_not_json_is_a_422():
    err = _refused(b"{not json")
    assert err.status == 422 and err.message.startswith("not valid JSON")


def test_a_body_over_the_limit_is_a_413_declared_or_chunked():
    async def chunks(parts):
        for part in parts:
            yield part

    with pytest.raises(BodyError) as declared:
        asyncio.run(read_body(str(MAX_BODY_BYTES + 1), chunks([b"{}"])))
    assert declared.value.status == 413
    big = [b"x" * 500_000, b"x" * 500_000, b"x"]
    with pytest.raises(BodyError) as chunked:
        asyncio.run(read_body(None, chunks(big)))
    assert chunked.value.status == 413
    assert asyncio.run(read_body("2", chunks([b"{", b"}"]))) == b"{}"
