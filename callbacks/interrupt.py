"""``CheckpointOnInterrupt``: Ctrl-C during ``fit`` saves a resumable ``last.ckpt`` before the run exits.

The first SIGINT only sets a flag. At the end of the running training step (``on_train_batch_end``,
or ``on_train_epoch_end`` when the signal came during the epoch's validation) the callback saves
``<dirpath>/last.ckpt`` exactly as ``ModelCheckpoint(every_n_train_steps=...)`` does at that
point, prints where, and stops the run with ``KeyboardInterrupt`` (Lightning then exits with
status 1). So ``--ckpt_path last`` continues from the step after the last finished one, as after a
checkpoint written by ``ModelCheckpoint``. Under DDP the ranks agree on the step (one boolean
all-reduce per training step, only when the world size is above 1). A second Ctrl-C interrupts at
once (Lightning's default handling; nothing is saved then). Outside the main thread, or once
``fit`` ends (``test_after_fit``, ``test``), the default SIGINT handling applies.
"""
from __future__ import annotations

import os
import signal
import threading

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info


class CheckpointOnInterrupt(Callback):
    """Save ``last.ckpt`` at the next step boundary after Ctrl-C, then stop (module docstring).

    Args:
        dirpath: folder of the checkpoint; ``None``: the first ``ModelCheckpoint``'s folder, else
            ``<default_root_dir>/checkpoints``.
        filename: checkpoint file name (``last.ckpt``, the file ``--ckpt_path last`` looks for).
    """

    def __init__(self, dirpath: str | None = None, filename: str = "last.ckpt") -> None:
        self.dirpath = dirpath
        self.filename = filename
        self.requested = False
        self.saved_path: str | None = None
        self._previous = None

    # ------------------------------------------------------------------ signal handling
    def _handler(self, signum, frame) -> None:
        if self.requested:  # second Ctrl-C: give up waiting for the step
            self._restore()
            raise KeyboardInterrupt
        self.requested = True
        rank_zero_info("\nInterrupted: finishing the current training step, then saving a checkpoint "
                       "(press Ctrl-C again to stop at once, without one)")

    def _install(self) -> None:
        if self._previous is None and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)

    def _restore(self) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.requested = False
        self._install()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore()

    # ------------------------------------------------------------------ step boundaries
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop_if_requested(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_if_requested(trainer)

    def _stop_if_requested(self, trainer: pl.Trainer) -> None:
        requested = self.requested
        if trainer.world_size > 1:
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        if not requested:
            return
        path = os.path.join(self._folder(trainer), self.filename)
        trainer.save_checkpoint(path)
        self.saved_path = path
        rank_zero_info(f"Saved {path} at global step {trainer.global_step}; continue with --ckpt_path last")
        raise KeyboardInterrupt

    def _folder(self, trainer: pl.Trainer) -> str:
        if self.dirpath is not None:
            return str(self.dirpath)
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and getattr(ckpt, "dirpath", None):
            return str(ckpt.dirpath)
        return os.path.join(trainer.default_root_dir, "checkpoints")
