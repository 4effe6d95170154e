"""The checks behind the CLI's one-line errors (docs/troubleshooting.md), called directly.

Each case is a row of the bad-input matrix whose message comes from one check: a constructor's range
check, the model/data fit, a pre-flight check of :mod:`hm2bp.cli_checks`, the ``--ckpt_path``
resolution, the run-folder creation or a datamodule reading its folder. tests/test_bad_input.py keeps one
case per kind of failure through the entry point, proving that such an error is one line before any
work and leaves nothing behind.
"""
from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from jsonargparse import Namespace

from hm2bp import SpikeCountLoss, SpikingClassifier, SpikingNetwork
from hm2bp.checkpoint import CorruptCheckpointError
from hm2bp.ckpt_path import resolve_ckpt_path
from hm2bp.cli_checks import check_checkpoint_fits, check_explicit_ckpt_dirs, check_trainer_options
from hm2bp.datamodules import DigitsDataModule
from hm2bp.datamodules.mnist import MNISTDataModule
from hm2bp.datamodules.nmnist import NMNISTDataModule
from hm2bp.errors import HM2BPError, OutputError
from hm2bp.module import check_counts_fit
from hm2bp.runs import create_run_dir, explicit_ckpt_dirs, new_run_name
from tests.fakes import fake_mnist, fake_nmnist


def small_network(spec: str = "64-100-10", **kwargs) -> SpikingNetwork:
    """The network of the CLI matrix's tiny fits (tests/helpers/cli_args.py ``SMALL``)."""
    return SpikingNetwork(spec, **{"thresholds": [5, 4], "target_injection": 6, **kwargs})


def error_of(make, kind: type[Exception] = HM2BPError) -> str:
    """The one-line message of the ``kind`` error ``make()`` raises (the CLI prints ``hm2bp: error: <message>``)."""
    with pytest.raises(kind) as exc:
        make()
    message = str(exc.value)
    assert "\n" not in message, message
    return message


def _file_parent(tmp_path: Path) -> Path:
    (tmp_path / "a_file").write_text("not a folder")
    return tmp_path / "a_file" / "runs"


# ----------------------------------------------------------------------------- model and loss values
@pytest.mark.parametrize("make, pattern", [
    (lambda: small_network("64-xx-10"),
     r"model\.network\.init_args\.spec: network spec '64-xx-10': cannot parse layer token 'xx'"),
    (lambda: small_network(thresholds=[5.0, -4.0]), r"thresholds\[1\]=-4\.0 must be a positive finite number"),
    (lambda: SpikeCountLoss(6.0, 6.0, 1.0),
     r"model\.loss\.init_args\.desired=6\.0 must exceed model\.loss\.init_args\.undesired=6\.0"),
    (lambda: SpikeCountLoss(6.0, 1.0, -1.0), r"model\.loss\.init_args\.margin=-1\.0 must be >= 0"),
    (lambda: SpikingClassifier(small_network(), optimizer=partial(torch.optim.Adam, lr=0.0)).build_optimizer(),
     r"model\.optimizer\.init_args\.lr=0\.0 must be > 0"),
    (lambda: SpikingClassifier(small_network(), optimizer=partial(torch.optim.SGD, lr=0.1, momentum=-0.5)).build_optimizer(),
     r"model\.optimizer: Invalid momentum value: -0\.5"),
], ids=["unparsable spec", "negative threshold", "undesired above desired", "negative margin", "zero learning rate",
        "negative momentum"])
def test_model_values(make, pattern):
    line = error_of(make)
    assert re.search(pattern, line), line


@pytest.mark.parametrize("loss, network, pattern", [
    (SpikeCountLoss(17.5, 1, 1), {}, r"model\.loss\.init_args\.desired=17\.5 is unreachable at T=20: .* at most 7 times"),
    (SpikeCountLoss(6, 1, 1), {"target_injection": 9}, r"model\.network\.init_args\.target_injection=9 is unreachable at T=20"),
], ids=["desired count unreachable at T", "injected count unreachable at T"])
def test_counts_unreachable_at_t(loss, network, pattern):
    line = error_of(lambda: check_counts_fit(loss, small_network(**network), 20))
    assert re.search(pattern, line), line


@pytest.mark.parametrize("spec, pattern", [
    ("784-100-10", r"network takes 784 inputs but the datamodule provides 64; fix model\.network\.init_args\.spec"),
    ("64-100-7", r"network has 7 outputs but the datamodule has 10 classes"),
], ids=["network input size", "class count"])
def test_model_and_data_must_fit(spec, pattern):
    model = SpikingClassifier(small_network(spec), SpikeCountLoss(6, 1, 1))
    line = error_of(lambda: model.check_data(DigitsDataModule(time_steps=20, batch_size=8)))
    assert re.search(pattern, line), line


# ----------------------------------------------------------------------------- data values and folders
@pytest.mark.parametrize("kwargs, pattern", [
    (dict(val_size=-5), r"data\.init_args\.val_size=-5 must be >= 0"),
    (dict(num_workers=-1), r"data\.init_args\.num_workers=-1 must be >= 0"),
    (dict(batch_size=0), r"data\.init_args\.batch_size=0 must be >= 1"),
    (dict(time_steps=1), r"data\.init_args\.time_steps=1 must be >= 2"),
    (dict(rate_divisor=0.5), r"data\.init_args\.rate_divisor=0\.5 must be >= 1"),
], ids=["negative val_size", "negative num_workers", "zero batch size", "one time step", "rate divisor below 1"])
def test_data_values(kwargs, pattern):
    line = error_of(lambda: DigitsDataModule(**{"time_steps": 20, "batch_size": 8, **kwargs}).setup("fit"))
    assert re.search(pattern, line), line


def test_bad_test_label_is_named(tmp_path):
    data = fake_mnist(tmp_path / "data", test_labels=np.array([0, 1, 12, 3] * 4))
    dm = MNISTDataModule(data_dir=str(data), val_size=8, time_steps=20, batch_size=8)
    dm.prepare_data()
    assert "t10k-labels-idx1-ubyte: label 12 outside 0..9" in error_of(lambda: dm.setup("test"))


def test_val_size_that_does_not_fit_a_partial_folder_names_the_key(tmp_path):
    data = fake_nmnist(tmp_path / "data")  # 4 training files; the experiment asks for 5000 validation samples
    dm = NMNISTDataModule(data_dir=str(data), val_size=5000, cache_dir=str(tmp_path / "cache"))

    def setup():
        dm.prepare_data()
        dm.setup("fit")

    line = error_of(setup)
    assert "data.init_args.val_size=5000 leaves no training samples: 4 training samples were found under" in line
    assert "or a fraction such as 0.1" in line


def test_unwritable_cache_folder_names_the_key(tmp_path):
    data = fake_nmnist(tmp_path / "data")
    dm = NMNISTDataModule(data_dir=str(data), val_size=1, cache_dir=str(_file_parent(tmp_path)))

    def setup():
        dm.prepare_data()
        dm.setup("fit")

    line = error_of(setup)
    assert "cannot write the spike cache" in line and "data.init_args.cache_dir" in line


# ----------------------------------------------------------------------------- trainer values
def test_accumulate_grad_batches_zero():
    line = error_of(lambda: check_trainer_options({"accumulate_grad_batches": 0}, None, None))
    assert re.search(r"trainer\.accumulate_grad_batches=0 must be >= 1", line), line


def test_val_check_interval_beyond_an_epoch():
    dm = DigitsDataModule(time_steps=20, batch_size=8)
    dm.setup("fit")
    trainer = SimpleNamespace(world_size=1, limit_train_batches=2)
    t = {"val_check_interval": 1000, "check_val_every_n_epoch": 1}
    line = error_of(lambda: check_trainer_options(t, trainer, dm))
    assert re.search(r"trainer\.val_check_interval=1000 is more than the 2 training batches", line), line


# ----------------------------------------------------------------------------- checkpoints and run folders
def test_corrupt_checkpoint(tmp_path):
    ckpt = tmp_path / "broken.ckpt"
    ckpt.write_text("this is not a checkpoint")
    line = error_of(lambda: resolve_ckpt_path("fit", str(ckpt), tmp_path / "run", []), CorruptCheckpointError)
    assert re.search(r"cannot read checkpoint .*broken\.ckpt: the file is corrupt or truncated", line), line


def test_checkpoint_of_another_network(tmp_path):
    ckpt = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"network.layers.fc1.weight": torch.zeros(50, 64),
                               "network.layers.output.weight": torch.zeros(10, 50)}, "global_step": 0}, ckpt)
    model = SpikingClassifier(small_network(), SpikeCountLoss(6, 1, 1))
    line = error_of(lambda: check_checkpoint_fits(model, ckpt))
    assert re.search(r"parameter 'network\.layers\.fc1\.weight' has shape \(50, 64\), this network's has \(100, 64\)",
                     line), line


def test_last_checkpoint_for_test_without_any_run(tmp_path):
    line = error_of(lambda: resolve_ckpt_path("test", "last", tmp_path / "run", []))
    assert "--ckpt_path last: no run with a checkpoint under" in line


def test_explicit_dirpath_holding_another_runs_checkpoints(tmp_path):
    folder = tmp_path / "shared_ckpts"
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"from an earlier run")
    trainer = Namespace(callbacks=[Namespace(class_path="pytorch_lightning.callbacks.ModelCheckpoint",
                                             init_args=Namespace(dirpath=str(folder), monitor="val/acc"))])
    line = error_of(lambda: check_explicit_ckpt_dirs(explicit_ckpt_dirs(trainer), None))
    assert re.search(r"trainer\.callbacks\[0\]\.init_args\.dirpath=.*shared_ckpts already holds checkpoints of another run",
                     line), line


def test_output_folder_that_is_a_file(tmp_path):
    parent = _file_parent(tmp_path).parent
    line = error_of(lambda: create_run_dir(parent / new_run_name(), "fit"), OutputError)
    assert re.search(r"cannot create the run folder .*a_file/\d{8}-.* \(.*a_file is a file, not a folder\); "
                     r"set trainer\.default_root_dir", line), line
