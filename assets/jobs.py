"""Every job, defined once. They all run in one process per run: the executor is chosen once, in
``definitions.py``."""

from dagster import AssetSelection, define_asset_job

DATA = AssetSelection.assets("raw_data", "cleaned_features")
TRAINING = AssetSelection.assets("trained_model", "evaluation_report", "deployed_model")
LIVE = AssetSelection.assets("live_performance")

data_job = define_asset_job(
    "data_job",
    selection=DATA,
    description="Fill daily partitions of raw_data and cleaned_features.",
)
training_job = define_asset_job(
    "training_job",
    selection=TRAINING,
    description="Train a challenger, evaluate it against the champion, and run the gate.",
)
nightly_job = define_asset_job(
    "nightly_job",
    selection=DATA | LIVE | TRAINING,
    description="Fill the previous day's raw_data and cleaned_features (and re-materialize the"
    " days whose labels matured), refresh their live_performance, retrain on the newest window,"
    " evaluate against the champion and run the gate.",
)
live_job = define_asset_job(
    "live_job",
    selection=LIVE,
    description="Refresh live_performance (the served versions on labelled predictions) of days.",
)
feedback_job = define_asset_job(
    "feedback_job",
    selection=AssetSelection.assets("user_feedback").downstream(),
    description="Turn new feedback into examples, retrain, evaluate and run the gate.",
)
shadow_job = define_asset_job(
    "shadow_job",
    selection=AssetSelection.assets("shadow_evaluation"),
    description="Judge the version in shadow on live traffic: promote or reject a candidate, keep"
    " or roll back a champion on probation.",
)
