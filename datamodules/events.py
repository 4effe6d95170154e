"""Spike/event lists: N-MNIST stabilisation and binning, and the base datamodule for datasets stored
as spike lists (N-MNIST, TI46, wav folders).

A split's encoded samples are kept sparse, in CSR form (:class:`~hm2bp.datamodules.cache.SpikeLists`):
per sample a list of ``(channel, time step)`` pairs, cached on disk by
:class:`~hm2bp.datamodules.cache.SpikeCache` (keyed by the datamodule, the resolved source folder and
every encoding parameter; an entry is used only if every source file still has the size, mtime and,
for recently modified files, content it was built from). Loaders yield flat COO batches; the dense
``[T, B, *input_shape]`` uint8 tensor is built on the batch's device in
``on_after_batch_transfer`` (spikes at ``time >= T`` are dropped there, so the cache does not
depend on T).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from hm2bp.checks import count_or_fraction, number
from hm2bp.datamodules.base import SpikeDataModule, seeded_split
from hm2bp.datamodules.cache import (  # noqa: F401  (re-exported: the cache used to live here)
    CACHE_VERSION,
    ENV_CACHE_DIR,
    CacheEntryError,
    SpikeCache,
    SpikeLists,
    load_spike_lists,
    params_hash,
    resolve_cache_dir,
    save_spike_lists,
)
from hm2bp.errors import DataError, DataNotFoundError

# --------------------------------------------------------------------------------------------
# N-MNIST: Orchard's saccade stabilisation and the official 600 us binning (spec §4.2)
# --------------------------------------------------------------------------------------------

NMNIST_SIZE = 34  # sensor is 34 x 34
SACCADE_US = 105e3  # each of the three saccades lasts 105 ms


def _matlab_round(v: np.ndarray) -> np.ndarray:
    """MATLAB ``round``: halves away from zero (numpy rounds halves to even)."""
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def stabilize_saccades(x1: np.ndarray, y1: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Subtract the sensor ego-motion of the three N-MNIST saccades (Orchard's ``stabilize.m``).

    ``x1``, ``y1``: 1-based pixel addresses; ``ts``: microseconds. The motion is piecewise linear:
    saccade 1 (``ts <= 105 ms``) moves by ``(3.5, 7)`` px, saccade 2 by ``(3.5, -7)``, saccade 3
    by ``(-7, 0)``; the shifted addresses are rounded (MATLAB ``round``). Returns the stabilised
    ``(x, y)`` (float, integral values) and a keep mask: ``stabilize.m`` drops ``x < 1 | y < 1`` and
    ``NMNIST_Converter.m`` drops ``x > 34 | y > 34``, so only the 34 x 34 field survives.
    """
    x = x1.astype(np.float64)
    y = y1.astype(np.float64)
    t = ts.astype(np.float64)
    s1 = t <= SACCADE_US
    s2 = (t > SACCADE_US) & (t <= 2 * SACCADE_US)
    s3 = t > 2 * SACCADE_US
    x[s1] -= 3.5 * t[s1] / SACCADE_US
    y[s1] -= 7.0 * t[s1] / SACCADE_US
    x[s2] -= 3.5 + 3.5 * (t[s2] - SACCADE_US) / SACCADE_US
    y[s2] -= 7.0 - 7.0 * (t[s2] - SACCADE_US) / SACCADE_US
    x[s3] -= 7.0 - 7.0 * (t[s3] - 2 * SACCADE_US) / SACCADE_US
    x, y = _matlab_round(x), _matlab_round(y)
    keep = (x >= 1) & (y >= 1) & (x <= NMNIST_SIZE) & (y <= NMNIST_SIZE)
    return x, y, keep


def nmnist_channels_and_steps(
    events: np.ndarray,
    *,
    stabilize: bool = True,
    bin_us: float = 600.0,
    two_polarities: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """N-MNIST events (tonic dtype ``x, y, t, p``; x, y 0-based) -> unique ``(channel, step)`` pairs.

    Official conversion (spec §4.2; ``NMNIST_Converter.m`` + ``readNMnistData.cpp``):

    * 1-based ``x1 = x + 1``, ``y1 = y + 1``; saccade stabilisation (:func:`stabilize_saccades`);
    * channel ``(x1 - 1) * 34 + y1`` 1-based, i.e. ``x * 34 + y`` 0-based (x-major); events whose
      polarity bit is set (Orchard's ``p = 2``, tonic's ``p = 1``) add ``34 * 34 = 1156``;
    * step ``ceil(ts / bin_us) + 1`` (the converter writes ``ceil(ts/600)``, the C++ reader adds 1);
    * several events of one channel in one bin collapse to a single spike.

    Returns int64 arrays sorted by channel, then step. Steps are not capped here (see ``T``).
    """
    x1 = events["x"].astype(np.int64) + 1
    y1 = events["y"].astype(np.int64) + 1
    ts = events["t"].astype(np.int64)
    if stabilize:
        xs, ys, keep = stabilize_saccades(x1, y1, ts)
        x1, y1, ts = xs[keep].astype(np.int64), ys[keep].astype(np.int64), ts[keep]
        pol = events["p"][keep].astype(np.int64)
    else:
        keep = (x1 >= 1) & (y1 >= 1) & (x1 <= NMNIST_SIZE) & (y1 <= NMNIST_SIZE)
        x1, y1, ts, pol = x1[keep], y1[keep], ts[keep], events["p"][keep].astype(np.int64)
    channel = (x1 - 1) * NMNIST_SIZE + (y1 - 1)  # 0-based
    if two_polarities:
        channel = channel + (pol != 0) * (NMNIST_SIZE * NMNIST_SIZE)
    step = np.ceil(ts / float(bin_us)).astype(np.int64) + 1
    return unique_pairs(channel, step)


def unique_pairs(channels: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deduplicate ``(channel, time)`` pairs, sorted by channel then time."""
    if len(channels) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    key = channels.astype(np.int64) * (int(times.max()) + 1) + times.astype(np.int64)
    key = np.unique(key)
    span = int(times.max()) + 1
    return key // span, key % span


# --------------------------------------------------------------------------------------------
# Dataset, collation and the base datamodule
# --------------------------------------------------------------------------------------------


class SpikeListDataset(Dataset):
    """Samples ``indices`` of a :class:`SpikeLists`: ``(channels, times, label, index)``."""

    def __init__(self, lists: SpikeLists, indices: Tensor | np.ndarray | None = None) -> None:
        self.lists = lists
        self.indices = np.arange(len(lists)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = int(self.indices[k])
        ch, t = self.lists.sample(i)
        return torch.from_numpy(ch.astype(np.int64)), torch.from_numpy(t.astype(np.int64)), int(self.lists.labels[i]), i


def collate_spike_lists(batch):
    """List of samples -> flat COO ``(channels [nnz], times [nnz], sample [nnz], labels [B], index [B])``."""
    chans, times, labels, index = zip(*batch)
    sample = torch.repeat_interleave(torch.arange(len(batch)), torch.tensor([len(c) for c in chans], dtype=torch.int64))
    return (
        torch.cat(chans),
        torch.cat(times),
        sample,
        torch.tensor(labels, dtype=torch.int64),
        torch.tensor(index, dtype=torch.int64),
    )


def densify(channels: Tensor, times: Tensor, sample: Tensor, batch: int, time_steps: int, num_channels: int) -> Tensor:
    """COO spikes -> dense ``[T, B, channels]`` uint8 on the inputs' device (``time >= T`` dropped)."""
    out = torch.zeros(time_steps, batch, num_channels, dtype=torch.uint8, device=channels.device)
    m = times < time_steps
    out[times[m], sample[m], channels[m]] = 1
    return out


class SpikeListDataModule(SpikeDataModule):
    """Base for datasets encoded once into spike lists and cached on disk.

    Subclasses set ``num_classes``, ``input_shape`` and ``cache_name`` and implement
    :meth:`source_files` (``split -> [(path, label)]``, errors name the missing layout),
    :meth:`encode_file` (``path -> (channels, times)``) and :meth:`cache_params` (every parameter
    the encoding depends on; the class and the resolved :meth:`source_root` are added to the
    cache key here, and every source file's size and mtime are checked on each use, see
    :mod:`hm2bp.datamodules.cache`).

    Args:
        time_steps: T; spikes at ``t >= T`` are dropped when batches are built.
        val_size: training samples held out for validation (seeded); a count, or a fraction in (0, 1)
            (a fraction adapts to partial folders).
        cache_dir: where encoded splits are kept (``$HM2BP_CACHE_DIR`` or ``~/.cache/hm2bp``).
        batch_size, num_workers, seed: see ``SpikeDataModule``.
    """

    cache_name = "spikes"
    splits = ("train", "test")

    def __init__(
        self,
        time_steps: int,
        val_size: int | float = 0.1,
        cache_dir: str | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.time_steps = number("data.init_args.time_steps", time_steps, low=2, integer=True)
        self.val_size = count_or_fraction("data.init_args.val_size", val_size)
        self.cache_dir = resolve_cache_dir(cache_dir)
        self._lists: dict[str, SpikeLists] = {}

    # -- to implement -----------------------------------------------------------------------
    def source_files(self, split: str) -> list[tuple[Path, int]]:
        raise NotImplementedError

    def source_root(self) -> Path:
        raise NotImplementedError

    def encode_file(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def cache_params(self) -> dict:
        raise NotImplementedError

    # -- building ---------------------------------------------------------------------------
    def cache_key(self) -> dict:
        """Everything the encoded trains depend on: the class, the resolved source folder, :meth:`cache_params`."""
        cls = type(self)
        return {"datamodule": f"{cls.__module__}.{cls.__qualname__}", "root": str(self.source_root().resolve()),
                **self.cache_params()}

    @property
    def cache(self) -> SpikeCache:
        return SpikeCache(self.cache_dir, self.cache_name, self.cache_key())

    def check_label(self, label: int, path: Path) -> int:
        if not 0 <= int(label) < self.num_classes:
            raise DataError(
                f"{path}: label {label} is outside the class range 0..{self.num_classes - 1}; "
                "fix the file name/folder or the datamodule's classes"
            )
        return int(label)

    def build_split(self, split: str, files: list[tuple[Path, int]]) -> SpikeLists:
        from pytorch_lightning.utilities import rank_zero_info

        root = self.source_root()
        rank_zero_info(f"{type(self).__name__}: encoding {len(files)} {split} files from {root} into {self.cache.folder}")
        samples, labels, sources = [], [], []
        for path, label in files:
            labels.append(self.check_label(label, path))
            samples.append(self.encode_file(path))
            sources.append(Path(path).relative_to(root).as_posix())
        return SpikeLists.from_samples(samples, labels, sources)

    def load_split(self, split: str) -> SpikeLists:
        """The encoded split, from the cache (if built from exactly these files) or encoded now (and cached)."""
        if split not in self._lists:
            files = self.source_files(split)
            if not files:
                raise DataNotFoundError(f"no {split} samples found under {self.source_root()}")
            for path, label in files:
                self.check_label(label, path)
            self._lists[split] = self.cache.get(split, self.source_root(), [p for p, _ in files],
                                                lambda: self.build_split(split, files))
        return self._lists[split]

    def prepare_data(self) -> None:
        for split in self.splits:
            self.load_split(split)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self.train_set is None:
            lists = self.load_split("train")
            tr, va = seeded_split(len(lists), self.val_size, self.seed, where=f"{self.source_root()}")
            self.train_set = SpikeListDataset(lists, tr.numpy())
            self.val_set = SpikeListDataset(lists, va.numpy())
        if stage in (None, "test", "predict") and self.test_set is None:
            self.test_set = SpikeListDataset(self.load_split("test"))

    def _loader(self, dataset, shuffle: bool, permute: bool = True) -> DataLoader:
        # the base's resumable, rank-sharded sampler; only the collation differs
        return super()._loader(dataset, shuffle, collate_fn=collate_spike_lists, permute=permute)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        channels, times, sample, labels, index = batch
        dense = densify(channels, times, sample, len(labels), self.time_steps, self.num_inputs)  # [T, B, N]
        spikes = dense.view(self.time_steps, len(labels), *self.input_shape)
        if self.trainer is not None and self.trainer.predicting:
            return spikes, labels.long(), index  # predictions name their samples
        return spikes, labels.long()
