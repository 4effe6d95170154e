"""Multi-device semantics: the sharding sampler, and a real 2-process DDP run (gloo, CPU) through the CLI.

The 2-process run must end with the metrics and weights of a 1-process run with the same global
batch (docs/scaling.md). Metrics are compared exactly; weights to 1e-6 absolute (|w| <= ~1): the
gradient of one process is one sum over the global batch, DDP's is the all-reduce of two half-batch
sums (x 2 in ``on_before_optimizer_step``), so only float32 summation order differs (measured:
<= 1.2e-7 = 1 ulp at |w| = 1 after 12 SGD steps). SGD is used because Adam would hide a missing
world-size factor (it is nearly scale invariant).
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from hm2bp.datamodules.base import ResumableSampler, epoch_permutation
from tests.helpers.cli_runs import (
    EPOCHS,
    STEPS_PER_EPOCH,
    digits_fit_args,
    final_metrics,
    network_weights,
    run_cli,
    run_folder,
)


# ----------------------------------------------------------------------------- sampler (fast)
@pytest.mark.parametrize("n", [37, 40])
def test_ranks_split_every_global_batch_exactly(n):
    """Per-device batch s of W ranks together = global batch s of one process (full batches)."""
    G, epoch = 8, 3
    one = ResumableSampler(n, shuffle=True, seed=5, num_replicas=1, rank=0)
    one.set_epoch(epoch)
    single = list(one)
    assert single == epoch_permutation(n, 5, epoch).tolist()
    for world in (2, 4):
        b = G // world
        shards = []
        for rank in range(world):
            s = ResumableSampler(n, shuffle=True, seed=5, num_replicas=world, rank=rank)
            s.set_epoch(epoch)
            shards.append(list(s))
            assert len(shards[-1]) == len(s) == -(-n // world)
        for step in range(n // G):
            union = sorted(i for sh in shards for i in sh[step * b:(step + 1) * b])
            assert union == sorted(single[step * G:(step + 1) * G])
        seen = {i for sh in shards for i in sh}
        assert seen == set(range(n))  # padding only repeats samples


def test_eval_shards_are_disjoint_and_complete():
    n, world = 37, 4
    shards = [list(ResumableSampler(n, shuffle=False, num_replicas=world, rank=r)) for r in range(world)]
    flat = [i for sh in shards for i in sh]
    assert sorted(flat) == list(range(n)) and len(flat) == n  # no padding: exact metrics


def test_order_is_a_function_of_seed_and_epoch():
    a = ResumableSampler(50, shuffle=True, seed=1)
    b = ResumableSampler(50, shuffle=True, seed=1)
    a.set_epoch(2)
    list(a)
    a.set_epoch(0)
    assert list(a) == list(b)  # no hidden generator state carried across epochs
    a.set_epoch(1)
    assert list(a) != list(b)
    assert list(ResumableSampler(50, shuffle=True, seed=2)) != list(b)


# ----------------------------------------------------------------------------- real DDP (subprocess)
def test_two_process_ddp_equals_one_process(tmp_path, reference_run):
    ref_metrics, ref_weights, ref_step = reference_run
    root = tmp_path / "ddp"
    args = digits_fit_args(root) + ["--trainer.strategy", "ddp", "--trainer.devices", "2"]
    run_cli(args, cwd=tmp_path, timeout=300)
    run = run_folder(root)  # both processes wrote into the one folder the launching process made
    metrics = final_metrics(run)
    weights = network_weights(run / "checkpoints" / "last.ckpt")
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == ref_step == EPOCHS * STEPS_PER_EPOCH

    for key in ("val/acc", "val/loss", "val/silent_output", "train/acc_epoch", "train/loss_epoch",
                "train/acc_step", "train/loss_step", "train/silent_output"):
        assert key in ref_metrics and key in metrics, key
        assert metrics[key] == pytest.approx(ref_metrics[key], rel=1e-6, abs=1e-9), key
    assert set(weights) == set(ref_weights)
    for k in weights:
        assert torch.allclose(weights[k], ref_weights[k], atol=1e-6, rtol=0), (k, (weights[k] - ref_weights[k]).abs().max())
    moved = [(weights[k] - w0).abs().max() for k, w0 in _initial_weights(tmp_path).items()]
    assert all(m > 1e-4 for m in moved), "the network did not learn: the comparison would be vacuous"


def _initial_weights(tmp_path: Path) -> dict[str, torch.Tensor]:
    """Weights after seeding and instantiation (no training), through the same CLI parse."""
    from hm2bp.cli import cli_main

    cli = cli_main(digits_fit_args(tmp_path / "init")[1:], run=False)
    return {f"network.{k}": v.detach().clone() for k, v in cli.model.network.state_dict().items()}


def test_two_process_predict_writes_the_single_process_file(tmp_path, reference_record):
    """hm2bp predict under DDP: each rank predicts its share, rank 0 merges one predictions.csv,
    the same file as one process writes."""
    ckpt = reference_record["dir"] / "checkpoints" / "last.ckpt"
    files = []
    for name, extra in (("one", []), ("two", ["--trainer.strategy", "ddp", "--trainer.devices", "2"])):
        root = tmp_path / name
        args = ["predict", *digits_fit_args(root)[1:], "--ckpt_path", str(ckpt), *extra]
        k = args.index("--test_after_fit")
        del args[k:k + 2]  # a fit-only option
        proc = run_cli(args, cwd=tmp_path, timeout=300)
        (line,) = [x for x in proc.stdout.splitlines() if x.startswith("predictions written to ")]
        path = Path(line.removeprefix("predictions written to "))
        assert path.parent.parent == reference_record["dir"] and path.parent.name.startswith("predict-")  # the run's own
        assert not list(path.parent.glob("*.rank*"))
        files.append(path.read_text())
    assert files[0] == files[1]
    assert len(files[0].splitlines()) == 1 + 360  # header + the digits test set


def test_two_process_ddp_writes_the_epoch_curve_and_rasters(tmp_path):
    """EpochCurve, SpikeRasterLogger and FiringRateMonitor files and ``metrics.csv`` under DDP:
    the run ends (it once hung at the first epoch end: rank 0 alone asked ``trainer.log_dir``, a
    broadcast) and rank 0 writes one curve row per epoch with a test score, the raster and rate PNGs,
    and one metrics row per training step."""
    root = tmp_path / "ddp"
    curve = ("    - class_path: hm2bp.callbacks.EpochCurve\n"
             "      init_args: {test_every_n_epochs: 1}\n"
             "    - class_path: hm2bp.callbacks.SpikeRasterLogger\n"
             "      init_args: {num_samples: 2, max_neurons: 20}\n"
             "    - class_path: hm2bp.callbacks.FiringRateMonitor\n")
    args = digits_fit_args(root, extra_callbacks=curve) + [
        "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.limit_test_batches", "2"]
    run_cli(args, cwd=tmp_path, timeout=300)
    (path,) = run_folder(root).rglob("curves.csv")
    assert path == run_folder(root) / "curves.csv"  # the run folder itself, not the CSV logger's version folder
    rows = path.read_text().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 1 + EPOCHS
    assert all(row.split(",")[3] != "" for row in rows[1:])  # test_acc
    assert len(list(run_folder(root).glob("plots/raster-epoch001-*.png"))) >= 2  # every layer, last epoch
    assert (run_folder(root) / "plots" / "rates-epoch001.png").is_file()
    with open(run_folder(root) / "metrics.csv") as f:  # rank 0 alone: every training step once
        steps = [row["step"] for row in csv.DictReader(f) if row["train/loss_step"]]
    assert steps == [str(s) for s in range(EPOCHS * STEPS_PER_EPOCH)]
