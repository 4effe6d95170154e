"""Configuration files of the ``hm2bp`` command: composition, a YAML check, and one derived default.

:func:`expand_composed_configs` lets one config file compose others (``configs/experiment/*.yaml``)::

    model: ../model/digits.yaml          # a group given as a file, relative to this file
    data: ../data/digits.yaml
    trainer: ../trainer/cpu.yaml
    trainer.max_epochs: 15               # deltas: dotted keys, applied on top of those files

jsonargparse reads a group either from a file or from a mapping, not both, and merges dotted keys
into the group (losing the file). So before parsing, ``--config FILE`` becomes
``--model <file> --data <file> --trainer <file> --config FILE``: the referenced files are parsed
first and FILE (its dotted keys merged into partial groups) is applied on top, with relative paths
inside each file still resolved against that file. Files without dotted keys are left alone.

:func:`check_config_files`: every ``--config`` file must be valid YAML (one error naming the file).
:func:`target_injection_follows_loss`: a ``SpikingNetwork`` whose ``target_injection`` is null
injects the loss's desired count (docs/algorithm.md, "Weight update").
"""
from __future__ import annotations

import os
from pathlib import Path

from jsonargparse import Namespace

from hm2bp.errors import ConfigError

COMPOSABLE_GROUPS = ("model", "data", "trainer")  # top-level keys a config file may give as a file


def _config_files(argv: list[str]):
    """``(index, step, path)`` of every ``--config FILE`` / ``--config=FILE`` / ``-c FILE`` in ``argv``."""
    for k, arg in enumerate(argv):
        if arg in ("--config", "-c") and k + 1 < len(argv):
            yield k, 2, argv[k + 1]
        elif arg.startswith("--config="):
            yield k, 1, arg.split("=", 1)[1]


def check_config_files(argv: list[str]) -> None:
    """Every ``--config`` file must be valid YAML: one error naming the file (jsonargparse's does not)."""
    import yaml

    for _, _, path in _config_files(argv):
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    yaml.safe_load(f)
            except yaml.YAMLError as err:
                raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())}); fix the file") from None


def expand_composed_configs(argv: list[str]) -> list[str]:
    """``--config FILE`` of a composing file -> ``--<group> <referenced file> ... --config FILE``
    (module docstring); every other argument unchanged."""
    import yaml

    files = {k: (step, path) for k, step, path in _config_files(argv)}
    out: list[str] = []
    k = 0
    while k < len(argv):
        step, path = files.get(k, (1, None))
        if path is None or not os.path.isfile(path):
            out.append(argv[k])
            k += 1
            continue
        with open(path) as f:
            content = yaml.safe_load(f)
        if isinstance(content, dict) and any("." in str(key) for key in content):
            base = Path(path).resolve().parent
            for group in COMPOSABLE_GROUPS:
                ref = content.get(group)
                if isinstance(ref, str) and ref.endswith((".yaml", ".yml")):
                    out += [f"--{group}", str((base / ref).resolve())]
        out += argv[k:k + step]
        k += step
    return out


def target_injection_follows_loss(model_cfg) -> None:
    """A ``SpikingNetwork`` config whose ``target_injection`` is null gets the loss's desired count
    (the injected train of a silent target must aim at the count the loss asks for)."""
    net = model_cfg.get("network") if model_cfg is not None else None
    init = net.get("init_args") if isinstance(net, Namespace) else None
    if init is None or "target_injection" not in init or init.get("target_injection") is not None:
        return
    if not str(net.get("class_path", "")).endswith("SpikingNetwork"):
        return
    loss = model_cfg.get("loss")
    if loss is None:
        from hm2bp.loss import SpikeCountLoss

        desired = SpikeCountLoss().desired
    else:
        desired = (loss.get("init_args") or Namespace()).get("desired") if isinstance(loss, Namespace) else None
    if desired is not None:
        init["target_injection"] = float(desired)
