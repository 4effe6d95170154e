"""``FiringRateMonitor``: per-layer spike statistics logged to the Lightning loggers (and W&B).

It reads the spike counts that ``SpikingClassifier.model_step`` already returns
(``outputs["counts"] = {layer: [B, N...] counts over T}``, ``outputs["time_steps"] = T``,
``outputs["target"]``): no extra forward pass, nothing kept beyond integer sums per neuron. The
statistics are ``hm2bp.metrics`` Metrics with sum-reduced integer state, held on the module's
device, so multi-process numbers are exact (every rank computes the same, globally reduced value).
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_only
from torch import nn

from hm2bp.atomic import atomic_write
from hm2bp.callbacks.run_files import run_folder
from hm2bp.errors import ConfigError
from hm2bp.metrics import SpikeStatistics, TargetCountStatistics

__all__ = ["FiringRateMonitor", "SilentNetworkWarning"]

_TRAIN_KEYS = ("rate", "silent_frac", "saturated_frac")
_EPOCH_KEYS = ("rate", "count", "silent_frac", "dead_frac", "saturated_frac")
_TARGET_KEYS = ("target_count", "target_error", "target_silent_frac")


class SilentNetworkWarning(UserWarning):
    """A layer, or the target output neuron, fired no spike during a whole validation epoch."""


class FiringRateMonitor(Callback):
    r"""Log firing rates, silent and saturated fractions of every layer; warn about silent layers.

    Definitions are those of :class:`hm2bp.metrics.SpikeStatistics` (``T_ref`` is read from each
    layer's ``refractory``; a neuron is *saturated* in a sample when its count is at least
    ``(1 - saturation_tol) * T / (T_ref + 1)``). Keys, for each ``<layer>`` of the network
    (``fc1``, ..., ``output``):

    Training, at the trainer's log cadence (``log_every_n_steps``), each value over all samples of
    all ranks seen **since the previous log step**:

    * ``spikes/<layer>/rate``: spikes per neuron per time step;
    * ``spikes/<layer>/silent_frac``: fraction of (sample, neuron) pairs with no spike;
    * ``spikes/<layer>/saturated_frac``: fraction of (sample, neuron) pairs at the maximum rate;
    * ``spikes/output/target_count``, ``spikes/output/target_error``,
      ``spikes/output/target_silent_frac``: mean count of the labelled neuron, mean
      ``|o_target - desired|``, fraction of samples whose labelled neuron is silent (training
      counts include any target injection the network does).

    Validation (``val_``) and test (``test_``), once per epoch over the whole epoch (not during the
    sanity check):

    * ``spikes/<layer>/val_rate``, ``val_count`` (spikes per neuron per sample),
      ``val_silent_frac``, ``val_saturated_frac`` (per-sample definitions as above);
    * ``spikes/<layer>/val_dead_frac``: fraction of neurons that fired no spike on any sample of
      the epoch;
    * ``spikes/output/val_target_count``, ``val_target_error``, ``val_target_silent_frac``;
    * W&B only (loggers that are a ``WandbLogger``, rank zero, validation only):
      ``spikes/<layer>/val_neuron_rates`` (histogram of the per-neuron epoch rates) and
      ``spikes/<layer>/val_rate_hist`` (fixed-bin histogram of per-sample rates ``count/T`` on
      ``[0, 1/(T_ref+1)]``).

    Values go through ``pl_module.log`` (so they also land in ``trainer.callback_metrics`` and in the
    run's ``metrics.csv``).

    With ``save_png`` (the default), after each validation epoch rank zero also draws
    ``<run folder>/plots/rates-epoch<EEE>.png`` (``EEE``: ``trainer.current_epoch``, as in checkpoint
    names): one panel per layer, the histogram of its per-neuron epoch rates (spikes per neuron per
    step, 50 bins on ``[0, 1/(T_ref+1)]``), with the mean rate and the dead and saturated fractions in the title.
    The run folder is :func:`~hm2bp.callbacks.run_files.run_folder` (the CLI's, whatever the logger).

    After each validation epoch it warns once per layer, with a :class:`SilentNetworkWarning`
    naming the layer, the numbers and the fix, when a layer fired no spike at all, and once when
    the labelled output neuron fired no spike on any validation sample.

    Args:
        layers: layer names to monitor (default: every layer in ``outputs["counts"]``).
        saturation_tol: relative tolerance of "saturated" (default 0.1: >= 90% of ``1/(T_ref+1)``).
        bins: bins of ``val_rate_hist``.
        desired: desired target count for ``target_error`` (default: ``pl_module.loss.desired``;
            the target statistics are skipped when neither exists).
        log_train: log the training keys.
        log_histograms: log the W&B histograms.
        warn_silent: emit the silent-layer / silent-target warnings.
        save_png: draw the per-neuron rate histograms of every validation epoch to a PNG file.
    """

    def __init__(
        self,
        layers: list[str] | None = None,
        saturation_tol: float = 0.1,
        bins: int = 20,
        desired: float | None = None,
        log_train: bool = True,
        log_histograms: bool = True,
        warn_silent: bool = True,
        save_png: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= saturation_tol < 1.0:
            raise ConfigError(f"FiringRateMonitor: saturation_tol must be in [0, 1), got {saturation_tol}")
        self.layers = list(layers) if layers is not None else None
        self.saturation_tol = float(saturation_tol)
        self.bins = int(bins)
        self.desired = desired
        self.log_train = log_train
        self.log_histograms = log_histograms
        self.warn_silent = warn_silent
        self.save_png = save_png
        self._stats: dict[str, nn.ModuleDict] = {}  # stage -> {layer: SpikeStatistics}
        self._target: dict[str, TargetCountStatistics] = {}  # stage -> metric
        self._warned: set[str] = set()
        self._desired: float | None = None
        self._out_name = "output"  # last key of outputs["counts"] (the output layer)

    # ------------------------------------------------------------------ setup
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        names = _layer_names(pl_module)
        if self.layers is not None and names is not None:
            missing = [n for n in self.layers if n not in names]
            if missing:
                raise ConfigError(f"FiringRateMonitor: layers {missing} not in the network (its layers: {names})")
        self._desired = self.desired
        if self._desired is None:
            self._desired = getattr(getattr(pl_module, "loss", None), "desired", None)
        if not trainer.loggers:
            _warn_rank_zero(
                "FiringRateMonitor: the trainer has no logger; spike statistics only reach "
                "trainer.callback_metrics (and the silent-layer warnings still fire)."
            )

    def _metrics(self, stage: str, outputs: Mapping, pl_module: pl.LightningModule):
        counts = outputs["counts"]
        device = next(iter(counts.values())).device
        if stage not in self._stats:
            stats = nn.ModuleDict()
            for name, c in counts.items():
                if self.layers is None or name in self.layers:
                    stats[name] = SpikeStatistics(
                        c[0].numel(), _refractory(pl_module, name), self.saturation_tol, self.bins
                    )
            self._stats[stage] = stats
            if self._desired is not None and "target" in outputs:
                self._target[stage] = TargetCountStatistics(self._desired)
        stats, target = self._stats[stage], self._target.get(stage)
        for m in (*stats.values(), *([target] if target is not None else [])):
            if m.device != device:
                m.to(device)
        return stats, target

    def _update(self, stage: str, outputs: Any, pl_module: pl.LightningModule) -> bool:
        if not isinstance(outputs, Mapping) or "counts" not in outputs:
            return False
        stats, target = self._metrics(stage, outputs, pl_module)
        counts, T = outputs["counts"], int(outputs["time_steps"])
        self._out_name = next(reversed(counts))
        for name, m in stats.items():
            m.update(counts[name], T)
        if target is not None:
            target.update(counts[next(reversed(counts))], outputs["target"])
        return True

    def _reset(self, stage: str) -> None:
        for m in self._stats.get(stage, {}).values():
            m.reset()
        if stage in self._target:
            self._target[stage].reset()

    def _compute(self, stage: str) -> tuple[dict[str, dict], dict | None]:
        """Globally reduced statistics of ``stage`` (a collective: every rank must call it)."""
        stats = {name: m.compute() for name, m in self._stats[stage].items()}
        target = self._target[stage].compute() if stage in self._target else None
        self._reset(stage)
        return stats, target

    def _has_data(self, stage: str) -> bool:
        return stage in self._stats and any(m.update_called for m in self._stats[stage].values())

    # ------------------------------------------------------------------ training
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.log_train or not self._update("train", outputs, pl_module):
            return
        if not trainer._logger_connector.should_update_logs:
            return
        stats, target = self._compute("train")
        B = next(iter(outputs["counts"].values())).shape[0]
        for name, s in stats.items():
            for key in _TRAIN_KEYS:
                pl_module.log(f"spikes/{name}/{key}", s[key].float(), on_step=True, on_epoch=False, batch_size=B)
        if target is not None:
            for key in _TARGET_KEYS:
                pl_module.log(f"spikes/{self._out_name}/{key}", target[key].float(), on_step=True, on_epoch=False, batch_size=B)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._reset("train")  # windows never straddle epochs

    # ------------------------------------------------------------------ validation / test
    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._reset("val")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update("val", outputs, pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._epoch_end("val", trainer, pl_module)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._reset("test")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update("test", outputs, pl_module)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._epoch_end("test", trainer, pl_module)

    def _epoch_end(self, stage: str, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self._has_data(stage):
            self._reset(stage)
            return
        stats, target = self._compute(stage)
        # the values are already global (sum-reduced states); sync_dist=True only averages identical
        # copies (exact) and keeps Lightning from warning about epoch-level logs under DDP
        for name, s in stats.items():
            for key in _EPOCH_KEYS:
                pl_module.log(f"spikes/{name}/{stage}_{key}", s[key].float(), on_step=False, on_epoch=True, sync_dist=True)
        if target is not None:
            for key in _TARGET_KEYS:
                pl_module.log(
                    f"spikes/{self._out_name}/{stage}_{key}", target[key].float(), on_step=False, on_epoch=True, sync_dist=True
                )
        if stage != "val":
            return
        if self.save_png:
            folder = run_folder(trainer)  # on every rank: a collective under DDP without the run's logger
            if trainer.is_global_zero:
                self._save_rates_png(folder / "plots" / f"rates-epoch{trainer.current_epoch:03d}.png", stats,
                                     trainer.current_epoch)
        if self.log_histograms:
            self._log_histograms(trainer, stats)
        if self.warn_silent:
            self._warn_silent(trainer, pl_module, stats, target)

    # ------------------------------------------------------------------ W&B histograms
    @rank_zero_only
    def _log_histograms(self, trainer: pl.Trainer, stats: dict[str, dict]) -> None:
        from pytorch_lightning.loggers import WandbLogger

        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not wandb_loggers:
            return
        import wandb

        row: dict[str, Any] = {}
        for name, s in stats.items():
            edges = self._stats["val"][name].hist_edges.numpy()
            row[f"spikes/{name}/val_neuron_rates"] = wandb.Histogram(s["neuron_rates"].float().cpu().numpy())
            row[f"spikes/{name}/val_rate_hist"] = wandb.Histogram(np_histogram=(s["hist"].cpu().numpy(), edges))
        for lg in wandb_loggers:
            lg.experiment.log({**row, "trainer/global_step": logger_step(trainer)})

    # ------------------------------------------------------------------ PNG of the rates
    def _save_rates_png(self, path: Path, stats: dict[str, dict], epoch: int) -> None:
        """One histogram panel per layer of the per-neuron rates of the epoch (Agg canvas, no pyplot)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        names = list(stats)
        fig = Figure(figsize=(6.0, 0.4 + 1.6 * len(names)), dpi=80)
        FigureCanvasAgg(fig)
        axes = fig.subplots(len(names), 1, squeeze=False)[:, 0]
        for ax, name in zip(axes, names):
            s, metric = stats[name], self._stats["val"][name]
            top = float(metric.hist_edges[-1])  # 1/(T_ref+1): the same axis at every epoch
            rates = s["neuron_rates"].float().cpu().clamp(max=top).numpy()
            edges = np.linspace(0.0, top, 51)
            ax.hist(rates, bins=edges, color="0.3")
            ax.axvline(float(s["rate"]), color="C3", linewidth=1)
            ax.set_xlim(edges[0], edges[-1])
            ax.set_ylabel("neurons", fontsize=7)
            ax.tick_params(labelsize=6)
            ax.set_title(
                f"{name} (epoch {epoch}): {metric.num_neurons} neurons, mean rate {float(s['rate']):.3g}/step (red), "
                f"dead {float(s['dead_frac']):.0%}, saturated {float(s['saturated_frac']):.0%}",
                fontsize=7,
            )
        axes[-1].set_xlabel("spikes per neuron per step over the validation epoch", fontsize=7)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:
            fig.savefig(tmp, format="png")
        fig.clear()

    # ------------------------------------------------------------------ warnings
    def _warn_silent(self, trainer, pl_module, stats: dict[str, dict], target: dict | None) -> None:
        names = list(stats)
        epoch = trainer.current_epoch
        dead = [n for n in names if float(stats[n]["dead_frac"]) == 1.0]
        new = [n for n in dead if n not in self._warned]
        if new:
            self._warned.update(new)
            first = new[0]
            s = stats[first]
            n_neurons = self._stats["val"][first].num_neurons
            samples = int(s["samples"])
            T = round(float(s["steps"]) / max(samples, 1))
            prev = _previous(names, first)
            prev_txt = (
                f" Its input, layer '{prev}', fired at {float(stats[prev]['rate']):.4g} spikes/neuron/step."
                if prev is not None else ""
            )
            _warn_rank_zero(
                "\n" + "!" * 78 + "\n"
                f"FiringRateMonitor: layer '{first}' was SILENT for the whole validation epoch {epoch}: "
                f"none of its {n_neurons} neurons fired a single spike on {samples} samples x {T} steps "
                f"(rate 0).{prev_txt} Layers after it get no input and HM2-BP gives them no useful gradient"
                + (f" (also silent: {', '.join(repr(n) for n in new[1:])})" if len(new) > 1 else "")
                + f". Fix: {_fix_hint(pl_module, first)}\n" + "!" * 78,
                category=SilentNetworkWarning,
            )
        if target is not None and float(target["target_silent_frac"]) == 1.0 and "__target__" not in self._warned:
            self._warned.add("__target__")
            out = self._out_name
            _warn_rank_zero(
                "\n" + "!" * 78 + "\n"
                f"FiringRateMonitor: the target (labelled) output neuron of layer '{out}' fired 0 spikes on "
                f"all {int(target['samples'])} validation samples of epoch {epoch} (desired count "
                f"{self._desired:g}; mean count of the other output neurons {float(target['other_count']):.3g}). "
                f"Predictions are then decided by the wrong neurons or by the all-silent default (class 0). "
                f"Fix: {_fix_hint(pl_module, out)}\n" + "!" * 78,
                category=SilentNetworkWarning,
            )


# ---------------------------------------------------------------------- helpers
def logger_step(trainer: pl.Trainer) -> int:
    """The step Lightning gives the loggers for metrics logged now (aligns images with ``val/acc``)."""
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


def _warn_rank_zero(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` on rank zero only (callers keep track of "once")."""
    if rank_zero_only.rank == 0:
        warnings.warn(message, category, stacklevel=3)


def _layers(pl_module) -> Mapping | None:
    layers = getattr(getattr(pl_module, "network", None), "layers", None)
    return layers if isinstance(layers, Mapping) or isinstance(layers, nn.ModuleDict) else None


def _layer_names(pl_module) -> list[str] | None:
    layers = _layers(pl_module)
    return list(layers.keys()) if layers is not None else None


def _refractory(pl_module, name: str, default: int = 0) -> int:
    """``T_ref`` of layer ``name`` (0, i.e. max rate 1 per step, when the layer has none)."""
    layers = _layers(pl_module)
    layer = layers[name] if layers is not None and name in layers else None
    return int(getattr(layer, "refractory", default))


def _previous(names: list[str], name: str) -> str | None:
    i = names.index(name)
    return names[i - 1] if i > 0 else None


def _fix_hint(pl_module, name: str) -> str:
    layers = _layers(pl_module)
    layer = layers[name] if layers is not None and name in layers else None
    names = _layer_names(pl_module) or []
    idx = names.index(name) if name in names else None
    thr = getattr(layer, "threshold", None)
    init = getattr(layer, "init_range", None)
    parts = []
    if thr is not None:
        parts.append(f"lower its threshold (now {thr:g}: SpikingNetwork thresholds[{idx}])")
    else:
        parts.append("lower its firing threshold")
    if init is not None:
        parts.append(f"raise the weight init range (now {init:g}: SpikingNetwork fc_init / conv_init)")
    else:
        parts.append("raise its weight initialisation")
    parts.append("or check that the input spike trains are not empty (rate coding, T)")
    return ", ".join(parts[:-1]) + " " + parts[-1] + "."
