"""Every job, defined once. They all run in one process per run: the executor is chosen once, in
``definitions.py``.

The jobs that train (``training_job``, ``nightly_job``, ``feedback_job``) may carry run tags of
their own: on Kubernetes, ``dagster-k8s/config`` asks the ``K8sRunLauncher`` for GPUs for their
run pods (:func:`k8s_gpu_tags`; ``FLYWHEEL_TRAINING_GPUS`` in ``definitions.py``). Other launchers
ignore the tag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagster import AssetSelection, define_asset_job

if TYPE_CHECKING:  # what define_asset_job returns; dagster exports no public name for it
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition as Job,
    )

DATA = AssetSelection.assets("raw_data", "cleaned_features")
TRAINING = AssetSelection.assets("trained_model", "evaluation_report", "deployed_model")
LIVE = AssetSelection.assets("live_performance")
K8S_CONFIG_TAG = "dagster-k8s/config"
GPU_RESOURCE = "nvidia.com/gpu"


def k8s_gpu_tags(gpus: int) -> dict[str, dict]:
    """The run tag that gives a run's pod ``gpus`` GPUs under the K8sRunLauncher (none for 0).
    Kubernetes schedules GPUs by their limit; the request is set equal for clarity."""
    if gpus <= 0:
        return {}
    amount = {GPU_RESOURCE: str(gpus)}
    resources = {"requests": amount, "limits": amount}
    return {K8S_CONFIG_TAG: {"container_config": {"resources": resources}}}


@dataclass(frozen=True)
class Jobs:
    data: Job
    training: Job
    nightly: Job
    live: Job
    feedback: Job
    shadow: Job

    def all(self) -> list[Job]:
        return [self.data, self.training, self.nightly, self.feedback, self.live, self.shadow]


def build_jobs(training_tags: Mapping[str, object] | None = None) -> Jobs:
    """The six jobs; ``training_tags`` go on every job that trains."""
    tags = dict(training_tags or {})
    return Jobs(
        data=define_asset_job(
            "data_job",
            selection=DATA,
            description="Fill daily partitions of raw_data and cleaned_features.",
        ),
        training=define_asset_job(
            "training_job",
            selection=TRAINING,
            description="Train a challenger, evaluate it against the champion, and run the gate.",
            tags=tags,
        ),
        nightly=define_asset_job(
            "nightly_job",
            selection=DATA | LIVE | TRAINING,
            description="Fill the previous day's raw_data and cleaned_features (and"
            " re-materialize the days whose labels matured), refresh their live_performance,"
            " retrain on the newest window, evaluate against the champion and run the gate.",
            tags=tags,
        ),
        live=define_asset_job(
            "live_job",
            selection=LIVE,
            description="Refresh live_performance (the served versions on labelled predictions)"
            " of days.",
        ),
        feedback=define_asset_job(
            "feedback_job",
            selection=AssetSelection.assets("user_feedback").downstream(),
            description="Turn new feedback into examples, retrain, evaluate and run the gate.",
            tags=tags,
        ),
        shadow=define_asset_job(
            "shadow_job",
            selection=AssetSelection.assets("shadow_evaluation"),
            description="Judge the version in shadow on live traffic: promote or reject a"
            " candidate, keep or roll back a champion on probation.",
        ),
    )


# The jobs without training tags, for tests and for code that needs a job's name.
_DEFAULT = build_jobs()
data_job = _DEFAULT.data
training_job = _DEFAULT.training
nightly_job = _DEFAULT.nightly
live_job = _DEFAULT.live
feedback_job = _DEFAULT.feedback
shadow_job = _DEFAULT.shadow
