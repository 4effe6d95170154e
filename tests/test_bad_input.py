"""The bad-input matrix (docs/troubleshooting.md), end to end.

Through the ``hm2bp`` entry point (``main``): each case ends with exit status 2 and exactly one line
``hm2bp: error: <message naming the key or file>``, before any training work, leaving no run folder
and no W&B run behind. ``--debug``/``HM2BP_DEBUG`` give the traceback instead. The parser's errors
all go through it; of the failures our own checks find, one per kind does (a model value, the
model/data fit, a data value, the data folder, the test split, the world size, the checkpoint path,
the output folder, the seed); tests/test_config_checks.py calls each of those checks directly. Then
the checks of the Python API (a plain ``Trainer``) and the numeric failures during training.
"""
from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from hm2bp import SpikeCountLoss, SpikingClassifier, SpikingNetwork
from hm2bp.checkpoint import CorruptCheckpointError
from hm2bp.cli import cli_main, main
from hm2bp.datamodules import DigitsDataModule
from hm2bp.errors import ConfigError, TrainingDivergedError
from tests.fakes import fake_mnist
from tests.helpers.cli_args import SMALL
from tests.helpers.paths import DIGITS, MNIST


def fit_args(root: Path, config: Path = DIGITS, *extra: str) -> list[str]:
    """A tiny fit, logging to W&B (offline), so that a leftover W&B run would show."""
    return ["fit", "--config", str(config), "--trainer.accelerator", "cpu", "--trainer.devices", "1",
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root), *SMALL, *extra]


def nothing_written(tmp_path: Path) -> bool:
    """No run folder under ``tmp_path/run`` and no W&B run anywhere under ``tmp_path``."""
    root = tmp_path / "run"
    no_run = not root.exists() or not any(root.rglob("*"))
    return no_run and not list(tmp_path.rglob("offline-run-*")) and not list(tmp_path.rglob("run-*.wandb"))


def one_line_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("hm2bp: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------- the CLI matrix
def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _file_parent(tmp_path: Path) -> str:
    (tmp_path / "a_file").write_text("not a folder")
    return str(tmp_path / "a_file" / "runs")


# the parser's errors, and one case per kind of failure found by our checks (the others: tests/test_config_checks.py)
CASES = {
    # configuration: keys, types, files
    "unknown key on the command line": (lambda t: ["--model.learning_rate", "0.1"],
                                        r"unrecognized arguments: --model\.learning_rate 0\.1"),
    "unknown key in a config file": (lambda t: ["--config", _write(t, "bad.yaml", "model:\n  learning_rate: 0.1\n")],
                                     r"does not accept option 'model\.learning_rate'"),
    "wrong type": (lambda t: ["--data.init_args.batch_size", "sixteen"],
                   r"data\.batch_size: Expected a <class 'int'>\. Got value: sixteen"),
    "config file that is not YAML": (lambda t: ["--config", _write(t, "syntax.yaml", "model: [unclosed\n")],
                                     r"syntax\.yaml: not valid YAML \(.*\); fix the file"),
    "missing config file": (lambda t: ["--config", str(t / "nope.yaml")], r"config: File does not exist: .*nope\.yaml"),
    "unknown datamodule class": (lambda t: ["--data.class_path", "nope.Module"], r"data: No module named 'nope'"),
    # model
    "network input size": (lambda t: ["--model.network.init_args.spec", "784-100-10"],
                           r"network takes 784 inputs but the datamodule provides 64; fix model\.network\.init_args\.spec"),
    "NaN threshold in YAML": (lambda t: ["--config", _write(t, "nan.yaml", "model:\n  network:\n    init_args:\n"
                                                                          "      thresholds: [.nan, 4]\n")],
                              r"model\.network\.init_args\.thresholds\[0\]=nan must be a positive finite number"),
    "unknown optimizer": (lambda t: ["--model.optimizer", "adamw"], r"model\.optimizer: Expected a dot import path string: adamw"),
    "unknown schedule": (lambda t: ["--model.lr_scheduler", "cosine"],
                         r"model\.lr_scheduler: Expected a dot import path string: cosine"),
    # data values
    "val_size beyond the data": (lambda t: ["--data.init_args.val_size", "1500"],
                                 r"data\.init_args\.val_size \+ data\.init_args\.test_size = 1500 \+ 360 leaves no training"),
    # trainer and world
    "batch not divisible by the world size": (
        lambda t: ["--data.init_args.batch_size", "10", "--trainer.strategy", "ddp", "--trainer.devices", "2",
                   "--trainer.num_nodes", "2"],
        r"data\.init_args\.batch_size=10 is the global batch and must be divisible by the world size 4 "
        r"\(trainer\.devices x trainer\.num_nodes = 2 x 2\)"),
    "zero devices": (lambda t: ["--trainer.devices", "0"], r"`Trainer\(devices='0'\)` value is not a valid input"),
    # checkpoints
    "missing checkpoint": (lambda t: ["--ckpt_path", str(t / "nope.ckpt")], r"--ckpt_path .*nope\.ckpt: no such checkpoint file"),
    # output
    "output folder that cannot be created": (lambda t: ["--trainer.default_root_dir", _file_parent(t)],
                                             r"cannot create the run folder .*a_file/runs/.* \(.*a_file is a file, not a folder\); set trainer\.default_root_dir"),
    "negative seed": (lambda t: ["--seed_everything", "-1"], r"seed_everything=-1 must be >= 0; an integer seed"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_bad_input_is_one_line_before_any_work(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make, pattern = CASES[case]
    line = one_line_error(capsys, fit_args(tmp_path / "run", DIGITS, *make(tmp_path)))
    assert __import__("re").search(pattern, line), line
    assert nothing_written(tmp_path)


def test_missing_data_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(capsys, fit_args(tmp_path / "run", MNIST, "--data.init_args.data_dir", str(tmp_path / "no_such_dir")))
    assert "no_such_dir/MNIST/raw/train-images-idx3-ubyte[.gz] not found" in line
    assert nothing_written(tmp_path) and not (tmp_path / "no_such_dir").exists()


def test_bad_test_split_fails_before_training(tmp_path, capsys, monkeypatch):
    """test_after_fit reads and checks the test split before the first training step (a bad label:
    tests/test_config_checks.py)."""
    monkeypatch.chdir(tmp_path)
    data = fake_mnist(tmp_path / "data")
    f = data / "MNIST/raw/t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    line = one_line_error(capsys, fit_args(tmp_path / "run", MNIST, "--data.init_args.data_dir", str(data),
                                           "--data.init_args.val_size", "8", "--test_after_fit", "true"))
    assert "t10k-images-idx3-ubyte is truncated or padded" in line
    assert nothing_written(tmp_path)


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"model\.optimizer\.init_args\.lr=0\.0 must be > 0"):
        main(fit_args(tmp_path / "run", DIGITS, "--model.optimizer.init_args.lr", "0", "--debug"))
    monkeypatch.setenv("HM2BP_DEBUG", "1")
    with pytest.raises(ConfigError, match=r"model\.optimizer\.init_args\.lr=0\.0 must be > 0"):
        main(fit_args(tmp_path / "run", DIGITS, "--model.optimizer.init_args.lr", "0"))


def test_cli_main_raises_the_error_itself(tmp_path):
    """The Python entry point raises (tests and scripts see the exception type); only main() prints."""
    with pytest.raises(ValueError, match="network takes 784 inputs but the datamodule provides 64"):
        cli_main(fit_args(tmp_path / "run", DIGITS, "--model.network.init_args.spec", "784-100-10"))
    assert nothing_written(tmp_path)


# ----------------------------------------------------------------------------- Python API with a plain Trainer
def _model(time_steps=20, lr=5e-3, loss=None) -> SpikingClassifier:
    pl.seed_everything(0, verbose=False)
    net = SpikingNetwork("64-100-10", thresholds=[5.0, 4.0], output_lateral_inhibition=1.0, target_injection=6.0)
    return SpikingClassifier(net, loss or SpikeCountLoss(6, 1, 1), optimizer=partial(torch.optim.Adam, lr=lr),
                             time_steps=time_steps)


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
    with pytest.raises(ConfigError, match="T mismatch: the datamodule produces T=20 time steps but the model was built for T=30"):
        _trainer(tmp_path / "run", callbacks=[counter]).fit(_model(time_steps=30), DigitsDataModule(time_steps=20, batch_size=8))
    assert counter.steps == 0 and not (tmp_path / "run").exists()


def test_unreachable_counts_without_the_cli(tmp_path):
    """SpikingClassifier built without T checks the counts against the datamodule's T in setup."""
    counter = StepCounter()
    with pytest.raises(ConfigError, match=r"desired=6 is unreachable at T=10"):
        _trainer(tmp_path / "run", callbacks=[counter]).fit(_model(time_steps=None), DigitsDataModule(time_steps=10, batch_size=8))
    assert counter.steps == 0


def test_batch_not_divisible_by_world_size_in_the_datamodule():
    dm = DigitsDataModule(time_steps=20, batch_size=10)

    class FakeTrainer:
        world_size, global_rank = 4, 0

    dm.trainer = FakeTrainer()
    with pytest.raises(ConfigError, match=r"data\.init_args\.batch_size=10 is not divisible by the world size 4"):
        _ = dm.per_device_batch_size


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(val_size=-1), r"val_size=-1 must be >= 0"),
    (dict(test_size=0), r"test_size=0 must be > 0"),  # val_size=0: no validation (tests/cli/test_no_validation.py)
    (dict(test_size=True), r"test_size must be a number, got True"),
    (dict(val_size=2.5), r"val_size must be a whole number, got 2\.5"),
    (dict(val_size=float("nan")), r"val_size must be a finite number, got nan"),
    (dict(num_workers=-2), r"num_workers=-2 must be >= 0"),
    (dict(rate_divisor=float("nan")), r"rate_divisor must be a finite number"),
])
def test_digits_values_are_range_checked(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        DigitsDataModule(**kwargs).setup("fit")


def test_digits_splits_never_overlap_for_any_valid_size():
    for val, test in ((1, 1), (0.5, 0.4), (900, 896)):
        dm = DigitsDataModule(val_size=val, test_size=test)
        dm.setup("fit")
        sets = [set(s.indices.tolist()) for s in (dm.train_set, dm.val_set, dm.test_set)]
        assert all(sets) and not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])


# ----------------------------------------------------------------------------- numerics during training
def test_nan_in_the_weights_names_the_layer(tmp_path):
    model = _model()
    with torch.no_grad():
        model.network.layers["fc1"].weight[3, 5] = math.nan
    with pytest.raises(TrainingDivergedError, match=r"'network\.layers\.fc1\.weight'"):
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
        cli_main(fit_args(tmp_path / "run", DIGITS, "--ckpt_path", str(ckpt)))
    assert not (tmp_path / "run").exists()


RAISER = '''
import pytorch_lightning as pl
from hm2bp.errors import ConfigError


class Raiser(pl.Callback):
    """Fails once the run folder and the W&B run exist, before the first training step."""

    def on_train_start(self, trainer, pl_module):
        raise ConfigError("late check failed; fix the late value")
'''


def test_failure_after_the_run_folder_exists_leaves_nothing(tmp_path, capsys, monkeypatch):
    """A known error raised inside fit, before any training step: the W&B run is finished and the
    freshly made run folder (with its W&B run) is removed."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "raiser_cb.py").write_text(RAISER)
    monkeypatch.syspath_prepend(str(tmp_path))
    line = one_line_error(capsys, fit_args(tmp_path / "run", DIGITS, "--trainer.callbacks+=raiser_cb.Raiser"))
    assert line == "hm2bp: error: late check failed; fix the late value"
    assert nothing_written(tmp_path)


def test_threads_is_one_run_level_setting(tmp_path, monkeypatch):
    """``--threads`` sets torch's intra-op threads once, before anything is built; a bad value is one error."""
    import torch

    monkeypatch.chdir(tmp_path)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        cli_main(["--config", str(DIGITS), "--trainer.logger", "false", "--threads", "1"], run=False)
        assert torch.get_num_threads() == 1
        cli_main(["--config", str(DIGITS), "--trainer.logger", "false", "--threads", "0"], run=False)
        assert torch.get_num_threads() == 1  # 0 keeps what torch has
        with pytest.raises(ValueError, match="threads"):
            cli_main(["--config", str(DIGITS), "--trainer.logger", "false", "--threads", "-1"], run=False)
    finally:
        torch.set_num_threads(before)
