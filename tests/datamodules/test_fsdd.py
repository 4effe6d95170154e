"""Wav-folder datamodule on real FSDD recordings (a linked subset) and on generated sub-folder layouts."""
from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from hm2bp.datamodules import FSDDDataModule, WavFolderDataModule


@pytest.fixture
def fsdd_subset(shared_data, tmp_path) -> Path:
    """4 train + 1 test recordings per digit from two speakers, linked from the real FSDD."""
    src = shared_data / "FSDD" / "recordings"
    if not src.is_dir():
        pytest.skip(f"FSDD not found at {src}")
    dst = tmp_path / "data" / "FSDD" / "recordings"
    dst.mkdir(parents=True)
    for d in range(10):
        for spk in ("jackson", "theo"):
            for idx in (0, 5, 6):
                os.symlink(src / f"{d}_{spk}_{idx}.wav", dst / f"{d}_{spk}_{idx}.wav")
    return tmp_path / "data"


def test_fsdd_official_split_real_files(fsdd_subset, tmp_path):
    cache = tmp_path / "cache"
    dm = FSDDDataModule(data_dir=str(fsdd_subset), cache_dir=str(cache), val_size=4, time_steps=400, batch_size=8)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert dm.num_classes == 10 and dm.input_shape == (78,)
    test = dm.load_split("test")
    assert len(test) == 20 and all(s.endswith("_0.wav") for s in test.sources)
    assert len(dm.train_set) + len(dm.val_set) == 40 and len(dm.val_set) == 4
    assert sorted(set(test.labels.tolist())) == list(range(10))
    assert test.labels[list(test.sources).index("7_theo_0.wav")] == 7
    spikes, labels, _ = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert spikes.shape == (400, 8, 78) and spikes.dtype == torch.uint8 and labels.dtype == torch.int64
    assert int(spikes.max()) == 1 and spikes[0].sum() == 0  # BSA: first spike at step >= 1
    rate = spikes.float().mean().item()
    assert 0.01 < rate < 0.3  # BSA on Lyon frames: sparse but not silent
    # second datamodule reads the cache (no re-encoding): same arrays, same folder
    folders = list(cache.iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("fsdd-")
    dm2 = FSDDDataModule(data_dir=str(fsdd_subset), cache_dir=str(cache), val_size=4)
    dm2.encode_file = None  # would fail if called
    np.testing.assert_array_equal(dm2.load_split("test").channels, test.channels)


def test_fsdd_speaker_split(fsdd_subset, tmp_path):
    dm = FSDDDataModule(data_dir=str(fsdd_subset), cache_dir=str(tmp_path / "c"), test_regex="_theo_", val_size=3)
    files = dm.source_files("test")
    assert len(files) == 30 and all("_theo_" in p.name for p, _ in files)
    assert not any("_theo_" in p.name for p, _ in dm.source_files("train"))


def _write_wav(path: Path, seconds=0.2, width=2, freq=600.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * 12500)
    x = 0.3 * np.sin(2 * np.pi * freq * np.arange(n) / 12500)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(12500)
        w.writeframes((x * 32767).astype("<i2").tobytes() if width == 2 else bytes(n * width))


def test_subfolder_layout_and_random_test_split(tmp_path):
    root = tmp_path / "words"
    for label in ("yes", "no", "stop"):
        for k in range(4):
            _write_wav(root / label / f"{k}.wav")
    dm = WavFolderDataModule(data_dir=str(tmp_path), folder="words", cache_dir=str(tmp_path / "c"),
                             test_size=0.25, val_size=1, time_steps=200, batch_size=4)
    assert dm.classes == ["no", "stop", "yes"] and dm.num_classes == 3
    dm.setup()
    assert len(dm.test_set) == 3 and len(dm.train_set) + len(dm.val_set) == 9
    spikes, labels, _ = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    assert spikes.shape == (200, 3, 78) and labels.max() < 3


def test_bad_inputs_name_the_file_and_leave_no_cache(tmp_path):
    cache = tmp_path / "c"
    with pytest.raises(FileNotFoundError, match=r"nowhere.*<label>/\*\.wav"):
        WavFolderDataModule(data_dir=str(tmp_path), folder="nowhere", cache_dir=str(cache)).prepare_data()
    # a label outside the classes
    root = tmp_path / "words"
    for label in ("yes", "no", "maybe"):
        _write_wav(root / label / "0.wav")
        _write_wav(root / label / "1.wav")
    dm = WavFolderDataModule(data_dir=str(tmp_path), folder="words", classes=["yes", "no"], cache_dir=str(cache),
                             test_size=0.5, val_size=1)
    with pytest.raises(ValueError, match=r"maybe/0\.wav: label 'maybe' is not one of data\.init_args\.classes"):
        dm.prepare_data()
    assert not cache.exists()
    # an unsupported sample width in the middle of a split: clear error, no cache file
    for p in (root / "maybe").iterdir():
        p.unlink()
    (root / "maybe").rmdir()
    bad = root / "no" / "1.wav"
    with open(bad, "r+b") as f:  # rewrite the fmt chunk as 40-bit PCM (block align 5)
        data = bytearray(f.read())
        data[32:36] = (5).to_bytes(2, "little") + (40).to_bytes(2, "little")
        f.seek(0)
        f.write(data)
    dm = WavFolderDataModule(data_dir=str(tmp_path), folder="words", cache_dir=str(cache), test_regex="/0\\.wav$",
                             val_size=1)
    with pytest.raises(ValueError, match=r"no/1\.wav: not a readable audio file.*sox"):
        dm.prepare_data()
    assert not list(cache.rglob("*.npz")) and not list(cache.rglob("*.part"))
    # a file name that does not match the FSDD regex
    flat = tmp_path / "FSDD" / "recordings"
    _write_wav(flat / "3_theo_1.wav")
    _write_wav(flat / "three.wav")
    with pytest.raises(ValueError, match=r"three\.wav: file name does not match data\.init_args\.label_regex"):
        FSDDDataModule(data_dir=str(tmp_path), cache_dir=str(cache)).prepare_data()
