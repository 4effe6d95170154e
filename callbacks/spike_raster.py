"""``SpikeRasterLogger``: raster images of a fixed validation sample, one image per layer.

Bounded by construction: the fixed sample is ``num_samples`` input trains kept on the CPU as
``uint8`` (``[T, k, *in]``), each layer shows at most ``max_neurons`` neurons (chosen once with a
seeded generator and kept fixed, so images are comparable across epochs), and the forward pass that
produces the rasters runs on rank zero only, under ``torch.no_grad``, once every
``every_n_epochs`` validation epochs. Rendering uses matplotlib's Agg canvas directly (no pyplot
state, no display needed).
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor

from hm2bp.atomic import atomic_write
from hm2bp.callbacks.firing_rates import logger_step
from hm2bp.callbacks.run_files import run_folder
from hm2bp.errors import ConfigError

__all__ = ["SpikeRasterLogger"]


class SpikeRasterLogger(Callback):
    """Log spike rasters of the first ``num_samples`` validation samples.

    The samples are the first ``num_samples`` of the validation dataloader, taken once (on rank
    zero, from the batches validation already draws: the first ones seen, which may be those of
    the sanity check) and reused at every logging epoch. Every ``every_n_epochs`` validation
    epochs (epochs 0, N, 2N, ...; never during the sanity check), rank zero runs
    ``pl_module.network(spikes, return_all=True)`` on them in eval mode under ``torch.no_grad``
    (the modules' train/eval modes are restored afterwards) and renders, for the input (with
    ``include_input``) and for each layer, one image of ``num_samples`` stacked panels (neuron
    index against time step, all ``T`` steps, one tick per spike). Each panel's title gives the
    sample's label, the network's prediction (argmax of the output counts, ties to the lowest
    class) and the spike count shown.

    Where it goes:

    * every logger that has ``log_image`` (``WandbLogger``): key ``spikes/<layer>/raster``
      (``spikes/input/raster`` for the input), at the step of the epoch's ``val/…`` metrics;
    * with ``save_png`` (the default), whatever the logger: PNG files
      ``<run folder>/plots/raster-epoch<EEE>-<layer>.png`` (``EEE``: ``trainer.current_epoch``, as in
      checkpoint names; the run folder is :func:`~hm2bp.callbacks.run_files.run_folder`: the CLI's,
      else ``trainer.log_dir``, else ``default_root_dir``).

    Images are exactly ``image_size = (round(panel_width * dpi), num_samples * round(panel_height * dpi))``
    pixels (width, height).

    Args:
        num_samples: validation samples shown (panels per image).
        max_neurons: at most this many neurons per layer (a fixed seeded subset when larger).
        every_n_epochs: log at validation epochs whose index is a multiple of this.
        seed: seed of the neuron subsets.
        include_input: also render the input spike trains.
        panel_width, panel_height: inches of one panel; ``dpi``: pixels per inch.
        save_png: also write every image to a PNG file (``False``: the image loggers only).
    """

    def __init__(
        self,
        num_samples: int = 4,
        max_neurons: int = 100,
        every_n_epochs: int = 1,
        seed: int = 0,
        include_input: bool = True,
        panel_width: float = 8.0,
        panel_height: float = 2.0,
        dpi: int = 80,
        save_png: bool = True,
    ) -> None:
        super().__init__()
        if num_samples < 1 or max_neurons < 1 or every_n_epochs < 1:
            raise ConfigError(
                f"SpikeRasterLogger: num_samples, max_neurons and every_n_epochs must be >= 1, got {num_samples}, {max_neurons}, {every_n_epochs}"
            )
        self.num_samples = int(num_samples)
        self.max_neurons = int(max_neurons)
        self.every_n_epochs = int(every_n_epochs)
        self.seed = int(seed)
        self.include_input = include_input
        self.panel_width = float(panel_width)
        self.panel_height = float(panel_height)
        self.dpi = int(dpi)
        self.save_png = save_png
        self._log_dir: Path | None = None  # the run folder, asked on every rank at each validation end
        self._spikes: Tensor | None = None  # [T, k, *in] uint8, CPU
        self._labels: Tensor | None = None  # [k] int64, CPU
        self._neurons: dict[str, Tensor | None] = {}  # layer -> sorted neuron indices (None: all)
        self._total: dict[str, int] = {}  # layer -> number of neurons

    @property
    def image_size(self) -> tuple[int, int]:
        """``(width, height)`` of every raster image in pixels."""
        return round(self.panel_width * self.dpi), self.num_samples * round(self.panel_height * self.dpi)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not callable(getattr(getattr(pl_module, "network", None), "forward", None)):
            raise ConfigError("SpikeRasterLogger needs pl_module.network(spikes, return_all=True) (a SpikingNetwork)")

    # ------------------------------------------------------------------ fixed sample
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.is_global_zero or dataloader_idx != 0:
            return
        have = 0 if self._labels is None else len(self._labels)
        if have >= self.num_samples:
            return
        spikes, labels = batch[0], batch[1]
        take = min(self.num_samples - have, spikes.shape[1])
        new_s = spikes[:, :take].detach().to("cpu", torch.uint8)  # [T, take, *in]
        new_l = labels[:take].detach().to("cpu", torch.int64)
        self._spikes = new_s if self._spikes is None else torch.cat([self._spikes, new_s], 1)
        self._labels = new_l if self._labels is None else torch.cat([self._labels, new_l])

    # ------------------------------------------------------------------ render + log
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs != 0:
            return
        self._log_dir = run_folder(trainer)  # on every rank (a collective under DDP); rank 0 alone renders
        if not trainer.is_global_zero or self._labels is None:
            return
        self.log_rasters(trainer, pl_module)

    @torch.no_grad()
    def log_rasters(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, np.ndarray]:
        """Run the fixed sample, render and log every layer; returns ``{layer: RGB image [H, W, 3]}``."""
        layers, preds = self._run(pl_module)
        if self.include_input:
            layers = {"input": self._select("input", self._spikes), **layers}
        images = {name: self._render(name, spk, preds, trainer.current_epoch) for name, spk in layers.items()}
        self._emit(trainer, images, preds)
        return images

    @torch.no_grad()
    def _run(self, pl_module: pl.LightningModule) -> tuple[dict[str, Tensor], list[int]]:
        """Forward of the fixed sample: ``({layer: [T, k, n] bool CPU}, predictions)``."""
        modes = {m: m.training for m in pl_module.modules()}
        pl_module.eval()
        try:
            x = self._spikes.to(pl_module.device)
            layers = pl_module.network(x, return_all=True)  # {layer: [T, k, ...]}
            out = layers[next(reversed(layers))]  # [T, k, classes]
            preds = out.sum(0).argmax(-1).tolist()  # ties -> lowest index, as SpikingClassifier
            # keep only the sampled neurons, as bool on the CPU: [T, k, n <= max_neurons]
            return {name: self._select(name, s) for name, s in layers.items()}, preds
        finally:
            for m, mode in modes.items():
                m.training = mode

    def _select(self, name: str, spikes: Tensor) -> Tensor:
        """``[T, k, ...]`` -> ``[T, k, n]`` bool CPU spikes of the layer's fixed neuron subset."""
        T, k = spikes.shape[:2]
        flat = spikes.reshape(T, k, -1)  # [T, k, N]
        N = flat.shape[-1]
        self._total[name] = N
        if name not in self._neurons:
            # one generator per layer, seeded from (seed, layer name): independent of the draw order
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(name.encode()))
            self._neurons[name] = (
                torch.randperm(N, generator=gen)[: self.max_neurons].sort().values if N > self.max_neurons else None
            )
        idx = self._neurons[name]
        if idx is not None:
            flat = flat.index_select(2, idx.to(flat.device))
        return flat.to("cpu", torch.bool)

    def _render(self, name: str, spikes: Tensor, preds: list[int], epoch: int) -> np.ndarray:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        T, k, n = spikes.shape
        N_total = self._total.get(name, n)
        w, h = self.image_size
        fig = Figure(figsize=(w / self.dpi, h / self.dpi), dpi=self.dpi)
        # fixed margins (a layout engine would triple the rendering time)
        fig.subplots_adjust(left=0.07, right=0.99, bottom=0.5 / (h / self.dpi), top=1 - 0.25 / (h / self.dpi),
                            hspace=0.3)
        canvas = FigureCanvasAgg(fig)
        axes = fig.subplots(k, 1, sharex=True, squeeze=False)[:, 0]
        for i, ax in enumerate(axes):
            t, j = spikes[:, i, :].nonzero(as_tuple=True)  # spike times and neuron rows
            ax.scatter(t.numpy(), j.numpy(), marker="|", s=12, linewidths=0.8, c="k")
            ax.set_xlim(-0.5, T - 0.5)
            ax.set_ylim(-0.5, n - 0.5)
            ax.set_ylabel("neuron", fontsize=7)
            ax.tick_params(labelsize=6)
            ax.set_title(
                f"{name} (epoch {epoch}) · sample {i}: label {int(self._labels[i])}, pred {preds[i]}"
                f" · {int(t.numel())} spikes, {n}/{N_total} neurons",
                fontsize=7,
            )
        axes[-1].set_xlabel("time step", fontsize=7)
        canvas.draw()
        image = np.asarray(canvas.buffer_rgba())[..., :3].copy()  # [H, W, 3] uint8
        fig.clear()
        return image

    def _emit(self, trainer: pl.Trainer, images: dict[str, np.ndarray], preds: list[int]) -> None:
        img_loggers = [lg for lg in trainer.loggers if callable(getattr(lg, "log_image", None))]
        caption = ", ".join(f"{int(y)}->{p}" for y, p in zip(self._labels.tolist(), preds))
        for lg in img_loggers:
            for name, image in images.items():
                lg.log_image(
                    key=f"spikes/{name}/raster",
                    images=[image],
                    step=logger_step(trainer),
                    caption=[f"epoch {trainer.current_epoch}; label->pred: {caption}"],
                )
        if self.save_png:
            from PIL import Image

            folder = (self._log_dir or run_folder(trainer)) / "plots"
            folder.mkdir(parents=True, exist_ok=True)
            for name, image in images.items():
                with atomic_write(folder / f"raster-epoch{trainer.current_epoch:03d}-{name}.png") as tmp:
                    Image.fromarray(image).save(tmp, format="PNG")

    def state_dict(self) -> dict[str, Any]:
        return {"neurons": dict(self._neurons)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._neurons.update(state_dict.get("neurons", {}))
