from dataclasses import fields

import pytest

from assets.deployment import DeployConfig, ShadowConfig, build_deployed_model
from assets.training import TrainingConfig
from pipeline.model.params import TrainParams
from pipeline.shadow import ShadowPolicy

RUN_ONLY = {
    "end_date",
    "feedback_weight",
    "min_train_days",
    "as_of",
}  # about the run, not the model


def test_training_config_mirrors_train_params():
    assert set(TrainingConfig.model_fields) - RUN_ONLY == {f.name for f in fields(TrainParams)}
    assert TrainingConfig().params() == TrainParams()
    assert TrainingConfig(members=1, hidden_sizes=[8]).params().members == 1


def test_every_config_field_is_described_for_the_launchpad():
    for config in (TrainingConfig, DeployConfig, ShadowConfig):
        for name, field in config.model_fields.items():
            assert field.description, f"{config.__name__}.{name}"


def test_shadow_config_mirrors_the_shadow_policy_and_promotion_is_checked():
    gate, shadow = ShadowConfig().policies()
    assert shadow == ShadowPolicy() and gate.resamples == 1000
    assert {f.name for f in fields(ShadowPolicy)} <= set(ShadowConfig.model_fields)
    with pytest.raises(ValueError, match="canary"):
        build_deployed_model("canary")
