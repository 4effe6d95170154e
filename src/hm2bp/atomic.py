"""Write a file so that readers see either the old file or the whole new one, never a part.

Every file hm2bp writes that another process may read (checkpoints, spike caches, downloads, run
records, NIR graphs) goes through :func:`atomic_write`: the content is written to a temporary
file in the destination's folder, flushed to disk, and moved onto the destination with
``os.replace`` (atomic on POSIX and Windows within one file system). If writing fails or is
interrupted, the temporary file is removed and the destination is untouched.
"""
from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_MARK = ".tmp-"  # temporary names are <final name>.tmp-<random>: they never match the final pattern


def _usual_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def remove_stale(path: str | os.PathLike) -> None:
    """Remove temporary files of ``path`` left behind by a writer that was killed."""
    for stale in glob.glob(glob.escape(str(path)) + TMP_MARK + "*"):
        try:
            os.remove(stale)
        except OSError:
            pass


@contextmanager
def atomic_write(path: str | os.PathLike, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on a normal exit move it onto ``path``.

    The caller writes the whole file to the yielded path (by name: ``np.savez``, ``nir.write``,
    ``open(tmp, "wb")`` …). The file gets the permissions a plain ``open`` would give
    (``mkstemp`` alone makes it private). With ``durable`` the data and the rename are flushed
    to disk (``fsync``), as checkpoints need. On an exception the temporary file is removed and
    the exception propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + TMP_MARK)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, _usual_mode())
        yield tmp
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    if durable:
        try:
            dir_fd = os.open(path.parent, os.O_RDONLY)
        except OSError:  # pragma: no cover - folders cannot be opened on some platforms
            return
        try:
            os.fsync(dir_fd)
        except OSError:  # pragma: no cover
            pass
        finally:
            os.close(dir_fd)
