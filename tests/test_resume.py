"""Kill and resume: a real CLI run killed by SIGKILL mid-epoch, restarted with ``--ckpt_path last``,
ends with exactly the metrics and weights of an uninterrupted run. Plus the loader state round trip
and atomic checkpoint writes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from hm2bp.checkpoint import TMP_MARK, atomic_torch_save
from hm2bp.datamodules import DigitsDataModule
from tests.test_ddp import (
    EPOCHS, STEPS_PER_EPOCH, cli_env, final_metrics, fit_args, network_weights, reference_run, run_cli,  # noqa: F401
)

THROTTLE = '''
import time
import pytorch_lightning as pl


class Throttle(pl.Callback):
    """Slows training down so that the parent can kill it mid-epoch (sleeping changes no number)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(0.4)
'''


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path, reference_run):
    ref_metrics, ref_weights, ref_step = reference_run
    (tmp_path / "throttle_cb.py").write_text(THROTTLE)
    ckpt_dir = tmp_path / "ckpt"
    last = ckpt_dir / "last.ckpt"
    throttle = "    - class_path: throttle_cb.Throttle\n"
    args = fit_args(tmp_path / "a", ckpt_dir, tmp_path / "logs_a", extra_callbacks=throttle)
    proc = subprocess.Popen([sys.executable, "-m", "hm2bp.cli", *args], cwd=tmp_path, env=cli_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not last.exists():  # first mid-epoch checkpoint (step 2 of 6)
            assert proc.poll() is None, f"run ended before its first checkpoint:\n{proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = torch.load(last, map_location="cpu", weights_only=True)
    step = int(saved["global_step"])
    assert 0 < step < STEPS_PER_EPOCH, f"killed at step {step}: not mid-epoch"
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches"] == step

    resumed = fit_args(tmp_path / "b", ckpt_dir, tmp_path / "logs_b") + ["--ckpt_path", "last"]
    run_cli(resumed, cwd=tmp_path)
    metrics = final_metrics(tmp_path / "logs_b")
    weights = network_weights(last)
    assert torch.load(last, weights_only=True)["global_step"] == ref_step == EPOCHS * STEPS_PER_EPOCH
    for key in ("val/acc", "val/loss", "val/silent_output", "train/acc_epoch", "train/loss_epoch",
                "train/acc_step", "train/loss_step", "train/silent_output"):
        assert metrics[key] == ref_metrics[key], (key, metrics[key], ref_metrics[key])
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
