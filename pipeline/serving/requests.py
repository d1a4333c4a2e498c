"""What a ``POST /predict`` body holds and what its answer says, for the app's process and the
batch processes alike (:mod:`pipeline.serving.offload`), so that both answer the same."""

from __future__ import annotations

import json
from typing import Any

from pipeline.serving.body import BodyError

MAX_BATCH = 1000


def records_of(body: Any) -> tuple[list[dict[str, Any]], bool]:
    """``(records, single)`` of a parsed body: one record, or ``{"records": [...]}`` of up to
    MAX_BATCH.

    Raises:
        BodyError: 422, for an empty or over-long list, or ``records`` that is not a list.
    """
    single = not (isinstance(body, dict) and "records" in body)
    records = [body] if single else body["records"]
    if not isinstance(records, list) or not records:
        raise BodyError(422, ["body", "records"], "must be a non-empty list of records")
    if len(records) > MAX_BATCH:
        raise BodyError(422, ["body", "records"], f"at most {MAX_BATCH} records per request")
    return records, single


def record_loc(index: int, field: str, single: bool) -> list[Any]:
    """Where a bad record's field is in the body: ``["body", field]`` for a single record,
    ``["body", "records", index, field]`` in a batch."""
    return ["body", field] if single else ["body", "records", index, field]


def answer(model: Any, ids: list[str], scores: Any, single: bool) -> dict[str, Any]:
    """The answer's JSON: each record's prediction id, score and decision under ``model``'s
    threshold."""
    out = [
        {"prediction_id": pid, "score": float(s), "decision": int(s >= model.threshold)}
        for pid, s in zip(ids, scores, strict=True)
    ]
    result: dict[str, Any] = {"model_version": model.version, "threshold": model.threshold}
    if single:
        result.update(out[0])
    else:
        result["predictions"] = out
    return result


def error_body(loc: list[Any], message: str) -> bytes:
    """An error answer's JSON, as FastAPI's validation errors put it."""
    return render({"detail": [{"loc": loc, "msg": message}]})


def render(content: Any) -> bytes:
    """``content`` as JSON bytes, as starlette's ``JSONResponse`` renders it."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")
