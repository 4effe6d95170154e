"""The score line of ``hm2bp test``, ``validate`` and ``fit --test_after_fit``, with the number of samples
scored::

    TEST ACCURACY: 95.56 % on 360 samples (checkpoint: runs/digits/<run>/checkpoints/epoch=12-....ckpt,
    all-silent outputs 0.28 %)

:class:`SampleCount` counts the samples of each evaluation epoch, summed over the DDP processes
(a distributed sampler pads the split to a multiple of the world size: the repeated samples are
scored, and counted, too); the sanity check's batches are not counted.
"""
from __future__ import annotations

import torch
from pytorch_lightning.callbacks import Callback

WORDS = {"test": "TEST", "val": "VALIDATION"}


def _batch_size(batch) -> int:
    """Samples in a ``(spikes [T, B, ...], labels[, index])`` batch (or a bare ``[T, B, ...]`` tensor)."""
    items = list(batch) if isinstance(batch, (tuple, list)) else [batch]
    if len(items) > 1 and torch.is_tensor(items[1]) and items[1].dim() >= 1:
        return int(items[1].shape[0])
    return int(items[0].shape[1])


class SampleCount(Callback):
    """How many samples the last ``val`` and ``test`` epochs scored (:attr:`counts`, all processes)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._running: dict[str, int] = {}

    def _start(self, trainer, stage: str) -> None:
        if not trainer.sanity_checking:
            self._running[stage] = 0

    def _add(self, trainer, stage: str, batch) -> None:
        if not trainer.sanity_checking and stage in self._running:
            self._running[stage] += _batch_size(batch)

    def _end(self, trainer, pl_module, stage: str) -> None:
        if trainer.sanity_checking or stage not in self._running:
            return
        local = torch.tensor(self._running.pop(stage), device=pl_module.device)
        self.counts[stage] = int(trainer.strategy.reduce(local, reduce_op="sum"))  # every process calls it

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer, "val")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._add(trainer, "val", batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._end(trainer, pl_module, "val")

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer, "test")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._add(trainer, "test", batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._end(trainer, pl_module, "test")


def score_line(stage: str, metrics: dict, samples: int | None, checkpoint: str) -> str | None:
    """``<STAGE> ACCURACY: <acc> % on <n> samples (checkpoint: ..., all-silent outputs ...)`` from the
    logged ``<stage>/acc`` (and ``<stage>/silent_output``); ``None`` when nothing was scored."""
    acc = metrics.get(f"{stage}/acc")
    if acc is None:
        return None
    silent = metrics.get(f"{stage}/silent_output")
    extra = f", all-silent outputs {100.0 * float(silent):.2f} %" if silent is not None else ""
    count = f" on {samples} samples" if samples is not None else ""
    return f"{WORDS[stage]} ACCURACY: {100.0 * float(acc):.2f} %{count} (checkpoint: {checkpoint}{extra})"
