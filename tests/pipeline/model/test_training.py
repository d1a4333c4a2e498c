import datetime as dt
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.data.cleaning import clean_day
from pipeline.model.metrics import roc_auc
from pipeline.model.params import TrainingError, TrainParams
from pipeline.model.training import predict_frame, time_split, train_model
from pipeline.task import parse_task
from tests.helpers import CHURN_START, CHURN_TASK, make_churn_frame

SPEC = parse_task({**CHURN_TASK, "source": {"kind": "files", "path": "x"}})
PARAMS = TrainParams(epochs=8, batch_size=128, patience=3, hidden_sizes=[16, 8])


def cleaned(days: int = 10, seed: int = 0) -> pd.DataFrame:
    raw = make_churn_frame(days=days, rows_per_day=200, seed=seed)
    frames = []
    for i in range(days):
        day = CHURN_START + dt.timedelta(days=i)
        today = raw[raw["event_time"].dt.date == day]
        frames.append(clean_day(today, day, SPEC, raw[raw["event_time"].dt.date < day]).features)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return cleaned()


def test_training_learns_the_signal(frame, tmp_path: Path):
    train, test = frame.iloc[:1600], frame.iloc[1600:]
    out = train_model(train, SPEC, PARAMS, tmp_path)
    auc = roc_auc(test["label"].to_numpy(), predict_frame(out.module, out.preprocessor, test))
    assert auc > 0.7
    assert 0.0 < out.threshold < 1.0
    assert out.val_rows == int(len(train) * PARAMS.val_fraction)
    assert out.history and all("val_loss" in h for h in out.history)
    assert not any(Path.cwd().glob("lightning_logs"))


def test_training_is_deterministic(frame, tmp_path: Path):
    a = train_model(frame, SPEC, PARAMS, tmp_path / "a").module.state_dict()
    b = train_model(frame, SPEC, PARAMS, tmp_path / "b").module.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_value_seen_only_in_validation_scores_as_an_unknown_value(frame, tmp_path: Path):
    # The latest rows (the validation slice) bring a new plan: it enters the vocabulary but
    # no training step reaches its embedding. It must not score by its random start: it scores
    # as a value never seen at all (both get the mean of what training learned).
    frame = frame.sort_values("event_time", kind="stable").reset_index(drop=True)
    frame.loc[len(frame) - 40 :, "plan"] = "enterprise"
    out = train_model(frame, SPEC, replace(PARAMS, refit=False), tmp_path)
    assert "enterprise" in out.preprocessor.vocabularies["plan"]
    rows = frame.iloc[-5:].copy()
    unknown = rows.assign(plan="never-seen")
    scores = predict_frame(out.module, out.preprocessor, rows)
    np.testing.assert_allclose(scores, predict_frame(out.module, out.preprocessor, unknown))


def test_the_refit_learns_the_validation_slice_for_the_chosen_epochs(frame, tmp_path: Path):
    # The newest rows bring a plan that churns far more: the early-stopped model never trains
    # on them; the refit (the default) does, for the epochs early stopping chose.
    frame = frame.sort_values("event_time", kind="stable").reset_index(drop=True)
    newest = frame.index >= len(frame) - int(len(frame) * PARAMS.val_fraction)
    frame.loc[newest, "plan"] = "enterprise"
    frame.loc[newest, "label"] = (np.arange(newest.sum()) % 4 != 0).astype(frame["label"].dtype)
    params = replace(PARAMS, learning_rate=1e-2)  # few steps on 2,000 rows: learn them fast
    stopped = train_model(frame, SPEC, replace(params, refit=False), tmp_path / "a")
    refitted = train_model(frame, SPEC, params, tmp_path / "b")
    best = min(stopped.history, key=lambda h: h["val_loss"])["epoch"]
    assert (stopped.refit_epochs, refitted.refit_epochs) == (0, best + 1)
    assert refitted.history == stopped.history and refitted.threshold == stopped.threshold
    rows = frame[newest]
    mean_stopped = predict_frame(stopped.module, stopped.preprocessor, rows).mean()
    mean_refitted = predict_frame(refitted.module, refitted.preprocessor, rows).mean()
    assert mean_refitted > mean_stopped + 0.1, (mean_stopped, mean_refitted)


def test_no_validation_slice_means_no_refit(frame, tmp_path: Path):
    out = train_model(frame, SPEC, replace(PARAMS, val_fraction=0.0), tmp_path)
    assert out.val_rows == 0 and out.refit_epochs == 0 and out.history == []


def test_validation_slice_is_the_latest_rows(frame):
    fit, val = time_split(frame.sample(frac=1.0, random_state=0), "event_time", 0.2)
    assert fit["event_time"].max() <= val["event_time"].min()
    assert len(val) == int(len(frame) * 0.2)


def test_excluded_and_label_columns_never_reach_the_model(frame, tmp_path: Path):
    poisoned = frame.assign(support_calls_after=frame["label"] * 100, churned=frame["label"])
    out = train_model(poisoned, SPEC, PARAMS, tmp_path)
    inputs = set(out.preprocessor.categorical) | set(out.preprocessor.numeric)
    assert inputs == {"plan", "region", "calendar_day_of_week", "usage", "tenure", "rate_region_3d"}
    assert out.module.hparams["n_numeric"] == 2 * 3


def test_zero_rows_fail_with_a_message(frame, tmp_path: Path):
    with pytest.raises(TrainingError, match="no training rows"):
        train_model(frame.iloc[0:0], SPEC, PARAMS, tmp_path)


def test_one_class_fails_with_a_message(frame, tmp_path: Path):
    with pytest.raises(TrainingError, match="only label 0"):
        train_model(frame.assign(label=np.int8(0)), SPEC, PARAMS, tmp_path)
