"""``EpochCurve``: the per-epoch learning curve of a run, as the authors' program printed it.

After every training epoch (validation included) it scores the test split with the current
weights and records one row

    epoch, train_acc, val_acc, test_acc, train_seconds, lr

in ``<run folder>/curves.csv`` (rank 0; whatever the logger) and in the logger as ``curve/test_acc`` and
``curve/train_seconds``. ``epoch`` counts from 1, like ``official-curves.csv``. The test score is
for the curve only: checkpoints are still chosen on validation (``val/acc``).

``train_seconds`` is the wall time of the epoch's training batches alone (forward, HM2-BP backward
and optimizer step), without validation, the test pass or checkpointing, which is what the
authors' ``epoch=... time=...`` line measured.

Under DDP each rank scores its shard of the test set and the counts are summed. The test pass
honours ``trainer.limit_test_batches`` (so short smoke runs stay short). ``scripts/plot_curves.py``
draws ``curves.csv`` over the official curves.
"""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import torch
from pytorch_lightning.callbacks import Callback

from hm2bp.callbacks.run_files import run_folder

FIELDS = ("epoch", "train_acc", "val_acc", "test_acc", "train_seconds", "lr")


class EpochCurve(Callback):
    """Per-epoch train/val/test accuracy and training time of a run.

    Args:
        test_every_n_epochs: score the test split every n epochs (0: never; the column stays empty).
        filename: CSV name inside the run folder (:func:`~hm2bp.callbacks.run_files.run_folder`: the CLI's run
            folder, whatever the logger; else ``trainer.log_dir``, else ``default_root_dir``).
    """

    def __init__(self, test_every_n_epochs: int = 1, filename: str = "curves.csv") -> None:
        if test_every_n_epochs < 0:
            raise ValueError(f"EpochCurve.test_every_n_epochs must be >= 0, got {test_every_n_epochs}")
        self.test_every_n_epochs = test_every_n_epochs
        self.filename = filename
        self._seconds = 0.0
        self._t0 = None

    # ------------------------------------------------------------------ timing of training batches
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._seconds = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._t0 is not None:
            self._seconds += time.perf_counter() - self._t0
            self._t0 = None

    # ------------------------------------------------------------------ one row per epoch
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch + 1
        test_acc = None
        if self.test_every_n_epochs and epoch % self.test_every_n_epochs == 0:
            test_acc = self.test_accuracy(trainer, pl_module)
            pl_module.log("curve/test_acc", test_acc, on_epoch=True, rank_zero_only=True)
        pl_module.log("curve/train_seconds", self._seconds, on_epoch=True, rank_zero_only=True)
        val = trainer.callback_metrics.get("val/acc")
        row = {
            "epoch": epoch,
            "train_acc": _value(_train_acc(pl_module)),
            "val_acc": _value(val),
            "test_acc": test_acc,
            "train_seconds": round(self._seconds, 3),
            "lr": self._epoch_lr(trainer, pl_module),
        }
        path = self.csv_path(trainer)  # on every rank: a collective under DDP without the run's logger
        if trainer.is_global_zero:
            self._append(path, row)

    @staticmethod
    def _epoch_lr(trainer, pl_module) -> float | None:
        """The rate this epoch's optimizer steps used: the module's ``epoch_lr`` (``SpikingClassifier``
        sets it at the epoch's first batch, also after a resume), else the optimizer's current rate
        (schedulers step after this hook)."""
        lr = getattr(pl_module, "epoch_lr", None)
        if lr is None and trainer.optimizers:
            lr = trainer.optimizers[0].param_groups[0]["lr"]
        return lr

    def csv_path(self, trainer) -> Path:
        """``<run folder>/curves.csv`` (:func:`~hm2bp.callbacks.run_files.run_folder`: call it on every rank)."""
        return run_folder(trainer) / self.filename

    @staticmethod
    def _append(path: Path, row: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})

    # ------------------------------------------------------------------ the test pass
    @torch.no_grad()
    def test_accuracy(self, trainer, pl_module) -> float:
        """Accuracy on the (rank-sharded) test split, summed over ranks."""
        dm = trainer.datamodule
        if dm is None:
            raise RuntimeError("EpochCurve needs a datamodule with a test split (trainer.fit(model, datamodule=...))")
        if getattr(dm, "test_set", None) is None:
            dm.setup("test")
        loader = dm.test_dataloader()
        limit = _batch_limit(trainer.limit_test_batches, len(loader))
        was_training = pl_module.training
        pl_module.eval()
        correct = torch.zeros((), dtype=torch.float64, device=pl_module.device)
        total = torch.zeros((), dtype=torch.float64, device=pl_module.device)
        try:
            for i, batch in enumerate(loader):
                if i >= limit:
                    break
                batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
                spikes, labels = dm.to_spikes(batch, "test")[:2]
                preds = pl_module(spikes).argmax(-1)
                correct += (preds == labels).sum()
                total += labels.numel()
        finally:
            pl_module.train(was_training)
        correct = trainer.strategy.reduce(correct, reduce_op="sum")
        total = trainer.strategy.reduce(total, reduce_op="sum")
        return float(correct / total.clamp_min(1))


def _batch_limit(limit, n: int) -> int:
    if isinstance(limit, int):
        return min(limit, n)
    return n if limit >= 1.0 else max(1, math.ceil(limit * n))


def _train_acc(pl_module):
    """The epoch's training accuracy from ``SpikingClassifier``'s per-stage metrics, else ``None``."""
    metrics = getattr(pl_module, "train_metrics", None)
    return metrics["acc"].compute() if metrics is not None else None


def _value(x) -> float | None:
    if x is None:
        return None
    return round(float(x), 6)
