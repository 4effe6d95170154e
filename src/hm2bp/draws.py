r"""Test-time averaging over input spike draws (``docs/results.md``, "Test-time averaging").

A rate-coded image is one Bernoulli draw of its rates; the network's output counts are a noisy
read-out of it. Summing the output counts of :math:`k` independent draws of the same image,

.. math::  \hat y = \arg\max_c \sum_{d=0}^{k-1} o_c\big(S^{(d)}\big),

averages that noise at :math:`k\times` the inference cost. Draw 0 is the split's usual fixed train, so
:math:`k = 1` is the plain validation or test accuracy. Ties and all-silent outputs predict the lowest
class, as :class:`~hm2bp.SpikingClassifier` does. Only datamodules whose trains are drawn from rates
(``RateCodedImageDataModule``: MNIST, EMNIST, digits) can redraw; recorded spike data (N-MNIST,
TI46, FSDD) have one train per sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hm2bp.errors import ConfigError

SPLITS = ("test", "val")


@dataclass(frozen=True)
class DrawAccuracy:
    """Accuracies of one split over ``draws`` input draws.

    ``averaged[k - 1]``: the accuracy of the output counts summed over draws ``0 .. k-1``;
    ``single[d]``: the accuracy of draw ``d`` alone; ``samples``: how many were scored."""

    split: str
    draws: int
    samples: int
    averaged: tuple[float, ...]
    single: tuple[float, ...]

    def rows(self) -> list[dict]:
        """One dict per ``k``: ``{"draws": k, "averaged": ..., "single": accuracy of draw k-1}``."""
        return [{"draws": k + 1, "averaged": self.averaged[k], "single": self.single[k]} for k in range(self.draws)]


def average_draws(model, datamodule, draws: int, split: str = "test", *, limit_batches: int | None = None) -> DrawAccuracy:
    """Score ``model`` (a :class:`~hm2bp.SpikingClassifier`, or any module mapping spikes
    ``[T, B, *in]`` to counts ``[B, C]``) on ``split`` of ``datamodule`` with the counts of
    ``1 .. draws`` input draws summed; see the module docstring. ``limit_batches`` scores only
    the first batches of the split (in its fixed evaluation order). Runs on the model's device."""
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ConfigError(f"draws must be an integer >= 1, got {draws!r}")
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    if not callable(getattr(datamodule, "encode_draw", None)):
        raise ConfigError(f"{type(datamodule).__name__} has one recorded spike train per sample and cannot redraw "
                          "it; test-time averaging over draws needs a rate-coded image datamodule (MNIST, EMNIST, digits)")
    datamodule.setup("test" if split == "test" else "validate")
    loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
    if not loader:
        raise ConfigError(f"the {split} split is empty (data.init_args.val_size: 0?); score another split")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    averaged = torch.zeros(draws, dtype=torch.long)
    single = torch.zeros(draws, dtype=torch.long)
    samples = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i, (images, labels, index) in enumerate(loader):
                if limit_batches is not None and i >= limit_batches:
                    break
                images, labels = images.to(device), labels.to(device).long()
                total = None
                for d in range(draws):
                    counts = model(datamodule.encode_draw(images, index, split, d))
                    total = counts.clone() if total is None else total.add_(counts)
                    averaged[d] += int((total.argmax(-1) == labels).sum())
                    single[d] += int((counts.argmax(-1) == labels).sum())
                samples += labels.numel()
    finally:
        model.train(was_training)
    if samples == 0:
        raise ConfigError(f"no {split} samples were scored (limit_batches={limit_batches})")
    return DrawAccuracy(split, draws, samples, tuple((averaged / samples).tolist()), tuple((single / samples).tolist()))
