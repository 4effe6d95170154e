"""The authors' trained MNIST CNN (``hm2bp-official/checkPoint_cnn_best.txt``, read from the shared
data folder; the repository does not hold it) loads into hm2bp and classifies MNIST."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hm2bp import SpikingNetwork
from hm2bp.official import is_official_checkpoint, layout, load_checkpoint

REPO = Path(__file__).resolve().parents[2]
SPEC, THRESHOLDS = "28x28-15C5-P2-40C5-P2-300-10", [5, 2, 12, 4, 10, 10]


def official_cnn(**kw) -> SpikingNetwork:
    return SpikingNetwork(SPEC, THRESHOLDS, output_lateral_inhibition=1.0, spsp="official", **kw)


@pytest.fixture
def checkpoint(shared_data) -> Path:
    path = shared_data / "hm2bp-official" / "checkPoint_cnn_best.txt"
    if not path.is_file():
        pytest.skip(f"the authors' checkpoint is not at {path}")
    return path


def test_layout_follows_the_save_code():
    blocks = [(b.layer, b.part, b.size) for b in layout(official_cnn())]
    assert blocks == [("conv1", "weight", 375), ("conv1", "bias", 15), ("conv2", "weight", 15000),
                      ("conv2", "bias", 40), ("fc1", "weight", 192000), ("fc1", "bias", 300),
                      ("output", "weight", 3000), ("output", "lateral", 100), ("output", "bias", 10)]
    assert sum(b[2] for b in blocks) == 210840


def test_checkpoint_fills_the_network(checkpoint):
    net = official_cnn()
    load_checkpoint(net, checkpoint)
    values = np.array(checkpoint.read_text().split()[:3], dtype=np.float32)
    np.testing.assert_array_equal(net.layers["conv1"].weight.detach().reshape(-1)[:3].numpy(), values)
    assert net.layers["fc1"].weight.shape == (300, 640) and torch.isfinite(net.layers["fc1"].weight).all()
    assert is_official_checkpoint(checkpoint) and not is_official_checkpoint(REPO / "README.md")


def test_checkpoint_classifies_mnist(checkpoint, shared_data):
    """16 test images at T = 400 (the full 10,000 are in README.md, measured with hm2bp test)."""
    from hm2bp.datamodules import MNISTDataModule

    net = official_cnn()
    load_checkpoint(net, checkpoint)
    dm = MNISTDataModule(data_dir=str(shared_data), time_steps=400, batch_size=16)
    dm.setup("test")
    x, y, _ = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    with torch.no_grad():
        correct = (net(x).sum(0).argmax(-1) == y).sum().item()
    assert correct >= 15, f"{correct}/16"


def test_bad_checkpoints_are_one_clear_error(tmp_path):
    net = official_cnn()
    short = tmp_path / "short.txt"
    short.write_text("0.1 0.2 0.3 ")
    with pytest.raises(ValueError, match=r"short.txt holds 3 floats but network .* needs 210840 \(conv1.weight 375"):
        load_checkpoint(net, short)
    word = tmp_path / "word.txt"
    word.write_text("0.1 nan? 0.3")
    with pytest.raises(ValueError, match=r"word.txt: value 1 is b'nan\?', not a number"):
        load_checkpoint(net, word)
    with pytest.raises(FileNotFoundError, match="official checkpoint not found"):
        load_checkpoint(net, tmp_path / "missing.txt")
    before = net.layers["conv1"].weight.detach().clone()
    values = np.zeros(210840)
    lateral = tmp_path / "lateral.txt"
    np.savetxt(lateral, values[None], fmt="%f")  # lateral block all 0: not the network's -1 (1 - I)
    with pytest.raises(ValueError, match="lateral matrix of 'output'.*set output_lateral_inhibition"):
        load_checkpoint(net, lateral)
    assert torch.equal(net.layers["conv1"].weight, before)  # nothing written before the checks pass


def test_hm2bp_test_evaluates_the_official_checkpoint(checkpoint, shared_data, tmp_path, monkeypatch):
    from hm2bp.cli import cli_main

    monkeypatch.chdir(tmp_path)
    cli = cli_main(["test", "--config", str(REPO / "configs/experiment/mnist_cnn.yaml"),
                    "--ckpt_path", str(checkpoint), "--data.init_args.data_dir", str(shared_data),
                    "--data.init_args.batch_size", "4", "--trainer.limit_test_batches", "2", "--trainer.logger", "false",
                    "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)])
    # "2", not "1": the command line parses "1" as the float 1.0, the whole test set
    assert cli.trainer.callback_metrics["test/acc"] >= 6 / 8


def test_fit_refuses_an_official_checkpoint(checkpoint, tmp_path, monkeypatch):
    from hm2bp.cli import cli_main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="official text checkpoint"):
        cli_main(["fit", "--config", str(REPO / "configs/experiment/digits.yaml"), "--ckpt_path", str(checkpoint),
                  "--trainer.logger", "false"])
