"""TI46-Alpha: the authors' encoded spike trains (real) and the LDC audio layout (synthetic files)."""
from __future__ import annotations

import gzip
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from hm2bp.datamodules import TI46DataModule


@pytest.fixture(scope="module")
def ti46_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ti46cache")


def test_spikes_source_real(shared_data, ti46_cache):
    dm = TI46DataModule(source="spikes", data_dir=str(shared_data), cache_dir=str(ti46_cache), batch_size=16)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    train, test = dm.load_split("train"), dm.load_split("test")
    assert len(train) + len(test) == 4108
    assert all("_u2_" in s or "_u3_" in s for s in test.sources) and len(test) == 411 + 410
    assert not any("_u2_" in s or "_u3_" in s for s in train.sources)
    assert len(dm.train_set) + len(dm.val_set) == len(train) and len(dm.val_set) == round(0.1 * len(train))
    assert set(train.labels.tolist()) == set(range(26)) and dm.class_names[0] == "a"
    assert dm.num_inputs == 78 and dm.time_steps == 700
    # against the manifest: spike counts (duplicates none) and the file's own content
    import csv

    manifest = {r["file"]: r for r in csv.DictReader(open(shared_data / "TI46_alpha_spikes/manifest.csv"))}
    for i in (0, 17, len(train) - 1):
        ch, t = train.sample(i)
        row = manifest[f"{train.sources[i]}"]
        assert len(ch) == int(row["n_spikes"]) and int(row["class_index"]) == train.labels[i]
        assert ch.min() == int(row["channel_min"]) and t.max() == int(row["time_max"])
    spikes, labels, _ = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert spikes.shape == (700, 16, 78) and spikes.dtype == torch.uint8 and labels.dtype == torch.int64
    assert int(spikes.max()) == 1 and 0 <= labels.min() and labels.max() < 26
    per_sample = spikes.sum((0, 2)).float()
    assert 800 < per_sample.mean() < 4100  # manifest: 886..4003 spikes, a few beyond T = 700


def _write_wav(path: Path, x: np.ndarray, rate: int = 12500, width: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def test_audio_source_ldc_layout(tmp_path):
    root = tmp_path / "data" / "TI46" / "ti_alpha"
    t = np.arange(int(0.3 * 12500)) / 12500
    tone = lambda f: 0.3 * np.sin(2 * np.pi * f * t)  # noqa: E731
    for spk in ("f1", "m2"):
        for k in range(2):
            _write_wav(root / "train" / spk / f"0a{spk}set{k}.wav", tone(500))
            _write_wav(root / "train" / spk / f"0z{spk}set{k}.wav", tone(3000))
        _write_wav(root / "test" / spk / f"0b{spk}s1t0.wav", tone(800))
    (root / "train" / "f1" / "notes.txt").write_text("ignored")
    dm = TI46DataModule(source="audio", data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "c"),
                        val_size=2, time_steps=300, batch_size=4)
    dm.setup()
    train = dm.load_split("train")
    assert sorted(train.labels.tolist()) == [0, 0, 0, 0, 25, 25, 25, 25]
    assert dm.load_split("test").labels.tolist() == [1, 1]
    spikes, labels, _ = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    assert spikes.shape == (300, 2, 78) and spikes.sum() > 0
    # low tone -> later (higher-index, low-frequency) channels than the high tone
    a = train.channels[train.offsets[0]:train.offsets[1]].astype(float).mean()
    z_i = int(np.nonzero(train.labels == 25)[0][0])
    z = train.channels[train.offsets[z_i]:train.offsets[z_i + 1]].astype(float).mean()
    assert a > z + 10


def test_spikes_source_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"TI46_alpha_spikes.*<spk>_u<k>_c<c>"):
        TI46DataModule(data_dir=str(tmp_path), cache_dir=str(tmp_path / "c")).prepare_data()
    root = tmp_path / "TI46_alpha_spikes"
    for c, utt in ((0, 1), (0, 2), (26, 1)):
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        with gzip.open(root / str(c) / f"f1_u{utt}_c{c}.dat.gz", "wt") as f:
            f.write("-1\t-1\n3\t20\n-1\t-1\n")
    dm = TI46DataModule(data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"26/f1_u1_c26\.dat\.gz: label 26 is outside the class range 0\.\.25"):
        dm.prepare_data()
    assert not (tmp_path / "c").exists()
    (root / "26" / "f1_u1_c26.dat.gz").unlink()
    (root / "26").rmdir()
    with gzip.open(root / "0" / "f1_u1_c0.dat.gz", "wt") as f:
        f.write("-1\t-1\n3\t20\n99\t5\n-1\t-1\n")
    with pytest.raises(ValueError, match=r"0/f1_u1_c0\.dat\.gz: channel outside 0\.\.77"):
        TI46DataModule(data_dir=str(tmp_path), cache_dir=str(tmp_path / "c")).prepare_data()
    assert not list((tmp_path / "c").rglob("*.npz"))
