"""What a run folder holds whatever the logger: ``metrics.csv``, ``curves.csv``, raster and rate PNGs.

Real digits fits through the CLI (in process, a few steps), read back; and the ``metrics.csv``
logger on its own (header widening, resume, rank zero).
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from hm2bp.callbacks import MetricsCSVLogger
from tests.helpers.cli_args import SMALL
from tests.helpers.cli_runs import run_folders
from tests.helpers.paths import DIGITS

EPOCHS = 2
LAYERS = ("input", "fc1", "output")


def _fit(root: Path, *extra: str):
    from hm2bp.cli import cli_main

    return cli_main(["fit", "--config", str(DIGITS), "--trainer.default_root_dir", str(root),
                     "--trainer.max_epochs", str(EPOCHS), "--trainer.limit_train_batches", "2",
                     "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
                     "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
                     "--trainer.enable_model_summary", "false", *SMALL, *extra])


def _rows(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def _expected_files() -> set[str]:
    plots = {f"plots/raster-epoch{e:03d}-{n}.png" for e in range(EPOCHS) for n in LAYERS}
    return {"metrics.csv", "curves.csv", *plots, *(f"plots/rates-epoch{e:03d}.png" for e in range(EPOCHS))}


def check_run_files(run: Path, test_after_fit: bool) -> None:
    """The files every run folder holds, read back."""
    files = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    assert _expected_files() <= files, sorted(_expected_files() - files)

    fields, rows = _rows(run / "metrics.csv")
    assert fields[:2] == ["epoch", "step"] and fields[2:] == sorted(fields[2:])
    assert {"train/loss_step", "train/acc_epoch", "val/acc", "val/loss", "spikes/fc1/rate", "spikes/fc1/val_rate",
            "curve/train_seconds"} <= set(fields)
    assert ("test/acc" in fields) == test_after_fit
    val = [float(r["val/acc"]) for r in rows if r["val/acc"]]
    assert len(val) == EPOCHS and all(0.0 <= v <= 1.0 for v in val)  # no sanity-check row
    train_steps = [int(r["step"]) for r in rows if r["train/loss_step"]]
    assert train_steps == list(range(EPOCHS * 2))  # every step once: log_every_n_steps 1, one writer

    fields, rows = _rows(run / "curves.csv")
    assert fields == ["epoch", "train_acc", "val_acc", "test_acc", "train_seconds", "lr"]
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    assert [float(r["val_acc"]) for r in rows] == pytest.approx(val, abs=1e-6)

    for name in _expected_files():
        if name.endswith(".png"):
            with Image.open(run / name) as im:
                im.verify()  # a whole, valid PNG
                assert im.format == "PNG"
    with Image.open(run / "plots" / "rates-epoch000.png") as im:
        assert im.size[0] == 480 and im.size[1] > 200  # 6 in x 80 dpi, one panel per layer


def test_two_fits_without_a_logger_keep_their_own_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    first = _fit(root, "--trainer.logger", "false", "--test_after_fit", "false").run_dir
    before = {p: p.read_bytes() for p in first.rglob("*") if p.is_file() and p.name != ".lock"}
    second = _fit(root, "--trainer.logger", "false", "--test_after_fit", "false").run_dir

    assert run_folders(root) == sorted([first, second]) and first != second
    for run in (first, second):
        check_run_files(run, test_after_fit=False)
    assert {p: p.read_bytes() for p in before} == before  # the second run changed nothing of the first
    assert not [p for p in first.rglob("*") if p.is_file() and p.name != ".lock" and p not in before]
    assert sorted(p.name for p in root.iterdir()) == sorted([first.name, second.name])  # nothing loose in the root


def test_wandb_offline_run_folder_holds_the_same_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    cli = _fit(tmp_path / "runs", "--test_after_fit", "true")
    assert [type(lg).__name__ for lg in cli.trainer.loggers] == ["WandbLogger", "MetricsCSVLogger"]
    assert list(cli.run_dir.glob("wandb/offline-run-*/run-*.wandb"))  # W&B keeps its own copy
    check_run_files(cli.run_dir, test_after_fit=True)


# ----------------------------------------------------------------------------- the metrics.csv logger alone
def test_new_keys_widen_the_header_and_a_resumed_run_continues(tmp_path):
    logger = MetricsCSVLogger(tmp_path / "run")
    assert logger.log_dir == str(tmp_path / "run") and logger.version == "run" and logger.name == ""
    logger.log_metrics({"train/loss": 1.5, "epoch": 0}, step=0)
    logger.save()
    logger.log_metrics({"val/acc": 0.25, "epoch": 0}, step=1)
    logger.log_metrics({"train/loss": 1.0, "epoch": 1}, step=2)
    logger.finalize("success")
    assert not list((tmp_path / "run").glob("*.tmp-*"))
    again = MetricsCSVLogger(tmp_path / "run")  # a resumed run: same folder, new process
    again.log_metrics({"test/acc": 0.5}, step=3)
    again.save()
    fields, rows = _rows(tmp_path / "run" / "metrics.csv")
    assert fields == ["epoch", "step", "test/acc", "train/loss", "val/acc"]
    assert [(r["epoch"], r["step"], r["train/loss"], r["val/acc"], r["test/acc"]) for r in rows] == [
        ("0", "0", "1.5", "", ""), ("0", "1", "", "0.25", ""), ("1", "2", "1.0", "", ""), ("", "3", "", "", "0.5")]


def test_only_rank_zero_writes(tmp_path, monkeypatch):
    from pytorch_lightning.utilities import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = MetricsCSVLogger(tmp_path / "run")
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.save()
    logger.finalize("success")
    assert not (tmp_path / "run").exists()
