"""The spike cache cannot go stale: keyed by class, resolved source folder and every parameter, and
checked against every source file's size, mtime and (for recently modified files) content."""
from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest

from hm2bp.datamodules import NMNISTDataModule
from hm2bp.datamodules.cache import RACY_NS, CacheEntryError, SourceRecords, load_spike_lists
from tests.fakes import fake_nmnist, nmnist_event_bytes


def _encoded(root, cache, **kw):
    dm = NMNISTDataModule(data_dir=str(root), cache_dir=str(cache), val_size=1, stabilize=False, **kw)
    return dm, dm.load_split("train")


def test_in_place_edit_of_the_same_size_is_seen(tmp_path):
    root = fake_nmnist(tmp_path / "data")
    cache = tmp_path / "cache"
    _, before = _encoded(root, cache)
    f = root / "NMNIST/Train/1/00000.bin"
    old = f.read_bytes()
    new = nmnist_event_bytes([(30, 3, 1, 4000)])  # same length (one 5-byte event), other pixel and time
    assert len(new) == len(old) and new != old
    f.write_bytes(new)  # immediately: the same timestamp tick is possible, the content hash must catch it
    with pytest.warns(UserWarning, match=r"stale: .*Train/1/00000\.bin changed since it was encoded"):
        _, after = _encoded(root, cache)
    i = list(after.sources).index("Train/1/00000.bin")
    ch, t = after.sample(i)
    assert (int(ch[0]), int(t[0])) == (30 * 34 + 3 + 1156, 4000 // 600 + 2)  # the new event, not the cached one
    assert not np.array_equal(after.sample(i)[0], before.sample(i)[0])
    with warnings.catch_warnings():  # rebuilt entry is used as is next time
        warnings.simplefilter("error")
        _encoded(root, cache)


def test_edit_of_an_old_file_is_seen_by_its_mtime(tmp_path):
    """A file older than the racy window is not hashed; its new mtime gives the edit away."""
    root = fake_nmnist(tmp_path / "data")
    f = root / "NMNIST/Train/0/00001.bin"
    old_ns = f.stat().st_mtime_ns - 10 * RACY_NS
    for p in root.rglob("*.bin"):
        os.utime(p, ns=(old_ns, old_ns))
    cache = tmp_path / "cache"
    _encoded(root, cache)
    (entry,) = cache.glob("nmnist-*/train.npz")
    with np.load(entry) as z:
        assert set(z["src_hashes"].tolist()) == {""}  # nothing hashed: every file was old
    f.write_bytes(nmnist_event_bytes([(5, 6, 0, 700)]))
    with pytest.warns(UserWarning, match=r"Train/0/00001\.bin changed since it was encoded \(size or modification"):
        _, after = _encoded(root, cache)
    ch, t = after.sample(list(after.sources).index("Train/0/00001.bin"))
    assert (int(ch[0]), int(t[0])) == (5 * 34 + 6, 700 // 600 + 2)


def test_a_second_folder_gets_its_own_entry(tmp_path):
    """Same layout, names and sizes in another folder: another cache folder, never the first one's spikes."""
    a = fake_nmnist(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    f = b / "NMNIST/Train/0/00000.bin"
    f.write_bytes(nmnist_event_bytes([(33, 33, 0, 9000)]))
    cache = tmp_path / "cache"
    dm_a, lists_a = _encoded(a, cache)
    dm_b, lists_b = _encoded(b, cache)
    assert dm_a.cache.folder != dm_b.cache.folder and len(list(cache.iterdir())) == 2
    i = list(lists_b.sources).index("Train/0/00000.bin")
    assert int(lists_b.sample(i)[0][0]) == 33 * 34 + 33 and not np.array_equal(lists_a.sample(i)[0], lists_b.sample(i)[0])
    # every encoding parameter is part of the key
    other_bins, _ = _encoded(a, cache, bin_us=1000)
    assert other_bins.cache.folder not in (dm_a.cache.folder, dm_b.cache.folder)
    assert dm_a.cache_key()["root"] == str(a.joinpath("NMNIST").resolve())
    assert dm_a.cache_key()["datamodule"] == "hm2bp.datamodules.nmnist.NMNISTDataModule"


def test_added_removed_and_renamed_files_make_the_entry_stale(tmp_path):
    root = fake_nmnist(tmp_path / "data")
    cache = tmp_path / "cache"
    _encoded(root, cache)
    (root / "NMNIST/Train/1/00001.bin").rename(root / "NMNIST/Train/1/00009.bin")
    with pytest.warns(UserWarning, match="the list of source files changed"):
        _, lists = _encoded(root, cache)
    assert "Train/1/00009.bin" in list(lists.sources)


def test_records_compare_size_mtime_and_racy_hash(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"12345")
    rec = SourceRecords.scan(tmp_path, [f])
    assert rec.hashes[0] != ""  # just written: racy, hashed
    assert rec.stale_reason(rec, tmp_path) is None
    f.write_bytes(b"54321")
    st = f.stat()
    same_stat = SourceRecords(rec.paths, np.array([st.st_size]), np.array([st.st_mtime_ns]), rec.hashes)
    assert "(content)" in same_stat.stale_reason(same_stat, tmp_path)


def test_old_format_entries_are_rebuilt(tmp_path):
    root = fake_nmnist(tmp_path / "data")
    cache = tmp_path / "cache"
    _encoded(root, cache)
    (entry,) = cache.glob("nmnist-*/train.npz")
    with np.load(entry) as z:
        data = {k: z[k] for k in z.files}
    data["version"] = np.asarray(1)
    np.savez(entry, **data)
    with pytest.raises(CacheEntryError, match="format version 1"):
        load_spike_lists(entry)
    with pytest.warns(UserWarning, match="rebuilding"):
        _encoded(root, cache)
