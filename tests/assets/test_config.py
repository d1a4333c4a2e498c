from dataclasses import fields

from assets.deployment import DeployConfig
from assets.training import TrainingConfig
from pipeline.model.params import TrainParams

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
    for config in (TrainingConfig, DeployConfig):
        for name, field in config.model_fields.items():
            assert field.description, f"{config.__name__}.{name}"
