"""The record of a run: its configuration file and the configuration its loggers (W&B) receive.

:class:`RunConfig` replaces LightningCLI's ``SaveConfigCallback``. On global rank zero it writes the
full resolved configuration (every class path and argument, after links and command-line overrides)
to ``<run folder>/config.yaml``; a file already there (a resumed run) is kept and the new one is
named ``config-<stamp>.yaml``, so nothing is overwritten. The same configuration goes to every
logger's ``log_hyperparams`` (the W&B run's config: ``model``, ``data``, ``trainer``,
``seed_everything``, ...), with ``versions`` (hm2bp, torch, Lightning, wandb) and ``run_dir``; at the
start of training ``optimizer_used`` adds the optimizer the trainer really holds (class and its
defaults: lr, betas, eps, momentum, ...) and its scheduler (``model.optimizer``,
``model.lr_scheduler``).

:func:`redirect_loggers` points every configured logger's ``save_dir`` at the run folder, names a
W&B run without a ``name`` after the experiment (the last folder of ``trainer.default_root_dir``) and,
with ``WANDB_MODE=disabled``, swaps ``WandbLogger`` for a ``CSVLogger`` there.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from jsonargparse import Namespace
from pytorch_lightning.cli import SaveConfigCallback

CSV_LOGGER = "pytorch_lightning.loggers.CSVLogger"


def wandb_disabled() -> bool:
    return os.environ.get("WANDB_MODE", "").lower() == "disabled"


def _logger_entries(trainer_cfg) -> list:
    logger = trainer_cfg.get("logger") if trainer_cfg is not None else None
    if isinstance(logger, list):
        return logger
    return [logger] if isinstance(logger, Namespace) else []


def redirect_loggers(trainer_cfg, run_dir: Path, run_id: str) -> None:
    """In the parsed ``trainer`` config: every logger's ``save_dir`` -> ``run_dir``; W&B runs get
    ``id = run_id`` (unless set) so a resumed run keeps its W&B id, and ``name`` = the experiment
    (last folder of ``trainer.default_root_dir``) unless set; ``WANDB_MODE=disabled`` turns a
    ``WandbLogger`` into a ``CSVLogger`` writing ``<run_dir>/csv/version_0/metrics.csv``."""
    root = trainer_cfg.get("default_root_dir") if trainer_cfg is not None else None
    experiment = Path(str(root)).name if root else None
    entries = _logger_entries(trainer_cfg)
    for k, entry in enumerate(entries):
        class_path = str(entry.get("class_path", ""))
        init = entry.get("init_args")
        if init is None:
            init = Namespace()
            entry["init_args"] = init
        if class_path.endswith("WandbLogger") and wandb_disabled():
            csv = Namespace(class_path=CSV_LOGGER, init_args=Namespace(save_dir=str(run_dir), name="csv", version=0))
            if isinstance(trainer_cfg["logger"], list):
                trainer_cfg["logger"][k] = csv
            else:
                trainer_cfg["logger"] = csv
            continue
        if "save_dir" in init or class_path.rsplit(".", 1)[-1] in ("WandbLogger", "CSVLogger", "TensorBoardLogger"):
            init["save_dir"] = str(run_dir)
        if class_path.endswith("WandbLogger") and not init.get("id") and not init.get("version"):
            init["id"] = run_id
        if class_path.endswith("WandbLogger") and not init.get("name") and experiment:
            init["name"] = experiment


def _plain(value: Any) -> Any:
    """JSON-friendly copy (tuples -> lists, other objects -> str)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def optimizer_record(trainer: pl.Trainer) -> dict:
    """The optimizer(s) and scheduler(s) the trainer holds: class and defaults (lr, betas, eps, ...)."""
    opts = []
    for opt in trainer.optimizers:
        cls = type(opt)
        opts.append({"class": f"{cls.__module__}.{cls.__qualname__}", **_plain(dict(opt.defaults))})
    scheds = []
    for cfg in trainer.lr_scheduler_configs:
        cls = type(cfg.scheduler)
        scheds.append({"class": f"{cls.__module__}.{cls.__qualname__}", "interval": cfg.interval,
                       "frequency": cfg.frequency})
    return {"optimizers": opts, "lr_schedulers": scheds}


def package_versions() -> dict:
    import torch

    import hm2bp

    versions = {"hm2bp": hm2bp.__version__, "torch": torch.__version__, "pytorch_lightning": pl.__version__}
    try:
        import wandb

        versions["wandb"] = wandb.__version__
    except ImportError:  # pragma: no cover
        pass
    return versions


class RunConfig(SaveConfigCallback):
    """Writes ``config.yaml`` into the run folder and logs the full configuration (module docstring).

    ``run_dir`` is set by the CLI once the run folder is known; ``None`` writes nothing to disk.
    """

    def __init__(self, parser, config, config_filename: str = "config.yaml", overwrite: bool = False,
                 multifile: bool = False, save_to_log_dir: bool = False) -> None:
        super().__init__(parser, config, config_filename=config_filename, overwrite=False, multifile=multifile,
                         save_to_log_dir=False)
        self.run_dir: Path | None = None
        self.written: Path | None = None
        self._optimizer_logged = False

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Rank zero only (LightningCLI's contract): the file, then the loggers."""
        if self.run_dir is not None:
            path = self.run_dir / self.config_filename
            if path.exists():
                path = self.run_dir / f"{Path(self.config_filename).stem}-{time.strftime('%Y%m%d-%H%M%S')}.yaml"
            self.parser.save(self.config, str(path), skip_unset=False, overwrite=False, multifile=self.multifile)
            self.written = path
        import yaml

        resolved = yaml.safe_load(self.parser.dump(self.config, skip_unset=False))
        record = {**resolved, "versions": package_versions()}
        if self.run_dir is not None:
            record["run_dir"] = str(self.run_dir)
        for lg in trainer.loggers:
            lg.log_hyperparams(record)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and not self._optimizer_logged:
            for lg in trainer.loggers:
                lg.log_hyperparams({"optimizer_used": optimizer_record(trainer)})
            self._optimizer_logged = True
