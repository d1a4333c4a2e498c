"""Training's hyperparameters (the dataclass only)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.model.params import TrainingError, TrainParams


def test_defaults():
    params = TrainParams()
    assert params.to_dict() == {
        "epochs": 30,
        "batch_size": 2048,
        "learning_rate": 3e-3,
        "weight_decay": 1e-4,
        "hidden_sizes": [64, 32],
        "dropout": 0.1,
        "members": 3,
        "patience": 4,
        "val_fraction": 0.15,
        "refit": True,
        "window_days": 60,
        "holdout_days": 7,
        "seed": 0,
        "accelerator": "cpu",
        "devices": 1,
        "strategy": "auto",
        "num_nodes": 1,
    }
    assert params.world_size == 1
    assert TrainParams(devices=2, num_nodes=3).world_size == 6


def test_to_dict_round_trips_through_json():
    params = TrainParams(epochs=1, hidden_sizes=[8], members=1, learning_rate=0.5, seed=7)
    data = json.loads(json.dumps(params.to_dict()))
    assert TrainParams(**data) == params
    assert data["hidden_sizes"] == [8] and data["seed"] == 7


def test_hidden_sizes_are_not_shared_between_instances():
    first, second = TrainParams(), TrainParams()
    first.hidden_sizes.append(16)
    assert second.hidden_sizes == [64, 32]
    params = TrainParams(hidden_sizes=[4])
    params.to_dict()["hidden_sizes"].append(2)  # a copy
    assert params.hidden_sizes == [4]


def test_unknown_keys_are_refused():
    with pytest.raises(TypeError):
        TrainParams(**{**TrainParams().to_dict(), "epoch": 3})


def test_training_error_is_a_runtime_error():
    assert issubclass(TrainingError, RuntimeError)


def test_importable_without_torch():
    code = "import sys, pipeline.model.params; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
