"""Callbacks and a logger that record what a fit produced, and the statistics expected from the
recorded counts (recomputed independently of the callbacks under test)."""
from __future__ import annotations

import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import Logger


class FitRecorder(Callback):
    """Network weights at the start and end of ``fit`` and every layer's spike total over the
    training batches: did the smoke fit train anything?"""

    def __init__(self) -> None:
        self.before: dict[str, torch.Tensor] = {}
        self.after: dict[str, torch.Tensor] = {}
        self.spikes: dict[str, float] = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        self.before = {k: v.detach().clone() for k, v in pl_module.network.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for name, counts in outputs["counts"].items():
            self.spikes[name] = self.spikes.get(name, 0.0) + float(counts.sum())

    def on_fit_end(self, trainer, pl_module) -> None:
        self.after = {k: v.detach().clone() for k, v in pl_module.network.named_parameters()}


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
