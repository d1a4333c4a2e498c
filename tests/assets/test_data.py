"""raw_data and cleaned_features through ``dagster.materialize``: what a single-run backfill
leaves for each day, in the UI (its materialization's metadata) and on disk."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from dagster import AssetKey, DagsterInstance, materialize

from pipeline.data.storage import PartitionStore
from tests.helpers import CHURN_START, flywheel_resources, graph_assets

GRAPH = graph_assets()
DAYS = [CHURN_START + dt.timedelta(days=i) for i in (4, 5, 6)]
RAW_KEYS = {"dagster/row_count", "empty", "columns", "path", "preview"}
FEATURE_KEYS = {
    "dagster/row_count", "empty", "quarantined_rows", "quarantine_reasons", "quarantine_path",
    "positive_rate", "history_days_missing", "preview", "labelled", "unlabelled_rows",
    "label_matures_on", "as_of",
}  # fmt: skip


def _materializations(instance: DagsterInstance, asset: str) -> dict[str, dict]:
    out = {}
    for record in instance.fetch_materializations(AssetKey(asset), limit=100).records:
        mat = record.asset_materialization
        out[mat.partition] = {k: v.value for k, v in mat.metadata.items()}
    return out


def test_a_range_run_leaves_every_day_its_metadata_and_files(tmp_path, churn_task):
    home, instance = tmp_path / "home", DagsterInstance.ephemeral()
    result = materialize(
        [GRAPH["raw_data"], GRAPH["cleaned_features"]],
        instance=instance,
        resources=flywheel_resources(home, churn_task),
        tags={
            "dagster/asset_partition_range_start": DAYS[0].isoformat(),
            "dagster/asset_partition_range_end": DAYS[-1].isoformat(),
        },
    )
    assert result.success
    raw, features = PartitionStore(home / "raw_data"), PartitionStore(home / "cleaned_features")
    raw_meta = _materializations(instance, "raw_data")
    feature_meta = _materializations(instance, "cleaned_features")
    assert sorted(raw_meta) == sorted(feature_meta) == [d.isoformat() for d in DAYS]
    for day in DAYS:
        r, f = raw_meta[day.isoformat()], feature_meta[day.isoformat()]
        assert set(r) == RAW_KEYS and set(f) == FEATURE_KEYS
        frame = raw.read(day)
        assert r["dagster/row_count"] == len(frame) == 120 and r["empty"] is False
        assert r["columns"] == list(frame.columns) and r["path"] == str(raw.path(day))
        assert r["preview"].startswith("| event_time | customer_id |")
        assert len(r["preview"].splitlines()) == 2 + 5  # header, rule, five rows
        cleaned = features.read(day)
        assert f["dagster/row_count"] == len(cleaned) and f["empty"] is False
        assert f["quarantined_rows"] == 0 and f["quarantine_reasons"] == {}
        assert f["quarantine_path"] == str(features.quarantine_path(day))
        quarantine = pd.read_parquet(features.quarantine_path(day))  # written, though empty
        assert len(quarantine) == 0 and "quarantine_reason" in quarantine.columns
        assert f["positive_rate"] == float(cleaned["label"].mean())
        # the lagged rates reach back before the run, to days never materialized
        assert f["history_days_missing"] == [
            (day - dt.timedelta(days=k)).isoformat()
            for k in (3, 2, 1)
            if day - dt.timedelta(k) < DAYS[0]
        ]
        assert len(f["preview"].splitlines()) == 7


def test_days_whose_labels_have_not_matured_are_kept_unlabelled_and_counted(tmp_path):
    """With label_delay_days 5 and the run's clock (as_of) 4 days after the last day, that day
    is unlabelled (kept, counted, never quarantined for it) and the days before are labelled."""
    from tests.helpers import write_churn_task

    task = write_churn_task(tmp_path, label_delay_days=5)
    home, instance = tmp_path / "home", DagsterInstance.ephemeral()
    as_of = DAYS[-1] + dt.timedelta(days=4)
    result = materialize(
        [GRAPH["raw_data"], GRAPH["cleaned_features"]],
        instance=instance,
        resources=flywheel_resources(home, task),
        run_config={"ops": {"cleaned_features": {"config": {"as_of": as_of.isoformat()}}}},
        tags={
            "dagster/asset_partition_range_start": DAYS[0].isoformat(),
            "dagster/asset_partition_range_end": DAYS[-1].isoformat(),
        },
    )
    assert result.success
    meta = _materializations(instance, "cleaned_features")
    last, before = meta[DAYS[-1].isoformat()], meta[DAYS[-2].isoformat()]
    assert last["labelled"] is False and last["unlabelled_rows"] == last["dagster/row_count"] == 120
    assert last["quarantined_rows"] == 0 and last["positive_rate"] is None
    assert last["label_matures_on"] == (DAYS[-1] + dt.timedelta(days=5)).isoformat()
    assert before["labelled"] is True and before["unlabelled_rows"] == 0
    frame = PartitionStore(home / "cleaned_features").read(DAYS[-1])
    assert len(frame) == 120 and frame["label"].isna().all()
