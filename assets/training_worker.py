"""One process of the ``torchrun`` training job that ``trained_model`` starts through Dagster
Pipes (:mod:`pipeline.model.ddp`): every rank trains; rank 0 saves the version and reports to
the run through ``dagster_pipes`` (per-epoch logs, then the materialization's metadata), or,
outside Dagster, logs to stderr and writes the request's ``result_file``.

    python -m torch.distributed.run --standalone --nproc_per_node N -m assets.training_worker REQ

Only ``dagster_pipes`` is imported here, not Dagster itself: each of the job's processes starts
with torch and Lightning alone.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline.model.ddp import TrainRequest, epoch_logger, finish, run_request

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """One process of the torchrun job (every rank runs this)."""
    parser = argparse.ArgumentParser(prog="python -m assets.training_worker")
    parser.add_argument("request", type=Path, help="the TrainRequest JSON file")
    request = TrainRequest.read(parser.parse_args(argv).request)
    # Lightning reads the rank torchrun gave this process (RANK) when it is imported.
    from pytorch_lightning.utilities import rank_zero_only

    if rank_zero_only.rank != 0:
        run_request(request)
        return 0
    from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

    if not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        finish(request, run_request(request, epoch_logger(log)), log)
        return 0
    with open_dagster_pipes() as pipes:
        metadata = finish(request, run_request(request, epoch_logger(pipes.log)), pipes.log)
        pipes.report_asset_materialization(metadata=metadata)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
