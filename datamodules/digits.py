"""The embedded default: scikit-learn's bundled 8x8 handwritten digits, rate coded (no download).

1,797 images of 8x8 pixels with 17 grey levels (0..16), scaled to 0..255 and Bernoulli rate
coded like MNIST (docs/algorithm.md, "Input encoding"). A seeded split gives ``test_size`` test
and ``val_size`` validation images (counts, or fractions of the 1,797 in (0, 1)); the rest train.
The three sets are disjoint and none is empty, except the validation set with ``val_size: 0``
(no validation).
"""
from __future__ import annotations

import numpy as np
import torch

from hm2bp.checks import count_or_fraction, val_count
from hm2bp.datamodules.base import IndexedTensorDataset
from hm2bp.datamodules.image import RateCodedImageDataModule
from hm2bp.errors import ConfigError


class DigitsDataModule(RateCodedImageDataModule):
    """8x8 digits (sklearn ``load_digits``), 64 inputs, 10 classes.

    Args:
        val_size, test_size: held-out images (seeded split of the 1,797).
        time_steps, rate_divisor, redraw_every_epoch, batch_size, num_workers, seed: see the base.
    """

    num_classes = 10
    input_shape = (8, 8)

    def __init__(
        self,
        val_size: int | float = 180,
        test_size: int | float = 360,
        time_steps: int = 200,
        rate_divisor: float = 5.5,
        redraw_every_epoch: bool = True,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(time_steps, rate_divisor, redraw_every_epoch, batch_size, num_workers, seed)
        self.val_size = count_or_fraction("data.init_args.val_size", val_size, zero_ok=True)
        self.test_size = count_or_fraction("data.init_args.test_size", test_size)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # [1797, 8, 8]
        x = torch.from_numpy(images)
        y = torch.from_numpy(digits.target.astype(np.int64))
        n = len(x)
        n_test = val_count("data.init_args.test_size", self.test_size, n, "scikit-learn's digits")
        n_val = val_count("data.init_args.val_size", self.val_size, n, "scikit-learn's digits", zero_ok=True)
        if n_val + n_test >= n:
            raise ConfigError(
                f"data.init_args.val_size + data.init_args.test_size = {n_val} + {n_test} leaves no training images "
                f"of the {n}; lower them"
            )
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        test = perm[:n_test].sort().values
        val = perm[n_test : n_test + n_val].sort().values
        train = perm[n_test + n_val :].sort().values
        self.train_set = IndexedTensorDataset(x, y, train)
        self.val_set = IndexedTensorDataset(x, y, val)
        self.test_set = IndexedTensorDataset(x, y, test)
