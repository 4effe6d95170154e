"""Every experiment config runs ``fit`` through the real CLI with tiny limits (CPU, no logger)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hm2bp.cli import cli_main
from hm2bp.schedules import OfficialMLP
from tests.helpers.cli_args import smoke_fit_args, tiny_fit_args
from tests.helpers.recording import FitRecorder

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((REPO / "configs" / "experiment").glob("*.yaml"))


def test_there_are_experiments():
    names = {p.stem for p in EXPERIMENTS}
    assert {"digits", "mnist_mlp", "mnist_cnn", "emnist_mlp", "nmnist_mlp", "ti46_mlp", "fsdd_mlp"} <= names


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_fits_with_tiny_limits(config, tmp_path, shared_data, monkeypatch):
    """Two training batches at T = 30, thresholds scaled to that T: every layer spikes, every weight
    tensor moves, validation and test run."""
    monkeypatch.setenv("HM2BP_DATA_DIR", str(shared_data))
    monkeypatch.chdir(tmp_path)  # any relative run/cache folder lands in tmp
    monkeypatch.setenv("HM2BP_CACHE_DIR", str(tmp_path / "cache"))
    parsed = cli_main(tiny_fit_args(config, tmp_path)[1:], run=False)
    thresholds = list(parsed.config.model.network.init_args.thresholds)
    cli = cli_main(smoke_fit_args(config, tmp_path, thresholds))
    assert cli.trainer.state.finished
    assert cli.trainer.global_step >= 1
    assert {"val/acc", "test/acc"} & set(cli.trainer.callback_metrics)
    assert cli.model.time_steps == cli.datamodule.time_steps  # linked from the datamodule
    (rec,) = [c for c in cli.trainer.callbacks if isinstance(c, FitRecorder)]
    silent = [name for name, total in rec.spikes.items() if total == 0]
    assert rec.spikes and not silent, f"silent layers in the smoke fit: {silent} ({rec.spikes})"
    frozen = [k for k, w in rec.before.items() if torch.equal(w, rec.after[k])]
    assert rec.before and not frozen, f"weights that did not move: {frozen}"


def test_links_reach_the_model(tmp_path):
    cli = cli_main(tiny_fit_args(REPO / "configs/experiment/digits.yaml", tmp_path)[1:], run=False)
    assert cli.model.num_inputs == 64 and cli.model.num_classes == 10 and cli.model.time_steps == 30


def test_authors_recipe_is_one_config_away(tmp_path):
    """configs/recipe/authors_mlp.yaml turns the MNIST MLP experiment into the authors' batch-1 recipe."""
    args = ["--config", str(REPO / "configs/experiment/mnist_mlp.yaml"),
            "--config", str(REPO / "configs/recipe/authors_mlp.yaml"), "--trainer.logger", "false"]
    cli = cli_main(args, run=False)
    assert cli.datamodule.batch_size == 1 and cli.datamodule.order == "swaps"
    opt = cli.model.build_optimizer()
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["lr"] == 0.001
    assert isinstance(cli.model.lr_scheduler_factory(opt), OfficialMLP)
    assert cli.model.network.spec == "784-800-10"  # everything else from the experiment
