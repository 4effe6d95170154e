"""Rate-coded static images: the shared base of the MNIST, EMNIST and digits datamodules.

The loaders yield ``(image uint8 [B, H, W], label [B], index [B])``; spikes are drawn on the
batch's device in ``on_after_batch_transfer`` with :func:`bernoulli_rate` keyed by
``(seed, split, index, epoch)``: frozen trains (official MLP runs: ``redraw_every_epoch=False``)
or fresh ones every epoch (official CNN runs). Validation and test trains are always fixed.
"""
from __future__ import annotations

from hm2bp.checks import number
from hm2bp.datamodules.base import ORDERS, SpikeDataModule
from hm2bp.datamodules.encoding import PIXEL_ORDERS, bernoulli_rate, compact_nonzero
from hm2bp.errors import ConfigError

_SPLIT_SALT = {"train": 0, "val": 0, "test": 0x5EED, "predict": 0x5EED}


class RateCodedImageDataModule(SpikeDataModule):
    """Base for image datasets rate-coded with p = x / (rate_divisor * 255).

    The rate code is described in docs/algorithm.md, "Input encoding".

    Args:
        time_steps: T (official MNIST: 400).
        rate_divisor: 5.5 in the official program (max 0.18 spikes per step).
        redraw_every_epoch: draw new training trains each epoch (official CNN) instead of frozen
            trains (official MLP).
        batch_size, num_workers, seed: see ``SpikeDataModule``.
        pixel_order: ``"raster"`` (input k is pixel k) or ``"compact"`` (input k is the image's
            k-th nonzero pixel in raster order: the authors' MNIST reader before its fix of
            2018-01-12, :func:`hm2bp.datamodules.encoding.compact_nonzero`; their published log
            used raster order). Fully connected networks only.
        order: training order, ``"permutation"`` (a fresh seeded permutation every epoch) or
            ``"swaps"`` (the authors': file order plus 5000 random swaps per epoch,
            :func:`hm2bp.datamodules.base.swap_permutation`).
    """

    def __init__(
        self,
        time_steps: int = 400,
        rate_divisor: float = 5.5,
        redraw_every_epoch: bool = False,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        pixel_order: str = "raster",
        order: str = "permutation",
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, time_steps=time_steps)
        if order not in ORDERS:
            raise ConfigError(f"data.init_args.order must be one of {tuple(ORDERS)}, got {order!r}")
        self.order = order
        if pixel_order not in PIXEL_ORDERS:
            raise ConfigError(f"data.init_args.pixel_order must be one of {PIXEL_ORDERS}, got {pixel_order!r}")
        self.pixel_order = pixel_order
        self.rate_divisor = number("data.init_args.rate_divisor", rate_divisor, low=1, hint="p = x / (rate_divisor * 255) <= 1")
        self.redraw_every_epoch = redraw_every_epoch

    def augment(self, images, stage: str):
        """Hook for on-device augmentation of uint8 images ``[B, H, W]`` (identity here)."""
        return images

    def encode(self, images, index, stage: str, epoch: int = 0):
        """Images ``[B, *shape]`` -> spikes ``[T, B, *shape]`` uint8."""
        redraw = stage == "train" and self.redraw_every_epoch
        return self._rate_code(images, index, stage, epoch if redraw else 0)

    def encode_draw(self, images, index, stage: str, draw: int):
        """Evaluation images ``[B, *shape]`` -> draw ``draw`` of their spike trains ``[T, B, *shape]``.

        Draw 0 is the fixed train that validation and test use; draws 1, 2, ... are independent
        redraws of the same rates, keyed by ``(seed, split, index, draw)`` (test-time averaging over
        draws: :func:`hm2bp.draws.average_draws`)."""
        if stage == "train":
            raise ValueError("encode_draw is for evaluation splits ('val', 'test', 'predict'), not 'train'")
        if isinstance(draw, bool) or not isinstance(draw, int) or draw < 0:
            raise ValueError(f"draw must be an integer >= 0, got {draw!r}")
        return self._rate_code(self.augment(images, stage), index, stage, draw)

    def _rate_code(self, images, index, stage: str, key: int):
        if self.pixel_order == "compact":
            images = compact_nonzero(images)
        return bernoulli_rate(
            images,
            self.time_steps,
            index=index,
            epoch=key,
            seed=self.seed ^ _SPLIT_SALT[stage],
            rate_divisor=self.rate_divisor,
        )

    def to_spikes(self, batch, stage: str):
        """A loader batch ``(images, labels, index)`` on its device -> ``(spikes, labels, index)`` for ``stage``."""
        images, labels, index = batch
        images = self.augment(images, stage)
        spikes = self.encode(images, index, stage, self.current_epoch())
        return spikes, labels.long(), index  # the index names each sample (predictions, boosting)
