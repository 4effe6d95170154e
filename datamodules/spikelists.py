"""Datasets stored as spike lists (N-MNIST, TI46, wav folders): the dataset, its collation and
the base datamodule.

A split's encoded samples are kept sparse, in CSR form (:class:`~hm2bp.datamodules.cache.SpikeLists`):
per sample a list of ``(channel, time step)`` pairs, cached on disk by
:class:`~hm2bp.datamodules.cache.SpikeCache` (keyed by the datamodule, the resolved source folder and
every encoding parameter; an entry is used only if every source file still has the size, mtime and,
for recently modified files, content it was built from). Loaders yield flat COO batches; the dense
``[T, B, *input_shape]`` uint8 tensor is built on the batch's device in
``on_after_batch_transfer`` (spikes at ``time >= T`` are dropped there, so the cache does not
depend on T), after the optional training augmentation of
:mod:`hm2bp.datamodules.spike_augment`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from hm2bp.checks import count_or_fraction
from hm2bp.datamodules.base import SpikeDataModule, seeded_split
from hm2bp.datamodules.cache import SpikeCache, SpikeLists, resolve_cache_dir
from hm2bp.datamodules.spike_augment import SpikeJitter, jitter_spikes
from hm2bp.errors import ConfigError, DataError, DataNotFoundError


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
            (a fraction adapts to partial folders); 0 trains on every training sample, without validation.
        cache_dir: where encoded splits are kept (``$HM2BP_CACHE_DIR`` or ``~/.cache/hm2bp``).
        batch_size, num_workers, seed: see ``SpikeDataModule``.
        augment: stretch, jitter and thin every training train anew each epoch
            (:class:`~hm2bp.datamodules.spike_augment.SpikeJitter`, keyed by ``(seed, index, epoch)``);
            ``None`` (default) keeps the stored trains. Validation and test trains are never changed.
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
        augment: SpikeJitter | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, time_steps=time_steps)
        self.val_size = count_or_fraction("data.init_args.val_size", val_size, zero_ok=True)
        self.cache_dir = resolve_cache_dir(cache_dir)
        self.augment = _jitter_record(augment)
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

    def to_spikes(self, batch, stage: str):
        """A COO loader batch on its device -> ``(spikes [T, B, *input_shape], labels, index)`` for ``stage``
        (training batches are augmented when ``augment`` is set)."""
        channels, times, sample, labels, index = batch
        if stage == "train" and self.augment is not None:
            channels, times, sample = jitter_spikes(channels, times, sample, index, self.augment,
                                                    epoch=self.current_epoch(), seed=self.seed)
        dense = densify(channels, times, sample, len(labels), self.time_steps, self.num_inputs)  # [T, B, N]
        spikes = dense.view(self.time_steps, len(labels), *self.input_shape)
        return spikes, labels.long(), index  # the index names each sample (predictions, boosting)


def _jitter_record(augment) -> SpikeJitter | None:
    """``data.init_args.augment`` as a :class:`SpikeJitter` (a mapping from YAML is accepted too)."""
    if augment is None or isinstance(augment, SpikeJitter):
        return augment
    if isinstance(augment, dict):
        unknown = sorted(set(augment) - {"stretch", "jitter", "drop"})
        if unknown:
            raise ConfigError(f"data.init_args.augment: unknown key(s) {unknown}; use stretch, jitter and drop")
        return SpikeJitter(**augment)
    raise ConfigError(f"data.init_args.augment must be null or a mapping {{stretch, jitter, drop}}, got {augment!r}")
