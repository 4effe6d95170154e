"""``val_size: 0``: train on every training sample, skip validation, test the last checkpoint."""
from __future__ import annotations

from pathlib import Path

import pytest

from hm2bp.checks import val_count
from hm2bp.cli import cli_main
from hm2bp.datamodules.base import seeded_split
from hm2bp.datamodules.mnist import MNISTDataModule
from hm2bp.datamodules.nmnist import NMNISTDataModule
from hm2bp.errors import ConfigError
from tests.fakes import fake_mnist, fake_nmnist
from tests.helpers.cli_args import tiny_fit_args

REPO = Path(__file__).resolve().parents[2]


def test_zero_holds_out_nothing_and_only_zero_does():
    train, val = seeded_split(10, 0, seed=0)
    assert train.tolist() == list(range(10)) and val.numel() == 0
    assert val_count("data.init_args.val_size", 0, 10, zero_ok=True) == 0
    with pytest.raises(ConfigError, match=r"val_size=0 must be > 0"):  # other held-out sizes keep refusing 0
        val_count("data.init_args.val_size", 0, 10)
    with pytest.raises(ConfigError, match=r"val_size=-1 must be >= 0; .* or 0 to hold out none"):
        seeded_split(10, -1, seed=0)
    with pytest.raises(ConfigError, match=r"val_size=0\.01 leaves no samples"):  # a fraction rounding to 0
        seeded_split(10, 0.01, seed=0)


def test_mnist_and_nmnist_style_datamodules(tmp_path):
    mnist = MNISTDataModule(data_dir=fake_mnist(tmp_path / "m"), val_size=0, batch_size=4, time_steps=20)
    mnist.setup("fit")
    assert len(mnist.train_set) == 48 and len(mnist.val_set) == 0 and mnist.val_dataloader() == []
    nmnist = NMNISTDataModule(data_dir=fake_nmnist(tmp_path / "n"), val_size=0, cache_dir=str(tmp_path / "c"),
                              batch_size=2)
    nmnist.prepare_data()
    nmnist.setup("fit")
    assert len(nmnist.val_set) == 0 and len(nmnist.train_set) == len(nmnist.load_split("train"))
    assert nmnist.val_dataloader() == []


def test_fit_without_validation_keeps_last_and_tests_it(tmp_path, capsys, monkeypatch, recwarn):
    monkeypatch.chdir(tmp_path)
    args = tiny_fit_args(REPO / "configs/experiment/digits.yaml", tmp_path / "runs")
    cli = cli_main(args + ["--data.init_args.val_size", "0", "--trainer.max_epochs", "2", "--test_after_fit", "true"])
    assert sum(cli.trainer.num_val_batches or [0]) == 0  # validation skipped
    ckpts = sorted(p.name for p in (cli.run_dir / "checkpoints").glob("*.ckpt"))
    assert ckpts == ["last.ckpt"]  # no best on val/acc, and nothing failed for want of it
    last = cli.run_dir / "checkpoints" / "last.ckpt"
    assert cli.final_checkpoint() == str(last)
    out = capsys.readouterr()
    assert f"(checkpoint: {last}" in out.out
    assert not [w for w in recwarn if "could not find the monitored key" in str(w.message)]
