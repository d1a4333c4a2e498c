"""nightly_retrain at chosen times: the partition, the timezone, the tags and the catch-up."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_schedule_context,
    instance_for_test,
)

from assets.automation import (
    DEFAULT_CRON,
    MAX_CATCHUP_DAYS,
    PARTITION_TAG,
    REASON_TAG,
    previous_day,
)
from assets.automation import build_nightly_retrain as build_schedule
from assets.jobs import nightly_job
from assets.partitions import DEFAULT_START_DATE
from assets.partitions import RANGE_END_TAG as ASSET_PARTITION_RANGE_END_TAG
from assets.partitions import RANGE_START_TAG as ASSET_PARTITION_RANGE_START_TAG
from definitions import Settings, build_defs

FIRST = dt.date.fromisoformat(DEFAULT_START_DATE)


def build_nightly_retrain(cron: str, timezone: str, **kwargs):
    """``nightly_retrain`` of the real nightly job, from the default first partition."""
    return build_schedule(nightly_job, FIRST, cron, timezone, **kwargs)


UTC = dt.UTC


@pytest.fixture
def instance(tmp_path: Path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with instance_for_test(temp_dir=str(home)) as instance:
        yield instance


def materialize(instance: DagsterInstance, first: dt.date, last: dt.date) -> None:
    """Records cleaned_features as materialized for first..last, as a run would."""
    day = first
    while day <= last:
        instance.report_runless_asset_event(
            AssetMaterialization("cleaned_features", partition=day.isoformat())
        )
        day += dt.timedelta(days=1)


def tick(schedule, instance: DagsterInstance, when: dt.datetime) -> RunRequest | SkipReason:
    from definitions import defs  # the real job that the schedule's requests resolve against

    context = build_schedule_context(
        instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
    )
    data = schedule.evaluate_tick(context)
    if data.skip_message is not None:
        return SkipReason(data.skip_message)
    assert len(data.run_requests) == 1, data.run_requests
    return data.run_requests[0]


@pytest.mark.parametrize(
    ("local_time", "timezone", "partition"),
    [
        ("2026-03-10T02:00", "UTC", "2026-03-09"),
        ("2026-03-10T00:00", "UTC", "2026-03-09"),
        ("2026-03-10T23:59", "UTC", "2026-03-09"),
        ("2026-01-01T02:00", "UTC", "2025-12-31"),
        ("2026-03-10T02:00", "Europe/Berlin", "2026-03-09"),  # 01:00 UTC
        ("2026-03-10T02:00", "America/New_York", "2026-03-09"),  # 06:00 UTC
        ("2026-03-10T23:00", "America/Los_Angeles", "2026-03-09"),  # 06:00 UTC on the 11th
        # 13:00 UTC on the 9th: the 9th has not ended in UTC, so the 8th.
        ("2026-03-10T02:00", "Pacific/Auckland", "2026-03-08"),
    ],
)
def test_previous_day(local_time: str, timezone: str, partition: str):
    when = dt.datetime.fromisoformat(local_time).replace(tzinfo=ZoneInfo(timezone))
    assert previous_day(when, timezone).isoformat() == partition


def test_cron_and_timezone():
    defaults = build_defs(Settings()).resolve_schedule_def("nightly_retrain")
    assert defaults.cron_schedule == DEFAULT_CRON == "0 2 * * *"
    assert defaults.execution_timezone == "UTC"
    schedule = build_nightly_retrain("30 3 * * 1-5", "Europe/Berlin")
    assert schedule.name == "nightly_retrain"
    assert schedule.cron_schedule == "30 3 * * 1-5"
    assert schedule.execution_timezone == "Europe/Berlin"
    assert schedule.job_name == "nightly_job"
    with pytest.raises(Exception, match="Nowhere/Never"):
        build_nightly_retrain("0 2 * * *", "Nowhere/Never")


def test_environment_reaches_the_schedule(tmp_path: Path):
    """FLYWHEEL_RETRAIN_CRON / FLYWHEEL_TIMEZONE / FLYWHEEL_RETRAIN_CONFIG reach the schedule."""
    config = tmp_path / "retrain.yaml"
    config.write_text("ops: {trained_model: {config: {epochs: 3}}}\n")
    env = {
        "FLYWHEEL_RETRAIN_CRON": "15 4 * * *",
        "FLYWHEEL_TIMEZONE": "Asia/Tokyo",
        "FLYWHEEL_RETRAIN_CONFIG": str(config),
        "FLYWHEEL_RETRAIN_DEFAULT_STATUS": "stopped",
        "FLYWHEEL_HOME": str(tmp_path / "flywheel"),
    }
    defs = build_defs(Settings.from_env(env))
    schedule = defs.resolve_schedule_def("nightly_retrain")
    assert schedule.cron_schedule == "15 4 * * *"
    assert schedule.execution_timezone == "Asia/Tokyo"
    assert schedule.default_status.value == "STOPPED"
    (tmp_path / "home").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        when = dt.datetime(2026, 3, 10, 4, 15, tzinfo=ZoneInfo("Asia/Tokyo"))
        request = tick(schedule, instance, when)
    assert request.run_config == {"ops": {"trained_model": {"config": {"epochs": 3}}}}
    assert request.partition_key == "2026-03-08"  # 19:15 UTC on the 9th: the 8th is done


def test_tick_requests_yesterday_with_tags(instance: DagsterInstance):
    schedule = build_nightly_retrain("0 2 * * *", "UTC", run_config={"ops": {}})
    materialize(instance, dt.date(2026, 3, 1), dt.date(2026, 3, 8))
    request = tick(schedule, instance, dt.datetime(2026, 3, 10, 2, tzinfo=UTC))
    assert isinstance(request, RunRequest)
    assert request.partition_key == "2026-03-09"
    assert request.run_key == "2026-03-09"  # a second tick for the same day starts nothing
    assert request.tags[PARTITION_TAG] == "2026-03-09"
    assert request.tags[REASON_TAG] == "nightly retrain, tick 2026-03-10T02:00+00:00 (UTC)"
    assert ASSET_PARTITION_RANGE_START_TAG not in request.tags
    assert request.run_config == {"ops": {}}


def test_tick_in_a_timezone(instance: DagsterInstance):
    schedule = build_nightly_retrain("0 2 * * *", "Europe/Berlin")
    when = dt.datetime(2026, 7, 1, 2, tzinfo=ZoneInfo("Europe/Berlin"))  # 00:00 UTC
    request = tick(schedule, instance, when)
    assert request.partition_key == "2026-06-30"
    assert "(Europe/Berlin)" in request.tags[REASON_TAG]


def test_missed_nights_are_caught_up_in_one_run(instance: DagsterInstance):
    """Daemon down for three nights: the next tick fills the three missed days in one run."""
    schedule = build_nightly_retrain("0 2 * * *", "UTC")
    materialize(instance, dt.date(2026, 3, 1), dt.date(2026, 3, 6))
    request = tick(schedule, instance, dt.datetime(2026, 3, 10, 2, tzinfo=UTC))
    assert request.partition_key is None
    assert request.tags[ASSET_PARTITION_RANGE_START_TAG] == "2026-03-07"
    assert request.tags[ASSET_PARTITION_RANGE_END_TAG] == "2026-03-09"
    assert request.tags[PARTITION_TAG] == "2026-03-07...2026-03-09"
    assert "catching up 3 missed days in one run" in request.tags[REASON_TAG]
    assert request.run_key == "2026-03-07...2026-03-09"


def test_catch_up_is_bounded(instance: DagsterInstance):
    schedule = build_nightly_retrain("0 2 * * *", "UTC")
    materialize(instance, dt.date(2026, 1, 1), dt.date(2026, 1, 5))
    request = tick(schedule, instance, dt.datetime(2026, 3, 10, 2, tzinfo=UTC))
    first = dt.date(2026, 3, 9) - dt.timedelta(days=MAX_CATCHUP_DAYS - 1)
    assert request.tags[ASSET_PARTITION_RANGE_START_TAG] == first.isoformat()


def test_fresh_instance_fills_only_yesterday(instance: DagsterInstance):
    schedule = build_nightly_retrain("0 2 * * *", "UTC")
    request = tick(schedule, instance, dt.datetime(2026, 3, 10, 2, tzinfo=UTC))
    assert request.partition_key == "2026-03-09"


def test_rerun_after_a_later_backfill_still_fills_yesterday(instance: DagsterInstance):
    """Partitions newer than yesterday's do not change which day the tick fills."""
    schedule = build_nightly_retrain("0 2 * * *", "UTC")
    materialize(instance, dt.date(2026, 3, 1), dt.date(2026, 3, 9))
    request = tick(schedule, instance, dt.datetime(2026, 3, 10, 2, tzinfo=UTC))
    assert request.partition_key == "2026-03-09"


def test_tick_before_the_first_partition_is_skipped(instance: DagsterInstance):
    schedule = build_nightly_retrain("0 2 * * *", "UTC")
    when = dt.datetime.combine(FIRST, dt.time(2), tzinfo=UTC)  # fills the day before the first
    result = tick(schedule, instance, when)
    assert isinstance(result, SkipReason)
    assert "before the first partition" in result.skip_message


@pytest.mark.parametrize(
    ("stored_until", "first_day", "missed"),
    [
        # Clock 03-10: 02-08 matured today (02-08 + 30 days); the last run (clock 03-09) had
        # 02-07. The run is one range, 02-08..03-09, so the days between are rewritten too.
        (dt.date(2026, 3, 8), "2026-02-08", "filling 1 day"),
        # Three nights missed: the labels of 02-06, 02-07 and 02-08 matured since.
        (dt.date(2026, 3, 6), "2026-02-06", "catching up 3 missed days in one run"),
    ],
)
def test_the_nightly_run_re_materializes_the_days_whose_labels_matured(
    instance: DagsterInstance, stored_until: dt.date, first_day: str, missed: str
):
    schedule = build_nightly_retrain("0 2 * * *", "UTC", label_delay_days=30)
    materialize(instance, dt.date(2026, 1, 1), stored_until)
    request = tick(schedule, instance, dt.datetime(2026, 3, 10, 2, tzinfo=UTC))
    assert request.tags[ASSET_PARTITION_RANGE_START_TAG] == first_day
    assert request.tags[ASSET_PARTITION_RANGE_END_TAG] == "2026-03-09"
    assert request.run_key == f"{first_day}...2026-03-09"
    assert missed in request.tags[REASON_TAG]
    assert f"from {first_day}: the labels of {first_day} matured" in request.tags[REASON_TAG]


def test_a_one_day_delay_matures_yesterday_in_its_own_run(instance: DagsterInstance):
    schedule = build_nightly_retrain("0 2 * * *", "UTC", label_delay_days=1)
    materialize(instance, dt.date(2026, 3, 1), dt.date(2026, 3, 8))
    request = tick(schedule, instance, dt.datetime(2026, 3, 10, 2, tzinfo=UTC))
    assert request.partition_key == "2026-03-09"  # labelled on the clock 03-10 already
