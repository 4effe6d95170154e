"""Run identity: every fit writes into its own folder, concurrent or later fits never replace each
other's files, ``--ckpt_path last`` resumes the latest run, ``test``/``predict`` write into their own
sub-folders (``config.yaml`` is never overwritten), ``predict`` writes predictions.csv, and a command
prints no warning on a healthy run."""
from __future__ import annotations

import csv
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hm2bp import runs
from hm2bp.cli import cli_main
from hm2bp.errors import OutputError
from tests.helpers.cli_args import SMALL
from tests.helpers.cli_runs import cli_env, digits_fit_args, run_folders
from tests.helpers.paths import DIGITS

TINY = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
        "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", *SMALL]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_concurrent_fits_in_one_folder_keep_their_own_files(tmp_path):
    """Two fits started together in the same default_root_dir, with other learning rates: two run
    folders, each holding its own config and checkpoints."""
    root = tmp_path / "exp"
    procs = []
    for k, lr in enumerate(("0.002", "0.004")):
        args = digits_fit_args(root, epochs=1) + ["--model.optimizer.init_args.lr", lr]
        (root / "callbacks.yaml").rename(root / f"callbacks{k}.yaml")
        args[args.index(str(root / "callbacks.yaml"))] = str(root / f"callbacks{k}.yaml")
        procs.append(subprocess.Popen([sys.executable, "-m", "hm2bp.cli", *args], cwd=tmp_path, env=cli_env(),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    folders = run_folders(root)
    assert len(folders) == 2
    lrs = set()
    for run in folders:
        config = (run / "config.yaml").read_text()
        ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        group = ckpt["optimizer_states"][0]["param_groups"][0]
        lr = group.get("initial_lr", group["lr"])  # the configured rate, before the schedule
        assert f"lr: {lr}" in config  # the checkpoint belongs to the config next to it
        lrs.add(lr)
    assert lrs == {0.002, 0.004}
    weights = [torch.load(r / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]["network.layers.fc1.weight"]
               for r in folders]
    assert not torch.equal(*weights)


def test_later_fit_gets_a_new_folder_and_last_resumes_the_latest(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    root = tmp_path / "runs"
    base = ["fit", "--config", str(DIGITS), "--trainer.default_root_dir", str(root), *TINY, "--test_after_fit", "false"]
    a = cli_main(base)
    b = cli_main(base + ["--seed_everything", "1"])
    assert a.run_dir != b.run_dir and sorted(run_folders(root)) == sorted([a.run_dir, b.run_dir])
    assert _sha(a.run_dir / "checkpoints" / "last.ckpt") != _sha(b.run_dir / "checkpoints" / "last.ckpt")
    # --ckpt_path last: the run whose last.ckpt was written last (b), in its own folder, said aloud
    capsys.readouterr()
    c = cli_main(base + ["--seed_everything", "1", "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    assert c.run_dir == b.run_dir and c.trainer.global_step == 6
    assert len(run_folders(root)) == 2
    # make a's checkpoint the newest: now `last` means a
    now = time.time_ns() + 10**9
    os.utime(a.run_dir / "checkpoints" / "last.ckpt", ns=(now, now))
    assert runs.latest_run(root) == (a.run_dir, a.run_dir / "checkpoints" / "last.ckpt")


def test_a_run_in_use_cannot_be_resumed_twice(tmp_path):
    run = runs.create_run_dir(tmp_path / "runs" / runs.new_run_name(), "fit")
    lock = runs.RunLock(run).acquire()
    try:
        with pytest.raises(OutputError, match=rf"run {run} is in use by another hm2bp process \(pid {os.getpid()}\)"):
            runs.RunLock(run).acquire()
    finally:
        lock.release()
    runs.RunLock(run).acquire().release()  # free again once the owner is gone
    with pytest.raises(OutputError, match="already exists"):
        runs.create_run_dir(run, "fit")


def test_test_and_predict_write_their_own_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    common = ["--config", str(DIGITS), "--trainer.default_root_dir", str(root), *TINY,
              "--model.network.init_args.thresholds", "[2,1.5]"]  # a network that fires at T=20
    fit = cli_main(["fit", *common, "--test_after_fit", "false"])
    run = fit.run_dir
    config = _sha(run / "config.yaml")
    tested = cli_main(["test", *common, "--ckpt_path", "best"])
    assert tested.run_dir.parent == run and tested.run_dir.name.startswith("test-")
    assert (tested.run_dir / "config.yaml").is_file() and _sha(run / "config.yaml") == config
    capsys.readouterr()
    predicted = cli_main(["predict", *common, "--ckpt_path", "last", "--trainer.limit_predict_batches", "1.0"])
    out = capsys.readouterr().out
    path = predicted.run_dir / "predictions.csv"
    assert f"predictions written to {path}" in out
    assert predicted.run_dir.parent == run and _sha(run / "config.yaml") == config
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    dm = predicted.datamodule
    assert list(rows[0]) == ["index", "label", "pred", *(f"count_{k}" for k in range(10))]
    # index: the sample's index in the dataset (digits: among scikit-learn's 1,797 images), sorted
    assert [int(r["index"]) for r in rows] == sorted(int(i) for i in dm.test_set.indices)
    labels = {int(dm.test_set[k][2]): int(dm.test_set[k][1]) for k in range(len(dm.test_set))}
    assert [int(r["label"]) for r in rows] == [labels[int(r["index"])] for r in rows]
    for r in rows:
        counts = [int(r[f"count_{k}"]) for k in range(10)]
        assert int(r["pred"]) == counts.index(max(counts))  # argmax, ties to the lowest index
    assert any(int(r[f"count_{k}"]) for r in rows for k in range(10))  # the network spoke


def test_no_warning_on_a_healthy_run(tmp_path):
    """The real command prints no warning (LightningCLI's `args`, W&B's `anonymous`, Lightning's own)."""
    args = ["fit", "--config", str(DIGITS), "--trainer.default_root_dir", str(tmp_path / "runs"), *TINY,
            "--trainer.limit_train_batches", "4", "--trainer.log_every_n_steps", "2"]
    env = dict(cli_env(), WANDB_MODE="offline", WANDB_DIR=str(tmp_path))
    env.pop("PYTHONWARNINGS")
    proc = subprocess.run([sys.executable, "-m", "hm2bp.cli", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    noisy = [line for line in (proc.stderr + proc.stdout).splitlines()
             if re.search(r"(?i)\bwarn(ing)?s?\b|anonymous|deprecated|LightningCLI's args", line)]
    assert not noisy, noisy
    assert "TEST ACCURACY" in proc.stdout
