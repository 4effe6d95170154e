"""Helpers of the callback tests: the digits model ("boring SNN"), a count spy and a recording logger."""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import Logger

from hm2bp import SpikeCountLoss, SpikingClassifier, SpikingNetwork
from hm2bp.datamodules import DigitsDataModule

T_DIGITS = 100


def digits_model(thresholds=(10.0, 8.0), seed: int = 0) -> SpikingClassifier:
    pl.seed_everything(seed, verbose=False)
    net = SpikingNetwork(
        "64-100-10", thresholds=list(thresholds), output_lateral_inhibition=1.0, target_injection=17.5
    )
    return SpikingClassifier(net, SpikeCountLoss(17.5, 2.5, 2.5))  # Adam at lr 5e-3 (the default)


def digits_data(batch_size: int = 16, **kwargs) -> DigitsDataModule:
    return DigitsDataModule(time_steps=T_DIGITS, batch_size=batch_size, **kwargs)


def tiny_trainer(tmp_path, callbacks, logger=False, **kwargs) -> pl.Trainer:
    opts = dict(
        accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=4, limit_val_batches=2,
        log_every_n_steps=2, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=str(tmp_path),
    )
    opts.update(kwargs)
    return pl.Trainer(logger=logger, callbacks=callbacks, **opts)


class CountSpy(Callback):
    """Keeps copies of every step's ``counts`` (small nets only), excluding the sanity check."""

    def __init__(self) -> None:
        self.train: list[tuple[dict, torch.Tensor, int]] = []
        self.val: list[tuple[dict, torch.Tensor, int]] = []

    @staticmethod
    def _copy(outputs):
        return ({k: v.detach().cpu().clone() for k, v in outputs["counts"].items()},
                outputs["target"].detach().cpu().clone(), int(outputs["time_steps"]))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train.append(self._copy(outputs))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self.val.append(self._copy(outputs))


class RecordingLogger(Logger):
    """A Lightning logger that keeps every ``log_metrics`` call in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int | None, dict]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


def expected_stats(batches, layer: str, refractory: int = 2, tol: float = 0.1) -> dict[str, float]:
    """Independent recomputation of the logged statistics from recorded counts."""
    c = torch.cat([b[0][layer].reshape(b[0][layer].shape[0], -1) for b in batches]).double()  # [S, N]
    T = torch.cat([torch.full((b[0][layer].shape[0], 1), float(b[2])) for b in batches]).double()  # [S, 1]
    S, N = c.shape
    return {
        "rate": (c.sum() / (N * T.sum())).item(),
        "count": (c.sum() / (S * N)).item(),
        "silent_frac": (c == 0).double().mean().item(),
        "dead_frac": (c.sum(0) == 0).double().mean().item(),
        "saturated_frac": (c >= torch.ceil(0.9 * T / (refractory + 1) - 1e-9)).double().mean().item(),
        "neuron_rates": (c.sum(0) / T.sum()),
    }


def expected_target(batches, desired: float = 17.5) -> dict[str, float]:
    o = torch.cat([b[0]["output"] for b in batches]).double()
    y = torch.cat([b[1] for b in batches])
    o_t = o[torch.arange(len(y)), y]
    return {
        "target_count": o_t.mean().item(),
        "target_error": (o_t - desired).abs().mean().item(),
        "target_silent_frac": (o_t == 0).double().mean().item(),
    }


@pytest.fixture
def spy() -> CountSpy:
    return CountSpy()
