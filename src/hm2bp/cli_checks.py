"""Checks the ``hm2bp`` CLI makes before any process is launched or anything is written.

Each raises one :class:`~hm2bp.errors.ConfigError` naming the key to fix: the global batch against
the world size (:func:`check_world`, with the datamodules' own :func:`hm2bp.checks.per_device_batch`),
every data split the command uses and the model/data fit (:func:`check_data`), a ``--ckpt_path`` written for another network (:func:`check_checkpoint_fits`),
explicit checkpoint folders that hold another run's files (:func:`check_explicit_ckpt_dirs`) and
trainer values Lightning would only reject once training has started (:func:`check_trainer_options`).
docs/troubleshooting.md lists the messages.
"""
from __future__ import annotations

from pathlib import Path

from hm2bp.checkpoint import load_checkpoint_file
from hm2bp.checks import number, per_device_batch
from hm2bp.errors import ConfigError


def check_world(trainer, dm) -> None:
    """``data.init_args.batch_size`` is the global batch: it must split evenly over the processes."""
    batch = getattr(dm, "batch_size", None)
    if batch is not None:
        per_device_batch(batch, trainer.world_size, trainer.num_devices, trainer.num_nodes)


def check_data(model, dm, stages: tuple[str, ...]) -> None:
    """Read and validate every split the command uses, and the model/data fit."""
    if dm is None:
        return
    dm.prepare_data()
    for stage in stages:
        dm.setup(stage)
    if hasattr(model, "check_data"):
        model.check_data(dm)


def check_checkpoint_fits(model, ckpt: Path | None, weights_only=None) -> None:
    """A ``--ckpt_path`` must hold this network's parameters (same names and shapes)."""
    if ckpt is None or not ckpt.is_file():
        return
    saved = load_checkpoint_file(ckpt, map_location="cpu", weights_only=weights_only).get("state_dict", {})
    for name, value in model.state_dict().items():
        if not name.startswith("network."):
            continue
        if name not in saved:
            raise ConfigError(f"--ckpt_path {ckpt} has no parameter {name!r}: it was written for "
                              "another network (model.network.init_args.spec)")
        if tuple(saved[name].shape) != tuple(value.shape):
            raise ConfigError(
                f"--ckpt_path {ckpt}: parameter {name!r} has shape {tuple(saved[name].shape)}, this "
                f"network's has {tuple(value.shape)}; the checkpoint was written for another model.network.init_args.spec"
            )


def check_explicit_ckpt_dirs(explicit: list[tuple[str, Path]], resumed_from: Path | None) -> None:
    """An explicit ``dirpath`` may not write over the checkpoints of another (earlier) run."""
    for key, folder in explicit:
        old = [p for p in folder.glob("*.ckpt") if p.is_file()] if folder.is_dir() else []
        resuming_here = resumed_from is not None and resumed_from.resolve().parent == folder.resolve()
        if old and not resuming_here:
            raise ConfigError(
                f"{key}={folder} already holds checkpoints of another run ({old[0].name}); remove the dirpath "
                "(every run then writes into its own folder), choose an empty folder, or resume with --ckpt_path last"
            )


def check_trainer_options(t, trainer, dm) -> None:
    """Trainer values (parsed config ``t``) that Lightning would only reject (or divide by) once
    training has started."""
    for key in ("accumulate_grad_batches", "log_every_n_steps", "check_val_every_n_epoch"):
        number(f"trainer.{key}", t.get(key), low=1, integer=True, none_ok=True)
    number("trainer.gradient_clip_val", t.get("gradient_clip_val"), low=0, none_ok=True)
    number("trainer.num_sanity_val_steps", t.get("num_sanity_val_steps"), low=-1, integer=True, none_ok=True)
    interval = t.get("val_check_interval")
    if isinstance(interval, float):
        number("trainer.val_check_interval", interval, low=0, high=1, low_open=True,
               hint="a fraction of the epoch, or a whole number of training batches")
    train = getattr(dm, "train_set", None)
    if isinstance(interval, int) and t.get("check_val_every_n_epoch") is not None and train is not None:
        world = int(trainer.world_size)
        per_device = per_device_batch(dm.batch_size, world)
        samples = -(-len(train) // world)  # ceil: the training sampler pads to the world size
        batches = -(-samples // per_device)
        limit = trainer.limit_train_batches  # Lightning's reading: 2.0 -> 2 batches, 1.0 -> all
        if isinstance(limit, int):
            batches = min(batches, limit)
        elif isinstance(limit, float):
            batches = int(batches * limit)
        if interval > batches:
            raise ConfigError(
                f"trainer.val_check_interval={interval} is more than the {batches} training batches of an epoch; "
                "lower it, give a fraction, or set trainer.check_val_every_n_epoch null to count batches across epochs"
            )
