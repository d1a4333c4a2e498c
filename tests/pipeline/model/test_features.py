import numpy as np
import pandas as pd
import pytest

from pipeline.model.features import OOV_INDEX, Preprocessor


def _frame():
    return pd.DataFrame(
        {"plan": ["a", "a", "b", "b", "c", None], "x": [1.0, 3.0, np.nan, 5.0, 7.0, 1.0]}
    )


def test_vocabulary_has_oov_slot_and_rare_values_map_to_it():
    prep = Preprocessor(["plan"], ["x"], min_count=2).fit(_frame())
    assert prep.vocabularies["plan"] == ["a", "b"]
    assert prep.cardinalities == [3]
    cat, _ = prep.transform(pd.DataFrame({"plan": ["a", "b", "c", "zzz", None], "x": [0.0] * 5}))
    assert cat[:, 0].tolist() == [1, 2, OOV_INDEX, OOV_INDEX, OOV_INDEX]


def test_numeric_scaling_and_missing_indicator():
    prep = Preprocessor(["plan"], ["x"]).fit(_frame())
    finite = np.array([1.0, 3.0, 5.0, 7.0, 1.0])
    assert prep.means["x"] == pytest.approx(finite.mean())
    _, num = prep.transform(pd.DataFrame({"plan": ["a", "a"], "x": [np.nan, finite.mean()]}))
    assert num.shape == (2, 2)
    assert num[0].tolist() == [0.0, 1.0]  # missing: zero value, indicator on
    assert num[1].tolist() == pytest.approx([0.0, 0.0])


def test_state_round_trips_through_json_dict():
    import json

    prep = Preprocessor(["plan"], ["x"]).fit(_frame())
    again = Preprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    probe = pd.DataFrame({"plan": ["b", "q"], "x": [2.0, np.nan]})
    for a, b in zip(prep.transform(probe), again.transform(probe), strict=True):
        assert a.equal(b)


def test_fit_on_zero_rows_fails():
    with pytest.raises(ValueError, match="zero rows"):
        Preprocessor(["plan"], ["x"]).fit(_frame().iloc[0:0])
