"""Label shift on the real 2013 flights: no real day fails at ERROR; broken labels do."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from pipeline.checks.results import ERROR, WARN
from pipeline.checks.shift import (
    AUC_RULE,
    ONE_CLASS_RULE,
    RATE_RULE,
    Champion,
    champion_findings,
    label_counts,
    label_outcomes,
    label_values,
)
from pipeline.checks.verdicts import trailing_label_counts
from pipeline.data.sources import make_source
from pipeline.data.storage import CachedReader, PartitionStore
from pipeline.model.params import TrainParams
from pipeline.model.registry import ModelRegistry
from pipeline.steps import build_features_day, ingest_day, train_version
from pipeline.task import LABEL_COLUMN, load_task

DAYS_2013 = [dt.date(2013, 1, 1) + dt.timedelta(days=i) for i in range(365)]


@pytest.fixture(scope="module")
def year(tmp_path_factory):
    """cleaned_features of every day of 2013 (replay_day is the identity there), and a small
    champion trained on 30 real days, as the pipeline makes them (~15 s)."""
    home = tmp_path_factory.mktemp("flights-2013")
    spec = load_task()
    source = make_source(spec)
    raw, feats = PartitionStore(home / "raw_data"), PartitionStore(home / "cleaned_features")
    reader = CachedReader(raw, spec.max_lag_days)
    for day in DAYS_2013:
        ingest_day(source, raw, day)
        build_features_day(spec, raw, feats, day, reader)
    registry = ModelRegistry(home / "models")
    params = TrainParams(epochs=5, window_days=30, holdout_days=7, hidden_sizes=[32], members=1,
                         batch_size=1024, patience=2)  # fmt: skip
    version = train_version(spec, feats, registry, params, home / "scratch",
                            end=dt.date(2013, 2, 7)).version  # fmt: skip
    registry.promote(version, reason="test")
    frames = {day: feats.read(day) for day in DAYS_2013}
    return spec, feats, frames, Champion.load(registry)


def _outcomes(spec, frames, champion, days):
    """The label outcomes of ``days`` (frames: every day, edited or not), as the check makes
    them: counts of every day, the champion's AUC from one scoring of the days."""
    counts = {d: label_counts(label_values(f)) for d, f in frames.items()}
    found = champion_findings(spec, {d: frames[d] for d in days}, champion)
    version = champion.version if champion else None
    return {
        d: label_outcomes(d, counts, found.auc.get(d), version, found.auc_note.get(d)) for d in days
    }, found


@pytest.mark.slow
def test_no_day_of_2013_fails_at_error(year):
    spec, _, frames, champion = year
    out, found = _outcomes(spec, frames, champion, DAYS_2013)
    errors = {d: [o.rule for o in v if not o.success and o.severity == ERROR]
              for d, v in out.items()}  # fmt: skip
    assert {d: e for d, e in errors.items() if e} == {}
    aucs = np.array([found.auc[d] for d in DAYS_2013])
    assert np.isfinite(aucs).all() and aucs.min() > 0.4  # the bound, 0.35, is well under
    rates = [o for v in out.values() for o in v if o.rule == RATE_RULE]
    warned = [o for o in rates if not o.success]
    assert 0 < len(warned) <= 12  # the storm days are worth a look, a few a year
    assert max(o.observed_value["rate"] for o in rates) > 0.75  # 2013-03-08: passes ERROR


@pytest.mark.slow
@pytest.mark.parametrize("value", [0, 1])
def test_a_collapsed_label_on_real_days_fails_at_error(year, value):
    spec, _, frames, champion = year
    days = [dt.date(2013, 4, 10), dt.date(2013, 8, 20), dt.date(2013, 12, 2)]
    edited = dict(frames)
    for d in days:
        edited[d] = frames[d].assign(**{LABEL_COLUMN: value})
    out, _ = _outcomes(spec, edited, champion, days)
    for d in days:
        failed = [o for o in out[d] if not o.success and o.severity == ERROR]
        assert [o.rule for o in failed] == [ONE_CLASS_RULE], d
        assert failed[0].observed_value["rate"] == value


@pytest.mark.slow
def test_an_inverted_label_on_real_days_fails_at_error(year):
    spec, _, frames, champion = year
    _, found = _outcomes(spec, frames, champion, DAYS_2013)
    # Days the champion ranks well (AUC >= 0.7): inverted, they score 1 - AUC <= 0.3.
    days = [d for d in DAYS_2013 if found.auc[d] >= 0.7][:5]
    assert len(days) == 5
    edited = dict(frames)
    for d in days:
        edited[d] = frames[d].assign(**{LABEL_COLUMN: 1 - frames[d][LABEL_COLUMN]})
    out, _ = _outcomes(spec, edited, champion, days)
    for d in days:
        failed = [o for o in out[d] if not o.success and o.severity == ERROR]
        assert [o.rule for o in failed] == [AUC_RULE], d
        assert failed[0].observed_value["auc"] == pytest.approx(1 - found.auc[d], abs=1e-3)


def test_no_history_and_no_champion_pass_and_say_so():
    day = dt.date(2025, 1, 1)
    one_class, auc, rate = label_outcomes(day, {day: (500, 500)}, None, None)
    assert one_class.success and "no trailing days" in one_class.observed_value["note"]
    assert auc.success and auc.observed_value["note"] == "no champion: passed"
    assert rate.success and rate.severity == WARN and "passed" in rate.observed_value["note"]


def test_a_rate_far_outside_the_trailing_range_warns():
    day = dt.date(2025, 2, 1)
    counts = {day - dt.timedelta(days=k): (1000, 200 + 10 * k) for k in range(1, 29)}
    far = label_outcomes(day, {**counts, day: (1000, 650)}, None, None)
    near = label_outcomes(day, {**counts, day: (1000, 520)}, None, None)
    assert [o.success for o in far] == [True, True, False]
    assert far[2].observed_value["trailing_range"] == [0.21, 0.48]
    assert all(o.success for o in near)


def test_trailing_label_counts_read_the_stored_days_before_the_run(tmp_path):
    import pandas as pd

    store = PartitionStore(tmp_path)
    first = dt.date(2025, 3, 1)
    for k in (30, 3, 1, 0):  # 30 days back: outside the trailing 28
        day = first - dt.timedelta(days=k)
        store.write(day, pd.DataFrame({LABEL_COLUMN: [0, 1, 1, k % 2], "x": [1.0] * 4}))
    got = trailing_label_counts(store, [first, first + dt.timedelta(days=1)])
    assert got == {first - dt.timedelta(days=3): (4, 3), first - dt.timedelta(days=1): (4, 3)}


def test_champion_load_without_a_champion_is_none(tmp_path: Path):
    assert Champion.load(ModelRegistry(tmp_path)) is None
