"""The files of a run that do not depend on its logger: ``metrics.csv`` and the folder callbacks write into.

:class:`MetricsCSVLogger` is a Lightning logger that appends every scalar the trainer logs to
``<folder>/metrics.csv``. The hm2bp CLI adds one, writing into the run folder, beside whatever
``trainer.logger`` is (W&B, a ``CSVLogger``, several, or ``false``), so every run folder holds its
metrics as CSV. :func:`run_folder` is where the callbacks put their files (``curves.csv``,
``plots/*.png``): the folder of that logger, else the trainer's log folder.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities import rank_zero_only

from hm2bp.atomic import atomic_write

__all__ = ["MetricsCSVLogger", "log_folder", "run_folder"]

LEADING = ("epoch", "step")  # first columns of metrics.csv; the logged keys follow in sorted order


class MetricsCSVLogger(CSVLogger):
    """Every logged scalar, one row per logging call, in ``<folder>/metrics.csv`` (global rank zero only).

    Columns: ``epoch`` (empty for rows Lightning logs without one, such as per-step evaluation
    values), ``step`` (the trainer's logging step), then every key ever logged, sorted (``train/…``,
    ``val/…``, ``test/…``, ``spikes/<layer>/…``, ``curve/…``); a cell is empty where that call did not
    log the key. Rows are written at every logging call. A key seen for the first time widens the
    header: the file is rewritten once, atomically. An existing file (a resumed run) is continued,
    never replaced. Hyper-parameters are not written (the run's ``config.yaml`` holds them).

    It is a :class:`~pytorch_lightning.loggers.CSVLogger` with ``log_dir = folder`` (``save_dir`` is
    the folder's parent, ``name`` empty, ``version`` the folder's name), so that, as the only or first
    logger, ``trainer.log_dir`` is ``folder`` and a ``ModelCheckpoint`` without ``dirpath`` writes into
    ``folder/checkpoints``; a W&B run with the folder's name as id shares its version.

    Args:
        folder: the run folder.
        filename: name of the CSV file in ``folder``.
    """

    def __init__(self, folder: str | os.PathLike, filename: str = "metrics.csv") -> None:
        folder = Path(folder).absolute()
        super().__init__(save_dir=folder.parent, name="", version=folder.name)
        self.filename = filename

    @property
    def path(self) -> Path:
        return Path(self.log_dir) / self.filename

    @property
    @rank_zero_experiment
    def experiment(self) -> _AppendingWriter:
        if self._experiment is None:
            self._experiment = _AppendingWriter(self.path)
        return self._experiment

    @rank_zero_only
    def log_hyperparams(self, params: Any = None, *args: Any, **kwargs: Any) -> None:
        """Nothing: the run's configuration is in ``config.yaml``."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.experiment.add(metrics, step)

    @rank_zero_only
    def save(self) -> None:
        if self._experiment is not None:
            self._experiment.flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


class _AppendingWriter:
    """Rows buffered by :meth:`add`, appended to ``path`` by :meth:`flush` (the header widened when needed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.fields: list[str] = _header(path)

    def add(self, metrics: dict[str, Any], step: int | None) -> None:
        row = {k: _scalar(v) for k, v in metrics.items()}
        row["step"] = step if step is not None else row.get("step", "")
        self.rows.append(row)

    def flush(self) -> None:
        if not self.rows:
            return
        keys = {k for row in self.rows for k in row}
        fields = [*LEADING, *sorted((keys | set(self.fields)) - set(LEADING))]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file() and fields != self.fields:  # a new key: rewrite the file under the wider header
            with open(self.path, newline="") as f:
                old = list(csv.DictReader(f))
            with atomic_write(self.path) as tmp, open(tmp, "w", newline="") as f:
                _write(f, fields, [*old, *self.rows], header=True)
        else:
            new = not self.path.is_file()
            with open(self.path, "a", newline="") as f:
                _write(f, fields, self.rows, header=new)
        self.fields = fields
        self.rows = []


def _write(f, fields: list[str], rows: list[dict], header: bool) -> None:
    writer = csv.DictWriter(f, fieldnames=fields, restval="")
    if header:
        writer.writeheader()
    writer.writerows(rows)


def _header(path: Path) -> list[str]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def log_folder(trainer: pl.Trainer) -> Path:
    """The run's log folder (``trainer.log_dir``, else ``default_root_dir``). A collective under DDP
    (``trainer.log_dir`` broadcasts rank 0's folder): call it on every rank, never from a
    rank-0-only branch, or rank 0 waits forever for the others."""
    return Path(trainer.log_dir or trainer.default_root_dir)


def run_folder(trainer: pl.Trainer) -> Path:
    """Where a run's files go: the folder of the trainer's :class:`MetricsCSVLogger` (the hm2bp CLI
    adds one writing into the run folder, on every process), else :func:`log_folder` (a collective
    under DDP). Call it on every rank."""
    for lg in getattr(trainer, "loggers", None) or ():
        if isinstance(lg, MetricsCSVLogger):
            return Path(lg.log_dir)
    return log_folder(trainer)
