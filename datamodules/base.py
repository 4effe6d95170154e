"""Shared pieces of every hm2bp datamodule.

Batch contract (what every datamodule hands to the model, after ``on_after_batch_transfer``):
``(spikes, labels, index)`` with ``spikes`` ``[T, B, *input_shape]`` ``uint8`` (0/1), ``labels``
``[B]`` ``int64`` and ``index`` ``[B]``, each sample's index in its split's source (predictions
name their samples by it; boosting keys its weights by it). A datamodule of one's own may hand
``(spikes, labels)`` only; the model then cannot boost. Each datamodule exposes ``num_inputs``,
``num_classes``, ``time_steps`` and ``input_shape``; the CLI links them into the model.

Data location (:attr:`SpikeDataModule.data_dir`, for datamodules that read files): the ``data_dir``
argument, else ``$HM2BP_DATA_DIR``, else ``./data``. Missing files raise :func:`data_not_found`: what is
missing, the expected layout and how to point at the data, in the same words for every datamodule.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from hm2bp.checks import number, per_device_batch, val_count
from hm2bp.datamodules.encoding import sample_keys
from hm2bp.errors import ConfigError, DataNotFoundError

ENV_DATA_DIR = "HM2BP_DATA_DIR"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir`` > ``$HM2BP_DATA_DIR`` > ``./data``."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_DATA_DIR)
    return Path(env).expanduser() if env else Path("data")


def data_not_found(what: str, layout: str, keys: tuple[str, ...] = ("data_dir",),
                   download: bool = False) -> DataNotFoundError:
    """The error for data files that are not there: ``<what> not found. Expected <layout>; pass
    data.<key> [/ data.<key>] or set $HM2BP_DATA_DIR[, or use download: true]``."""
    where = " / ".join(f"data.{k}" for k in keys)
    fetch = ", or use download: true" if download else ""
    return DataNotFoundError(f"{what} not found. Expected {layout}; pass {where} or set ${ENV_DATA_DIR}{fetch}")


class IndexedTensorDataset(Dataset):
    """``(x[i], y[i], i)``: the index lets encoders key their randomness by sample."""

    def __init__(self, x: Tensor, y: Tensor, indices: Tensor | None = None) -> None:
        self.x, self.y = x, y
        self.indices = indices if indices is not None else torch.arange(len(x))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = int(self.indices[k])
        return self.x[i], self.y[i], i


def seeded_split(n: int, val_size: int | float, seed: int, key: str = "data.init_args.val_size",
                 where: str = "") -> tuple[Tensor, Tensor]:
    """Seeded permutation split of ``range(n)`` into ``(train_idx, val_idx)``.

    ``val_size`` is a count or a fraction in (0, 1) (:func:`hm2bp.checks.val_count`); both sides get
    at least one sample, else one :class:`~hm2bp.errors.ConfigError` naming ``key`` (and ``where``
    the samples came from). ``val_size=0`` holds out nothing: every sample trains, ``val_idx`` is empty.
    """
    val_size = val_count(key, val_size, n, where, zero_ok=True)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


_ORDER_SALT = 0x0BDE5A17  # keeps the order hash independent of the encoders' (seed, index, epoch) hash
_EVAL_SALT = 0x5E1EC7ED  # the evaluation order: independent of every training order


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The training order of epoch ``epoch``: a permutation of ``range(n)`` keyed by ``(seed, epoch)``.

    A stable argsort of counter-based hashes of ``(seed, i, epoch)``, so it depends on nothing but
    those numbers (no generator state, no torch RNG algorithm, no worker or rank).
    """
    keys = sample_keys(int(seed) ^ _ORDER_SALT, torch.arange(n, dtype=torch.int64), int(epoch))
    return torch.sort(keys, stable=True).indices


def swap_permutation(n: int, seed: int, epoch: int, swaps: int = 5000) -> Tensor:
    """The authors' training order: file order, then ``swaps`` random transpositions per epoch.

    Their program shuffles by swapping ``swaps`` random pairs at the start of every epoch, on top
    of the previous epoch's order, so most samples stay near their file position for many
    epochs. Epoch ``e`` here applies the transpositions of epochs ``0..e`` to ``range(n)``, each
    epoch's pairs drawn from a generator keyed by ``(seed, epoch)``: a pure function of those
    numbers, like :func:`epoch_permutation`.
    """
    order = list(range(n))
    if n < 2:
        return torch.tensor(order)
    for k in range(int(epoch) + 1):
        key = int(sample_keys(int(seed) ^ _ORDER_SALT, torch.tensor([k]), 0x5A5)[0])
        pairs = torch.randint(0, n, (swaps, 2), generator=torch.Generator().manual_seed(key)).tolist()
        for a, b in pairs:  # sequential, as the authors' loop: a pair may touch an earlier one
            order[a], order[b] = order[b], order[a]
    return torch.tensor(order)


ORDERS = {"permutation": epoch_permutation, "swaps": swap_permutation}  # data.order -> training order


def evaluation_permutation(n: int, seed: int) -> Tensor:
    """The fixed order of validation and test: one permutation of ``range(n)`` keyed by ``seed``.

    Datasets stored class by class (N-MNIST, TI46 folders) would otherwise put one class in the
    first batches, so ``limit_val_batches``/``limit_test_batches`` and the best-checkpoint choice
    would score that class only. The order is the same in every epoch and run.
    """
    return epoch_permutation(n, int(seed) ^ _EVAL_SALT, 0)


class ResumableSampler(DistributedSampler):
    """This rank's share of an epoch, as a pure function of ``(seed, epoch, rank, world size)``.

    Training (``shuffle=True, pad=True``): the epoch's permutation (:func:`epoch_permutation`),
    padded by wrapping around to a multiple of ``num_replicas`` like torch's ``DistributedSampler``,
    then dealt round-robin: rank ``r`` takes positions ``r, r + W, r + 2W, ...``. So per-device
    batch ``s`` of every rank holds positions ``[s*G, (s+1)*G)`` of the permutation (``G`` the global
    batch): the union over ranks of step ``s`` is exactly the global batch a single process would see.
    Evaluation (``shuffle=False, pad=False``): the fixed :func:`evaluation_permutation` (dataset
    order with ``permute=False``), dealt round-robin, no padding, so every sample is counted
    exactly once.

    It subclasses ``DistributedSampler`` only so that Lightning does not wrap it in another one
    (``use_distributed_sampler`` may stay on); it shards by itself. ``start`` skips the first
    samples of this rank's share once (mid-epoch resume, set by :class:`ResumableDataLoader`).
    """

    def __init__(self, length: int, *, shuffle: bool, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 pad: bool | None = None, permute: bool = True, order: str = "permutation") -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"invalid rank {rank} for world size {num_replicas}")
        self.order = order  # checked where the user gives it (RateCodedImageDataModule)
        self.length = int(length)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.pad = self.shuffle if pad is None else bool(pad)
        self.permute = bool(permute)
        self.drop_last = False
        self.epoch = 0
        self.start = 0
        if self.pad:
            self.num_samples = -(-self.length // self.num_replicas)  # ceil
        else:
            self.num_samples = len(range(self.rank, self.length, self.num_replicas))
        self.total_size = self.num_samples * self.num_replicas if self.pad else self.length

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start; a new epoch forgets any pending resume skip."""
        if int(epoch) != self.epoch:
            self.start = 0
        self.epoch = int(epoch)

    def indices(self, epoch: int | None = None) -> list[int]:
        """This rank's full index list of ``epoch`` (default: the current one), without skipping."""
        epoch = self.epoch if epoch is None else epoch
        if self.shuffle:
            order = ORDERS[self.order](self.length, self.seed, epoch)
        elif self.permute:
            order = evaluation_permutation(self.length, self.seed)
        else:
            order = torch.arange(self.length)
        if self.pad and self.total_size > self.length:
            reps = -(-self.total_size // max(self.length, 1))
            order = order.repeat(reps)[: self.total_size]  # wrap around, as DistributedSampler pads
        return order[self.rank :: self.num_replicas].tolist()

    def __iter__(self):
        start, self.start = self.start, 0
        return iter(self.indices()[start:])

    def __len__(self) -> int:
        return self.num_samples


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` whose position in the epoch survives a checkpoint (Lightning ``_Stateful``).

    ``state_dict()`` is ``{"epoch", "batches", "global_batch_size"}``: the batches this rank has
    handed out in that epoch. Lightning saves it with every checkpoint and loads it before the
    resumed epoch's first batch, and the sampler then skips ``batches x per-device batch`` samples,
    so a run resumed mid-epoch sees exactly the batches an uninterrupted run would. The count is
    a number of global steps, so a resume may even change the world size, as long as the global
    batch is unchanged. Batches are counted as they are handed out; Lightning's fetcher does not
    read ahead for sized loaders, so the count equals the trainer's progress. The worker iterator
    starts at the first ``next()``, i.e. after Lightning's ``set_epoch`` (also on resume).
    """

    def __init__(self, *args, global_batch_size: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.global_batch_size = global_batch_size
        self._epoch_of_count = 0
        self._batches = 0

    def __iter__(self):
        return self._counting_iter()

    def _counting_iter(self):
        sampler = self.sampler
        bs = self.batch_size or 1
        skipped = getattr(sampler, "start", 0)
        if skipped % bs:
            raise RuntimeError(f"resume skip of {skipped} samples is not a whole number of batches of {bs}")
        self._epoch_of_count = int(getattr(sampler, "epoch", 0))
        self._batches = skipped // bs
        for batch in super().__iter__():
            self._batches += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self._epoch_of_count, "batches": self._batches, "global_batch_size": self.global_batch_size}

    def load_state_dict(self, state: dict) -> None:
        sampler = self.sampler
        if not isinstance(sampler, ResumableSampler):
            return
        saved_batch = state.get("global_batch_size")
        if saved_batch is not None and self.global_batch_size is not None and saved_batch != self.global_batch_size:
            raise ConfigError(
                f"cannot resume mid-epoch: the checkpoint was written with a global batch of {saved_batch}, "
                f"this run uses {self.global_batch_size} (data.init_args.batch_size must not change on resume)"
            )
        epoch, batches = int(state.get("epoch", 0)), int(state.get("batches", 0))
        if batches >= len(self):  # that epoch was complete: the next one starts from its beginning
            epoch, batches = epoch + 1, 0
        sampler.epoch = epoch
        sampler.start = batches * (self.batch_size or 1)
        self._epoch_of_count, self._batches = epoch, batches


class SpikeDataModule(pl.LightningDataModule):
    """Base class: batch size checks, loaders and the (spikes, labels, index) batch contract.

    Args:
        batch_size: global batch size; under DDP each device gets ``batch_size / world_size``.
        num_workers: dataloader workers (results do not depend on it).
        seed: seed of the validation split, of the training and evaluation orders and of every encoder.

    Validation and test batches come in a fixed seeded order (:func:`evaluation_permutation`), never
    class by class; ``predict`` keeps the dataset order. An empty validation set (``val_size: 0``)
    gives no validation loader, so Lightning skips validation.
    """

    num_classes: int
    input_shape: tuple[int, ...]
    #: the keys that say where the files are, named by :meth:`missing_data`
    data_keys: tuple[str, ...] = ("data_dir",)

    def __init__(self, batch_size: int = 64, num_workers: int = 0, seed: int = 0, time_steps: int | None = None) -> None:
        super().__init__()
        self.batch_size = number("data.init_args.batch_size", batch_size, low=1, integer=True)
        self.num_workers = number("data.init_args.num_workers", num_workers, low=0, integer=True,
                                  hint="0 loads batches in the main process")
        self.seed = number("data.init_args.seed", seed, low=0, high=2**63 - 1, integer=True)
        if time_steps is not None:
            self.time_steps = number("data.init_args.time_steps", time_steps, low=2, integer=True)
        self.train_set = self.val_set = self.test_set = None

    @property
    def data_dir(self) -> Path:
        """The folder the files are under: the ``data_dir`` argument, else ``$HM2BP_DATA_DIR``, else
        ``./data`` (assign the argument as given; it is resolved here)."""
        return self._data_dir

    @data_dir.setter
    def data_dir(self, value: str | os.PathLike | None) -> None:
        self._data_dir = resolve_data_dir(value)

    def missing_data(self, what: str, layout: str) -> DataNotFoundError:
        """:func:`data_not_found` naming this datamodule's location keys (:attr:`data_keys`)."""
        return data_not_found(what, layout, self.data_keys)

    @property
    def num_inputs(self) -> int:
        n = 1
        for s in self.input_shape:
            n *= s
        return n

    @property
    def per_device_batch_size(self) -> int:
        return per_device_batch(self.batch_size, self._world()[0])

    def _world(self) -> tuple[int, int]:
        """``(world_size, global_rank)`` of the attached trainer, ``(1, 0)`` without one."""
        t = self.trainer
        return (int(t.world_size), int(t.global_rank)) if t is not None else (1, 0)

    def _loader(self, dataset, shuffle: bool, collate_fn=None, permute: bool = True) -> DataLoader:
        """A :class:`ResumableDataLoader` over this rank's shard (see :class:`ResumableSampler`).

        ``shuffle=True`` (training): the order is a permutation keyed by ``(seed, epoch)``, padded
        to a multiple of the world size; evaluation: the fixed seeded evaluation order (the dataset
        order with ``permute=False``), unpadded (exact metrics).
        """
        world, rank = self._world()
        batch = self.per_device_batch_size
        sampler = ResumableSampler(
            len(dataset), shuffle=shuffle, seed=self.seed, num_replicas=world, rank=rank, pad=shuffle, permute=permute,
            order=getattr(self, "order", "permutation"),
        )
        return ResumableDataLoader(
            dataset,
            batch_size=batch,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_fn,
            global_batch_size=batch * world,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None or len(self.val_set) == 0:
            return []  # val_size: 0, no validation
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False, permute=False)

    def to_spikes(self, batch, stage: str):
        """A loader batch on its device -> ``(spikes, labels, index)`` as ``stage`` (``"train"``, ``"val"``,
        ``"test"``) would see it, whatever the trainer is doing (used by evaluation callbacks).
        Subclasses implement it; ``on_after_batch_transfer`` calls it with the trainer's stage."""
        raise NotImplementedError

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        return self.to_spikes(batch, self._stage())

    def _stage(self) -> str:
        """What the attached trainer is doing: ``"train"``, ``"val"`` or ``"test"`` (no trainer: ``"test"``)."""
        t = self.trainer
        if t is None:
            return "test"
        if t.training:
            return "train"
        if t.sanity_checking or t.validating:
            return "val"
        return "test"

    def current_epoch(self) -> int:
        return int(self.trainer.current_epoch) if self.trainer is not None else 0
