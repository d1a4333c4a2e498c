"""Dagster's instance on SQLite vs on PostgreSQL: the same backfill and retrain on each.

Two sides in one run, interleaved (A B, then B A, ...), each repeat on a fresh instance and a
fresh FLYWHEEL_HOME:

A. SQLite: an empty ``dagster.yaml`` (Dagster's default: SQLite files under DAGSTER_HOME), as
   ``make demo`` and ``dg dev`` run.
B. PostgreSQL: the ``storage`` section of ``deploy/dagster.yaml`` (the compose deployment's
   instance) on a fresh database of the local PostgreSQL server (tests/postgres.py starts it
   and owns the role).

Each side runs, through the CLI, ``dagster asset materialize -m definitions --select
raw_data,cleaned_features --partition-range FIRST...LAST`` over N days of the flights replay (one
run), then ``--select trained_model,evaluation_report,deployed_model`` (the retrain, small
training config, the same on both). The days end 31 days ago, so their batch labels have
matured. The feedback store is the default SQLite file on both sides: only the instance differs.

Target (issue 14): B at most 1.2x A.

    python benchmarks/instance.py            # 90 days, 5 repeats
    python benchmarks/instance.py --quick    # 4 days, 1 repeat: a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import sqlalchemy as sa
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    DEFAULT_RESULTS_DIR,
    describe_environment,
    environment,
    print_table,
    spread,
    write_results,
)
from benchmarks.backfill import BIN, PROJECT_DIR, fresh_env, timed
from tests.postgres import PASSWORD, ROLE, ensure_server

BACKFILL = "raw_data,cleaned_features"
RETRAIN = "trained_model,evaluation_report,deployed_model"


def postgres_instance_yaml() -> str:
    """deploy/dagster.yaml's storage (PostgreSQL from DAGSTER_POSTGRES_*), nothing else."""
    deployed = yaml.safe_load((PROJECT_DIR / "deploy" / "dagster.yaml").read_text())
    return yaml.safe_dump({"storage": deployed["storage"], "telemetry": {"enabled": False}})


class Databases:
    """Fresh databases on the local PostgreSQL server, dropped at the end."""

    def __init__(self) -> None:
        self.port = ensure_server()
        url = f"postgresql+psycopg2://{ROLE}:{PASSWORD}@127.0.0.1:{self.port}/postgres"
        self.engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        self.names: list[str] = []

    def create(self) -> str:
        name = f"flywheel_bench_{secrets.token_hex(4)}"
        with self.engine.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        self.names.append(name)
        return name

    def drop_all(self) -> None:
        with self.engine.connect() as conn:
            for name in self.names:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        self.engine.dispose()


def backfill_and_retrain(
    env: dict[str, str], first: dt.date, last: dt.date, train_config: Path
) -> tuple[float, float]:
    """The backfill's and the retrain's wall times (each one CLI run)."""
    materialize = [str(BIN / "dagster"), "asset", "materialize", "-m", "definitions", "--select"]
    keys = f"{first}...{last}" if last > first else first.isoformat()
    flag = "--partition-range" if last > first else "--partition"
    backfill = timed([*materialize, BACKFILL, flag, keys], env, "the backfill")
    retrain = timed([*materialize, RETRAIN, "-c", str(train_config)], env, "the retrain")
    return backfill, retrain


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 days, 1 repeat, no warm-up")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    args = parser.parse_args()
    if args.quick:
        args.days, args.repeats, args.epochs = 4, 1, 1
    window = max(1, min(45, args.days - 8))
    holdout = 1 if args.quick else 7
    training = {"epochs": args.epochs, "window_days": window, "holdout_days": holdout,
                "batch_size": 1024, "patience": 2}  # fmt: skip

    last = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=31)  # labels matured
    first = last - dt.timedelta(days=args.days - 1)
    env_info = environment()
    for name in ("dagster", "dagster-postgres", "sqlalchemy", "psycopg2-binary"):
        env_info["libraries"][name] = metadata.version(name)
    print(f"Dagster instance, SQLite vs PostgreSQL: backfill of {BACKFILL}, {args.days} days"
          f" ({first}..{last}), then retrain ({args.epochs} epochs, {window}-day window),"
          f" flights replay; {args.repeats} repeat(s), interleaved")  # fmt: skip
    print(describe_environment(env_info))

    databases = Databases()
    pg_yaml = postgres_instance_yaml()
    seconds: dict[str, dict[str, list[float]]] = {
        side: {"backfill": [], "retrain": [], "total": []} for side in ("sqlite", "postgres")
    }
    try:
        with tempfile.TemporaryDirectory(prefix="flywheel-bench-") as tmp:
            root = Path(tmp)
            train_config = root / "train.yaml"
            train_config.write_text(
                yaml.safe_dump({"ops": {"trained_model": {"config": training}}})
            )
            counter = iter(range(10**6))

            def run(side: str, days_first: dt.date) -> tuple[float, float]:
                instance = ""
                env_extra = {}
                if side == "postgres":
                    instance = pg_yaml
                    env_extra = {
                        "DAGSTER_POSTGRES_HOST": "127.0.0.1",
                        "DAGSTER_POSTGRES_PORT": str(databases.port),
                        "DAGSTER_POSTGRES_USER": ROLE,
                        "DAGSTER_POSTGRES_PASSWORD": PASSWORD,
                        "DAGSTER_POSTGRES_DB": databases.create(),
                    }
                env = {**fresh_env(root / f"r{next(counter)}", days_first, instance), **env_extra}
                return backfill_and_retrain(env, days_first, last, train_config)

            if not args.quick:  # warm-up: imports, the flights files, both servers' caches
                warm_first = last - dt.timedelta(days=9)
                run("sqlite", warm_first)
                run("postgres", warm_first)
            for i in range(args.repeats):
                order = ("sqlite", "postgres") if i % 2 == 0 else ("postgres", "sqlite")
                for side in order:
                    backfill, retrain = run(side, first)
                    seconds[side]["backfill"].append(backfill)
                    seconds[side]["retrain"].append(retrain)
                    seconds[side]["total"].append(backfill + retrain)
                done = [f"{side} {seconds[side]['backfill'][-1]:.1f} + "
                        f"{seconds[side]['retrain'][-1]:.1f} s" for side in order]  # fmt: skip
                print(f"repeat {i + 1}/{args.repeats}: " + ", ".join(done), flush=True)
    finally:
        databases.drop_all()

    stats = {side: {k: spread(v) for k, v in parts.items()} for side, parts in seconds.items()}
    # the ratio of each repeat's pair, then their median (pairs ran back to back)
    pg, lite = seconds["postgres"], seconds["sqlite"]
    pair_ratios = {
        part: [p / s for p, s in zip(pg[part], lite[part], strict=True)]
        for part in ("backfill", "retrain", "total")
    }
    ratios = {part: spread(v) for part, v in pair_ratios.items()}

    def cell(side: str, part: str) -> str:
        s = stats[side][part]
        return f"{s['median']:.1f} s ({s['min']:.1f}-{s['max']:.1f})"

    def ratio(part: str) -> str:
        r = ratios[part]
        return f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})"

    total = ratios["total"]["median"]
    rows = [
        {"measure": f"backfill, {args.days} days, one run: PostgreSQL vs SQLite instance",
         "A": cell("postgres", "backfill"), "B": cell("sqlite", "backfill"),
         "ratio": ratio("backfill"), "goal": "info", "met": ""},
        {"measure": "retrain (trained_model, evaluation_report, deployed_model)",
         "A": cell("postgres", "retrain"), "B": cell("sqlite", "retrain"),
         "ratio": ratio("retrain"), "goal": "info", "met": ""},
        {"measure": f"backfill + retrain, {args.days} days: PostgreSQL vs SQLite",
         "A": cell("postgres", "total"), "B": cell("sqlite", "total"), "ratio": ratio("total"),
         "goal": "ratio <= 1.2x", "met": "yes" if total <= 1.2 else "no"},
    ]  # fmt: skip
    path = write_results(
        args.results_dir,
        "instance",
        {
            "question": "the same backfill and retrain on a SQLite and a PostgreSQL instance",
            "days": args.days,
            "range": [first.isoformat(), last.isoformat()],
            "training": training,
            "repeats": args.repeats,
            "environment": env_info,
            "seconds": seconds,
            "stats": stats,
            "pair_ratios_postgres_vs_sqlite": pair_ratios,
            "ratio_total": total,
            "quick": args.quick,
        },
    )
    print(f"\nfull numbers: {path}\n")
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
