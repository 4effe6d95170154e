r"""``LearningRateWarmup``: a linear ramp of the learning rate over the first optimizer steps.

For global step :math:`s < S` (``steps``) every parameter group trains at

.. math::  \eta_s = \eta \cdot \big(f_0 + (1 - f_0)\, s / S\big),

where :math:`\eta` is the rate the configured scheduler gives the group (its epoch schedule is
untouched, since the schedules of :mod:`hm2bp.schedules` compute their rates from the base rate)
and :math:`f_0` is ``start_factor``. From step :math:`S` on the scheduler's rate applies unchanged.
The rates the ramp scales are those of its first step, kept in the callback's state, so a run
resumed in the middle of the ramp continues it exactly; the ramp is meant to end within the first
epoch (a scheduler that changes the rate at an epoch boundary inside the ramp is overridden until
the ramp ends). ``train/lr`` and the ``lr`` column of ``EpochCurve`` give the rate of an epoch's
first step, so they show the ramp's first rate for the first epoch.
"""
from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from hm2bp.checks import number


class LearningRateWarmup(Callback):
    """Ramp every group's learning rate linearly from ``start_factor`` times its rate to its rate
    over the first ``steps`` optimizer steps (module docstring).

    In a config: ``trainer.callbacks: [{class_path: hm2bp.callbacks.LearningRateWarmup, init_args:
    {steps: 200}}]``.
    """

    def __init__(self, steps: int = 100, start_factor: float = 0.1) -> None:
        number("LearningRateWarmup.steps", steps, low=1, integer=True)
        number("LearningRateWarmup.start_factor", start_factor, low=0, high=1)
        self.steps = int(steps)
        self.start_factor = float(start_factor)
        self.rates: list[list[float]] | None = None  # per optimizer, per group: the rate the ramp scales

    def factor(self, step: int) -> float:
        """The ramp's factor at global step ``step`` (1 from ``steps`` on)."""
        if step >= self.steps:
            return 1.0
        return self.start_factor + (1.0 - self.start_factor) * step / self.steps

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx) -> None:
        step = int(trainer.global_step)
        if step > self.steps:
            return
        if self.rates is None:
            self.rates = [[float(g["lr"]) for g in opt.param_groups] for opt in trainer.optimizers]
        f = self.factor(step)
        for opt, rates in zip(trainer.optimizers, self.rates):
            for group, rate in zip(opt.param_groups, rates):
                group["lr"] = rate * f

    def state_dict(self) -> dict:
        return {"rates": self.rates}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rates = state_dict.get("rates")
