"""``make demo``: the whole graph on the default data, for the days ending yesterday that the
labelled window needs: 60 training and 7 holdout days whose batch labels have matured (the
flights task's ``label_delay_days``, 30), and the 29 newer days, kept unlabelled.

Runs in this process against the Dagster instance in ``DAGSTER_HOME``, so every run shows in
``make dev``: one run of ``data_job`` over the days (a single-run backfill), then one run of
``feedback_job`` (``user_feedback``, empty on a fresh machine, then training, evaluation and the
gate), so that every asset has been materialized once. Partitions already on disk are reused,
and so is a champion already trained on exactly this window.
"""

import datetime as dt
import json
import sys
import time

from dagster import DagsterInstance

from assets.partitions import range_tags
from definitions import SETTINGS, defs
from pipeline.home import FlywheelHome
from pipeline.labelled import day_is_labelled, days_ending
from pipeline.model.params import TrainParams
from pipeline.task import load_task


def main() -> int:
    started = time.perf_counter()
    params, spec = TrainParams(), load_task(SETTINGS.task_file)
    today = dt.datetime.now(dt.UTC).date()
    yesterday = today - dt.timedelta(days=1)
    end = min(yesterday, today - dt.timedelta(days=spec.label_delay_days))  # newest labelled day
    unlabelled = (yesterday - end).days
    # The labelled window, the unlabelled days after it, and before it the days whose raw
    # labels the window's lagged rates count (they end label_delay_days before each day).
    days = days_ending(
        yesterday, spec.lag_reach_days + params.window_days + params.holdout_days + unlabelled
    )
    instance = DagsterInstance.get()
    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    home = FlywheelHome.at(SETTINGS.home)  # the layout the assets write
    features, registry = home.partitions("cleaned_features"), home.registry()

    # Missing days, and days stored before their labels matured.
    missing = [
        d for d in days
        if not features.exists(d) or (d <= end and not day_is_labelled(features, d, spec, None))
    ]  # fmt: skip
    if missing:
        print(
            f"materializing raw_data and cleaned_features for {missing[0]}..{missing[-1]} (one run)"
        )
        result = defs.resolve_job_def("data_job").execute_in_process(
            instance=instance,
            tags=range_tags(missing[0], missing[-1]),
            run_config=quiet,
            raise_on_error=False,
        )
        if not result.success:
            print("data_job failed; see `make dev` for the run's logs", file=sys.stderr)
            return 1
    else:
        print(f"reusing raw_data and cleaned_features for {days[0]}..{days[-1]}")

    champion = registry.champion()
    trained_end = None
    if champion:
        trained_end = registry.read_json(champion, "training.json")["window"]["holdout_end"]
    if trained_end == end.isoformat():
        print(f"reusing champion {champion}, already trained on this window")
        version = champion
        decision = {"champion": champion, "promoted": False, "reason": "reused"}
    else:
        print("materializing user_feedback, trained_model, evaluation_report, deployed_model")
        run_config = {**quiet, "ops": {"trained_model": {"config": {"end_date": end.isoformat()}}}}
        result = defs.resolve_job_def("feedback_job").execute_in_process(
            instance=instance, run_config=run_config, raise_on_error=False
        )
        if not result.success:
            print("feedback_job failed; see `make dev` for the run's logs", file=sys.stderr)
            return 1
        version = result.output_for_node("trained_model")["version"]
        decision = result.output_for_node("deployed_model")

    report = registry.read_json(version, "evaluation.json")
    ch, window = report["challenger"], registry.read_json(version, "training.json")["window"]
    print()
    if unlabelled:
        print(
            f"labels          batch labels usable {spec.label_delay_days} days after their day:"
            f" {days[0]}..{end} labelled, {end + dt.timedelta(days=1)}..{yesterday}"
            f" ({unlabelled} days) kept unlabelled"
        )
    print(f"model version   {version}")
    print(f"trained on      {window['train_start']}..{window['train_end']}")
    print(
        f"evaluated on    {window['holdout_start']}..{window['holdout_end']}"
        f" ({report['rows']} flights, {ch['positive_rate']:.1%} delayed)"
    )
    for name in ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "f1", "precision", "recall"):
        print(f"  {name:<12}  {ch[name]:.4f}")
    print(f"  threshold     {ch['threshold']:.4f}   confusion {json.dumps(ch['confusion_matrix'])}")
    print(f"prior baseline  log_loss {report['prior_baseline']['log_loss']:.4f}, ROC-AUC 0.5")
    print(f"gate            {decision['reason']}")
    print(f"champion        {registry.champion()} in {registry.path(registry.champion())}")
    print(f"done in {time.perf_counter() - started:.1f} s; `make dev` shows the runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
