"""``hm2bp.load``: a trained :class:`~hm2bp.SpikingClassifier` from a checkpoint file or a run folder.

A run folder is what ``hm2bp fit`` writes (:mod:`hm2bp.runs`): ``<root>/<date>-<time>-<hex>/`` with
the run's resolved ``config.yaml`` and ``checkpoints/`` (``last.ckpt`` and the best checkpoint on the
monitored metric, e.g. ``epoch=3-step=120.ckpt``).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import yaml

from hm2bp.checkpoint import CorruptCheckpointError, load_checkpoint_file
from hm2bp.errors import ConfigError, DataNotFoundError
from hm2bp.module import SpikingClassifier
from hm2bp.runs import CKPT_DIR
from hm2bp.settings import build_module

CONFIG_FILE = "config.yaml"
LAST = "last.ckpt"


def load(path: str | os.PathLike, *, checkpoint: str = "best", map_location=None) -> SpikingClassifier:
    """The trained model of ``path``, in eval mode, on the device its weights were saved from
    (``map_location`` as in ``torch.load`` to move it, e.g. ``"cpu"``).

    ``path`` is either

    * a checkpoint file: the model is rebuilt from the settings the checkpoint holds (as
      ``SpikingClassifier.load_from_checkpoint(path)``); a checkpoint written before hm2bp stored
      them is rebuilt from its run's ``config.yaml`` when it sits in a run folder's ``checkpoints/``;
    * a run folder: the model is built from the run's ``config.yaml`` (``model.network`` and
      ``model.loss``) and takes the weights of :func:`run_checkpoint` ``(run, checkpoint)``: with
      ``checkpoint="best"`` (the default) the best checkpoint on the monitored metric, or
      ``checkpoints/last.ckpt`` when the run has no best checkpoint (no monitored
      ``ModelCheckpoint``); ``checkpoint="last"`` always takes ``last.ckpt``.

    ``model(x)`` gives the output spike counts ``[B, classes]`` for input spikes ``[T, B, *in]``,
    ``model.network(x)`` the output trains ``[T, B, classes]``. The optimizer and schedule are not
    rebuilt (resume training with ``hm2bp fit --ckpt_path``).

    Raises one :class:`~hm2bp.errors.HM2BPError` (``DataNotFoundError``, ``ConfigError``, or a
    checkpoint error of :mod:`hm2bp.checkpoint`) with a one-line message for a path that is not a
    checkpoint or a run folder, a damaged file, or a checkpoint without the network's settings.
    """
    path = Path(path)
    if checkpoint not in ("best", "last"):
        raise ConfigError(f"hm2bp.load: checkpoint must be 'best' or 'last', got {checkpoint!r}")
    if path.is_dir():
        ckpt = run_checkpoint(path, checkpoint)
        return _load(ckpt, _modules_from_config(path / CONFIG_FILE), map_location)
    if not path.exists():
        raise DataNotFoundError(f"hm2bp.load: {path} does not exist; give a checkpoint file (.ckpt) or a run folder "
                                f"(<root>/<date>-<time>-<hex>/ holding {CONFIG_FILE} and {CKPT_DIR}/)")
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives
        raise CorruptCheckpointError(f"hm2bp.load: {path} is not a checkpoint (a .ckpt file written by `hm2bp fit` or "
                                     f"a Lightning Trainer) nor a run folder")
    hparams = load_checkpoint_file(path, map_location="cpu").get("hyper_parameters") or {}
    modules = {}
    if "network" not in hparams:
        run = path.resolve().parent.parent
        if path.resolve().parent.name != CKPT_DIR or not (run / CONFIG_FILE).is_file():
            raise ConfigError(
                f"hm2bp.load: checkpoint {path} does not hold the network's settings (written by an older hm2bp, "
                f"or its network does not expose its constructor arguments) and is not in a run folder with a "
                f"{CONFIG_FILE}; load it with SpikingClassifier.load_from_checkpoint(path, network=..., loss=...)"
            )
        modules = _modules_from_config(run / CONFIG_FILE)
    return _load(path, modules, map_location)


def run_checkpoint(run: str | os.PathLike, checkpoint: str = "best") -> Path:
    """The checkpoint file :func:`load` takes from the run folder ``run``.

    ``"best"``: the best checkpoint recorded by the run's monitored ``ModelCheckpoint`` (read from
    ``last.ckpt``, looked up in the run's own ``checkpoints/`` so a moved folder still works); without
    one, ``last.ckpt``; without ``last.ckpt``, the folder's only checkpoint. ``"last"``: ``last.ckpt``.
    """
    run = Path(run)
    folder = run / CKPT_DIR
    if not (run / CONFIG_FILE).is_file() or not folder.is_dir():
        raise DataNotFoundError(f"hm2bp.load: {run} is not a run folder: it needs {CONFIG_FILE} and {CKPT_DIR}/ "
                                f"(the folder `hm2bp fit` writes under trainer.default_root_dir)")
    last = folder / LAST
    if last.is_file():
        if checkpoint == "last":
            return last
        best = _recorded_best(last)
        return best if best is not None and (folder / best).is_file() else last
    if checkpoint == "last":
        raise DataNotFoundError(f"hm2bp.load: run folder {run} has no {CKPT_DIR}/{LAST}")
    found = sorted(folder.glob("*.ckpt"))
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise DataNotFoundError(f"hm2bp.load: run folder {run} has no {CKPT_DIR}/{LAST} to tell the best checkpoint "
                                f"(checkpoints: {listed}); give the checkpoint file instead")
    return found[0]


def _recorded_best(last: Path) -> Path | None:
    """``best_model_path`` of the first monitored ``ModelCheckpoint`` state in ``last`` (as a file name
    inside the run's ``checkpoints/``), else ``None``."""
    states = load_checkpoint_file(last, map_location="cpu").get("callbacks") or {}
    for name, state in states.items():
        if name.startswith("ModelCheckpoint") and isinstance(state, dict) and state.get("monitor"):
            best = state.get("best_model_path")
            if best:
                return last.parent / Path(best).name
    return None


def read_run_config(config: Path) -> dict:
    """A run's resolved ``config.yaml`` as a dict (empty when the file holds no mapping); one
    :class:`~hm2bp.errors.ConfigError` naming the file when it cannot be read."""
    try:
        with open(config) as f:
            cfg = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"hm2bp.load: cannot read {config} ({err.__class__.__name__}: {err})") from err
    return cfg if isinstance(cfg, dict) else {}


def _modules_from_config(config: Path) -> dict:
    """``{"network": ..., "loss": ...}`` built from the ``model`` section of a run's ``config.yaml``."""
    cfg = read_run_config(config)
    model = cfg.get("model")
    if isinstance(model, dict) and "class_path" in model:  # model given as {class_path, init_args}
        model = model.get("init_args") or {}
    if not isinstance(model, dict) or not isinstance(model.get("network"), dict):
        raise ConfigError(f"hm2bp.load: {config} has no model.network section {{class_path, init_args}}")
    modules = {"network": build_module(model["network"], "model.network")}
    if isinstance(model.get("loss"), dict):
        modules["loss"] = build_module(model["loss"], "model.loss")
    return modules


def _load(ckpt: Path, modules: dict, map_location) -> SpikingClassifier:
    try:
        model = SpikingClassifier.load_from_checkpoint(ckpt, map_location=map_location, weights_only=True, **modules)
    except RuntimeError as err:  # load_state_dict: the weights do not fit the network built
        if "state_dict" not in str(err):
            raise
        raise CorruptCheckpointError(f"hm2bp.load: the weights of {ckpt} do not fit the model built for it "
                                     f"({str(err).splitlines()[0]})") from err
    return model.eval()
