"""The ``flywheel`` command, for what is not Dagster's: model versions, serving, feedback.

The registry lives under ``--home`` (default: ``$FLYWHEEL_HOME``, else ``.flywheel``). This entry
point is the one place in ``pipeline/`` that looks at the environment: for that default, and for
``FLYWHEEL_FEEDBACK_URL`` (the feedback store), ``FLYWHEEL_API_TOKEN`` (the serving app's bearer
token), ``FLYWHEEL_MAX_STRING_BYTES`` (its cap on each string of a request),
``FLYWHEEL_ALLOWED_HOSTS`` (the Host names it answers to) and ``FLYWHEEL_TASK`` (the task file
that ``simulate`` reads rows of).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pipeline.feedback.records import FeedbackError, FeedbackFileError, SchemaError
from pipeline.home import DEFAULT_HOME, FlywheelHome
from pipeline.model.registry import ModelRegistry, ModelVersionError
from pipeline.serving.body import DEFAULT_MAX_STRING_BYTES

SWITCH_INTERVAL_S = 0.001  # `flywheel serve`'s GIL switch interval (see cmd_serve)
DESCRIPTION = """\
Flywheel's own commands, for what is not Dagster's: the model versions and the champion, the
serving app, the feedback store, and simulated traffic. Assets, jobs and backfills are Dagster's:
use `dg dev` (the UI) and `dg launch`."""


def _registry(args: argparse.Namespace) -> ModelRegistry:
    return FlywheelHome.at(args.home).registry()


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
    shadow = registry.shadow_record() or {}
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
        if version == shadow.get("version") and version != champion:
            mark = "c " if shadow["role"] == "candidate" else "p "
        print(f"{mark}{version:<32} {window:<24} {auc:>8}")
    print("\n* champion")
    if shadow.get("role") == "candidate":
        print(f"c candidate, scored in shadow since {shadow['since']}")
    elif shadow:
        print(f"p previous champion, scored in shadow while {shadow['champion']} is on probation")
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
    on_probation = (registry.shadow_record() or {}).get("role") == "probation"
    record = registry.rollback(args.version)
    print(f"champion is now {record['version']} (was {record['previous']})")
    if on_probation:
        print("the probation of the champion rolled back from has ended")
    return 0


def _feedback_store(args: argparse.Namespace):
    from pipeline.feedback.store import FeedbackStore

    return FeedbackStore(args.feedback_url or FlywheelHome.at(args.home).feedback_url)


def cmd_serve(args: argparse.Namespace) -> int:
    import torch
    from threadpoolctl import threadpool_limits

    from pipeline.serving.app import create_app, run
    from pipeline.serving.guards import default_allowed_hosts

    registry = _registry(args)
    registry.champion_record()  # a broken champion.json stops here, in one line (main)
    # Small models answer fastest on one thread: PyTorch's and NumPy's BLAS alike (on a busy
    # machine BLAS threads made a 1,000-row product ten times slower).
    torch.set_num_threads(args.torch_threads)
    threadpool_limits(args.torch_threads, user_api="blas")
    # The event loop, the scorer thread and the parsing of large bodies share the GIL; a thread
    # that wants it waits up to this long for one that computes (Python's default is 5 ms,
    # half the latency a single record may take while 1,000-record batches are scored).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    store = _feedback_store(args)
    store.upgrade()
    token = os.environ.get("FLYWHEEL_API_TOKEN") or None
    if args.allowed_hosts:
        hosts = [h.strip() for h in args.allowed_hosts.split(",") if h.strip()]
    else:
        hosts = default_allowed_hosts(args.host)
    app = create_app(
        registry,
        store,
        api_token=token,
        poll_seconds=args.poll_seconds,
        max_string_bytes=args.max_string_bytes,
        allowed_hosts=hosts,
        micro_batch=args.micro_batch,
        engine=args.engine,
        freeze_gc=args.gc_freeze,
        batch_processes=args.batch_processes,
    )
    print(f"serving {registry.root} on http://{args.host}:{args.port} ({store!r})")
    run(app, host=args.host, port=args.port)
    return 0


def cmd_feedback_upgrade(args: argparse.Namespace) -> int:
    store = _feedback_store(args)
    print(f"{store!r}: schema version {store.upgrade()}")
    return 0


def cmd_feedback_import(args: argparse.Namespace) -> int:
    import pandas as pd

    from pipeline.feedback.records import feedback_rows, read_feedback_file, rejected_file

    path = Path(args.file)
    rows = feedback_rows(read_feedback_file(path))
    store = _feedback_store(args)
    store.upgrade()
    accepted, duplicates, rejected = store.import_feedback(rows)
    print(f"accepted {accepted}, already stored {duplicates}, rejected {len(rejected)}")
    if rejected:
        out = rejected_file(path)
        with out.open("x", newline="", encoding="utf-8") as fh:  # "x": never over another file
            pd.DataFrame(rejected).to_csv(fh, index=False)
        print(f"rejected rows and their reasons: {out}")
    return 0 if not rejected else 2


def cmd_simulate(args: argparse.Namespace) -> int:
    from pipeline.feedback.simulate import recent_rows, simulate
    from pipeline.task import load_task

    spec = load_task(args.task or None)
    rows = recent_rows(spec, FlywheelHome.at(args.home), days=args.days)
    token = os.environ.get("FLYWHEEL_API_TOKEN") or None
    result = simulate(args.url, rows, spec, args.predictions, token=token, seed=args.seed)
    print(json.dumps(result, indent=2))
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flywheel", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--home",
        default=os.environ.get("FLYWHEEL_HOME") or DEFAULT_HOME,
        help=f"Flywheel's folder (default: $FLYWHEEL_HOME, else {DEFAULT_HOME})",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    models = sub.add_parser("models", help="model versions and the champion")
    msub = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    msub.add_parser("list", help="every version, the champion marked").set_defaults(fn=cmd_list)
    show = msub.add_parser("show", help="one version's training, metrics and files")
    show.add_argument("version", help="the version's name, as `flywheel models list` shows it")
    show.set_defaults(fn=cmd_show)
    rollback = msub.add_parser("rollback", help="make an earlier version the champion")
    rollback.add_argument("version", nargs="?", help="default: the champion before this one")
    rollback.set_defaults(fn=cmd_rollback)

    store_url = {
        "default": os.environ.get("FLYWHEEL_FEEDBACK_URL") or "",
        "help": "SQLAlchemy URL of the feedback store (default: $FLYWHEEL_FEEDBACK_URL, else"
        " SQLite under --home)",
    }
    serve = sub.add_parser("serve", help="the serving app: /predict, /feedback, /health, /model")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default: 8000)")
    serve.add_argument("--feedback-url", **store_url)
    serve.add_argument(
        "--poll-seconds", type=float, default=0.5,
        help="how often champion.json is checked for a new champion (default: 0.5)",
    )  # fmt: skip
    serve.add_argument(
        "--torch-threads", type=int, default=1,
        help="PyTorch intra-op and NumPy BLAS threads (default: 1)",
    )  # fmt: skip
    serve.add_argument(
        "--engine", choices=("numpy", "torch"), default="numpy",
        help="what computes the network's forward pass: its NumPy export (default; same scores"
        " to 1e-6, far less overhead per request) or PyTorch",
    )  # fmt: skip
    serve.add_argument(
        "--max-string-bytes", type=_positive_int,
        default=os.environ.get("FLYWHEEL_MAX_STRING_BYTES") or DEFAULT_MAX_STRING_BYTES,
        help="the longest string a request may hold, in UTF-8 bytes; longer is a 422"
        f" (default: $FLYWHEEL_MAX_STRING_BYTES, else {DEFAULT_MAX_STRING_BYTES})",
    )  # fmt: skip
    serve.add_argument(
        "--allowed-hosts",
        default=os.environ.get("FLYWHEEL_ALLOWED_HOSTS") or "",
        help="comma-separated Host names to answer (* any, *.example.com any under it); others"
        " are a 400 (default: $FLYWHEEL_ALLOWED_HOSTS, else 127.0.0.1,localhost,::1 when bound"
        " to loopback and any host otherwise)",
    )
    serve.add_argument(
        "--micro-batch", action=argparse.BooleanOptionalAction, default=True,
        help="score and log concurrent requests together in one thread (default); with"
        " --no-micro-batch each request has its own forward pass and commit",
    )  # fmt: skip
    serve.add_argument(
        "--gc-freeze", action=argparse.BooleanOptionalAction, default=True,
        help="once started, exempt every object from the garbage collector's full collections"
        " (gc.freeze; default): they paused every request for 100-900 ms under load",
    )  # fmt: skip
    serve.add_argument(
        "--batch-processes", type=int, default=1, metavar="N",
        help="worker processes that answer /predict bodies over 32 kB, started on the first"
        " one, so that single records do not wait behind batches (default: 1; 0: every"
        " request in the server's own process)",
    )  # fmt: skip
    serve.set_defaults(fn=cmd_serve)
    feedback = sub.add_parser("feedback", help="the feedback store")
    fsub = feedback.add_subparsers(dest="action", required=True, metavar="ACTION")
    imp = fsub.add_parser("import", help="store a CSV or Parquet file of feedback")
    imp.add_argument("file", help="columns prediction_id, label (0 or 1) and optionally source")
    imp.add_argument("--feedback-url", **store_url)
    imp.set_defaults(fn=cmd_feedback_import)
    upg = fsub.add_parser("upgrade", help="create or upgrade the store's tables")
    upg.add_argument("--feedback-url", **store_url)
    upg.set_defaults(fn=cmd_feedback_upgrade)
    sim = sub.add_parser("simulate", help="send real rows to /predict, answer with the truth")
    sim.add_argument("--predictions", type=int, default=200, help="how many (default: 200)")
    sim.add_argument(
        "--url", default="http://127.0.0.1:8000", help="the serving app (default: %(default)s)"
    )
    sim.add_argument("--days", type=int, default=3, help="newest raw_data days to draw from")
    sim.add_argument("--seed", type=int, default=0, help="seed of the row sample (default: 0)")
    sim.add_argument(
        "--task",
        default=os.environ.get("FLYWHEEL_TASK") or "",
        help="task file (default: $FLYWHEEL_TASK, else the built-in flights task)",
    )
    sim.set_defaults(fn=cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ModelVersionError, FeedbackError, FeedbackFileError, SchemaError) as err:
        print(f"flywheel: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
