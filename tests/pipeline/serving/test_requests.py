"""A /predict body's records and its answer, as both the app's process and the batch processes
read and write them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from starlette.responses import JSONResponse

from pipeline.serving.body import BodyError
from pipeline.serving.requests import MAX_BATCH, answer, error_body, records_of, render


def test_a_body_is_one_record_or_a_list_of_them():
    assert records_of({"carrier": "UA"}) == ([{"carrier": "UA"}], True)
    assert records_of({"records": [{"a": 1}, {"b": 2}]}) == ([{"a": 1}, {"b": 2}], False)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"records": []}, "must be a non-empty list of records"),
        ({"records": {"a": 1}}, "must be a non-empty list of records"),
        ({"records": [{}] * (MAX_BATCH + 1)}, f"at most {MAX_BATCH} records per request"),
    ],
)
def test_a_body_without_usable_records_is_a_422_naming_records(body, message):
    with pytest.raises(BodyError) as err:
        records_of(body)
    assert (err.value.status, err.value.loc, err.value.message) == (
        422, ["body", "records"], message
    )  # fmt: skip


def test_the_answer_carries_each_records_id_score_and_decision_under_the_threshold():
    model = SimpleNamespace(version="v1", threshold=0.5)
    out = answer(model, ["a", "b"], [0.25, 0.5], single=False)
    assert out == {
        "model_version": "v1",
        "threshold": 0.5,
        "predictions": [
            {"prediction_id": "a", "score": 0.25, "decision": 0},
            {"prediction_id": "b", "score": 0.5, "decision": 1},
        ],
    }
    one = answer(model, ["a"], [0.75], single=True)
    assert one == {"model_version": "v1", "threshold": 0.5, "prediction_id": "a",
                   "score": 0.75, "decision": 1}  # fmt: skip


def test_rendered_bytes_are_what_starlette_sends():
    content = {"model_version": "é", "predictions": [{"score": 0.1}], "detail": None}
    assert render(content) == JSONResponse(content).body
    assert json.loads(error_body(["body", "records", 3, "x"], "bad")) == {
        "detail": [{"loc": ["body", "records", 3, "x"], "msg": "bad"}]
    }
    with pytest.raises(ValueError):  # never a NaN in an answer
        render({"score": float("nan")})


def test_a_bad_records_place_names_its_index_only_in_a_batch():
    from pipeline.serving.requests import record_loc

    assert record_loc(0, "distance", single=True) == ["body", "distance"]
    assert record_loc(3, "distance", single=False) == ["body", "records", 3, "distance"]
