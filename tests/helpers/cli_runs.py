"""Digits runs through the CLI in a subprocess (DDP, resume, run folders): arguments, environment,
run folders, logged metrics and checkpoint weights."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.helpers.paths import DIGITS

GLOBAL_BATCH = 16
STEPS_PER_EPOCH = 6
EPOCHS = 2
# an active network at T=30 (the default thresholds are silent this short)
SMALL_T_ARGS = [
    "--data.init_args.time_steps", "30",
    "--data.init_args.batch_size", str(GLOBAL_BATCH),
    "--model.network.init_args.thresholds", "[5,4]",
    "--model.network.init_args.target_injection", "6",
    "--model.loss.init_args.desired", "6",
    "--model.loss.init_args.undesired", "1",
    "--model.loss.init_args.margin", "1",
    "--model.optimizer", "torch.optim.SGD",
    "--model.optimizer.init_args.lr", "0.002",
]


def callbacks_yaml(path: Path, extra: str = "", every_n_train_steps: int = 2) -> Path:
    """A trainer.callbacks list: last.ckpt every ``every_n_train_steps`` optimizer steps (mid-epoch resume
    points), in the run's own folder.

    A second ``--config`` merges list items of the same class with the first file's (here the
    digits config's val/acc ModelCheckpoint), so every inherited key is set explicitly.
    """
    path.write_text(
        "trainer:\n  callbacks:\n"
        "    - class_path: pytorch_lightning.callbacks.ModelCheckpoint\n"
        f"      init_args: {{monitor: null, every_n_train_steps: {every_n_train_steps}, save_top_k: 0, save_last: true,"
        " enable_version_counter: false}\n" + extra
    )
    return path


def digits_fit_args(root: Path, extra_callbacks: str = "", every_n_train_steps: int = 2, epochs: int = EPOCHS) -> list[str]:
    """A small digits fit whose run folder goes under ``root`` (metrics in ``<run>/csv/version_*``)."""
    root.mkdir(parents=True, exist_ok=True)
    return [
        "fit",
        "--config", str(DIGITS),
        "--config", str(callbacks_yaml(root / "callbacks.yaml", extra_callbacks, every_n_train_steps)),
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.max_epochs", str(epochs),
        "--trainer.limit_train_batches", str(STEPS_PER_EPOCH),
        "--trainer.limit_val_batches", "3",
        "--trainer.logger", "pytorch_lightning.loggers.CSVLogger",
        "--trainer.logger.init_args.save_dir", str(root),  # replaced by the run folder
        "--trainer.logger.init_args.name", "csv",
        "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root),
        "--test_after_fit", "false",
        *SMALL_T_ARGS,
    ]


def run_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "run.json").is_file())


def run_folder(root: Path) -> Path:
    """The one run folder under ``root``."""
    (run,) = run_folders(root)
    return run


def small_digits_run(root: Path, epochs: int = 2) -> Path:
    """A tiny digits fit through the command line (3 steps per epoch, T = 30, no logger, no test after
    fit) under ``root``: its run folder (config.yaml, last and best checkpoints)."""
    run_cli(["fit", "--config", str(DIGITS), "--trainer.accelerator", "cpu", "--trainer.devices", "1",
             "--trainer.max_epochs", str(epochs), "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
             "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
             "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root),
             "--test_after_fit", "false", *SMALL_T_ARGS], cwd=root)
    return run_folder(root)


def cli_env(extra_path: Path | None = None) -> dict:
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("HM2BP_RUN_DIR", None)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return env


def run_cli(args: list[str], cwd: Path, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "hm2bp.cli", *args], cwd=cwd, env=env or cli_env(),
        capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, f"CLI failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc


def final_metrics(run: Path) -> dict[str, float]:
    """Last logged value of every column of the run's (newest) CSVLogger metrics.csv."""
    files = sorted(run.glob("csv/version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    assert files, f"no metrics.csv under {run}"
    last: dict[str, float] = {}
    with open(files[-1]) as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                if v not in ("", None):
                    last[k] = float(v)
    return last


def network_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("network.")}
