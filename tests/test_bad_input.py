"""The bad-input matrix (docs/troubleshooting.md): each case stops with one clear error before any
training step, and leaves no run folder, config or checkpoint behind."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from hm2bp import SpikeCountLoss, SpikingClassifier, SpikingNetwork
from hm2bp.checkpoint import CorruptCheckpointError
from hm2bp.cli import cli_main
from hm2bp.datamodules import DigitsDataModule

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "configs/experiment/digits.yaml"


def args(root: Path, config: Path = DIGITS, *extra: str) -> list[str]:
    return [
        "fit", "--config", str(config),
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(root), "--test_after_fit", "false",
        "--data.init_args.time_steps", "20", "--data.init_args.batch_size", "8",
        *extra,
    ]


def nothing_written(root: Path) -> bool:
    return not root.exists() or not any(root.rglob("*"))


def cli_exit_message(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        cli_main(argv)
    assert exc.value.code != 0
    return capsys.readouterr().err


# ----------------------------------------------------------------------------- configuration
def test_unknown_key_on_the_command_line(tmp_path, capsys):
    err = cli_exit_message(capsys, args(tmp_path / "run", DIGITS, "--model.learning_rate", "0.1"))
    assert "unrecognized arguments: --model.learning_rate" in err
    assert nothing_written(tmp_path / "run")


def test_unknown_key_in_a_config_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  learning_rate: 0.1\n")
    err = cli_exit_message(capsys, args(tmp_path / "run", DIGITS, "--config", str(bad)))
    assert "does not accept option 'model.learning_rate'" in err
    assert nothing_written(tmp_path / "run")


def test_wrong_type(tmp_path, capsys):
    err = cli_exit_message(capsys, args(tmp_path / "run", DIGITS, "--data.init_args.batch_size", "sixteen"))
    assert "batch_size" in err and "Expected a <class 'int'>" in err
    assert nothing_written(tmp_path / "run")


# ----------------------------------------------------------------------------- data
def test_missing_data_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "no_such_dir"
    argv = args(tmp_path / "run", REPO / "configs/experiment/mnist_mlp.yaml",
                "--data.init_args.data_dir", str(missing), "--trainer.callbacks", "[]")
    with pytest.raises(FileNotFoundError, match=r"no_such_dir/MNIST/raw/train-images-idx3-ubyte\[\.gz\] not found"):
        cli_main(argv)
    assert nothing_written(tmp_path / "run") and not missing.exists()


def test_network_input_size_does_not_match_the_data(tmp_path):
    with pytest.raises(ValueError, match="network takes 784 inputs but the datamodule provides 64"):
        cli_main(args(tmp_path / "run", DIGITS, "--model.network.init_args.spec", "784-100-10"))
    assert nothing_written(tmp_path / "run")


def test_class_count_does_not_match_the_data(tmp_path):
    with pytest.raises(ValueError, match="network has 7 outputs but the datamodule has 10 classes"):
        cli_main(args(tmp_path / "run", DIGITS, "--model.network.init_args.spec", "64-100-7"))
    assert nothing_written(tmp_path / "run")


def _model(time_steps=20, lr=5e-3, optimizer="adam", loss=None) -> SpikingClassifier:
    pl.seed_everything(0, verbose=False)
    net = SpikingNetwork("64-100-10", thresholds=[5.0, 4.0], output_lateral_inhibition=1.0, target_injection=6.0)
    return SpikingClassifier(net, loss or SpikeCountLoss(6, 1, 1), optimizer=optimizer, lr=lr, time_steps=time_steps)


def _trainer(root: Path, **kw) -> pl.Trainer:
    opts = dict(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=3, limit_val_batches=2,
                logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=str(root))
    opts.update(kw)
    return pl.Trainer(**opts)


class StepCounter(pl.Callback):
    def __init__(self):
        self.steps = 0

    def on_train_batch_start(self, *a):
        self.steps += 1


def test_time_steps_mismatch_before_training(tmp_path):
    counter = StepCounter()
    with pytest.raises(ValueError, match="T mismatch: the datamodule produces T=20 time steps but the model was built for T=30"):
        _trainer(tmp_path / "run", callbacks=[counter]).fit(_model(time_steps=30), DigitsDataModule(time_steps=20, batch_size=8))
    assert counter.steps == 0 and nothing_written(tmp_path / "run")


def test_batch_not_divisible_by_world_size_before_launch(tmp_path):
    # raised by the CLI before DDP starts any process (safe inside pytest)
    with pytest.raises(ValueError, match=r"data.batch_size=10 is the global batch and must be divisible by the world size 4 "
                                         r"\(trainer.devices x trainer.num_nodes = 2 x 2\)"):
        cli_main(args(tmp_path / "run", DIGITS, "--data.init_args.batch_size", "10", "--trainer.strategy", "ddp",
                      "--trainer.devices", "2", "--trainer.num_nodes", "2"))
    assert nothing_written(tmp_path / "run")


def test_batch_not_divisible_by_world_size_in_the_datamodule():
    dm = DigitsDataModule(time_steps=20, batch_size=10)

    class FakeTrainer:
        world_size, global_rank = 4, 0

    dm.trainer = FakeTrainer()
    with pytest.raises(ValueError, match="data.batch_size=10 is not divisible by the world size 4"):
        dm.per_device_batch_size


# ----------------------------------------------------------------------------- numerics
def test_nan_in_the_weights_names_the_layer(tmp_path):
    model = _model()
    with torch.no_grad():
        model.network.layers["fc1"].weight[3, 5] = math.nan
    with pytest.raises(FloatingPointError, match=r"'network\.layers\.fc1\.weight'"):
        _trainer(tmp_path / "run", num_sanity_val_steps=0).fit(model, DigitsDataModule(time_steps=20, batch_size=8))
    assert model.global_step == 0  # stopped before the first update


class OverflowAfterStep(pl.Callback):
    """Stands in for an update that overflows: Inf in output.weight right after optimizer step 2
    (callbacks' ``on_train_batch_end`` runs before the module's, which checks the weights)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 2:
            with torch.no_grad():
                pl_module.network.layers["output"].weight[1, 2] = math.inf


def test_inf_after_an_optimizer_step_names_the_layer(tmp_path):
    with pytest.raises(FloatingPointError, match=r"non-finite weights in 'network\.layers\.output\.weight' after optimizer step 2"):
        _trainer(tmp_path / "run", num_sanity_val_steps=0, callbacks=[OverflowAfterStep()]).fit(
            _model(), DigitsDataModule(time_steps=20, batch_size=8))


class NaNLoss(nn.Module):
    def forward(self, counts, target):
        return (counts * math.nan).sum()


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    with pytest.raises(FloatingPointError, match=r"train loss is nan at global step 0: check the loss inputs"):
        _trainer(tmp_path / "run", num_sanity_val_steps=0).fit(
            _model(loss=NaNLoss()), DigitsDataModule(time_steps=20, batch_size=8))


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_checkpoint_is_named(tmp_path, damage):
    ckpt = tmp_path / "broken.ckpt"
    if damage == "garbage":
        ckpt.write_bytes(b"this is not a checkpoint")
    else:
        model = _model()
        trainer = _trainer(tmp_path / "good", max_steps=1, limit_val_batches=0)
        trainer.fit(model, DigitsDataModule(time_steps=20, batch_size=8))
        trainer.save_checkpoint(tmp_path / "good.ckpt")
        data = (tmp_path / "good.ckpt").read_bytes()
        ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match=rf"cannot read checkpoint {ckpt}: the file is corrupt or truncated"):
        cli_main(args(tmp_path / "run", DIGITS, "--ckpt_path", str(ckpt)))
    assert nothing_written(tmp_path / "run")


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="--ckpt_path .*nope.ckpt: no such checkpoint file"):
        cli_main(args(tmp_path / "run", DIGITS, "--ckpt_path", str(tmp_path / "nope.ckpt")))
    assert nothing_written(tmp_path / "run")
