"""``HM2BPCLI``, the LightningCLI of the ``hm2bp`` command, and :func:`cli_main`, which builds it.

What it adds to LightningCLI, each in its own module:

- parser options ``--test_after_fit``, ``--threads``, ``--allocator`` and the data -> model links
  (``num_inputs``, ``num_classes``, ``time_steps``); config files that compose others
  (:mod:`hm2bp.cli_config`);
- ``--ckpt_path last``/``best`` and checkpoint files checked at parse time (:mod:`hm2bp.ckpt_path`);
- run folders: chosen at parse time, made and locked after the checks, removed when a command fails
  before writing a checkpoint (:mod:`hm2bp.runs`); the run's ``config.yaml`` and the loggers'
  folders (:mod:`hm2bp.run_record`);
- checks before any process is launched or anything is written (:mod:`hm2bp.cli_checks`);
- ``--test_after_fit``: the best checkpoint (the last one when there is no validation) is tested
  after ``fit`` in the same run;
- the score lines of ``test``, ``validate`` and ``--test_after_fit``, with the number of samples
  scored (:mod:`hm2bp.cli_report`);
- private LightningCLI methods are overridden only in :mod:`hm2bp.cli_private`.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from jsonargparse import Namespace, set_parsing_settings
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from hm2bp import cli_checks
from hm2bp.allocator import keep_freed_memory
from hm2bp.callbacks.interrupt import CheckpointOnInterrupt
from hm2bp.callbacks.predictions import PredictionWriter
from hm2bp.callbacks.run_files import MetricsCSVLogger
from hm2bp.checkpoint import AtomicCheckpointIO
from hm2bp.checks import number
from hm2bp.ckpt_path import CkptChoice, resolve_ckpt_path
from hm2bp.cli_config import check_config_files, expand_composed_configs, target_injection_follows_loss
from hm2bp.cli_errors import known_cause, say
from hm2bp.cli_private import LightningCLIHooks, drop_anonymous_none, finish_wandb, relaunches_command_line
from hm2bp.cli_report import SampleCount, score_line
from hm2bp.module import SpikingClassifier
from hm2bp.run_record import RunConfig, redirect_loggers
from hm2bp.runs import EVAL_COMMANDS, RunFolder, explicit_ckpt_dirs

DEFAULT_LOGGER = {
    "class_path": "pytorch_lightning.loggers.WandbLogger",
    "init_args": {"offline": True, "project": "hm2bp", "save_dir": "runs"},
}
# printed by every command, with nothing for the user to do
_QUIET_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r"Checkpoint directory .* exists and is not empty",  # a resumed run's own folder (other runs cannot get there)
)
_QUIET_INFO = ("💡 Tip:",)
# expected when the datamodule holds out no validation set (val_size: 0): nothing to validate or monitor
_NO_VALIDATION_WARNINGS = (
    r"Total length of `.*` across ranks is zero",
    r"`ModelCheckpoint\(monitor=.*could not find the monitored key",
)


class HM2BPCLI(LightningCLIHooks):
    """LightningCLI with data->model links, run folders, resume by one flag, checks before any work,
    and an optional test after fit (module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        self.run: RunFolder | None = None  # where this command writes (None: run=False, nothing is written)
        self.ckpt = CkptChoice()  # the resolved --ckpt_path
        super().__init__(*args, **kwargs)

    @property
    def run_dir(self) -> Path | None:
        return self.run.path if self.run is not None else None

    @property
    def resumed_from(self) -> Path | None:
        """The checkpoint file ``--ckpt_path`` resolved to, if any."""
        return self.ckpt.resumed_from

    def _command_config(self):
        sub = self.config.get("subcommand")
        return sub, (self.config[sub] if sub else None)

    # ------------------------------------------------------------------ parsing
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--test_after_fit", type=bool, default=False,
                            help="after fit, test the best checkpoint and print test/acc")
        parser.add_argument("--threads", type=int, default=1,
                            help="CPU intra-op threads of the run (torch.set_num_threads), set once before anything "
                                 "is built; the per-step scans gain nothing from more; 0 keeps torch's default")
        parser.add_argument("--allocator", type=str, default="keep", choices=["keep", "system"],
                            help="keep: glibc keeps freed memory for the next step's blocks instead of unmapping "
                                 "it (hm2bp.allocator; fewer page faults, the process holds its peak heap); "
                                 "system: the allocator's defaults")
        parser.link_arguments("data.num_inputs", "model.num_inputs", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.time_steps", "model.time_steps", apply_on="instantiate")

    def parse_arguments(self, parser, args) -> None:
        # LightningCLI's, without its warning about `args` plus sys.argv (main() passes argv on purpose)
        self.config = parser.parse_object(args) if isinstance(args, (dict, Namespace)) else parser.parse_args(args)

    def resolve_ckpt_path(self) -> None:
        sub, cfg = self._command_config()
        if cfg is None:
            return
        self.ckpt = resolve_ckpt_path(sub, cfg.get("ckpt_path"), _root(cfg), explicit_ckpt_dirs(cfg.trainer),
                                      weights_only=cfg.get("weights_only"))
        cfg["ckpt_path"] = self.ckpt.ckpt_path

    def check_seed(self, seed) -> None:
        if not isinstance(seed, bool):
            number("seed_everything", seed, low=0, high=2**32 - 1, integer=True,
                   hint="an integer seed from 0 to 4294967295, or true for a random one")

    def before_instantiate_classes(self) -> None:
        sub, cfg = self._command_config()
        conf = cfg if sub else self.config
        threads = conf.get("threads")
        number("threads", threads, low=0, integer=True, hint="a count of CPU threads, or 0 for torch's default")
        if threads:
            torch.set_num_threads(int(threads))
        if conf.get("allocator", "keep") == "keep":
            keep_freed_memory()
        target_injection_follows_loss(conf.model)
        if sub is not None:  # run=False builds the objects only and writes nothing
            self.run = RunFolder(sub, _root(cfg), self.resumed_from, explicit_ckpt_dirs(cfg.trainer))
            redirect_loggers(cfg.trainer, self.run.path, self.run.path.name)

    # ------------------------------------------------------------------ building
    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except Exception as err:
            known = known_cause(err)  # jsonargparse wraps a constructor's error: re-raise ours
            if known is None or known is err:
                raise
            raise known from None

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a user's own CheckpointIO
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        drop_anonymous_none(trainer)
        if self.run is None:
            return trainer
        trainer.loggers = [*trainer.loggers, MetricsCSVLogger(self.run.path)]  # <run>/metrics.csv, whatever the logger
        ckpt_dir = str(self.run.checkpoint_dir)
        for cb in trainer.callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
                cb.dirpath = ckpt_dir
            if isinstance(cb, RunConfig):
                cb.run_dir = self.run.path
        if self.subcommand == "fit" and not any(isinstance(cb, CheckpointOnInterrupt) for cb in trainer.callbacks):
            first = next((cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)), None)
            trainer.callbacks.insert(0, CheckpointOnInterrupt(dirpath=first.dirpath if first else ckpt_dir))
        if self.subcommand == "predict":
            trainer.callbacks.insert(0, PredictionWriter(str(self.run.path / "predictions.csv")))
        else:
            trainer.callbacks.append(SampleCount())  # the score lines' sample counts
        return trainer

    # ------------------------------------------------------------------ checks before any work, then the run folder
    def _check_checkpoint_fits(self) -> None:
        cli_checks.check_checkpoint_fits(self.model, self.resumed_from, self.config_value("weights_only"))

    def _open_run(self) -> None:
        self.run.open(self.trainer.global_rank, hand_over=relaunches_command_line(self.trainer))

    def before_fit(self) -> None:
        cli_checks.check_world(self.trainer, self.datamodule)
        if hasattr(self.model, "build_optimizer"):
            self.model.build_optimizer()  # a bad optimizer class or learning rate: one error before any work
        stages = ("fit", "test") if self.config_value("test_after_fit") else ("fit",)
        cli_checks.check_data(self.model, self.datamodule, stages)
        if _holds_out_nothing(self.datamodule):
            say("no validation set (data.init_args.val_size: 0): every training sample trains, and the last "
                "checkpoint stands for the best")
            for message in _NO_VALIDATION_WARNINGS:  # inside cli_main's catch_warnings: this command only
                warnings.filterwarnings("ignore", message=message)
        cli_checks.check_trainer_options(self.config_value("trainer"), self.trainer, self.datamodule)
        self._check_checkpoint_fits()
        cli_checks.check_explicit_ckpt_dirs(self.run.explicit, self.resumed_from)
        self._open_run()

    def _before_eval(self, stage: str) -> None:
        cli_checks.check_world(self.trainer, self.datamodule)
        cli_checks.check_data(self.model, self.datamodule, (stage,))
        self._check_checkpoint_fits()
        if self.ckpt.official:  # the authors' text weights (hm2bp.official) fill the network in place
            from hm2bp.official import load_checkpoint

            load_checkpoint(self.model.network, self.ckpt.official)
        self._open_run()

    def before_validate(self) -> None:
        self._before_eval("validate")

    def before_test(self) -> None:
        self._before_eval("test")

    def before_predict(self) -> None:
        self._before_eval("predict")

    # ------------------------------------------------------------------ finishing
    def command_failed(self, err: BaseException) -> None:
        finish_wandb(self.trainer, exit_code=1)
        if self.run is not None:
            self.run.discard_if_empty()

    def command_ended(self) -> None:
        if self.run is not None:
            self.run.close(self.trainer.global_rank)
        finish_wandb(self.trainer, exit_code=0)

    def after_fit(self) -> None:
        if not self.config_value("test_after_fit"):
            return
        ckpt = self.final_checkpoint()
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt or None)
        if results:
            self._print_score("test", results[0], ckpt or "last weights")

    def _print_score(self, stage: str, metrics, checkpoint: str) -> None:
        """``TEST ACCURACY: ... % on <n> samples (checkpoint: ...)`` on global rank zero."""
        counter = next((cb for cb in self.trainer.callbacks if isinstance(cb, SampleCount)), None)
        line = score_line(stage, metrics, counter.counts.get(stage) if counter else None, checkpoint)
        if line is not None and self.trainer.is_global_zero:
            print(line)

    def _scored_checkpoint(self) -> str:
        """What ``validate``/``test`` scored: the ``--ckpt_path`` file, else the config's initial weights."""
        return self.ckpt.official or self.ckpt.ckpt_path or "none, the model's initial weights"

    def after_validate(self) -> None:
        self._print_score("val", self.trainer.callback_metrics, self._scored_checkpoint())

    def after_test(self) -> None:
        self._print_score("test", self.trainer.callback_metrics, self._scored_checkpoint())

    def final_checkpoint(self) -> str:
        """The checkpoint ``--test_after_fit`` tests: the best one a monitoring ``ModelCheckpoint``
        recorded; without validation (``val_size: 0``) the last one written; else ``""`` (the weights
        in memory)."""
        callbacks = [cb for cb in self.trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
        best = next((cb.best_model_path for cb in callbacks if cb.monitor and cb.best_model_path), "")
        if best or sum(self.trainer.num_val_batches or [0]) > 0:
            return best
        last = [Path(cb.last_model_path) for cb in callbacks if cb.last_model_path and Path(cb.last_model_path).is_file()]
        return str(max(last, key=lambda p: p.stat().st_mtime_ns)) if last else ""

    def after_predict(self) -> None:
        writer = next((cb for cb in self.trainer.callbacks if isinstance(cb, PredictionWriter)), None)
        if writer is not None and self.trainer.is_global_zero:
            print(f"predictions written to {writer.path}")


def _holds_out_nothing(dm) -> bool:
    """The datamodule was set up with an empty validation set (``val_size: 0``)."""
    val = getattr(dm, "val_set", None)
    return val is not None and len(val) == 0


def _root(cfg) -> Path:
    """The experiment's folder: ``trainer.default_root_dir``, else the working directory."""
    root = cfg.trainer.get("default_root_dir") if cfg is not None else None
    return Path(root) if root else Path.cwd()


class _DropInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_QUIET_INFO)


def cli_main(args: list[str] | None = None, run: bool = True) -> HM2BPCLI:
    """Build (and by default run) the CLI; returns it, for tests and scripts. Errors are raised
    (``hm2bp.cli.main`` prints the known ones as one line)."""
    if args is None or isinstance(args, list):
        args = list(sys.argv[1:] if args is None else args)
        check_config_files(args)
        args = expand_composed_configs(args)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    quiet = _DropInfo()
    handlers = logging.getLogger("pytorch_lightning").handlers
    for h in handlers:
        h.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            for message in _QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            return HM2BPCLI(
                SpikingClassifier,
                pl.LightningDataModule,
                subclass_mode_data=True,
                save_config_callback=RunConfig,
                auto_configure_optimizers=False,  # the optimizer and schedule are model.optimizer / model.lr_scheduler
                trainer_defaults={"logger": DEFAULT_LOGGER},
                parser_kwargs={"parser_mode": "omegaconf+", "exit_on_error": False,
                               **{sub: {"exit_on_error": False} for sub in ("fit", *EVAL_COMMANDS)}},
                args=args,
                run=run,
            )
    finally:
        for h in handlers:
            h.removeFilter(quiet)
