"""What ``--ckpt_path`` names, resolved (and checked) when the command line is parsed.

- ``last``: the most recently written ``last*.ckpt`` of this experiment's runs under
  ``trainer.default_root_dir`` (:func:`hm2bp.runs.latest_run`), or under the explicit ``dirpath`` of a
  ``ModelCheckpoint``; in a DDP process Lightning started, the launching process's run. ``fit``
  without any starts a new run (and says so); the other commands fail.
- ``best``: the best checkpoint that the ``ModelCheckpoint(monitor=...)`` state in that last
  checkpoint records (:func:`best_checkpoint`).
- a file: it must exist and be a readable checkpoint (:func:`require_checkpoint_file`), or the
  authors' text weights (:mod:`hm2bp.official`), which only ``validate``/``test``/``predict``
  accept and which the CLI loads into the network itself (Lightning gets no ``ckpt_path``).
- ``hpc`` and remote URLs go to Lightning unchanged.

The chosen file is printed with its global step and run (``hm2bp: --ckpt_path last: ...``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hm2bp import runs
from hm2bp.checkpoint import CheckpointNotFoundError, load_checkpoint_file
from hm2bp.cli_errors import say
from hm2bp.errors import ConfigError
from hm2bp.official import is_official_checkpoint


@dataclass(frozen=True)
class CkptChoice:
    """A resolved ``--ckpt_path``.

    Attributes:
        ckpt_path: what Lightning gets (``None``: start from the model's own weights).
        resumed_from: the local checkpoint file the command starts from, if any.
        official: the authors' text checkpoint to load into the network, if one was given.
    """

    ckpt_path: str | None = None
    resumed_from: Path | None = None
    official: str | None = None


def require_checkpoint_file(ckpt) -> None:
    """``ckpt`` must be an existing file (one error naming ``--ckpt_path`` otherwise)."""
    if not os.path.isfile(ckpt):
        raise CheckpointNotFoundError(f"--ckpt_path {ckpt}: no such checkpoint file")


def resolve_ckpt_path(command: str, ckpt, root: Path, explicit: list[tuple[str, Path]],
                      weights_only: bool | None = None) -> CkptChoice:
    """``--ckpt_path`` of ``command`` -> :class:`CkptChoice` (module docstring); one error for a missing,
    corrupt or misused file. ``root`` is ``trainer.default_root_dir``, ``explicit`` the folders of
    :func:`hm2bp.runs.explicit_ckpt_dirs`."""
    if not ckpt:
        return CkptChoice()
    if ckpt in ("last", "best"):
        path = _from_runs(command, ckpt, Path(root), explicit)
        return CkptChoice(str(path), path) if path is not None else CkptChoice()
    if str(ckpt) == "hpc" or "://" in str(ckpt):
        return CkptChoice(ckpt)
    require_checkpoint_file(ckpt)
    if is_official_checkpoint(ckpt):
        if command == "fit":
            raise ConfigError(f"--ckpt_path {ckpt} is an official text checkpoint (weights only); use it with "
                              "test/validate/predict, not fit")
        return CkptChoice(official=str(ckpt))
    load_checkpoint_file(ckpt, map_location="cpu", weights_only=weights_only)  # corrupt -> one error
    return CkptChoice(str(ckpt), Path(ckpt))


def best_checkpoint(last: Path) -> Path:
    """The best checkpoint a run's ``ModelCheckpoint(monitor=...)`` recorded in ``last``."""
    ckpt = load_checkpoint_file(last, map_location="cpu")
    for key, state in (ckpt.get("callbacks") or {}).items():
        if "ModelCheckpoint" in str(key) and isinstance(state, dict) and state.get("monitor") and state.get("best_model_path"):
            best = Path(state["best_model_path"])
            if best.is_file():
                return best
    raise CheckpointNotFoundError(f"--ckpt_path best: {last} records no best checkpoint that still exists; "
                                  "pass a checkpoint file instead")


def _from_runs(command: str, which: str, root: Path, explicit: list[tuple[str, Path]]) -> Path | None:
    """``last``/``best`` -> a file (printed), from this experiment's runs; ``None``: nothing to resume."""
    handed = runs.handed_run_dir()
    if handed is not None:  # a DDP process started by the launching process: same run, same file
        found = runs.last_checkpoint(handed)
        run = (handed, found) if found else None
    elif explicit:
        files = [p for _, d in explicit for p in d.glob("last*.ckpt") if p.is_file()]
        newest = max(files, key=lambda p: p.stat().st_mtime_ns) if files else None
        run = (runs.run_dir_of(newest) or newest.parent, newest) if newest else None
    else:
        run = runs.latest_run(root)
    if run is None:
        if which == "last" and command == "fit":
            say(f"--ckpt_path last: no checkpoint to resume under {root}; starting a new run")
            return None
        raise CheckpointNotFoundError(
            f"--ckpt_path {which}: no run with a checkpoint under {root} "
            "(trainer.default_root_dir); pass a checkpoint file instead"
        )
    run_dir, path = run
    if which == "best":
        path = best_checkpoint(path)
    step = load_checkpoint_file(path, map_location="cpu").get("global_step", "?")
    say(f"--ckpt_path {which}: {path} (global step {step}) of run {run_dir}")
    return path
