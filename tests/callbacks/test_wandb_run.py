"""A real offline W&B run of the digits model with both callbacks, read back from its ``.wandb`` file.

The ``.wandb`` file is LevelDB-log framing around protobuf ``Record``s (wandb 0.31 ships no reader;
see docs stack.md §5). This reads an internal format: wandb is pinned ``>=0.31,<0.32``.
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
from tests.callbacks.conftest import digits_data, digits_model, expected_stats, expected_target, tiny_trainer

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
