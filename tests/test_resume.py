"""Kill and resume: a real CLI run killed mid-epoch (SIGKILL, or Ctrl-C, which saves a checkpoint first),
restarted with ``--ckpt_path last``, ends with exactly the metrics and weights of an uninterrupted run,
in the same run folder. A finished run extended with a larger ``max_epochs`` equals a longer run.
Plus the loader state round trip and atomic checkpoint writes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hm2bp.checkpoint import TMP_MARK, atomic_torch_save
from hm2bp.cli import cli_main
from hm2bp.datamodules import DigitsDataModule
from tests.helpers.cli_runs import (
    EPOCHS,
    STEPS_PER_EPOCH,
    cli_env,
    digits_fit_args,
    final_metrics,
    network_weights,
    run_cli,
    run_folder,
    run_folders,
)

PROGRESS = '''
import os
import time
import pytorch_lightning as pl


class Progress(pl.Callback):
    """Slows training down and reports the step, so that the parent can stop it mid-epoch
    (sleeping changes no number)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        with open(os.environ["HM2BP_TEST_PROGRESS"], "w") as f:
            f.write(str(trainer.global_step))
        time.sleep(0.4)
'''
COMPARED = ("val/acc", "val/loss", "val/silent_output", "train/acc_epoch", "train/loss_epoch",
            "train/acc_step", "train/loss_step", "train/silent_output", "train/lr")


def _start_and_stop(tmp_path: Path, root: Path, sig: int, every_n_train_steps: int) -> tuple[subprocess.Popen, Path]:
    """Start a throttled fit under ``root``; once it has done 2 steps (and, with SIGKILL, written a
    checkpoint), send ``sig``. Returns the finished process and its run folder."""
    (tmp_path / "progress_cb.py").write_text(PROGRESS)
    progress = tmp_path / "progress.txt"
    env = dict(cli_env(tmp_path), HM2BP_TEST_PROGRESS=str(progress))
    args = digits_fit_args(root, extra_callbacks="    - class_path: progress_cb.Progress\n",
                    every_n_train_steps=every_n_train_steps)
    proc = subprocess.Popen([sys.executable, "-m", "hm2bp.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180

        def ready() -> bool:
            step = int(progress.read_text() or 0) if progress.exists() else 0
            if sig == signal.SIGKILL:
                return bool(list(root.glob("*/checkpoints/last.ckpt")))
            return step >= 2

        while not ready():
            assert proc.poll() is None, f"run ended early:\n{proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no progress within 180 s"
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    proc.stderr_text = err if sig != signal.SIGKILL else ""
    return proc, run_folder(root)


def _resume_and_compare(tmp_path: Path, root: Path, run: Path, reference) -> str:
    ref_metrics, ref_weights, ref_step = reference
    resumed = run_cli(digits_fit_args(root) + ["--ckpt_path", "last"], cwd=tmp_path)
    assert run_folders(root) == [run]  # resumed in its own folder, no second run
    last = run / "checkpoints" / "last.ckpt"
    metrics, weights = final_metrics(run), network_weights(last)
    assert torch.load(last, weights_only=True)["global_step"] == ref_step == EPOCHS * STEPS_PER_EPOCH
    for key in COMPARED:
        assert metrics[key] == ref_metrics[key], (key, metrics[key], ref_metrics[key])
    for k in ref_weights:
        assert torch.equal(weights[k], ref_weights[k]), (k, (weights[k] - ref_weights[k]).abs().max())
    return resumed.stderr


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path, reference_run):
    root = tmp_path / "exp"
    proc, run = _start_and_stop(tmp_path, root, signal.SIGKILL, every_n_train_steps=2)
    assert proc.returncode == -signal.SIGKILL
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    step = int(saved["global_step"])
    assert 0 < step < STEPS_PER_EPOCH, f"killed at step {step}: not mid-epoch"
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches"] == step
    log = _resume_and_compare(tmp_path, root, run, reference_run)
    assert f"--ckpt_path last: {run}/checkpoints/last.ckpt (global step {step}) of run {run}" in log


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path, reference_run):
    """No periodic checkpoint before the interrupt (every 100 steps): the one resumed from is Ctrl-C's."""
    root = tmp_path / "exp"
    proc, run = _start_and_stop(tmp_path, root, signal.SIGINT, every_n_train_steps=100)
    assert proc.returncode == 1, proc.stderr_text[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    step = int(saved["global_step"])
    assert 2 <= step < STEPS_PER_EPOCH, f"saved at step {step}: not mid-epoch"
    assert f"Saved {last} at global step {step}; continue with --ckpt_path last" in proc.stderr_text
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    _resume_and_compare(tmp_path, root, run, reference_run)


@pytest.mark.parametrize("budget", ["max_epochs", "max_steps"])
def test_extending_a_finished_run_equals_the_longer_run(budget, tmp_path, reference_run, monkeypatch):
    """1 epoch (or 4 steps), then --ckpt_path last with the full budget: the numbers of an
    uninterrupted 2-epoch run."""
    ref_metrics, ref_weights, ref_step = reference_run
    monkeypatch.setenv("WANDB_MODE", "disabled")
    root = tmp_path / "exp"
    short = digits_fit_args(root, epochs=1) if budget == "max_epochs" else digits_fit_args(root) + ["--trainer.max_steps", "4"]
    first = cli_main(short)
    assert first.trainer.global_step == (STEPS_PER_EPOCH if budget == "max_epochs" else 4)
    longer = cli_main(digits_fit_args(root, epochs=EPOCHS) + ["--ckpt_path", "last"])
    run = run_folder(root)
    assert longer.trainer.global_step == ref_step
    metrics = final_metrics(run)
    for key in COMPARED:
        assert metrics[key] == ref_metrics[key], (key, metrics[key], ref_metrics[key])
    weights = network_weights(run / "checkpoints" / "last.ckpt")
    for k in ref_weights:
        assert torch.equal(weights[k], ref_weights[k]), (k, (weights[k] - ref_weights[k]).abs().max())


def test_loader_state_round_trip_skips_seen_batches():
    dm = DigitsDataModule(time_steps=20, batch_size=16)
    dm.setup("fit")
    full = dm.train_dataloader()
    full.sampler.set_epoch(3)
    epoch3 = [b[2].tolist() for b in full]
    assert full.state_dict() == {"epoch": 3, "batches": len(epoch3), "global_batch_size": 16}

    part = dm.train_dataloader()
    part.sampler.set_epoch(3)
    it = iter(part)
    for _ in range(5):
        next(it)
    state = part.state_dict()
    assert state["epoch"] == 3 and state["batches"] == 5

    fresh = dm.train_dataloader()  # a new process: state loaded before the epoch is set again
    fresh.load_state_dict(state)
    fresh.sampler.set_epoch(3)
    rest = [b[2].tolist() for b in fresh]
    assert rest == epoch3[5:]
    assert fresh.state_dict()["batches"] == len(epoch3)

    after = dm.train_dataloader()  # a checkpoint at the end of an epoch resumes at the next one
    after.load_state_dict({"epoch": 3, "batches": len(epoch3), "global_batch_size": 16})
    assert after.sampler.epoch == 4 and after.sampler.start == 0


def test_loader_refuses_a_different_global_batch():
    dm = DigitsDataModule(time_steps=20, batch_size=16)
    dm.setup("fit")
    with pytest.raises(ValueError, match="global batch of 32, this run uses 16"):
        dm.train_dataloader().load_state_dict({"epoch": 0, "batches": 3, "global_batch_size": 32})


def test_atomic_save_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "last.ckpt"
    atomic_torch_save({"a": torch.ones(3)}, path)
    (path.parent / f"last.ckpt{TMP_MARK}dead").write_bytes(b"half")  # as left by a killed writer
    atomic_torch_save({"a": torch.zeros(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
