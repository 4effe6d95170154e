"""Every dataset experiment config (and data config) runs ``fit`` through the real CLI with tiny limits.

Real data from shared/data; T is cut short with overrides, caches go to tmp_path.

Note: ``--trainer.limit_train_batches 1`` parses as the float 1.0 (= the whole epoch) through
``omegaconf+``, so the limits are given as 2 batches and ``max_steps`` caps training at one step.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from hm2bp.cli import cli_main
from tests.helpers.cli_args import count_args

REPO = Path(__file__).resolve().parents[2]


def _subset_fsdd(shared_data: Path, tmp_path: Path) -> Path:
    src = shared_data / "FSDD" / "recordings"
    dst = tmp_path / "fsdd_data" / "FSDD" / "recordings"
    dst.mkdir(parents=True)
    for d in range(10):
        for idx in (0, 5, 6):
            os.symlink(src / f"{d}_jackson_{idx}.wav", dst / f"{d}_jackson_{idx}.wav")
    return tmp_path / "fsdd_data"


def _subset_ti46(shared_data: Path, tmp_path: Path) -> Path:
    src = shared_data / "TI46_alpha_spikes"
    dst = tmp_path / "ti_data" / "TI46_alpha_spikes"
    for c in range(26):
        (dst / str(c)).mkdir(parents=True)
        for u in (1, 2, 4):
            f = src / str(c) / f"f1_u{u}_c{c}.dat.gz"
            if f.is_file():
                os.symlink(f, dst / str(c) / f.name)
    return tmp_path / "ti_data"


# experiment -> (data_dir factory, extra overrides); T small to keep the CPU run short
CASES = {
    "emnist_mlp": (lambda s, t: s, ["--data.init_args.time_steps", "20", "--data.init_args.val_size", "64",
                                    "--data.init_args.batch_size", "16"]),
    "nmnist_mlp": (lambda s, t: s, ["--data.init_args.time_steps", "40", "--data.init_args.val_size", "16",
                                    "--data.init_args.batch_size", "8"]),
    "ti46_mlp": (_subset_ti46, ["--data.init_args.time_steps", "60", "--data.init_args.val_size", "8",
                                "--data.init_args.batch_size", "8"]),
    "fsdd_mlp": (_subset_fsdd, ["--data.init_args.time_steps", "60", "--data.init_args.val_size", "4",
                                "--data.init_args.batch_size", "8"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_experiment_fit_tiny(name, shared_data, tmp_path):
    make_dir, extra = CASES[name]
    args = [
        "fit", "--config", str(REPO / "configs" / "experiment" / f"{name}.yaml"),
        "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2", "--trainer.max_epochs", "1",
        "--trainer.max_steps", "1", "--trainer.num_sanity_val_steps", "0",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path / "run"), "--test_after_fit", "false",
        "--data.init_args.data_dir", str(make_dir(shared_data, tmp_path)),
    ]
    if name != "emnist_mlp":
        args += ["--data.init_args.cache_dir", str(tmp_path / "cache")]
    T = int(extra[extra.index("--data.init_args.time_steps") + 1])
    cli = cli_main(args=args + extra + count_args(T))
    assert cli.trainer.global_step == 1
    assert cli.model.num_classes == cli.datamodule.num_classes
    assert cli.model.network.num_inputs == cli.datamodule.num_inputs


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "configs" / "data").glob("*.yaml")))
def test_data_config_matches_constructor(name, tmp_path):
    """configs/data/<name>.yaml names its class, and every key is a constructor argument."""
    import importlib
    import inspect

    cfg = yaml.safe_load((REPO / "configs" / "data" / f"{name}.yaml").read_text())
    module, cls_name = cfg["class_path"].rsplit(".", 1)
    cls = getattr(importlib.import_module(module), cls_name)
    params = inspect.signature(cls.__init__).parameters
    assert set(cfg["init_args"]) <= set(params), set(cfg["init_args"]) - set(params)
    dm = cls(**{**cfg["init_args"], **({"cache_dir": str(tmp_path)} if "cache_dir" in params else {})})
    assert dm.num_inputs > 0 and dm.time_steps > 0


def test_data_config_swaps_into_an_experiment(shared_data, tmp_path):
    """``--data configs/data/nmnist.yaml`` replaces the data section of an experiment."""
    cli = cli_main(args=[
        "--config", str(REPO / "configs/experiment/nmnist_mlp.yaml"),
        "--data", str(REPO / "configs/data/nmnist.yaml"),
        "--data.init_args.data_dir", str(shared_data), "--data.init_args.cache_dir", str(tmp_path / "c"),
        "--trainer.logger", "false",
    ], run=False)
    assert type(cli.datamodule).__name__ == "NMNISTDataModule" and cli.datamodule.time_steps == 540
