"""Spike/event lists: N-MNIST stabilisation and binning, a parameter-keyed on-disk cache of encoded
samples, and the base datamodule for datasets stored as spike lists (N-MNIST, TI46, wav folders).

A split's encoded samples are kept sparse, in CSR form (:class:`SpikeLists`): per sample a list of
``(channel, time step)`` pairs. Loaders yield flat COO batches; the dense
``[T, B, *input_shape]`` uint8 tensor is built on the batch's device in
``on_after_batch_transfer`` (spikes at ``time >= T`` are dropped there, so the cache does not
depend on T).

Cache layout: ``<cache_dir>/<name>-<hash12>/<split>.npz`` plus ``params.json``, where ``hash12``
is the sha256 of the JSON of the encoding parameters. Files are written atomically (temporary file
then ``os.replace``); a corrupt or stale entry (the source files changed) is rebuilt with a warning.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from hm2bp.datamodules.base import SpikeDataModule, seeded_split

ENV_CACHE_DIR = "HM2BP_CACHE_DIR"
CACHE_VERSION = 1  # bump when the stored format or an encoder changes

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
# Sparse storage of a split and its on-disk cache
# --------------------------------------------------------------------------------------------


@dataclass
class SpikeLists:
    """Encoded samples of one split, CSR: sample ``i`` owns ``channels/times[offsets[i]:offsets[i+1]]``."""

    channels: np.ndarray  # [nnz] int
    times: np.ndarray  # [nnz] int, steps (0-based, not capped at T)
    offsets: np.ndarray  # [n + 1] int64
    labels: np.ndarray  # [n] int64
    sources: np.ndarray  # [n] str, source file of each sample (relative to the data folder)

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def from_samples(cls, samples: Sequence[tuple[np.ndarray, np.ndarray]], labels, sources) -> "SpikeLists":
        counts = np.array([len(c) for c, _ in samples], dtype=np.int64)
        offsets = np.zeros(len(samples) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        ch = np.concatenate([c for c, _ in samples]) if samples else np.zeros(0, np.int64)
        tt = np.concatenate([t for _, t in samples]) if samples else np.zeros(0, np.int64)
        return cls(
            channels=ch.astype(_small_int(ch)),
            times=tt.astype(_small_int(tt)),
            offsets=offsets,
            labels=np.asarray(labels, dtype=np.int64),
            sources=np.asarray([str(s) for s in sources], dtype=str),
        )

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.channels[a:b], self.times[a:b]

    def dense(self, i: int, time_steps: int, num_channels: int) -> np.ndarray:
        """Sample ``i`` as a dense ``[T, channels]`` uint8 array (spikes at ``t >= T`` dropped)."""
        ch, t = self.sample(i)
        out = np.zeros((time_steps, num_channels), dtype=np.uint8)
        m = t < time_steps
        out[t[m].astype(np.int64), ch[m].astype(np.int64)] = 1
        return out


def _small_int(a: np.ndarray):
    if a.size == 0 or (a.min() >= -(2**15) and a.max() < 2**15):
        return np.int16
    return np.int32


def save_spike_lists(path: Path, lists: SpikeLists, fingerprint: str) -> None:
    """Write ``lists`` to ``path`` (.npz) atomically: a temporary file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".npz.part")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                channels=lists.channels,
                times=lists.times,
                offsets=lists.offsets,
                labels=lists.labels,
                sources=lists.sources,
                fingerprint=np.asarray(fingerprint),
                version=np.asarray(CACHE_VERSION),
            )
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; caches may be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class CacheEntryError(ValueError):
    """A cache file is unreadable, inconsistent or stale."""


def load_spike_lists(path: Path, fingerprint: str | None = None) -> SpikeLists:
    """Read a cache file written by :func:`save_spike_lists`; :class:`CacheEntryError` if it is corrupt or stale."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in ("channels", "times", "offsets", "labels", "sources", "fingerprint", "version")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise CacheEntryError(f"cache file {path} is corrupt ({type(err).__name__}: {err})") from err
    if int(data["version"]) != CACHE_VERSION:
        raise CacheEntryError(f"cache file {path} has format version {int(data['version'])}, expected {CACHE_VERSION}")
    if fingerprint is not None and str(data["fingerprint"]) != fingerprint:
        raise CacheEntryError(f"cache file {path} was built from other source files (the data folder changed)")
    lists = SpikeLists(data["channels"], data["times"], data["offsets"], data["labels"], data["sources"])
    n = len(lists.labels)
    if (
        len(lists.offsets) != n + 1
        or len(lists.sources) != n
        or int(lists.offsets[0]) != 0
        or int(lists.offsets[-1]) != len(lists.channels)
        or len(lists.channels) != len(lists.times)
        or (n and np.any(np.diff(lists.offsets) < 0))
    ):
        raise CacheEntryError(f"cache file {path} is inconsistent (truncated or edited)")
    return lists


def params_hash(params: dict) -> str:
    """First 12 hex digits of the sha256 of the canonical JSON of ``params``."""
    blob = json.dumps({"cache_version": CACHE_VERSION, **params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def files_fingerprint(root: Path, files: Sequence[Path]) -> str:
    """sha256 over (relative path, size) of every source file: detects an added, removed or replaced file."""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{Path(f).relative_to(root).as_posix()}\0{Path(f).stat().st_size}\n".encode())
    return h.hexdigest()


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir`` > ``$HM2BP_CACHE_DIR`` > ``~/.cache/hm2bp`` (never inside the data folder)."""
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hm2bp"


class SpikeCache:
    """Encoded splits of one dataset under ``<cache_dir>/<name>-<hash12>/`` (see the module docstring)."""

    def __init__(self, cache_dir: Path, name: str, params: dict) -> None:
        self.params = params
        self.folder = Path(cache_dir) / f"{name}-{params_hash(params)}"

    def path(self, split: str) -> Path:
        return self.folder / f"{split}.npz"

    def get(self, split: str, fingerprint: str, build: Callable[[], SpikeLists]) -> SpikeLists:
        """The cached split if present and valid, else ``build()`` (written atomically, then returned)."""
        path = self.path(split)
        if path.is_file():
            try:
                return load_spike_lists(path, fingerprint)
            except CacheEntryError as err:
                warnings.warn(f"{err}; rebuilding it", stacklevel=2)
        lists = build()
        self.folder.mkdir(parents=True, exist_ok=True)
        params_file = self.folder / "params.json"
        if not params_file.is_file():
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".json.part")
            with os.fdopen(fd, "w") as f:
                json.dump({"cache_version": CACHE_VERSION, **self.params}, f, indent=1, sort_keys=True, default=str)
            os.chmod(tmp, 0o644)
            os.replace(tmp, params_file)
        save_spike_lists(path, lists, fingerprint)
        return lists


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
    :meth:`encode_file` (``path -> (channels, times)``) and :meth:`cache_params`.

    Args:
        time_steps: T; spikes at ``t >= T`` are dropped when batches are built.
        val_size: training samples held out for validation (seeded); int count or fraction in (0, 1).
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
        if time_steps < 2:
            raise ValueError(f"data.time_steps must be at least 2, got {time_steps}")
        self.time_steps = time_steps
        self.val_size = val_size
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
    @property
    def cache(self) -> SpikeCache:
        return SpikeCache(self.cache_dir, self.cache_name, self.cache_params())

    def check_label(self, label: int, path: Path) -> int:
        if not 0 <= int(label) < self.num_classes:
            raise ValueError(
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
        """The encoded split, from the cache or encoded now (and cached)."""
        if split not in self._lists:
            files = self.source_files(split)
            if not files:
                raise FileNotFoundError(f"no {split} samples found under {self.source_root()}")
            for path, label in files:
                self.check_label(label, path)
            fp = files_fingerprint(self.source_root(), [p for p, _ in files])
            self._lists[split] = self.cache.get(split, fp, lambda: self.build_split(split, files))
        return self._lists[split]

    def prepare_data(self) -> None:
        for split in self.splits:
            self.load_split(split)

    def _val_count(self, n: int) -> int:
        v = self.val_size
        return int(round(v * n)) if isinstance(v, float) and 0 < v < 1 else int(v)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self.train_set is None:
            lists = self.load_split("train")
            tr, va = seeded_split(len(lists), self._val_count(len(lists)), self.seed)
            self.train_set = SpikeListDataset(lists, tr.numpy())
            self.val_set = SpikeListDataset(lists, va.numpy())
        if stage in (None, "test", "predict") and self.test_set is None:
            self.test_set = SpikeListDataset(self.load_split("test"))

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        # the base's resumable, rank-sharded sampler; only the collation differs
        return super()._loader(dataset, shuffle, collate_fn=collate_spike_lists)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        channels, times, sample, labels, _ = batch
        dense = densify(channels, times, sample, len(labels), self.time_steps, self.num_inputs)  # [T, B, N]
        return dense.view(self.time_steps, len(labels), *self.input_shape), labels.long()
