"""configs/experiment/mnist_cnn.yaml: builds the official CNN and runs ``fit`` through the real CLI."""
from __future__ import annotations

from pathlib import Path

import torch

import hm2bp
from hm2bp.cli import cli_main
from tests.helpers.cli_args import count_args

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "experiment" / "mnist_cnn.yaml")


def test_mnist_cnn_config_is_the_official_network(shared_data):
    cli = cli_main(args=["--config", CONFIG, "--data.init_args.data_dir", str(shared_data),
                         "--trainer.logger", "false"], run=False)
    net = cli.model.network
    assert net.layer_names == ["conv1", "pool1", "conv2", "pool2", "fc1", "output"]
    assert sum(p.numel() for p in net.parameters()) == 210_375  # the paper CNN's parameter count
    layers = net.layers
    assert [layers[n].threshold for n in net.layer_names] == [5, 2, 12, 4, 10, 10]
    assert isinstance(layers["conv2"], hm2bp.SpikingConv2d) and isinstance(layers["pool2"], hm2bp.SpikingPool2d)
    assert layers["conv1"].weight.abs().max() <= 0.5 < layers["fc1"].weight.abs().max() <= 1.0
    assert layers["conv1"].threshold_eps == 0.0 and layers["pool1"].threshold_eps == 1e-6
    assert layers["pool1"].backward_divisor == 4.0 and layers["conv2"].psp_kernel.shift == 2  # official
    assert layers["conv2"].rule.reg_lambda == 0 and layers["output"].lateral_inhibition == 1.0
    dm = cli.datamodule
    assert dm.time_steps == 400 and dm.redraw_every_epoch and dm.augment_train
    assert dm.augment_magnitudes == dict(elastic=3.4, scale=12.0, rotation=12.0)


def test_mnist_cnn_fit_tiny(shared_data, tmp_path):
    cli = cli_main(args=[
        "fit", "--config", CONFIG,
        "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1", "--trainer.max_epochs", "1",
        # the CLI currently parses the 1 above as 1.0 (= 100 %): max_steps and a tiny val set bound the run
        "--trainer.max_steps", "1", "--trainer.num_sanity_val_steps", "0",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(tmp_path / "run"),
        "--test_after_fit", "false",
        "--data.init_args.data_dir", str(shared_data), "--data.init_args.time_steps", "50",
        "--data.init_args.batch_size", "4", "--data.init_args.val_size", "8", *count_args(50),
    ])
    assert cli.trainer.global_step == 1
    assert cli.model.time_steps == 50 and cli.model.num_classes == 10
    w = cli.model.network.layers["conv1"].weight
    assert torch.isfinite(w).all() and w.grad is not None and w.grad.abs().sum() > 0
    assert "train/loss" in cli.trainer.callback_metrics
