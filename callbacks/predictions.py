"""``PredictionWriter``: ``hm2bp predict`` results as one CSV file.

One row per sample, sorted by sample index::

    index,label,pred,count_0,count_1,...,count_<C-1>

``index`` is the sample's index in its dataset (the datamodule's test split; for the digits
and MNIST-style sets the index among all images of the file, for spike-list sets the position in
the split), ``label`` its label (-1 when the datamodule has none), ``pred`` the predicted
class (argmax of the output spike counts; ties and all-silent outputs go to the lowest index)
and ``count_k`` the output neuron's spike count. ``SpikingClassifier.predict_step`` returns
``{"index", "label", "pred", "counts"}``. Under DDP every rank writes ``<file>.rank<r>`` and
global rank zero merges them after a barrier (a shared folder is assumed, as for checkpoints).
The file is written atomically.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


class PredictionWriter(Callback):
    """Collect ``predict_step`` outputs and write them to ``path`` (module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._rows: list[torch.Tensor] = []  # [B, 3 + C] int64 per batch: index, label, pred, counts

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.path = Path(trainer.strategy.broadcast(str(self.path)))  # every rank writes where rank 0 does

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._rows = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not isinstance(outputs, dict) or not {"index", "label", "pred", "counts"} <= set(outputs):
            raise TypeError("PredictionWriter needs predict_step to return {'index', 'label', 'pred', 'counts'}")
        counts = outputs["counts"].detach().round().to(torch.int64).cpu()
        cols = [outputs[k].detach().to(torch.int64).cpu().view(-1, 1) for k in ("index", "label", "pred")]
        self._rows.append(torch.cat([*cols, counts], dim=1))

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rows = torch.cat(self._rows) if self._rows else torch.zeros(0, 3, dtype=torch.int64)
        if trainer.world_size == 1:
            self._write(self.path, rows)
            return
        part = self.path.with_name(f"{self.path.name}.rank{trainer.global_rank}")
        self._write(part, rows)
        trainer.strategy.barrier("hm2bp-predictions")
        if trainer.is_global_zero:
            parts = [self.path.with_name(f"{self.path.name}.rank{r}") for r in range(trainer.world_size)]
            merged = torch.cat([t for t in (_read(p) for p in parts) if len(t)] or [rows[:0]])
            self._write(self.path, merged)
            for p in parts:
                p.unlink()

    @staticmethod
    def _write(path: Path, rows: torch.Tensor) -> None:
        rows = rows[torch.argsort(rows[:, 0], stable=True)] if len(rows) else rows
        n_counts = rows.shape[1] - 3
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["index", "label", "pred", *(f"count_{k}" for k in range(n_counts))])
            writer.writerows(rows.tolist())
        os.replace(tmp, path)


def _read(path: Path) -> torch.Tensor:
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    return torch.tensor([[int(v) for v in r] for r in rows], dtype=torch.int64).view(len(rows), len(header))
