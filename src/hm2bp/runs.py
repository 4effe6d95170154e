"""Run folders: every ``fit`` writes into its own folder, which no other run can replace.

Layout under the experiment's ``trainer.default_root_dir`` (``runs/digits`` for the digits config)::

    runs/digits/
      20260129-143012-3fa9c1/          one fit: <date>-<time>-<6 random hex digits>
        run.json                       who made it: command line, host, pid, start time
        config.yaml                    the full resolved configuration of the fit
        checkpoints/last.ckpt          latest state (mid-epoch and at every validation)
        checkpoints/epoch=..-step=..ckpt   best checkpoint(s) on val/acc
        metrics.csv                    every logged value, whatever the logger (hm2bp.callbacks.MetricsCSVLogger)
        curves.csv, plots/*.png        per-epoch curve, raster and firing-rate pictures (hm2bp.callbacks)
        wandb/offline-run-.../         W&B run (or csv/ with WANDB_MODE=disabled)
        test-20260129-150102-77e0aa/   a later `hm2bp test` of this run's checkpoint: its config and logs
        predict-.../predictions.csv    a later `hm2bp predict`

A folder is made with an exclusive ``mkdir`` (a name never exists twice) and is locked
(``fcntl.flock`` on ``.lock``) by the process that writes into it, so a concurrent fit cannot
resume into it; the lock dies with the process. ``--ckpt_path last`` picks, among this
experiment's runs, the one whose ``last*.ckpt`` was written most recently (:func:`latest_run`).

Lifecycle of the folder of one command (:class:`RunFolder`): chosen when the configuration is
parsed (a new folder for ``fit``, the resumed run's own folder for ``fit --ckpt_path last``,
``<run>/<command>-<stamp>`` for ``validate``/``test``/``predict`` of a run's checkpoint); made and
locked by global rank zero after every check has passed (:meth:`RunFolder.open`), together with the
folders of ``ModelCheckpoint``-s given an explicit ``dirpath``; handed to the DDP processes Lightning
starts through ``$HM2BP_RUN_DIR``; unlocked when the command ends (:meth:`RunFolder.close`); removed
when the command fails before any checkpoint was written into it (:meth:`RunFolder.discard_if_empty`).
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import socket
import sys
import time
from pathlib import Path

from hm2bp.atomic import atomic_write
from hm2bp.cli_errors import say
from hm2bp.errors import ConfigError, OutputError

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
CKPT_DIR = "checkpoints"
ENV_RUN_DIR = "HM2BP_RUN_DIR"  # handed by the launching process to the DDP processes Lightning starts
EVAL_COMMANDS = ("validate", "test", "predict")


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


def handed_run_dir() -> Path | None:
    """The run folder of the launching process, in a DDP process Lightning started (``$HM2BP_RUN_DIR``)."""
    handed = os.environ.get(ENV_RUN_DIR)
    return Path(handed) if handed else None


def explicit_ckpt_dirs(trainer_cfg) -> list[tuple[str, Path]]:
    """``(config key, folder)`` of every ``ModelCheckpoint`` given a ``dirpath`` in the parsed ``trainer`` config."""
    from jsonargparse import Namespace

    cbs = trainer_cfg.get("callbacks") if trainer_cfg is not None else None
    out = []
    for k, cb in enumerate(cbs if isinstance(cbs, list) else []):
        if isinstance(cb, Namespace) and str(cb.get("class_path", "")).endswith("ModelCheckpoint"):
            dirpath = (cb.get("init_args") or Namespace()).get("dirpath")
            if dirpath:
                out.append((f"trainer.callbacks[{k}].init_args.dirpath", Path(dirpath)))
    return out


class RunFolder:
    """The folder one command writes into, from its choice to its release (module docstring).

    Args:
        command: ``fit``, ``validate``, ``test`` or ``predict``.
        root: the experiment's folder (``trainer.default_root_dir``).
        resumed_from: the checkpoint the command starts from, if any (its run folder is reused).
        explicit: ``(key, folder)`` of the checkpoint folders the config names (:func:`explicit_ckpt_dirs`).
    """

    def __init__(self, command: str, root: Path, resumed_from: Path | None = None,
                 explicit: list[tuple[str, Path]] | None = None) -> None:
        self.command = command
        self.explicit = list(explicit or [])
        self.owner = run_dir_of(resumed_from) if resumed_from else None  # the run of the checkpoint
        handed = handed_run_dir()
        if handed is not None:
            self.path = handed
        elif command == "fit":
            self.path = self.owner if self.owner is not None else Path(root).resolve() / new_run_name()
        else:
            self.path = (self.owner if self.owner is not None else Path(root).resolve()) / new_run_name(command)
        self._created: Path | None = None  # made by this process (removed if the command fails before training)
        self._locks: list[RunLock] = []

    @property
    def checkpoint_dir(self) -> Path:
        """Where a ``ModelCheckpoint`` without ``dirpath`` writes: ``<run>/checkpoints``; for an evaluation of
        a run's checkpoint, that run's (nothing is written, and restoring the callback changes no dirpath)."""
        if self.command in EVAL_COMMANDS and self.owner is not None:
            return self.owner / CKPT_DIR
        return self.path / CKPT_DIR

    def open(self, global_rank: int, hand_over: bool) -> None:
        """Global rank zero makes (or, for a resume, locks) the folder and locks the explicit checkpoint
        folders; processes started with the folder handed to them do nothing. ``hand_over``: Lightning
        starts the other DDP processes next, and they find the folder in ``$HM2BP_RUN_DIR``."""
        if handed_run_dir() is not None or global_rank != 0:
            return
        if self.path.exists():
            if not is_run_dir(self.path):
                raise ConfigError(f"{self.path} exists but is not an hm2bp run folder")
        else:
            create_run_dir(self.path, self.command)
            self._created = self.path
        self._locks.append(RunLock(self.path).acquire())
        locked = {self.path.resolve()}
        for key, folder in self.explicit:
            if folder.resolve() in locked:
                continue
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise OutputError(f"{key}: cannot create {folder} ({err.strerror or err}); choose a writable folder") from err
            self._locks.append(RunLock(folder).acquire())
            locked.add(folder.resolve())
        say(f"{self.command}: writing into {self.path}")
        if hand_over:
            os.environ[ENV_RUN_DIR] = str(self.path)

    def close(self, global_rank: int) -> None:
        """Release the locks; the launching process forgets the folder it handed over."""
        for lock in self._locks:
            lock.release()
        self._locks.clear()
        if os.environ.get(ENV_RUN_DIR) == str(self.path) and global_rank == 0:
            os.environ.pop(ENV_RUN_DIR, None)

    def discard_if_empty(self) -> None:
        """After a failure: remove the folder if this process made it and no checkpoint was written into it."""
        run = self._created
        if run is None or not run.is_dir():
            return
        ckpts = run / CKPT_DIR
        if not (ckpts.is_dir() and any(ckpts.glob("*.ckpt"))):
            shutil.rmtree(run, ignore_errors=True)
