"""N-MNIST datamodule: real subset (shared/data/NMNIST), encoding rules of docs/datasets.md (N-MNIST), cache, bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hm2bp.datamodules import NMNISTDataModule
from hm2bp.datamodules.cache import CacheEntryError, load_spike_lists
from hm2bp.datamodules.nmnist import (
    NMNISTFormatError,
    nmnist_channels_and_steps,
    read_nmnist_bin,
    stabilize_saccades,
)


def _event_bytes(events) -> bytes:
    """(x, y, p, ts) tuples -> 40-bit N-MNIST records."""
    out = bytearray()
    for x, y, p, ts in events:
        out += bytes([x, y, (p << 7) | ((ts >> 16) & 0x7F), (ts >> 8) & 0xFF, ts & 0xFF])
    return bytes(out)


def _events(rows):
    import tonic

    arr = np.zeros(len(rows), dtype=tonic.datasets.NMNIST.dtype)
    for i, (x, y, p, t) in enumerate(rows):
        arr[i] = (x, y, t, p)
    return arr


def _fake_nmnist(root: Path, n_per_class=2) -> Path:
    for split in ("Train", "Test"):
        for d in (0, 1):
            folder = root / "NMNIST" / split / str(d)
            folder.mkdir(parents=True)
            for k in range(n_per_class):
                (folder / f"{k:05d}.bin").write_bytes(_event_bytes([(10 + d, 12, k % 2, 1000 * (k + 1))]))
    return root


def test_channel_and_step_rules_without_stabilisation():
    # x, y 0-based; channel = x*34 + y; polarity bit set -> +1156; step = ceil(ts/600) + 1
    ev = _events([(0, 0, 0, 0), (33, 33, 1, 600), (2, 5, 0, 601), (2, 5, 0, 1199), (2, 5, 1, 1200)])
    ch, t = nmnist_channels_and_steps(ev, stabilize=False)
    pairs = set(zip(ch.tolist(), t.tolist()))
    assert pairs == {(0, 1), (33 * 34 + 33 + 1156, 2), (2 * 34 + 5, 3), (2 * 34 + 5 + 1156, 3)}  # 601, 1199 collapse


def test_stabilisation_follows_orchard():
    x1 = np.array([10, 10, 10, 10, 1])
    y1 = np.array([10, 10, 10, 10, 1])
    ts = np.array([0, 105_000, 157_500, 315_000, 52_500])
    xs, ys, keep = stabilize_saccades(x1, y1, ts)
    np.testing.assert_array_equal(xs, [10, 7, 5, 10, -1])  # 10-3.5 = 6.5 rounds (MATLAB) to 7
    np.testing.assert_array_equal(ys, [10, 3, 7, 10, -3])  # 1-3.5 = -2.5 -> -3 (numpy: -2)
    np.testing.assert_array_equal(keep, [True, True, True, True, False])  # x < 1 dropped


def test_real_subset(shared_data, tmp_path):
    dm = NMNISTDataModule(data_dir=str(shared_data), val_size=100, cache_dir=str(tmp_path), batch_size=8)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (900, 100, 100)
    assert dm.num_inputs == 2312 and dm.input_shape == (2312,) and dm.time_steps == 540
    lists = dm.load_split("train")
    assert np.bincount(lists.labels).tolist() == [97, 116, 99, 93, 105, 92, 94, 117, 87, 100]
    assert lists.times.min() >= 1 and lists.channels.min() >= 0 and lists.channels.max() < 2312
    spikes, labels, _ = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert spikes.shape == (540, 8, 2312) and spikes.dtype == torch.uint8 and labels.dtype == torch.int64
    assert spikes[0].sum() == 0 and int(spikes.max()) == 1 and 0 <= labels.min() and labels.max() <= 9
    # per sample: about the file's event count (few duplicates / out-of-field), both polarities present
    counts = spikes.sum((0, 2)).float()
    assert 900 < counts.mean() < 8000
    assert spikes[:, :, :1156].sum() > 0 and spikes[:, :, 1156:].sum() > 0
    # the first sample of Test/0 against a direct conversion of its events
    f = sorted((shared_data / "NMNIST/Test/0").glob("*.bin"))[0]
    ev = read_nmnist_bin(f)
    ch, t = nmnist_channels_and_steps(ev)
    assert len(ch) <= len(ev) and len(ch) > 0.8 * len(ev)
    test = dm.load_split("test")
    i = list(test.sources).index(f"Test/0/{f.name}")
    got_c, got_t = test.sample(i)
    np.testing.assert_array_equal(got_c, ch)
    np.testing.assert_array_equal(got_t, t)


def test_cache_is_keyed_reused_and_rebuilt(tmp_path):
    root = _fake_nmnist(tmp_path / "data")
    cache = tmp_path / "cache"
    dm = NMNISTDataModule(data_dir=str(root), val_size=1, cache_dir=str(cache), batch_size=2)
    dm.prepare_data()
    folders = list(cache.iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("nmnist-")
    assert sorted(p.name for p in folders[0].iterdir()) == ["params.json", "test.npz", "train.npz"]
    # other encoding parameters -> another folder
    NMNISTDataModule(data_dir=str(root), bin_us=1000, cache_dir=str(cache)).prepare_data()
    assert len(list(cache.iterdir())) == 2
    # corrupt entry -> clear CacheEntryError on direct load, rebuilt (with a warning) by the datamodule
    train = folders[0] / "train.npz"
    train.write_bytes(train.read_bytes()[:100])
    with pytest.raises(CacheEntryError, match="corrupt"):
        load_spike_lists(train)
    dm2 = NMNISTDataModule(data_dir=str(root), val_size=1, cache_dir=str(cache))
    with pytest.warns(UserWarning, match="rebuilding"):
        dm2.setup("fit")
    assert len(load_spike_lists(train)) == 4
    assert not list(folders[0].glob("*.part"))


def test_truncated_bin_names_file_and_leaves_no_cache(tmp_path):
    root = _fake_nmnist(tmp_path / "data")
    bad = root / "NMNIST/Train/1/00001.bin"
    bad.write_bytes(bad.read_bytes()[:-2])
    cache = tmp_path / "cache"
    dm = NMNISTDataModule(data_dir=str(root), val_size=1, cache_dir=str(cache))
    with pytest.raises(NMNISTFormatError, match=r"Train/1/00001\.bin.*not a multiple of 5"):
        dm.prepare_data()
    assert not cache.exists() or not list(cache.rglob("train*"))


def test_missing_folder_and_bad_label(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"NMNIST/Train.*<digit>/\*\.bin"):
        NMNISTDataModule(data_dir=str(tmp_path), cache_dir=str(tmp_path / "c")).prepare_data()
    root = _fake_nmnist(tmp_path / "data")
    extra = root / "NMNIST/Train/12"
    extra.mkdir()
    (extra / "00001.bin").write_bytes(_event_bytes([(1, 1, 0, 5)]))
    dm = NMNISTDataModule(data_dir=str(root), cache_dir=str(tmp_path / "c2"))
    with pytest.raises(ValueError, match=r"Train/12/00001\.bin: label 12 is outside the class range 0\.\.9"):
        dm.prepare_data()
    assert not (tmp_path / "c2").exists()


def test_densify_drops_steps_beyond_T_and_collapses_duplicates():
    from hm2bp.datamodules.spikelists import densify

    ch = torch.tensor([0, 1, 1, 2, 2])
    t = torch.tensor([0, 5, 5, 9, 10])  # (1, 5) twice; t = 10 = T dropped
    sample = torch.tensor([0, 0, 0, 1, 1])
    out = densify(ch, t, sample, batch=2, time_steps=10, num_channels=3)
    assert out.shape == (10, 2, 3) and out.dtype == torch.uint8
    assert int(out.sum()) == 3 and out[5, 0, 1] == 1 and out[9, 1, 2] == 1
