"""The ``flywheel`` command, for what is not Dagster's: ``flywheel models list|show|rollback``.

The registry lives under ``--home`` (default: ``$FLYWHEEL_HOME``, else ``.flywheel``). This entry
point is the one place in ``pipeline/`` that looks at the environment, and only for that default.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pipeline.registry import ModelRegistry, ModelVersionError


def _registry(args: argparse.Namespace) -> ModelRegistry:
    return ModelRegistry(Path(args.home).expanduser() / "models")


def _summary(registry: ModelRegistry, version: str) -> dict:
    training = registry.read_json(version, "training.json")
    report_file = registry.path(version) / "evaluation.json"
    report = json.loads(report_file.read_text()) if report_file.is_file() else None
    return {
        "window": training.get("window", {}),
        "rows": training.get("rows"),
        "roc_auc": report["challenger"]["roc_auc"] if report else None,
    }


def cmd_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    champion = registry.champion()
    versions = registry.versions()
    if not versions:
        print(f"no model versions in {registry.root}")
        return 0
    print(f"{'':2}{'version':<32} {'trained on':<24} {'ROC-AUC':>8}")
    for version in versions:
        try:
            s = _summary(registry, version)
            window = f"{s['window'].get('train_start')}..{s['window'].get('train_end')}"
            auc = f"{s['roc_auc']:.4f}" if s["roc_auc"] is not None else "-"
        except (OSError, ValueError, KeyError):
            window, auc = "(unreadable)", "-"
        mark = "* " if version == champion else "  "
        print(f"{mark}{version:<32} {window:<24} {auc:>8}")
    print("\n* champion")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    registry = _registry(args)
    registry.verify(args.version)
    folder = registry.path(args.version)
    out = {
        "version": args.version,
        "path": str(folder),
        "champion": registry.champion() == args.version,
        "training": registry.read_json(args.version, "training.json"),
        "hparams": registry.read_json(args.version, "hparams.json"),
    }
    if (folder / "evaluation.json").is_file():
        report = registry.read_json(args.version, "evaluation.json")
        out["evaluation"] = {k: report[k] for k in ("challenger", "prior_baseline", "champion")}
    out["training"].pop("history", None)
    print(json.dumps(out, indent=2, default=str))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    registry = _registry(args)
    record = registry.rollback(args.version)
    print(f"champion is now {record['version']} (was {record['previous']})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flywheel", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--home",
        default=os.environ.get("FLYWHEEL_HOME") or ".flywheel",
        help="Flywheel's folder (default: $FLYWHEEL_HOME or .flywheel)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="model versions and the champion")
    msub = models.add_subparsers(dest="action", required=True)
    msub.add_parser("list", help="every version, the champion marked").set_defaults(fn=cmd_list)
    show = msub.add_parser("show", help="one version's training, metrics and files")
    show.add_argument("version")
    show.set_defaults(fn=cmd_show)
    rollback = msub.add_parser("rollback", help="make an earlier version the champion")
    rollback.add_argument("version", nargs="?", help="default: the champion before this one")
    rollback.set_defaults(fn=cmd_rollback)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ModelVersionError as err:
        print(f"flywheel: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
