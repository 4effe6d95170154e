"""``hm2bp`` command line: LightningCLI with OmegaConf interpolation (``parser_mode="omegaconf+"``).

    hm2bp fit --config configs/experiment/digits.yaml
    hm2bp fit --config configs/experiment/digits.yaml --ckpt_path last      # resume the latest run
    hm2bp test --config configs/experiment/digits.yaml --ckpt_path best     # its best checkpoint
    hm2bp predict --config configs/experiment/digits.yaml --ckpt_path best  # -> predictions.csv

Values that must agree between data and model (input size, class count, T) are linked from
the instantiated datamodule into ``SpikingClassifier`` (``num_inputs``, ``num_classes``,
``time_steps``), which checks them against the network with one clear error. A ``SpikingNetwork``
whose ``target_injection`` is left null injects the loss's desired count
(``model.loss.init_args.desired``; docs/algorithm.md, "Weight update"); a number sets it explicitly.
Experiment files compose the files of ``configs/model``, ``configs/data`` and ``configs/trainer``
with dotted deltas (:func:`hm2bp.cli_config.expand_composed_configs`).
``--test_after_fit true`` tests the best checkpoint once ``fit`` ends, in the same run and W&B run.

Run folders (:mod:`hm2bp.runs`): every ``fit`` writes its checkpoints, ``config.yaml`` and logs into
a new folder ``<trainer.default_root_dir>/<date>-<time>-<hex>``; ``--ckpt_path last`` resumes the
experiment's latest run in its own folder (and says which); ``validate``/``test``/``predict`` of a
run's checkpoint write into ``<run>/<command>-<date>-<time>-<hex>``. A ``ModelCheckpoint`` with an
explicit ``dirpath`` keeps it, but may not write over another run's checkpoints there.

Checks made before any process is launched or anything is written (:mod:`hm2bp.cli_checks`,
docs/troubleshooting.md): the optimizer and its learning rate, every
configured value, the ``--ckpt_path`` file (readable, and made for this network), the global
``data.init_args.batch_size`` against ``devices x num_nodes``, every data split the command will use
(train and validation, and test when ``test_after_fit``), and the output folder. Errors the user
can fix print as one line and exit with status 2 (:mod:`hm2bp.cli_errors`); a fit that fails before
its first step leaves no run folder and no W&B run. Ctrl-C during ``fit`` saves ``last.ckpt`` first
(``hm2bp.callbacks.CheckpointOnInterrupt``). Checkpoints are written atomically
(``hm2bp.checkpoint.AtomicCheckpointIO``).
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from jsonargparse import Namespace, set_parsing_settings
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from hm2bp import cli_checks, runs
from hm2bp.allocator import keep_freed_memory
from hm2bp.callbacks.interrupt import CheckpointOnInterrupt
from hm2bp.callbacks.predictions import PredictionWriter
from hm2bp.checkpoint import AtomicCheckpointIO, CheckpointNotFoundError, load_checkpoint_file
from hm2bp.checks import number
from hm2bp.cli_config import RunConfig, expand_composed_configs, redirect_loggers
from hm2bp.cli_errors import EXIT_USAGE, debug_requested, is_known, one_line
from hm2bp.errors import ConfigError, OutputError
from hm2bp.module import SpikingClassifier
from hm2bp.official import is_official_checkpoint

DEFAULT_LOGGER = {
    "class_path": "pytorch_lightning.loggers.WandbLogger",
    "init_args": {"offline": True, "project": "hm2bp", "save_dir": "runs"},
}
ENV_RUN_DIR = "HM2BP_RUN_DIR"  # handed by the launching process to the DDP processes Lightning starts
EVAL_COMMANDS = ("validate", "test", "predict")
# printed by every command, with nothing for the user to do
_QUIET_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r"Checkpoint directory .* exists and is not empty",  # a resumed run's own folder (other runs cannot get there)
)
_QUIET_INFO = ("💡 Tip:",)


class HM2BPCLI(LightningCLI):
    """LightningCLI with data->model links, run folders, resume by one flag, checks before any work,
    and an optional test after fit (module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        self.run_dir: Path | None = None  # where this command writes
        self.resumed_from: Path | None = None  # the checkpoint --ckpt_path last/best resolved to
        self._created: Path | None = None  # a run folder this process made (removed if the run fails before training)
        self._locks: list[runs.RunLock] = []
        self._explicit_ckpt_dirs: list[tuple[str, Path]] = []
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ parser
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

    def before_instantiate_classes(self) -> None:
        sub, cfg = self._sub()
        conf = cfg if sub else self.config
        threads = conf.get("threads")
        number("threads", threads, low=0, integer=True, hint="a count of CPU threads, or 0 for torch's default")
        if threads:
            torch.set_num_threads(int(threads))
        if conf.get("allocator", "keep") == "keep":
            keep_freed_memory()
        target_injection_follows_loss(conf.model)
        self._prepare_run_dir(sub, cfg)

    def parse_arguments(self, parser, args) -> None:
        # LightningCLI's, without its warning about `args` plus sys.argv (main() passes argv on purpose)
        self.config = parser.parse_object(args) if isinstance(args, (dict, Namespace)) else parser.parse_args(args)

    # ------------------------------------------------------------------ --ckpt_path
    def _sub(self):
        sub = self.config.get("subcommand")
        return sub, (self.config[sub] if sub else None)

    def _root(self, cfg) -> Path:
        root = cfg.trainer.get("default_root_dir") if cfg is not None else None
        return Path(root) if root else Path.cwd()

    def _explicit_dirpaths(self, cfg) -> list[tuple[str, Path]]:
        """``(config key, folder)`` of every ``ModelCheckpoint`` given a ``dirpath`` in the config."""
        cbs = cfg.trainer.get("callbacks") if cfg is not None else None
        out = []
        for k, cb in enumerate(cbs if isinstance(cbs, list) else []):
            if isinstance(cb, Namespace) and str(cb.get("class_path", "")).endswith("ModelCheckpoint"):
                dirpath = (cb.get("init_args") or Namespace()).get("dirpath")
                if dirpath:
                    out.append((f"trainer.callbacks[{k}].init_args.dirpath", Path(dirpath)))
        return out

    def _resolve_ckpt(self, sub: str, cfg, ckpt: str) -> str | None:
        """``last``/``best`` -> a file (printed), from this experiment's runs; ``None``: nothing to resume."""
        handed = os.environ.get(ENV_RUN_DIR)
        explicit = self._explicit_dirpaths(cfg)
        if handed:  # a DDP process started by the launching process: same run, same file
            found = runs.last_checkpoint(Path(handed))
            run = (Path(handed), found) if found else None
        elif explicit:
            files = [p for _, d in explicit for p in d.glob("last*.ckpt") if p.is_file()]
            newest = max(files, key=lambda p: p.stat().st_mtime_ns) if files else None
            run = (runs.run_dir_of(newest) or newest.parent, newest) if newest else None
        else:
            run = runs.latest_run(self._root(cfg))
        if run is None:
            if ckpt == "last" and sub == "fit":
                _say(f"--ckpt_path last: no checkpoint to resume under {self._root(cfg)}; starting a new run")
                return None
            raise CheckpointNotFoundError(
                f"--ckpt_path {ckpt}: no run with a checkpoint under {self._root(cfg)} "
                "(trainer.default_root_dir); pass a checkpoint file instead"
            )
        run_dir, last = run
        path = last
        if ckpt == "best":
            path = _best_path(last)
        step = load_checkpoint_file(path, map_location="cpu").get("global_step", "?")
        _say(f"--ckpt_path {ckpt}: {path} (global step {step}) of run {run_dir}")
        return str(path)

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads --ckpt_path here, at parse time, with a bare torch.load: resolve and check it first
        sub, cfg = self._sub()
        ckpt = cfg.get("ckpt_path") if cfg is not None else None
        if ckpt and ckpt not in ("last", "best") and os.path.isfile(ckpt) and is_official_checkpoint(ckpt):
            # the authors' text weights: loaded into the network by _load_official, not by Lightning
            if sub == "fit":
                raise ConfigError(f"--ckpt_path {ckpt} is an official text checkpoint (weights only); use it with "
                                  "test/validate/predict, not fit")
            self._official_ckpt, cfg["ckpt_path"] = ckpt, None
            return
        if ckpt in ("last", "best"):
            ckpt = self._resolve_ckpt(sub, cfg, ckpt)
            cfg["ckpt_path"] = ckpt
            self.resumed_from = Path(ckpt) if ckpt else None
        elif ckpt and str(ckpt) != "hpc" and "://" not in str(ckpt):
            if not os.path.isfile(ckpt):
                raise CheckpointNotFoundError(f"--ckpt_path {ckpt}: no such checkpoint file")
            load_checkpoint_file(ckpt, map_location="cpu", weights_only=cfg.get("weights_only"))  # corrupt -> error
            self.resumed_from = Path(ckpt)
        super()._parse_ckpt_path()

    def _set_seed(self) -> None:
        # Lightning replaces an out-of-range seed by 0 with a warning: refuse it instead
        seed = self._get(self.config, "seed_everything")
        if not isinstance(seed, bool):
            number("seed_everything", seed, low=0, high=2**32 - 1, integer=True,
                   hint="an integer seed from 0 to 4294967295, or true for a random one")
        super()._set_seed()

    # ------------------------------------------------------------------ run folder and loggers
    def _prepare_run_dir(self, sub, cfg) -> None:
        if sub is None:  # run=False: build the objects only, write nothing
            return
        self._explicit_ckpt_dirs = self._explicit_dirpaths(cfg)
        handed = os.environ.get(ENV_RUN_DIR)
        owner = runs.run_dir_of(self.resumed_from) if self.resumed_from else None
        if handed:
            self.run_dir = Path(handed)
        elif sub == "fit":
            self.run_dir = owner if owner is not None else self._root(cfg).resolve() / runs.new_run_name()
        else:
            base = owner if owner is not None else self._root(cfg).resolve()
            self.run_dir = base / runs.new_run_name(sub)
        redirect_loggers(cfg.trainer, self.run_dir, self.run_dir.name)

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except Exception as err:
            # jsonargparse wraps a constructor's error in a ValueError about union subtypes: re-raise ours
            known = _known_cause(err)
            if known is None or known is err:
                raise
            raise known from None

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a user's own CheckpointIO
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        for lg in trainer.loggers:
            if isinstance(lg, WandbLogger) and lg._wandb_init.get("anonymous") is None:
                # Lightning passes anonymous=None, which wandb 0.31 warns about on every run
                lg._wandb_init.pop("anonymous", None)
        if self.run_dir is None:
            return trainer
        ckpt_dir = self.run_dir / runs.CKPT_DIR
        owner = runs.run_dir_of(self.resumed_from) if self.resumed_from else None
        if self.subcommand in EVAL_COMMANDS and owner is not None:
            ckpt_dir = owner / runs.CKPT_DIR  # write nothing; the fit's folder, so restoring it changes no dirpath
        for cb in trainer.callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
                cb.dirpath = str(ckpt_dir)
            if isinstance(cb, RunConfig):
                cb.run_dir = self.run_dir
        if self.subcommand == "fit" and not any(isinstance(cb, CheckpointOnInterrupt) for cb in trainer.callbacks):
            first = next((cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)), None)
            trainer.callbacks.insert(0, CheckpointOnInterrupt(dirpath=first.dirpath if first else str(ckpt_dir)))
        if self.subcommand == "predict":
            trainer.callbacks.insert(0, PredictionWriter(str(self.run_dir / "predictions.csv")))
        return trainer

    # ------------------------------------------------------------------ checks before any work (hm2bp.cli_checks)
    def _check_world(self) -> None:
        cli_checks.check_world(self.trainer, self.datamodule)

    def _check_data(self, stages: tuple[str, ...]) -> None:
        cli_checks.check_data(self.model, self.datamodule, stages)

    def _check_checkpoint_fits(self) -> None:
        cli_checks.check_checkpoint_fits(self.model, self.resumed_from, self.config[self.subcommand].get("weights_only"))

    def _check_explicit_ckpt_dirs(self) -> None:
        cli_checks.check_explicit_ckpt_dirs(self._explicit_ckpt_dirs, self.resumed_from)

    def _check_trainer_options(self) -> None:
        cli_checks.check_trainer_options(self.config[self.subcommand].trainer, self.trainer, self.datamodule)

    def _prepare_output(self) -> None:
        """Global rank zero makes (or, for a resume, locks) the run folder; DDP processes it starts inherit it."""
        trainer = self.trainer
        if os.environ.get(ENV_RUN_DIR) or trainer.global_rank != 0:
            return
        if self.run_dir.exists():
            if not runs.is_run_dir(self.run_dir):
                raise ConfigError(f"{self.run_dir} exists but is not an hm2bp run folder")
        else:
            runs.create_run_dir(self.run_dir, self.subcommand)
            self._created = self.run_dir
        self._locks.append(runs.RunLock(self.run_dir).acquire())
        locked = {self.run_dir.resolve()}
        for key, folder in self._explicit_ckpt_dirs:
            if folder.resolve() in locked:
                continue
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise OutputError(f"{key}: cannot create {folder} ({err.strerror or err}); choose a writable folder") from err
            self._locks.append(runs.RunLock(folder).acquire())
            locked.add(folder.resolve())
        _say(f"{self.subcommand}: writing into {self.run_dir}")
        if isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher):
            os.environ[ENV_RUN_DIR] = str(self.run_dir)  # read by the processes Lightning starts next

    def before_fit(self) -> None:
        self._check_world()
        if hasattr(self.model, "build_optimizer"):
            self.model.build_optimizer()  # a bad optimizer class or learning rate: one error before any work
        stages = ("fit", "test") if self.config[self.subcommand].get("test_after_fit") else ("fit",)
        self._check_data(stages)
        self._check_trainer_options()
        self._check_checkpoint_fits()
        self._check_explicit_ckpt_dirs()
        self._prepare_output()

    def _before_eval(self, stage: str) -> None:
        self._check_world()
        self._check_data((stage,))
        self._check_checkpoint_fits()
        self._load_official()
        self._prepare_output()

    def _load_official(self) -> None:
        if getattr(self, "_official_ckpt", None):  # hm2bp.official: fills the network in place
            from hm2bp.official import load_checkpoint

            load_checkpoint(self.model.network, self._official_ckpt)

    def before_validate(self) -> None:
        self._before_eval("validate")

    def before_test(self) -> None:
        self._before_eval("test")

    def before_predict(self) -> None:
        self._before_eval("predict")

    # ------------------------------------------------------------------ running, failing, finishing
    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except BaseException as err:
            self._after_failure(err)
            raise
        finally:
            for lock in self._locks:
                lock.release()
            self._locks.clear()
            if os.environ.get(ENV_RUN_DIR) == str(self.run_dir) and self.trainer.global_rank == 0:
                os.environ.pop(ENV_RUN_DIR, None)
            _finish_wandb(self.trainer, exit_code=0)

    def _after_failure(self, err: BaseException) -> None:
        """Finish an open W&B run as failed; remove a run folder this process made if nothing was trained."""
        _finish_wandb(self.trainer, exit_code=1)
        run = self._created
        if run is None or not run.is_dir():
            return
        trained = any((run / runs.CKPT_DIR).glob("*.ckpt")) if (run / runs.CKPT_DIR).is_dir() else False
        if not trained:
            shutil.rmtree(run, ignore_errors=True)

    def after_fit(self) -> None:
        if not self.config[self.subcommand].get("test_after_fit"):
            return
        best = next((cb.best_model_path for cb in self.trainer.checkpoint_callbacks
                     if isinstance(cb, ModelCheckpoint) and cb.monitor and cb.best_model_path), "")
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)
        if self.trainer.is_global_zero and results:
            silent = results[0].get("test/silent_output")
            extra = f", all-silent outputs {100.0 * silent:.2f}%" if silent is not None else ""
            print(f"TEST ACCURACY: {100.0 * results[0]['test/acc']:.2f}%  (checkpoint: {best or 'last weights'}{extra})")

    def after_predict(self) -> None:
        writer = next((cb for cb in self.trainer.callbacks if isinstance(cb, PredictionWriter)), None)
        if writer is not None and self.trainer.is_global_zero:
            print(f"predictions written to {writer.path}")


def target_injection_follows_loss(model_cfg) -> None:
    """A ``SpikingNetwork`` config whose ``target_injection`` is null gets the loss's desired count
    (the injected train of a silent target must aim at the count the loss asks for)."""
    net = model_cfg.get("network") if model_cfg is not None else None
    init = net.get("init_args") if isinstance(net, Namespace) else None
    if init is None or "target_injection" not in init or init.get("target_injection") is not None:
        return
    if not str(net.get("class_path", "")).endswith("SpikingNetwork"):
        return
    loss = model_cfg.get("loss")
    if loss is None:
        from hm2bp.loss import SpikeCountLoss

        desired = SpikeCountLoss().desired
    else:
        desired = (loss.get("init_args") or Namespace()).get("desired") if isinstance(loss, Namespace) else None
    if desired is not None:
        init["target_injection"] = float(desired)


def _known_cause(err: BaseException) -> BaseException | None:
    """The first :class:`~hm2bp.errors.HM2BPError` in ``err``'s cause/context chain."""
    from hm2bp.errors import HM2BPError

    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, HM2BPError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _best_path(last: Path) -> Path:
    """The best checkpoint a run's ``ModelCheckpoint(monitor=...)`` recorded in ``last``."""
    ckpt = load_checkpoint_file(last, map_location="cpu")
    for key, state in (ckpt.get("callbacks") or {}).items():
        if "ModelCheckpoint" in str(key) and isinstance(state, dict) and state.get("monitor") and state.get("best_model_path"):
            best = Path(state["best_model_path"])
            if best.is_file():
                return best
    raise CheckpointNotFoundError(f"--ckpt_path best: {last} records no best checkpoint that still exists; "
                                  "pass a checkpoint file instead")


def _finish_wandb(trainer, exit_code: int) -> None:
    """Close the W&B run this command opened (a failed one as failed, never left 'crashed')."""
    for lg in getattr(trainer, "loggers", []) or []:
        if isinstance(lg, WandbLogger) and getattr(lg, "_experiment", None) is not None:
            try:
                lg._experiment.finish(exit_code=exit_code)  # a second finish() does nothing
            except Exception:  # noqa: BLE001 - finishing is best effort
                pass


def _say(msg: str) -> None:
    from pytorch_lightning.utilities import rank_zero_info

    rank_zero_info(f"hm2bp: {msg}")


class _DropInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_QUIET_INFO)


def check_config_files(argv: list[str]) -> None:
    """Every ``--config`` file must be valid YAML: one error naming the file (jsonargparse's does not)."""
    import yaml

    for k, arg in enumerate(argv):
        path = argv[k + 1] if arg in ("--config", "-c") and k + 1 < len(argv) else None
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        if path and os.path.isfile(path):
            try:
                with open(path) as f:
                    yaml.safe_load(f)
            except yaml.YAMLError as err:
                raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())}); fix the file") from None


def cli_main(args: list[str] | None = None, run: bool = True) -> HM2BPCLI:
    """Build (and by default run) the CLI; returns it, for tests and scripts. Errors are raised
    (``main`` prints the known ones as one line)."""
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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``hm2bp`` console script: known errors as one line, exit status 2."""
    debug, argv = debug_requested(list(sys.argv[1:] if argv is None else argv))
    try:
        if argv[:1] == ["export"]:  # NIR export verb (hm2bp.nir.command)
            from hm2bp.nir.command import export_command

            export_command(argv[1:])
            return
        cli_main(argv)
    except Exception as err:  # noqa: BLE001
        if debug or not is_known(err):
            raise
        sys.stderr.write(f"hm2bp: error: {one_line(err)}\n")
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":  # pragma: no cover
    main()
