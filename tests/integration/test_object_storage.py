"""FLYWHEEL_HOME on object storage: a real S3 API server (moto's) on loopback, started here.

The demo's whole graph (fewer days and a smaller model than ``make demo``, for speed), then
``flywheel models list`` and the serving app's hot swap reading the bucket; and two promotions
at the same moment on the bucket.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import subprocess
import sys
import traceback
from pathlib import Path

import httpx
import pytest
import torch

from tests.helpers import SERVE_DAY, build_home, served_app, train_small
from tests.servers import PROJECT_DIR, S3Server, wait_until

pytestmark = pytest.mark.slow

# The labelled window the graph trains on: the lagged rates' reach before it, 10 + 3 days.
WINDOW, HOLDOUT = 10, 3


def _fs():
    from upath import UPath

    return UPath("s3://probe", use_listings_cache=False).fs


@pytest.fixture(scope="module")
def graph_home(s3_session: S3Server, tmp_path_factory):
    """The demo's graph run in this process with FLYWHEEL_HOME in a new bucket: data_job over
    the days as one run, then feedback_job (training, evaluation, the gate)."""
    from dagster import DagsterInstance

    from assets.partitions import range_tags
    from definitions import Settings, build_defs
    from pipeline.labelled import days_ending
    from pipeline.task import load_task

    tmp = tmp_path_factory.mktemp("s3graph")
    home = f"{s3_session.bucket()}/home"
    spec = load_task()
    end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=spec.label_delay_days + 1)
    days = days_ending(end, spec.lag_reach_days + WINDOW + HOLDOUT)
    env = {**s3_session.env, "FLYWHEEL_FEEDBACK_URL": f"sqlite:///{tmp}/feedback.sqlite"}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        defs = build_defs(Settings(home=home, feedback_url_from_env=True))
        with DagsterInstance.ephemeral() as instance:
            data = defs.resolve_job_def("data_job").execute_in_process(
                instance=instance, tags=range_tags(days[0], days[-1])
            )
            assert data.success
            train = {"end_date": end.isoformat(), "window_days": WINDOW, "holdout_days": HOLDOUT,
                     "epochs": 2, "members": 1}  # fmt: skip
            ops = {
                "trained_model": {"config": train},  # a small model need not beat the
                "deployed_model": {"config": {"force": True}},
            }  # prior: promoted regardless
            run = defs.resolve_job_def("feedback_job").execute_in_process(
                instance=instance, run_config={"ops": ops}
            )
            assert run.success
            yield home, days, run.output_for_node("trained_model")["version"], env


def test_the_whole_graph_writes_everything_into_the_bucket(graph_home):
    home, days, version, _ = graph_home
    fs, prefix = _fs(), home.removeprefix("s3://")
    for asset in ("raw_data", "cleaned_features"):
        stored = fs.glob(f"{prefix}/{asset}/*-[0-9][0-9].parquet")
        assert len(stored) == len(days), asset
        assert len(fs.glob(f"{prefix}/checks/{asset}/*.json")) == len(days), asset
    assert len(fs.glob(f"{prefix}/cleaned_features/*.quarantine.parquet")) == len(days)
    versions = f"{prefix}/models/versions/{version}"
    assert {"manifest.json", "weights.pt", "evaluation.json", "serving.json"} <= {
        Path(p).name for p in fs.ls(versions)
    }
    assert f'"version": "{version}"' in fs.cat(f"{prefix}/models/champion.json").decode()
    assert fs.exists(f"{prefix}/models/promotions.jsonl")
    assert fs.exists(f"{prefix}/assets/deployed_model.json")
    assert not (PROJECT_DIR / "s3:").exists() and not Path("s3:").exists()  # no local folder


def test_models_list_reads_the_bucket(graph_home):
    home, _, version, env = graph_home
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--home", home, "models", "list"],
        cwd=PROJECT_DIR, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"* {version}" in proc.stdout, proc.stdout


def test_the_serving_app_swaps_to_a_champion_promoted_in_the_bucket(graph_home, tmp_path):
    from pipeline.data.storage import PartitionStore
    from pipeline.model.registry import ModelRegistry
    from pipeline.serving.features import records_for_api
    from pipeline.task import load_task

    home, days, first, _ = graph_home
    registry = ModelRegistry(f"{home}/models")
    records = records_for_api(PartitionStore(f"{home}/raw_data").read(days[-1]), load_task())[:5]
    loaded = registry.load(first)  # a second version: the champion's weights, shifted
    with torch.no_grad():
        for p in loaded.module.parameters():
            p.add_(0.05)
    second = registry.save_version(loaded.module, loaded.preprocessor, loaded.training,
                                   documents={"serving.json": loaded.serving})  # fmt: skip
    try:
        with (
            served_app(registry, tmp_path, batch_processes=1) as (_, url),
            httpx.Client(base_url=url, timeout=30) as client,
        ):
            assert client.get("/health").json()["serving_version"] == first
            assert client.post("/predict", json=records[0]).json()["model_version"] == first
            registry.promote(second, reason="hot swap from the bucket")
            wait_until(
                lambda: client.get("/health").json()["serving_version"] == second,
                timeout=30, what="the app to swap to the new champion", interval=0.1,
            )  # fmt: skip
            answer = client.post("/predict", json=records[0]).json()
            assert answer["model_version"] == second
            # A batch process reaches the bucket too (the registry's path and settings go to it).
            batch = {"records": (records * 200)[:1000]}
            client.post("/predict", json=batch)  # starts the worker; answered in-process
            wait_until(
                lambda: client.get("/health").json()["batch_processes"]["state"] == "ready",
                timeout=60, what="the batch process to start", interval=0.1,
            )  # fmt: skip
            answer = client.post("/predict", json=batch).json()
            assert answer["model_version"] == second and len(answer["predictions"]) == 1000
            assert client.get("/health").json()["batch_processes"]["requests"] == 1
    finally:
        registry.rollback(first)  # the module's graph keeps its own champion


# -- two promotions at the same moment on the bucket -------------------------------------------
def _deploy_at_once(home: str, slices, report, barrier, out) -> None:
    """One run's gate, in its own process, started with the other's at the barrier."""
    from pipeline.data.storage import PartitionStore
    from pipeline.evaluation import evaluate_version
    from pipeline.gate import GatePolicy
    from pipeline.model.registry import ModelRegistry
    from pipeline.promotion import deploy

    easy = GatePolicy(max_auc_loss=1.0, max_log_loss_gain=1.0, max_slice_drop=1.0,
                      min_holdout_rows=1)  # fmt: skip
    registry = ModelRegistry(f"{home}/models")
    features = PartitionStore(f"{home}/cleaned_features")
    evaluated = []

    def again():
        evaluated.append(True)
        return evaluate_version(features, registry, report["version"], slices).report

    barrier.wait()
    try:
        done = deploy(registry, report, easy, evaluate_again=again)
    except BaseException:  # the parent says what went wrong, not just an exit code
        out.put((report["version"], "error", traceback.format_exc()))
        raise
    out.put((report["version"], done.promoted, bool(evaluated)))


def test_two_promotions_at_once_on_the_bucket_one_wins_the_other_compares_again(
    s3_home: str, tmp_path: Path
):
    from pipeline.data.storage import PartitionStore
    from pipeline.evaluation import evaluate_version
    from pipeline.model.registry import ModelRegistry

    spec, local, registry = build_home(tmp_path)
    raw, feats = PartitionStore(local / "raw_data"), PartitionStore(local / "cleaned_features")
    for seed in (1, 2, 3):  # trained on a day more; 1 and 2 evaluated against the same champion
        train_small(spec, feats, raw, registry, tmp_path / "scratch",
                    SERVE_DAY + dt.timedelta(days=1), seed=seed)  # fmt: skip
    _fs().put(str(local), s3_home.removeprefix("s3://"), recursive=True)
    bucket = ModelRegistry(f"{s3_home}/models")
    first_champion = bucket.champion()
    features = PartitionStore(f"{s3_home}/cleaned_features")
    *challengers, third = [v for v in bucket.versions() if v != first_champion]
    reports = [evaluate_version(features, bucket, v, spec.slices).report for v in challengers]
    assert {r["champion"] for r in reports} == {first_champion}

    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    runs = [ctx.Process(target=_deploy_at_once, args=(s3_home, spec.slices, r, barrier, out))
            for r in reports]  # fmt: skip
    for run in runs:
        run.start()
    for run in runs:
        run.join(180)
        assert run.exitcode == 0
    results = {v: (promoted, again) for v, promoted, again in (out.get(timeout=5) for _ in runs)}
    assert "error" not in {p for p, _ in results.values()}, results
    assert set(results) == set(challengers)

    # The winner was judged against the old champion; the loser read the new champion and was
    # evaluated again against it, not promoted on the stale comparison.
    # (the log also records each promotion's probation: the champion pointer's records here)
    history = [r for r in bucket.history() if "promoted_at" in r]
    assert history[0]["version"] == first_champion
    winner = history[1]["version"]
    assert history[1]["previous"] == first_champion and results[winner] == (True, False)
    loser = next(v for v in challengers if v != winner)
    assert results[loser][1], "the loser was evaluated again"
    assert bucket.read_json(loser, "evaluation.json")["champion"] == winner
    if results[loser][0]:  # promoted too: the chain of pointers stays whole
        assert history[2] == {**history[2], "version": loser, "previous": winner}
    assert len(history) == 2 + results[loser][0]
    assert bucket.champion() == history[-1]["version"]
    for version in bucket.versions():
        bucket.verify(version)  # no version damaged

    # The same race made certain: another promotion lands between this gate's decision and
    # its write (the evaluation is attached in between). The conditional write is refused, and
    # the gate compares the challenger with the champion that landed.
    from pipeline.gate import GatePolicy
    from pipeline.promotion import deploy

    class Racing(ModelRegistry):
        raced = False

        def attach(self, version, name, data):
            path = super().attach(version, name, data)
            if not self.raced:
                self.raced = True
                ModelRegistry(f"{s3_home}/models").promote(first_champion, "meanwhile", True)
            return path

    racing = Racing(f"{s3_home}/models")
    report = evaluate_version(features, racing, third, spec.slices).report
    easy = GatePolicy(max_auc_loss=1.0, max_log_loss_gain=1.0, max_slice_drop=1.0,
                      min_holdout_rows=1)  # fmt: skip
    again = lambda: evaluate_version(features, racing, third, spec.slices).report  # noqa: E731
    done = deploy(racing, report, easy, evaluate_again=again)
    assert racing.raced and report["champion"] != first_champion
    assert racing.read_json(third, "evaluation.json")["champion"] == first_champion
    last = [r for r in racing.history() if "promoted_at" in r][-2:]
    assert [r["version"] for r in last] == [first_champion, third] and done.promoted
    assert last[1]["previous"] == first_champion
