"""EMNIST datamodule on the real balanced subset (shared/data/EMNIST/raw) and on tiny generated files."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from hm2bp.datamodules import EMNISTDataModule
from hm2bp.datamodules.emnist import EMNIST_SPLITS

REPO = Path(__file__).resolve().parents[2]


def _write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> None:
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def _fake_split(root: Path, split: str, labels_train, labels_test, gz=False) -> Path:
    raw = root / "EMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for part, labels in (("train", labels_train), ("test", labels_test)):
        n = len(labels)
        imgs = np.zeros((n, 28, 28), np.uint8)
        imgs[:, 2, 20] = 255  # stored transposed: row 2, col 20 -> upright row 20, col 2
        _write_idx(raw / f"emnist-{split}-{part}-images-idx3-ubyte", imgs, gz)
        _write_idx(raw / f"emnist-{split}-{part}-labels-idx1-ubyte", np.asarray(labels), gz)
    return raw


def test_real_balanced_subset(shared_data):
    dm = EMNISTDataModule(data_dir=str(shared_data), val_size=120, batch_size=16, time_steps=50)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert dm.num_classes == 47 and dm.input_shape == (28, 28) and dm.num_inputs == 784
    assert len(dm.train_set) + len(dm.val_set) == 9120 and len(dm.val_set) == 120
    assert len(dm.test_set) == 304
    assert set(dm.train_set.y.tolist()) == set(range(47))
    names = dm.class_names
    assert names[:10] == [str(d) for d in range(10)] and names[10] == "A" and names[36] == "a" and names[-1] == "t"
    # upright: EMNIST digits keep their ink in the middle columns; a transposed '1' would be a bar
    ones = dm.train_set.x[dm.train_set.y == 1].float().mean(0)  # [28, 28] mean '1'
    assert ones.sum(0).max() > 2 * ones.sum(1).max()  # a vertical stroke: ink piles up in few columns
    sevens = dm.train_set.x[dm.train_set.y == 7].float().mean(0)  # the bar of a '7' is at the top
    assert sevens[:10].sum() > 1.5 * sevens[18:].sum()
    spikes, labels, _ = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert spikes.shape == (50, 16, 28, 28) and spikes.dtype == torch.uint8 and labels.dtype == torch.int64
    assert spikes[0].sum() == 0 and int(spikes.max()) == 1
    assert 0 <= int(labels.min()) and int(labels.max()) < 47
    # rate code: mean spikes per step and pixel = mean(x) / (5.5 * 255) over steps 1..T-1
    x, _, _ = next(iter(torch.utils.data.DataLoader(dm.train_set, batch_size=16, shuffle=False)))
    idx = torch.arange(16)
    from hm2bp.datamodules.encoding import bernoulli_rate

    s = bernoulli_rate(x, 400, index=idx)
    expected = x.float().mean() / (5.5 * 255)
    assert s[1:].float().mean().item() == pytest.approx(expected.item(), rel=0.05)


def test_letters_labels_shift_and_upright(tmp_path):
    _fake_split(tmp_path, "letters", [1, 26, 13, 2], [5, 26], gz=True)
    dm = EMNISTDataModule(split="letters", data_dir=str(tmp_path), val_size=1)
    dm.setup()
    assert dm.num_classes == 26
    assert sorted(dm.train_set.y.tolist()) == [0, 1, 12, 25]
    assert dm.train_set.x[0, 20, 2] == 255 and dm.train_set.x[0, 2, 20] == 0  # turned upright


def test_all_split_sizes():
    assert EMNIST_SPLITS == {"balanced": 47, "byclass": 62, "bymerge": 47, "digits": 10, "letters": 26, "mnist": 10}
    for split, n in EMNIST_SPLITS.items():
        assert EMNISTDataModule(split=split).num_classes == n
    with pytest.raises(ValueError, match="data.init_args.split"):
        EMNISTDataModule(split="bogus")


def test_label_outside_range_names_file(tmp_path):
    raw = _fake_split(tmp_path, "digits", [0, 10, 3], [1])
    before = sorted(p.name for p in raw.iterdir())
    dm = EMNISTDataModule(split="digits", data_dir=str(tmp_path), val_size=1)
    with pytest.raises(ValueError, match=r"emnist-digits-train-labels-idx1-ubyte.*label 10"):
        dm.setup("fit")
    assert sorted(p.name for p in raw.iterdir()) == before  # nothing written


def test_missing_folder_is_clear(tmp_path):
    dm = EMNISTDataModule(data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"EMNIST/raw/emnist-balanced-train-images-idx3-ubyte"):
        dm.prepare_data()


@pytest.mark.parametrize("bias,expected", [(True, 665_647), (False, 664_800)])
def test_emnist_mlp_parameter_count(bias, expected, tmp_path):
    from hm2bp.cli import cli_main

    cli = cli_main(
        args=["--config", str(REPO / "configs/experiment/emnist_mlp.yaml"),
              "--model.network.init_args.bias", str(bias).lower(), "--trainer.logger", "false",
              "--trainer.default_root_dir", str(tmp_path)],
        run=False,
    )
    n = sum(p.numel() for p in cli.model.parameters() if p.requires_grad)
    assert n == expected
