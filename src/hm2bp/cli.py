"""``hm2bp`` command line: LightningCLI with OmegaConf interpolation (``parser_mode="omegaconf+"``).

    hm2bp fit --config configs/experiment/digits.yaml
    hm2bp test --config configs/experiment/mnist_mlp.yaml --ckpt_path path/to/best.ckpt

Values that must agree between data and model (input size, class count, T) are linked from
the instantiated datamodule into ``SpikingClassifier`` (``num_inputs``, ``num_classes``,
``time_steps``), which checks them against the network with one clear error.
``--test_after_fit true`` tests the best checkpoint once ``fit`` ends and prints the accuracy.

Checks made before any process is launched or file written (docs/troubleshooting.md): the global
``data.batch_size`` must split evenly over ``devices x num_nodes``; a ``--ckpt_path`` file must be
a readable checkpoint (checked when the command line is parsed). Checkpoints are written atomically (``hm2bp.checkpoint.AtomicCheckpointIO``).
"""
from __future__ import annotations

import os
import sys

import pytorch_lightning as pl
from jsonargparse import set_parsing_settings
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.plugins.io import TorchCheckpointIO

from hm2bp.checkpoint import AtomicCheckpointIO, load_checkpoint_file
from hm2bp.official import is_official_checkpoint
from hm2bp.module import SpikingClassifier

DEFAULT_LOGGER = {
    "class_path": "pytorch_lightning.loggers.WandbLogger",
    "init_args": {"offline": True, "project": "hm2bp", "save_dir": "runs"},
}


class HM2BPCLI(LightningCLI):
    """LightningCLI with data->model links and an optional test after fit."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--test_after_fit", type=bool, default=False,
                            help="after fit, test the best checkpoint and print test/acc")
        parser.link_arguments("data.num_inputs", "model.num_inputs", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.time_steps", "model.time_steps", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a user's own CheckpointIO
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        # Checkpoints without a dirpath go to <default_root_dir>/checkpoints (not the logger's per-run
        # folder), so `--ckpt_path last` finds the previous run's last.ckpt (docs/scaling.md).
        for cb in trainer.callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
                cb.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))
        return trainer

    def _check_before_run(self) -> None:
        """Errors that must come before DDP launches processes or anything is written."""
        trainer, dm = self.trainer, self.datamodule
        world = int(trainer.world_size)
        batch = getattr(dm, "batch_size", None)
        if batch is not None and world > 1 and int(batch) % world:
            raise ValueError(
                f"data.batch_size={batch} is the global batch and must be divisible by the world size {world} "
                f"(trainer.devices x trainer.num_nodes = {trainer.num_devices} x {trainer.num_nodes}); "
                f"choose a multiple of {world}"
            )

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads --ckpt_path here, at parse time, with a bare torch.load: check it first
        sub = self.config.get("subcommand")
        ckpt = self.config[sub].get("ckpt_path") if sub else None
        if ckpt and is_official_checkpoint(ckpt):  # the authors' text weights: loaded by _load_official
            if sub == "fit":
                raise ValueError(f"--ckpt_path {ckpt} is an official text checkpoint (weights only); use it with "
                                 f"test/validate/predict, not fit")
            self._official_ckpt, self.config[sub]["ckpt_path"] = ckpt, None
            return
        if ckpt and str(ckpt) not in ("last", "best", "hpc") and "://" not in str(ckpt):
            if not os.path.isfile(ckpt):
                raise FileNotFoundError(f"--ckpt_path {ckpt}: no such checkpoint file")
            weights_only = self.config[sub].get("weights_only")
            load_checkpoint_file(ckpt, map_location="cpu", weights_only=weights_only)  # a corrupt file fails here
        super()._parse_ckpt_path()

    def before_fit(self) -> None:
        self._check_before_run()

    def _load_official(self) -> None:
        if getattr(self, "_official_ckpt", None):  # hm2bp.official: fills the network in place
            from hm2bp.official import load_checkpoint

            load_checkpoint(self.model.network, self._official_ckpt)

    def before_validate(self) -> None:
        self._check_before_run()
        self._load_official()

    def before_test(self) -> None:
        self._check_before_run()
        self._load_official()

    def before_predict(self) -> None:
        self._check_before_run()
        self._load_official()

    def after_fit(self) -> None:
        if not self.config[self.subcommand].get("test_after_fit"):
            return
        ckpt = "best" if self.trainer.checkpoint_callback and self.trainer.checkpoint_callback.best_model_path else None
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)
        if self.trainer.is_global_zero and results:
            print(f"TEST ACCURACY: {100.0 * results[0]['test/acc']:.2f}%  (checkpoint: {ckpt or 'last weights'})")


def cli_main(args: list[str] | None = None, run: bool = True) -> HM2BPCLI:
    """Build (and by default run) the CLI; returns it, for tests and scripts."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    return HM2BPCLI(
        SpikingClassifier,
        pl.LightningDataModule,
        subclass_mode_data=True,
        trainer_defaults={"logger": DEFAULT_LOGGER},
        parser_kwargs={"parser_mode": "omegaconf+"},
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def main() -> None:
    """Entry point of the ``hm2bp`` console script."""
    if sys.argv[1:2] == ["export"]:  # NIR export verb (hm2bp.nir.command)
        from hm2bp.nir.command import export_command

        export_command(sys.argv[2:])
        return
    cli_main(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
