r"""Per-epoch learning-rate schedules of the authors' runs, as ``torch`` schedulers.

docs/algorithm.md, "Training loop of the authors' program": the MNIST MLP and N-MNIST logs keep the
learning rate for two epochs and then divide it by :math:`\sqrt{e}`; the CNN log divides it by
:math:`\sqrt{e + 1}` from the second epoch on (``e``: 0-based epoch). Each class gives the rate of
epoch ``e`` in closed form, :math:`\eta_e = \eta \cdot f(e)`, so a scheduler restored from a
checkpoint (``last_epoch``) continues with exactly the rates of an uninterrupted run.

They are stepped once per epoch (``SpikingClassifier`` registers them with ``interval: "epoch"``)
and are configured like any torch scheduler::

    model:
      lr_scheduler: {class_path: hm2bp.schedules.InvSqrtEpoch}

:data:`SCHEDULES` maps the names the configs used before (``lr_schedule: official`` etc.) to them.
"""
from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["EpochSchedule", "OfficialMLP", "InvSqrtEpoch", "Constant", "SCHEDULES"]


class EpochSchedule(LRScheduler):
    """Base class: the rate of 0-based epoch ``e`` is ``base_lr * factor(e)`` (one step per epoch)."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def factor(epoch: int) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)
        return [base * f for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()


class OfficialMLP(EpochSchedule):
    """The authors' MLP and N-MNIST runs: ``lr`` for epochs 0 and 1, then ``lr / sqrt(e)``.

    Factors 1, 1, 1/√2, 1/√3, … (formerly ``lr_schedule: official``).
    """

    @staticmethod
    def factor(epoch: int) -> float:
        return 1.0 / math.sqrt(max(epoch, 1))


class InvSqrtEpoch(EpochSchedule):
    """The authors' CNN run: ``lr / sqrt(e + 1)``, i.e. factors 1, 1/√2, 1/√3, … (formerly
    ``lr_schedule: inv_sqrt_epoch``)."""

    @staticmethod
    def factor(epoch: int) -> float:
        return 1.0 / math.sqrt(epoch + 1)


class Constant(EpochSchedule):
    """The same ``lr`` every epoch (formerly ``lr_schedule: constant``; ``lr_scheduler: null`` is the same)."""

    @staticmethod
    def factor(epoch: int) -> float:
        return 1.0


SCHEDULES = {"official": OfficialMLP, "inv_sqrt_epoch": InvSqrtEpoch, "constant": Constant}
