"""``LearningRateWarmup``: the linear ramp over the first steps of a real fit, then the
scheduler's rates unchanged; its state round trip; bad arguments."""
from __future__ import annotations

import pytest
import pytorch_lightning as pl

from hm2bp.callbacks import LearningRateWarmup
from hm2bp.errors import ConfigError
from hm2bp.schedules import InvSqrtEpoch
from tests.helpers.digits import digits_data, digits_model, tiny_trainer


class RateSpy(pl.Callback):
    """The learning rate each optimizer step used (read after all batch-start hooks ran)."""

    def __init__(self) -> None:
        self.rates: list[tuple[int, float]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.rates.append((trainer.current_epoch, optimizer.param_groups[0]["lr"]))


def test_ramp_then_the_schedulers_rates(tmp_path):
    model = digits_model()
    model.lr_scheduler_factory = InvSqrtEpoch
    spy = RateSpy()
    warm = LearningRateWarmup(steps=4, start_factor=0.2)
    trainer = tiny_trainer(tmp_path, [warm, spy], max_epochs=2, limit_train_batches=6, limit_val_batches=0)
    trainer.fit(model, datamodule=digits_data(batch_size=16))
    lr = 5e-3  # the model's default Adam rate
    expected = [lr * (0.2 + 0.8 * s / 4) for s in range(4)] + [lr] * 2 + [lr / 2 ** 0.5] * 6
    assert [e for e, _ in spy.rates] == [0] * 6 + [1] * 6
    assert [r for _, r in spy.rates] == pytest.approx(expected, rel=1e-12)


def test_state_round_trip_and_checks():
    warm = LearningRateWarmup(steps=10)
    warm.rates = [[0.003, 0.001]]
    again = LearningRateWarmup(steps=10)
    again.load_state_dict(warm.state_dict())
    assert again.rates == [[0.003, 0.001]]
    assert warm.factor(0) == pytest.approx(0.1) and warm.factor(5) == pytest.approx(0.55) and warm.factor(10) == 1.0
    with pytest.raises(ConfigError, match="steps"):
        LearningRateWarmup(steps=0)
    with pytest.raises(ConfigError, match="start_factor"):
        LearningRateWarmup(start_factor=1.5)
