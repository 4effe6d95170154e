"""The step benchmarks with trained weights and real MNIST input (``--weights``, ``--data-dir``):
they load the weights, and report how many samples of the step carried an output error."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.digits import digits_data, digits_model, tiny_trainer

ROOT = Path(__file__).resolve().parents[1]


def _bench(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--repeats", "1", "--threads", "1", *args],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cnn_bench_takes_the_authors_weights_and_mnist(shared_data):
    weights = shared_data / "hm2bp-official" / "checkPoint_cnn_best.txt"
    if not weights.exists():
        pytest.skip(f"{weights} not found")
    res = _bench("bench_cnn.py", "--T", "60", "--batch", "3", "--data-dir", str(shared_data), "--weights", str(weights))
    assert res["weights"] == str(weights) and res["input"] == "mnist"
    assert 0 <= res["error_samples"] <= 3
    assert res["spikes_per_layer"]["conv1"] > 0  # trained kernels make the first layer fire at T = 60
    fresh = _bench("bench_cnn.py", "--T", "60", "--batch", "3", "--data-dir", str(shared_data))
    assert fresh["weights"] == "initial" and fresh["spikes_per_layer"] != res["spikes_per_layer"]


def test_mlp_bench_takes_a_run_checkpoint(tmp_path):
    model = digits_model()
    trainer = tiny_trainer(tmp_path, callbacks=[], max_steps=1)
    trainer.fit(model, digits_data())
    ckpt = tmp_path / "tiny.ckpt"
    trainer.save_checkpoint(ckpt)
    res = _bench("bench_mlp.py", "--T", "20", "--batch", "4", "--weights", str(ckpt))
    assert res["weights"] == str(ckpt) and res["input"].startswith("random")
    assert 0 <= res["error_samples"] <= 4


def test_bench_weights_need_the_hm2bp_rule():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_mlp.py"), "--rule", "bptt", "--weights", "x"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode != 0 and "--weights needs --rule hm2bp" in out.stderr
