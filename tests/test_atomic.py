"""``hm2bp.atomic.atomic_write``: readers see the old file or the whole new one, never a part."""
from __future__ import annotations

import os

import pytest

from hm2bp.atomic import TMP_MARK, atomic_write, remove_stale


def test_success_replaces_the_file_with_usual_permissions(tmp_path):
    dest = tmp_path / "sub" / "out.bin"
    with atomic_write(dest) as tmp:
        assert tmp.parent == dest.parent and tmp.name.startswith("out.bin" + TMP_MARK)
        assert not dest.exists()  # nothing visible under the final name while writing
        tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"new"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["out.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert dest.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(dest, durable=True) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_remove_stale_deletes_only_temporaries_of_that_file(tmp_path):
    dest = tmp_path / "last.ckpt"
    (tmp_path / f"last.ckpt{TMP_MARK}abc").write_bytes(b"x")
    (tmp_path / f"other.ckpt{TMP_MARK}abc").write_bytes(b"x")
    dest.write_bytes(b"keep")
    remove_stale(dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", f"other.ckpt{TMP_MARK}abc"]
