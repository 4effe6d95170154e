"""A module's settings as plain data, ``{"class_path": ..., "init_args": {...}}``, and back.

:class:`hm2bp.SpikingClassifier` stores its network's and loss's settings in this form among its
hyper-parameters, so a checkpoint rebuilds its own model (``load_from_checkpoint(path)``); it is the
form of a config's ``model.network`` and ``model.loss`` too. Only plain values are stored (numbers,
strings, booleans, ``None`` and lists or dicts of them), so checkpoints still load with
``weights_only=True``.

A module's constructor arguments are its ``init_kwargs`` when it keeps them
(:class:`hm2bp.SpikingNetwork`, :class:`hm2bp.baselines.BPTTNetwork`), else the attributes named
like its constructor's parameters (:class:`hm2bp.SpikeCountLoss`). ``check_inputs`` is a run-time
choice, not a setting of the model, and is never stored.
"""
from __future__ import annotations

import copy
import importlib
import inspect
import sys
from collections.abc import Mapping

from torch import nn

from hm2bp.errors import ConfigError

NOT_STORED = ("check_inputs",)  # run-time switches, not settings of a trained model
_PLAIN = (bool, int, float, str, type(None))


def module_settings(module: nn.Module) -> dict | None:
    """``{"class_path": "pkg.mod.Class", "init_args": {...}}`` that rebuilds ``module`` (without its
    weights), or ``None`` when its constructor arguments cannot be recovered as plain values."""
    cls = type(module)
    kwargs = getattr(module, "init_kwargs", None)
    if isinstance(kwargs, Mapping):
        init_args = {k: v for k, v in kwargs.items() if k not in NOT_STORED}
    else:
        init_args = _attribute_args(module)
    if init_args is None or not _is_plain(init_args):
        return None
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": copy.deepcopy(dict(init_args))}


def _attribute_args(module: nn.Module) -> dict | None:
    """The constructor's arguments read back from same-named attributes; ``None`` when a required one
    has no attribute."""
    try:
        params = inspect.signature(type(module)).parameters
    except (TypeError, ValueError):
        return None
    args = {}
    for name, p in params.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in NOT_STORED:
            continue
        if hasattr(module, name):
            args[name] = getattr(module, name)
        elif p.default is inspect.Parameter.empty:
            return None
    return args


def _is_plain(value) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def build_module(settings: Mapping, key: str, base: type = nn.Module) -> nn.Module:
    """The module described by ``settings`` (``{"class_path", "init_args"}``), one
    :class:`~hm2bp.errors.ConfigError` naming ``key`` when it cannot be built.

    For safety a class path is only imported from the ``hm2bp`` package or from a module that is
    already imported, and must name a subclass of ``base``."""
    if not isinstance(settings, Mapping) or not isinstance(settings.get("class_path"), str):
        raise ConfigError(f"{key} must be a module or its settings {{class_path: ..., init_args: {{...}}}}, "
                          f"got {settings!r}")
    path = settings["class_path"]
    init_args = settings.get("init_args") or {}
    if not isinstance(init_args, Mapping):
        raise ConfigError(f"{key}.init_args must be a mapping of constructor arguments, got {init_args!r}")
    cls = _resolve_class(path, key)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{key}.class_path {path!r} is not a {base.__module__}.{base.__qualname__} subclass")
    try:
        return cls(**init_args)
    except TypeError as err:  # an unknown or missing constructor argument
        raise ConfigError(f"{key}: cannot build {path} from its init_args ({err})") from err


def _resolve_class(path: str, key: str):
    module_name, _, name = path.rpartition(".")
    trusted = module_name == "hm2bp" or module_name.startswith("hm2bp.")
    if not module_name or not (trusted or module_name in sys.modules):
        raise ConfigError(f"{key}.class_path {path!r}: only classes of hm2bp or of an already imported module are "
                          f"built from stored settings; import {module_name or path} first, or pass the module itself")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"{key}.class_path {path!r} cannot be imported ({err})") from err
