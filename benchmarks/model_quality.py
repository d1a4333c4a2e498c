"""Model quality: the Flywheel model vs scikit-learn baselines in a rolling backtest on 2013.

At each cut-off T (Mar 1, Jun 1, Sep 1, Dec 1 2013) every side trains on the cleaned rows of the
60 days before T and is scored on the 7 days from T. The rows come through the real pipeline
(``read_day``, ``clean_day`` with a 7-day history) and the model through ``train_model`` and
``predict_frame`` with the default ``TrainParams``. The baselines see the same rows and the same
features: the fitted Preprocessor's output, one-hot for logistic regression and as categorical
codes for gradient boosting.

    python benchmarks/model_quality.py            # 4 folds, 60 + 7 days each
    python benchmarks/model_quality.py --quick    # smoke run: one fold, 14 + 3 days
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import (
    DEFAULT_RESULTS_DIR,
    clean_days,
    describe_environment,
    environment,
    print_table,
    write_results,
)
from scipy import sparse
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from pipeline.model.features import Preprocessor
from pipeline.model.metrics import roc_auc
from pipeline.model.params import TrainParams
from pipeline.model.training import predict_frame, train_model
from pipeline.task import LABEL_COLUMN, TaskSpec, load_task

CUTOFFS = (dt.date(2013, 3, 1), dt.date(2013, 6, 1), dt.date(2013, 9, 1), dt.date(2013, 12, 1))
GOAL_AUC = 0.745


def one_hot(prep: Preprocessor, frame) -> sparse.csr_matrix:
    """Categorical codes one-hot (OOV slot included), then the scaled numeric inputs."""
    cat, num = (t.numpy() for t in prep.transform(frame))
    offsets = np.cumsum([0, *prep.cardinalities[:-1]])
    rows = np.repeat(np.arange(len(cat)), cat.shape[1])
    cols = (cat + offsets).ravel()
    ones = np.ones(len(cols), dtype=np.float32)
    hot = sparse.csr_matrix((ones, (rows, cols)), shape=(len(cat), sum(prep.cardinalities)))
    return sparse.hstack([hot, sparse.csr_matrix(num)]).tocsr()


def codes(prep: Preprocessor, frame) -> np.ndarray:
    """Categorical codes and the scaled numeric inputs side by side (for gradient boosting)."""
    cat, num = prep.transform(frame)
    return np.hstack([cat.numpy(), num.numpy()])


def run_fold(spec: TaskSpec, cutoff: dt.date, train_days: int, test_days: int, params) -> dict:
    train = clean_days(spec, cutoff - dt.timedelta(days=train_days), cutoff - dt.timedelta(1))
    test = clean_days(spec, cutoff, cutoff + dt.timedelta(days=test_days - 1))
    y_train, y_test = train[LABEL_COLUMN].to_numpy(), test[LABEL_COLUMN].to_numpy()
    result = {"cutoff": str(cutoff), "train_rows": len(train), "test_rows": len(test)}

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        outcome = train_model(train, spec, params, Path(root))
    result["model"] = roc_auc(y_test, predict_frame(outcome.module, outcome.preprocessor, test))
    result["model_seconds"] = time.perf_counter() - started
    result["model_epochs"] = outcome.epochs_run

    # The baselines see what the model sees: the model's own fitted Preprocessor.
    prep = outcome.preprocessor
    n_cat = len(prep.categorical)
    started = time.perf_counter()
    logistic = LogisticRegression(max_iter=2000).fit(one_hot(prep, train), y_train)
    result["logistic"] = roc_auc(y_test, logistic.predict_proba(one_hot(prep, test))[:, 1])
    result["logistic_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    boosting = HistGradientBoostingClassifier(
        categorical_features=list(range(n_cat)), random_state=0
    ).fit(codes(prep, train), y_train)
    result["boosting"] = roc_auc(y_test, boosting.predict_proba(codes(prep, test))[:, 1])
    result["boosting_seconds"] = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one short fold")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    args = parser.parse_args(argv)
    cutoffs = CUTOFFS[:1] if args.quick else CUTOFFS
    train_days, test_days = (14, 3) if args.quick else (60, 7)
    params = TrainParams()
    if args.quick:
        params = dataclasses.replace(params, epochs=2)
    spec = load_task()
    env = environment()
    torch.set_num_threads(env["cores"] or 1)
    what = (
        f"Flywheel model (A) vs the better of logistic regression and gradient boosting (B),"
        f" ROC-AUC on {test_days} days after each of {len(cutoffs)} cut-offs in 2013,"
        f" trained on the {train_days} days before; same rows, same features"
    )
    print(what)
    print(describe_environment(env))
    print(
        f"features: categorical {list(spec.model_categorical)}, numeric {list(spec.model_numeric)}"
    )

    folds = []
    for cutoff in cutoffs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Lightning's and scikit-learn's chatter
            fold = run_fold(spec, cutoff, train_days, test_days, params)
        folds.append(fold)
        print(
            f"{fold['cutoff']}: model {fold['model']:.4f} ({fold['model_seconds']:.1f} s,"
            f" {fold['model_epochs']} epochs), logistic {fold['logistic']:.4f},"
            f" boosting {fold['boosting']:.4f}; {fold['train_rows']} train /"
            f" {fold['test_rows']} test rows"
        )

    mean = {k: float(np.mean([f[k] for f in folds])) for k in ("model", "logistic", "boosting")}
    best_name = max(("logistic", "boosting"), key=lambda k: mean[k])
    baseline = mean[best_name]
    met_baseline = mean["model"] >= baseline
    met_goal = mean["model"] >= GOAL_AUC
    path = write_results(
        args.results_dir,
        "model_quality",
        {
            "compared": what,
            "quick": args.quick,
            "environment": env,
            "params": params.to_dict(),
            "features": {
                "categorical": list(spec.model_categorical),
                "numeric": list(spec.model_numeric),
            },
            "folds": folds,
            "mean_auc": mean,
            "better_baseline": best_name,
            "met_baseline": met_baseline,
            "goal_auc": GOAL_AUC,
            "met_goal": met_goal,
        },
    )
    print(f"Full numbers: {path}")
    print()
    n = len(folds)
    print_table(
        [
            {
                "measure": f"mean ROC-AUC, {n} folds",
                "A": f"{mean['model']:.4f} model",
                "B": f"{baseline:.4f} {best_name}",
                "ratio": f"{mean['model'] / baseline:.3f}",
                "goal": ">= B",
                "met": "yes" if met_baseline else "no",
            },
            {
                "measure": f"mean ROC-AUC, {n} folds",
                "A": f"{mean['model']:.4f} model",
                "B": f"{GOAL_AUC:.4f} goal",
                "ratio": f"{mean['model'] / GOAL_AUC:.3f}",
                "goal": f">= {GOAL_AUC}",
                "met": "yes" if met_goal else "no",
            },
        ]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
