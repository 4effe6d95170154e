"""Run folders: every ``fit`` writes into its own folder, which no other run can replace.

Layout under the experiment's ``trainer.default_root_dir`` (``runs/digits`` for the digits config)::

    runs/digits/
      20260129-143012-3fa9c1/          one fit: <date>-<time>-<6 random hex digits>
        run.json                       who made it: command line, host, pid, start time
        config.yaml                    the full resolved configuration of the fit
        checkpoints/last.ckpt          latest state (mid-epoch and at every validation)
        checkpoints/epoch=..-step=..ckpt   best checkpoint(s) on val/acc
        wandb/offline-run-.../         W&B run (or csv/ with WANDB_MODE=disabled)
        test-20260129-150102-77e0aa/   a later `hm2bp test` of this run's checkpoint: its config and logs
        predict-.../predictions.csv    a later `hm2bp predict`

A folder is made with an exclusive ``mkdir`` (a name never exists twice) and is locked
(``fcntl.flock`` on ``.lock``) by the process that writes into it, so a concurrent fit cannot
resume into it; the lock dies with the process. ``--ckpt_path last`` picks, among this
experiment's runs, the one whose ``last*.ckpt`` was written most recently (:func:`latest_run`).
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path

from hm2bp.atomic import atomic_write
from hm2bp.errors import OutputError

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
CKPT_DIR = "checkpoints"


def new_run_name(prefix: str = "") -> str:
    """``[<prefix>-]<YYYYmmdd-HHMMSS>-<6 hex>``: sorts by start time, unique with overwhelming probability."""
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    return f"{prefix}-{name}" if prefix else name


def create_run_dir(path: Path, kind: str, key: str = "trainer.default_root_dir") -> Path:
    """Make the run folder ``path`` (it must not exist) and its ``run.json``; ``OutputError`` naming ``key``."""
    path = Path(path)
    blocker = next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"cannot create the run folder {path} ({blocker} is a file, not a folder); set {key} "
                          "to a writable folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(
            f"cannot create the run folder {path} ({err.strerror or err}); set {key} to a writable folder"
        ) from err
    try:
        os.mkdir(path)  # exclusive: fails if another run took the name
    except FileExistsError as err:
        raise OutputError(f"run folder {path} already exists; start the run again (names are random)") from err
    except OSError as err:
        raise OutputError(
            f"cannot create the run folder {path} ({err.strerror or err}); set {key} to a writable folder"
        ) from err
    info = {"kind": kind, "argv": sys.argv, "host": socket.gethostname(), "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        with atomic_write(path / RUN_FILE) as tmp:
            tmp.write_text(json.dumps(info, indent=1) + "\n")
    except OSError as err:
        raise OutputError(f"cannot write into the run folder {path} ({err.strerror or err}); set {key} to a writable folder") from err
    return path


def is_run_dir(path: Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def run_dir_of(ckpt: str | os.PathLike) -> Path | None:
    """The run folder holding checkpoint ``ckpt`` (``<run>/checkpoints/<file>``), or ``None``."""
    p = Path(ckpt).resolve()
    run = p.parent.parent
    return run if p.parent.name == CKPT_DIR and is_run_dir(run) else None


def last_checkpoint(run: Path) -> Path | None:
    """The most recently written ``last*.ckpt`` of a run, or ``None``."""
    found = [p for p in (Path(run) / CKPT_DIR).glob("last*.ckpt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def latest_run(root: Path) -> tuple[Path, Path] | None:
    """``(run folder, last checkpoint)`` of the run under ``root`` whose last checkpoint is newest."""
    root = Path(root)
    if not root.is_dir():
        return None
    best: tuple[int, Path, Path] | None = None
    for run in root.iterdir():
        if not run.is_dir() or not is_run_dir(run):
            continue
        ckpt = last_checkpoint(run)
        if ckpt is None:
            continue
        stamp = ckpt.stat().st_mtime_ns
        if best is None or stamp > best[0]:
            best = (stamp, run, ckpt)
    return (best[1], best[2]) if best else None


class RunLock:
    """An exclusive, process-lifetime lock on a run folder (``fcntl.flock`` on ``<run>/.lock``)."""

    def __init__(self, run: Path) -> None:
        self.run = Path(run)
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock, the exclusive mkdir still holds
            return self
        path = self.run / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise OutputError(f"cannot write into the run folder {self.run} ({err.strerror or err})") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            owner = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise OutputError(
                    f"run {self.run} is in use by another hm2bp process (pid {owner}); wait for it to end, or pass "
                    f"--ckpt_path <file> to resume another run"
                ) from err
            raise OutputError(f"cannot lock the run folder {self.run} ({err.strerror or err})") from err
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
