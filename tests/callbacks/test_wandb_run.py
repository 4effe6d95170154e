"""A real offline W&B run of the digits model with both callbacks, read back from its ``.wandb`` file.

The ``.wandb`` file is LevelDB-log framing around protobuf ``Record``s (wandb 0.31 ships no reader of its own).
This reads an internal format: wandb is pinned ``>=0.31,<0.32``.
"""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hm2bp.callbacks import FiringRateMonitor, SpikeRasterLogger
from tests.helpers.digits import digits_data, digits_model, tiny_trainer
from tests.helpers.recording import expected_stats, expected_target

wandb = pytest.importorskip("wandb")


def wandb_records(path: Path, block: int = 32768):
    """Every protobuf ``Record`` of a ``run-<id>.wandb`` file."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert struct.unpack("<4sHB", data[:7]) == (b":W&B", 0xBEE1, 0), "not a .wandb file (or a new format)"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if n == 0 and kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + n]
        pos += 7 + n
        buf = chunk if kind in (1, 2) else buf + chunk  # FULL/FIRST start, MIDDLE/LAST append
        if kind in (1, 4):  # FULL or LAST completes a record
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def wait_for_run_file(path: Path, timeout: float = 60.0) -> None:
    """Wait until wandb-core has written the whole file.

    ``run.finish()`` returns before the (separate) wandb-core process has flushed an offline run:
    read at once, the file was sometimes only its 7-byte header or lacked history rows. The run is
    complete once its ``exit`` record is there and the size has stopped changing.
    """
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        size = path.stat().st_size
        if size == last and any(r.WhichOneof("record_type") == "exit" for r in wandb_records(path)):
            return
        last = size
        time.sleep(0.25)
    raise TimeoutError(f"{path} was not complete after {timeout} s")


def wandb_history(path: Path) -> list[dict]:
    rows = []
    for r in wandb_records(path):
        if r.WhichOneof("record_type") == "history":
            rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item})
    return rows


def test_offline_wandb_run_holds_rates_histograms_and_rasters(tmp_path, spy):
    from pytorch_lightning.loggers import WandbLogger

    logger = WandbLogger(offline=True, save_dir=str(tmp_path), project="hm2bp-test", name="digits")
    raster = SpikeRasterLogger(num_samples=2, max_neurons=50)
    trainer = tiny_trainer(tmp_path, [FiringRateMonitor(), raster, spy], logger=logger, limit_train_batches=4,
                           limit_val_batches=2, log_every_n_steps=2)
    trainer.fit(digits_model(), digits_data())
    logger.experiment.finish()

    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    (run_file,) = run_dir.glob("run-*.wandb")
    wait_for_run_file(run_file)
    rows = wandb_history(run_file)

    # training rates: rows at steps 1 and 3, each over its 2-batch window, equal to a recomputation
    train_rows = [r for r in rows if "spikes/fc1/rate" in r]
    assert [r["trainer/global_step"] for r in train_rows] == [1, 3]
    for row, window in zip(train_rows, ([0, 1], [2, 3])):
        batches = [spy.train[i] for i in window]
        for layer in ("fc1", "output"):
            want = expected_stats(batches, layer)
            for key in ("rate", "silent_frac", "saturated_frac"):
                assert row[f"spikes/{layer}/{key}"] == pytest.approx(want[key], rel=1e-6), (layer, key)
        assert row["spikes/output/target_error"] == pytest.approx(expected_target(batches)["target_error"], rel=1e-6)

    # validation epoch: one row with val/acc and every val key
    (val_row,) = [r for r in rows if "spikes/fc1/val_rate" in r]
    assert "val/acc" in val_row
    for layer in ("fc1", "output"):
        want = expected_stats(spy.val, layer)
        for key in ("rate", "count", "silent_frac", "dead_frac", "saturated_frac"):
            assert val_row[f"spikes/{layer}/val_{key}"] == pytest.approx(want[key], rel=1e-6), (layer, key)
    assert val_row["spikes/fc1/val_rate"] > 0

    # histograms of per-neuron rates and of the fixed-bin per-sample rates
    (hist_row,) = [r for r in rows if "spikes/fc1/val_neuron_rates/_type" in r]
    assert hist_row["spikes/fc1/val_neuron_rates/_type"] == "histogram"
    assert sum(hist_row["spikes/fc1/val_neuron_rates/values"]) == 100  # one entry per neuron
    rates = expected_stats(spy.val, "fc1")["neuron_rates"]
    bins = hist_row["spikes/fc1/val_neuron_rates/bins"]
    assert bins[0] == pytest.approx(rates.min().item(), rel=1e-5) and bins[-1] == pytest.approx(rates.max().item(), rel=1e-5)
    n_val = sum(b[1].numel() for b in spy.val)
    assert sum(hist_row["spikes/fc1/val_rate_hist/values"]) == n_val * 100  # every (sample, neuron)
    assert hist_row["spikes/fc1/val_rate_hist/bins"][-1] == pytest.approx(1 / 3)
    assert hist_row["trainer/global_step"] == val_row["trainer/global_step"]

    # raster images: one per layer (and input), valid PNGs of the announced size, in the run's files
    w, h = raster.image_size
    labels = spy.val[0][1][:2].tolist()
    for layer in ("input", "fc1", "output"):
        (img_row,) = [r for r in rows if f"spikes/{layer}/raster/_type" in r]
        assert (img_row[f"spikes/{layer}/raster/width"], img_row[f"spikes/{layer}/raster/height"]) == (w, h)
        assert img_row[f"spikes/{layer}/raster/captions"][0].startswith(f"epoch 0; label->pred: {labels[0]}->")
        (name,) = img_row[f"spikes/{layer}/raster/filenames"]
        png = run_dir / "files" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(png) as im:
            im.verify()
        with Image.open(png) as im:
            assert im.size == (w, h)
            # not blank: the raster has dark ticks on white
            assert np.asarray(im.convert("L")).min() < 128
        assert img_row["trainer/global_step"] == val_row["trainer/global_step"]


def wandb_config(path: Path) -> dict:
    """The run's config as W&B stores it: the last value of every top-level key."""
    config = {}
    for r in wandb_records(path):
        if r.WhichOneof("record_type") == "config":
            for item in r.config.update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return config


def _cli_fit(root: Path, *extra: str):
    from hm2bp.cli import cli_main
    from tests.helpers.cli_args import SMALL
    from tests.helpers.paths import DIGITS

    return cli_main(["fit", "--config", str(DIGITS), "--trainer.default_root_dir", str(root),
                     "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
                     "--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar", "false", *SMALL,
                     "--test_after_fit", "true", *extra])


def test_cli_run_holds_the_resolved_config_and_the_test_of_the_fit(tmp_path, monkeypatch):
    """One W&B run per fit, in its run folder: the full configuration, the optimizer really used,
    and test_after_fit's test/acc next to the fit's val/acc."""
    monkeypatch.chdir(tmp_path)
    cli = _cli_fit(tmp_path / "runs", "--model.optimizer.init_args.lr", "0.003")
    (run_file,) = cli.run_dir.glob("wandb/offline-run-*/run-*.wandb")
    assert not [p for p in tmp_path.rglob("run-*.wandb") if p != run_file]  # no second W&B run anywhere
    wait_for_run_file(run_file)
    config = wandb_config(run_file)
    assert config["model"]["network"]["init_args"]["spec"] == "64-100-10"
    assert config["model"]["network"]["init_args"]["thresholds"] == [5.0, 4.0]
    assert config["model"]["loss"]["init_args"] == {"desired": 6.0, "undesired": 1.0, "margin": 1.0,
                                                   "reduction": "sum", "check_inputs": True}
    assert config["model"]["optimizer"]["class_path"] == "torch.optim.Adam"
    assert config["model"]["optimizer"]["init_args"]["lr"] == 0.003
    assert config["data"]["class_path"] == "hm2bp.datamodules.DigitsDataModule"
    assert config["data"]["init_args"]["time_steps"] == 20 and config["data"]["init_args"]["batch_size"] == 8
    assert config["trainer"]["max_epochs"] == 1 and config["trainer"]["default_root_dir"] == str(tmp_path / "runs")
    assert config["seed_everything"] == 0 and config["run_dir"] == str(cli.run_dir)
    (opt,) = config["optimizer_used"]["optimizers"]
    assert opt["class"] == "torch.optim.adam.Adam" and opt["lr"] == 0.003 and opt["betas"] == [0.9, 0.999]
    assert config["optimizer_used"]["lr_schedulers"][0]["class"] == "hm2bp.schedules.InvSqrtEpoch"
    assert set(config["versions"]) >= {"hm2bp", "torch", "pytorch_lightning", "wandb"}
    keys = {k for row in wandb_history(run_file) for k in row}
    assert {"val/acc", "test/acc", "train/loss_epoch"} <= keys
    assert (cli.run_dir / "config.yaml").is_file()


def test_wandb_mode_disabled_turns_wandb_off(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cli = _cli_fit(tmp_path / "runs")
    assert not list(tmp_path.rglob("wandb")) and not list(tmp_path.rglob("*.wandb"))
    metrics = (cli.run_dir / "csv" / "version_0" / "metrics.csv").read_text()
    assert "val/acc" in metrics.splitlines()[0] and "test/acc" in metrics.splitlines()[0]
    assert "class_path: pytorch_lightning.loggers.CSVLogger" in (cli.run_dir / "config.yaml").read_text()
