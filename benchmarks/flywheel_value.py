"""The flywheel's value: batch labels that arrive 30 days late, and feedback that fills the gap.

At each cut-off T across 2013 (the built-in flights task, ``label_delay_days`` 30, so on T the
batch labels of the days before T - 30 are known) three sides are trained through
``train_version``, as the ``trained_model`` asset trains, and scored on the cleaned rows of the
7 days from T:

- (a) batch only: the newest 60 labelled days before T (cleaned_features as stored on the clock
  T: the newer days unlabelled);
- (b) the flywheel: the same 60 days plus feedback for a seeded random share of the flights of
  the 30 days before T. The flights are sent to the real serving app (``create_app``, under
  uvicorn on loopback, with a real SQLite feedback store) as ``POST /predict`` with the champion
  (side a) serving, and their true outcome as ``POST /feedback``; the store's labelled examples
  are cleaned with ``clean_feedback`` and passed to ``train_version`` as ``extra``. Shares of
  10%, 50% and 100% (nested: each share's flights include the smaller's); all three go through
  the store, and each share trains on its own prediction ids' examples;
- (c) the oracle: every label up to T, over the flywheel's days (the 60 labelled days and the
  gap, all labels known: what 100% feedback could at best give). Beside it, for scale, (c60):
  the 60 days before T with every label (the issue's "for scale" comparison).

Printed: the mean ROC-AUC of each side, the gain (b - a) and the share of the oracle's gain that
the flywheel recovers, (b - a) / (c - a). Quality figures only: nothing is timed. Seeded.

    python benchmarks/flywheel_value.py            # 15 cut-offs, 60 labelled days, default params
    python benchmarks/flywheel_value.py --quick    # smoke run: 1 cut-off, small windows, 1 epoch
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests/helpers.py

from _common import (
    DEFAULT_RESULTS_DIR,
    describe_environment,
    environment,
    print_table,
    write_results,
)

from pipeline.data.labels import compute_labels
from pipeline.data.sources import make_source
from pipeline.data.storage import PartitionStore
from pipeline.feedback.examples import clean_feedback
from pipeline.model.metrics import roc_auc
from pipeline.model.params import TrainParams
from pipeline.model.registry import ModelRegistry
from pipeline.model.training import predict_frame
from pipeline.serving.app import MAX_BATCH
from pipeline.serving.features import records_for_api
from pipeline.steps import build_features_day, ingest_day, train_version
from pipeline.task import LABEL_COLUMN, load_task
from tests.helpers import served_app  # the serving app and its store, as the tests run them

# Fifteen cut-offs 16 or 17 days apart: the first is the earliest whose 60 labelled days
# (ending 30 days before it) and their lagged rates (37 days further back) all lie in 2013; the
# last one's 7 test days end on Dec 31. Every other one (k even) is one of the 8 cut-offs 33
# days apart that earlier runs used: over those 8, b - a at single cut-offs ran from -0.006
# to +0.030 (one seeded network per side), too coarse to tell a mean of 0.009 from 0.010.
CUTOFFS = tuple(dt.date(2013, 5, 8) + dt.timedelta(days=round(16.5 * k)) for k in range(15))
COVERAGES = (0.1, 0.5, 1.0)
MAIN = 0.5  # the coverage the goals are about
GOAL_GAIN, GOAL_SHARE = 0.01, 0.7
TEST_DAYS = 7


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]


def send_feedback(url: str, rows: pd.DataFrame, spec, order: np.ndarray, n: int) -> list[str]:
    """The first ``n`` flights of ``order`` to ``/predict``, their outcomes to ``/feedback``;
    returns the prediction ids in ``order``'s order."""
    label, reason = compute_labels(rows, spec)
    if (reason != "").any():
        raise ValueError("a flight without a usable label cannot be answered with its outcome")
    picked = rows.iloc[order[:n]]
    truth = label.to_numpy(dtype=int)[order[:n]]
    records = records_for_api(picked, spec)
    ids: list[str] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for start in range(0, len(records), MAX_BATCH):
            answer = client.post("/predict", json={"records": records[start : start + MAX_BATCH]})
            answer.raise_for_status()
            ids += [p["prediction_id"] for p in answer.json()["predictions"]]
        for pid, y in zip(ids, truth, strict=True):
            fb = client.post("/feedback", json={"prediction_id": pid, "label": int(y)})
            fb.raise_for_status()
    return ids


def copy_days(src: PartitionStore, dst: PartitionStore, wanted: list[dt.date]) -> None:
    dst.root.mkdir(parents=True, exist_ok=True)
    for day in wanted:
        shutil.copy2(src.path(day), dst.path(day))


def run_cutoff(spec, home: Path, raw, feats, cutoff: dt.date, args, params) -> dict:
    """The three sides at one cut-off; feedback at every coverage."""
    delay, window = spec.label_delay_days, args.window_days
    batch_end = cutoff - dt.timedelta(days=delay)  # the newest day labelled on the clock T
    gap = days(cutoff - dt.timedelta(days=args.feedback_days), cutoff - dt.timedelta(days=1))
    test_days = days(cutoff, cutoff + dt.timedelta(days=args.test_days - 1))
    test, _ = feats.read_many(test_days)
    y_test = test[LABEL_COLUMN].to_numpy()
    root = home / f"cut-{cutoff}"
    # The stores a training run sees: the days up to T - 1 only, so that the test days are not
    # in them (train_version's holdout is then the test days, empty: scored here instead).
    # ``delayed`` is cleaned_features as the asset leaves it on the clock T: the days after
    # batch_end are stored unlabelled.
    delayed = PartitionStore(root / "features_delayed")
    copy_days(feats, delayed, days(batch_end - dt.timedelta(days=window - 1), batch_end))
    for day in gap:
        if day > batch_end:
            build_features_day(spec, raw, delayed, day, as_of=cutoff)
    oracle_store = PartitionStore(root / "features_oracle")
    copy_days(feats, oracle_store, days(batch_end - dt.timedelta(days=window - 1), gap[-1]))
    # The flywheel keeps the batch side's 60 labelled days: its window (counted in labelled
    # days, batch or feedback) grows by the gap days that feedback labels.
    extra_days = (gap[-1] - batch_end).days
    registry = ModelRegistry(root / "models")
    end = test_days[-1]

    def train(store, window_days, as_of, extra=None) -> float:
        p = dataclasses.replace(params, window_days=window_days, holdout_days=args.test_days)
        version = train_version(spec, store, registry, p, root / "scratch", end=end, raw=raw,
                                extra=extra, as_of=as_of)  # fmt: skip
        model = registry.load(version.version)
        return version, roc_auc(y_test, predict_frame(model.module, model.preprocessor, test))

    batch, auc_a = train(delayed, window, None)
    assert batch.window.train_days[-1] == batch_end, batch.window
    oracle, auc_c = train(oracle_store, window + extra_days, None)
    assert oracle.window.train_days[0] == batch.window.train_days[0], oracle.window
    _, auc_c60 = train(oracle_store, window, None)
    registry.promote(batch.version, reason="flywheel_value: serves the feedback days")

    # Feedback: every flight of the gap days, in one seeded order; each coverage takes a prefix.
    gap_rows, _ = raw.read_many(gap)
    order = np.random.default_rng(args.seed + cutoff.toordinal()).permutation(len(gap_rows))
    with served_app(registry, root / "serving") as (store, url):
        ids = send_feedback(url, gap_rows, spec, order, len(gap_rows))
        examples = store.labelled_examples()
    result = {"cutoff": str(cutoff), "test_rows": len(test), "batch_rows": batch.rows,
              "batch": auc_a, "oracle": auc_c, "oracle_rows": oracle.rows, "oracle_60": auc_c60,
              "feedback_sent": len(ids), "flywheel": {}}  # fmt: skip
    for coverage in COVERAGES:
        n = round(coverage * len(gap_rows))
        chosen = examples[examples["prediction_id"].isin(set(ids[:n]))]
        fb = clean_feedback(spec, chosen, raw)
        version, auc_b = train(delayed, window + extra_days, None, fb.features)
        assert version.window.train_days[0] == batch.window.train_days[0], version.window
        result["flywheel"][str(coverage)] = {
            "auc": auc_b, "feedback_rows": version.feedback_rows,
            "quarantined": len(fb.quarantine),
            "superseded": version.training["feedback_superseded"],
        }  # fmt: skip
    shutil.rmtree(root / "scratch", ignore_errors=True)
    return result


def build_data(spec, home: Path, first: dt.date, last: dt.date):
    """raw_data and cleaned_features (every label known: the sides' clocks hide the late ones)
    of ``first``..``last``, through ``ingest_day`` and ``build_features_day``."""
    raw, feats = PartitionStore(home / "raw_data"), PartitionStore(home / "cleaned_features")
    source = make_source(spec)
    for day in days(first - dt.timedelta(days=spec.lag_reach_days), last):
        ingest_day(source, raw, day)
    for day in days(first, last):
        build_features_day(spec, raw, feats, day)
    return raw, feats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 cut-off, small windows, 1 epoch")
    parser.add_argument("--cutoffs", type=int, default=len(CUTOFFS),
                        help="N of the cut-offs, spread over the year")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    args = parser.parse_args()
    spec = load_task(None)
    if spec.label_delay_days != 30:
        raise SystemExit(f"the flights task's label_delay_days is {spec.label_delay_days}, not 30")
    params = TrainParams(seed=args.seed)
    n = max(1, min(args.cutoffs, len(CUTOFFS)))
    picks = sorted({round(i * (len(CUTOFFS) - 1) / max(n - 1, 1)) for i in range(n)})
    cutoffs = [CUTOFFS[i] for i in picks]
    args.window_days, args.feedback_days, args.test_days = 60, 30, TEST_DAYS
    if args.quick:
        params = dataclasses.replace(params, epochs=1, members=1)
        cutoffs, args.window_days, args.feedback_days, args.test_days = cutoffs[:1], 10, 5, 2
        spec = dataclasses.replace(spec, label_delay_days=5)  # the gap the feedback days fill
    env = environment()
    print(f"environment: {describe_environment(env)}")
    print(f"cut-offs: {', '.join(map(str, cutoffs))}; label_delay_days {spec.label_delay_days}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        first = min(cutoffs) - dt.timedelta(days=spec.label_delay_days + args.window_days)
        last = max(cutoffs) + dt.timedelta(days=args.test_days - 1)
        raw, feats = build_data(spec, home, first, last)
        for cutoff in cutoffs:
            r = run_cutoff(spec, home, raw, feats, cutoff, args, params)
            fly = "  ".join(f"b@{c}: {v['auc']:.4f}" for c, v in r["flywheel"].items())
            print(f"{cutoff}: a {r['batch']:.4f}  c {r['oracle']:.4f}  c60 {r['oracle_60']:.4f}"
                  f"  {fly}", flush=True)  # fmt: skip
            results.append(r)

    a = float(np.mean([r["batch"] for r in results]))
    c = float(np.mean([r["oracle"] for r in results]))
    c60 = float(np.mean([r["oracle_60"] for r in results]))
    summary, rows = {}, []
    for coverage in COVERAGES:
        b = float(np.mean([r["flywheel"][str(coverage)]["auc"] for r in results]))
        share = (b - a) / (c - a) if c != a else float("nan")
        summary[str(coverage)] = {"flywheel": b, "gain": b - a, "share_recovered": share}
    for coverage in (*[c_ for c_ in COVERAGES if c_ != MAIN], MAIN):
        s, main = summary[str(coverage)], coverage == MAIN
        pct = f"{coverage:.0%} feedback"
        rows.append(
            {
                "measure": f"ROC-AUC gain b - a, {pct}",
                "A": f"{a:.4f}",
                "B": f"{s['flywheel']:.4f}",
                "ratio": f"{s['gain']:+.4f}",
                "goal": f">= {GOAL_GAIN}" if main else "",
                "met": ("yes" if s["gain"] >= GOAL_GAIN else "no") if main else "",
            }
        )
        rows.append({"measure": f"share recovered (b - a)/(c - a), {pct}", "A": f"{c - a:+.4f}",
                     "B": f"{s['gain']:+.4f}", "ratio": f"{s['share_recovered']:.2f}",
                     "goal": f">= {GOAL_SHARE}" if main else "",
                     "met": ("yes" if s["share_recovered"] >= GOAL_SHARE else "no")
                     if main else ""})  # fmt: skip
    rows[:0] = [
        {"measure": "mean ROC-AUC (a) batch only vs (c) oracle", "A": f"{a:.4f}",
         "B": f"{c:.4f}", "ratio": f"{c - a:+.4f}", "goal": "", "met": ""},
        {"measure": "mean ROC-AUC (a) vs (c60) 60 days before T, all labels", "A": f"{a:.4f}",
         "B": f"{c60:.4f}", "ratio": f"{c60 - a:+.4f}", "goal": "", "met": ""},
    ]  # fmt: skip
    earlier = [r for r in results if CUTOFFS.index(dt.date.fromisoformat(r["cutoff"])) % 2 == 0]
    if len(earlier) < len(results):  # the 8 cut-offs 33 days apart that earlier runs used
        gain = np.mean([r["flywheel"][str(MAIN)]["auc"] - r["batch"] for r in earlier])
        print(f"\nof them, the {len(earlier)} cut-offs 33 days apart: b - a {gain:+.4f}"
              f" at {MAIN:.0%} feedback")  # fmt: skip
    print(f"\nmean over {len(results)} cut-off(s); A/B columns: see each measure")
    print_table(rows)
    payload = {"environment": env, "cutoffs": [str(t) for t in cutoffs], "quick": args.quick,
               "label_delay_days": spec.label_delay_days, "window_days": args.window_days,
               "feedback_days": args.feedback_days, "test_days": args.test_days,
               "params": params.to_dict(), "batch": a, "oracle": c, "oracle_60": c60,
               "coverages": summary,
               "folds": results}  # fmt: skip
    path = write_results(args.results_dir, "flywheel_value", payload)
    print(f"results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
