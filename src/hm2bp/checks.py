r"""Range checks for configuration values and tensors, each failing with one :class:`ConfigError` /
:class:`InputError` that names the key and the fix.

Numbers: :func:`number` accepts ``int``/``float`` (never ``bool``), rejects NaN and Inf, and checks
the bounds. :func:`val_count` turns ``val_size`` (a count, or a fraction in (0, 1)) into a count for
``n`` samples, with at least one sample on each side (or none held out: ``0`` where ``zero_ok``). :func:`per_device_batch` splits the global
batch over the processes (the one check that it divides evenly; the datamodules and the CLI both use it).

Spike-count bound: a LIF neuron with refractory period :math:`T_{ref}` spikes at most once every
:math:`T_{ref} + 1` steps and never at :math:`t = 0`, so over :math:`T` steps

.. math:: o \le o_{max}(T) = \lceil (T - 1) / (T_{ref} + 1) \rceil

(33 at T = 100, T_ref = 2). A desired count above it can never be reached.

Tensors (the cheap checks of :mod:`hm2bp.network`, the layers and the loss): :func:`check_spikes`
(one reduction: every value 0 or 1), :func:`check_labels` (dtype, shape, range: two reductions).
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from hm2bp.errors import ConfigError, InputError


def number(
    key: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    none_ok: bool = False,
    hint: str = "",
):
    """``value`` if it is a finite number within the bounds, else a :class:`ConfigError` naming ``key``.

    ``low``/``high`` are inclusive unless ``low_open``/``high_open``; ``integer`` also accepts a
    float with an integral value (YAML ``5000.0``) and returns an ``int``; ``hint`` is appended.
    """
    tail = f"; {hint}" if hint else ""
    if value is None:
        if none_ok:
            return None
        raise ConfigError(f"{key} must be set (got null){tail}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{key} must be a number, got {value!r}{tail}")
    if not math.isfinite(float(value)):
        raise ConfigError(f"{key} must be a finite number, got {value}{tail}")
    if integer:
        if float(value) != int(value):
            raise ConfigError(f"{key} must be a whole number, got {value}{tail}")
        value = int(value)
    if low is not None and (value < low or (low_open and value == low)):
        raise ConfigError(f"{key}={value} must be {'>' if low_open else '>='} {low:g}{tail}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ConfigError(f"{key}={value} must be {'<' if high_open else '<='} {high:g}{tail}")
    return value


def count_or_fraction(key: str, value, zero_ok: bool = False) -> int | float:
    """Check the form of a ``val_size``-like value: a count >= 1 or a fraction in (0, 1); ``zero_ok``:
    also ``0`` (nothing held out)."""
    hint = "give a count of samples (e.g. 100) or a fraction of the training set (e.g. 0.1)"
    if zero_ok:
        if not isinstance(value, bool) and value == 0:
            return 0
        hint += ", or 0 to hold out none"
    v = number(key, value, low=0, low_open=not zero_ok, hint=hint)
    if v < 1:
        return float(v)
    return number(key, v, integer=True, hint=hint)


def val_count(key: str, value, n: int, where: str = "", zero_ok: bool = False) -> int:
    """Samples held out for ``value`` (count or fraction) of ``n``; at least 1 (or exactly 0 when
    ``zero_ok`` and ``value`` is 0), and at least 1 left over."""
    v = count_or_fraction(key, value, zero_ok)
    if v == 0:
        return 0
    k = int(round(v * n)) if isinstance(v, float) else int(v)
    src = f" under {where}" if where else ""
    if n < 2:
        raise ConfigError(f"{key}: only {n} training sample(s) found{src}; need at least 2 to hold out a validation set")
    if not 1 <= k < n:
        raise ConfigError(
            f"{key}={value} leaves {'no' if k < 1 else 'no training'} samples: {n} training samples were found{src}; "
            f"use a count from 1 to {n - 1} or a fraction such as 0.1"
        )
    return k


def per_device_batch(batch_size: int, world: int, devices: int | None = None, nodes: int | None = None) -> int:
    """``data.init_args.batch_size`` is the global batch: each of the ``world`` processes gets an equal
    share, else one :class:`ConfigError` (naming ``trainer.devices x trainer.num_nodes`` when given)."""
    batch_size, world = int(batch_size), int(world)
    if batch_size % world:
        if devices is None or nodes is None:
            why = f"is not divisible by the world size {world} (devices x nodes)"
        else:
            why = (f"is the global batch and must be divisible by the world size {world} "
                   f"(trainer.devices x trainer.num_nodes = {devices} x {nodes})")
        raise ConfigError(f"data.init_args.batch_size={batch_size} {why}; choose a multiple of {world}")
    return batch_size // world


def max_spike_count(time_steps: int, refractory: int) -> int:
    """Most spikes a LIF neuron can fire in ``time_steps`` steps (module docstring)."""
    return max(0, math.ceil((int(time_steps) - 1) / (int(refractory) + 1)))


# --------------------------------------------------------------------------------------------
# tensors
# --------------------------------------------------------------------------------------------


def check_spikes(x: Tensor, where: str, min_dim: int = 3) -> None:
    """``x`` must be a time-first tensor ``[T, B, ...]`` with T >= 2, B >= 1 and only 0/1 values."""
    if not isinstance(x, Tensor):
        raise InputError(f"{where} expects a spike tensor [T, B, ...], got {type(x).__name__}")
    if x.dim() < min_dim:
        raise InputError(
            f"{where} expects time-first spikes with at least {min_dim} dimensions [T, B, ...], got shape "
            f"{tuple(x.shape)}; for one sample use x.unsqueeze(1), for [B, T, ...] data use x.transpose(0, 1)"
        )
    if x.shape[0] < 2:
        raise InputError(f"{where}: T={x.shape[0]} time steps; at least 2 are needed (inputs reach a neuron one step later)")
    if x.shape[1] == 0 or x.numel() == 0:
        raise InputError(f"{where}: empty batch, shape {tuple(x.shape)}")
    if x.dtype == torch.bool:
        return
    if x.is_complex() or not (x.is_floating_point() or x.dtype in _INT_DTYPES):
        raise InputError(f"{where} expects 0/1 spikes (bool, uint8, int or float), got dtype {x.dtype}")
    if x.dtype == torch.uint8:  # the datamodules' dtype: one reduction, no temporary
        bad = int(x.max()) > 1
    elif not x.is_floating_point():
        bad = int(x.min()) < 0 or int(x.max()) > 1
    else:  # 0.5 or NaN must fail too: compare, then reduce
        bad = bool(((x != 0) & (x != 1)).any())
    if bad:
        raise InputError(
            f"{where} expects spike trains (every value 0 or 1), got values such as "
            f"{_first_bad(x)}; encode rates or images as spikes first (hm2bp.datamodules.encoding.bernoulli_rate)"
        )


def check_labels(target: Tensor, num_classes: int, batch: int, where: str) -> None:
    """Labels ``[B]``: an integer tensor of ``batch`` values in ``0 .. num_classes - 1``."""
    if not isinstance(target, Tensor):
        raise InputError(f"{where}: labels must be a tensor [B], got {type(target).__name__}")
    if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
        raise InputError(f"{where}: labels must be integer class indices (e.g. torch.long), got dtype {target.dtype}")
    if target.dim() != 1 or target.shape[0] != batch:
        raise InputError(f"{where}: labels must have shape [B] = [{batch}], got {tuple(target.shape)}")
    if batch and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        bad = int(target.min()) if int(target.min()) < 0 else int(target.max())
        raise InputError(f"{where}: label {bad} is outside the class range 0..{num_classes - 1}")


_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _first_bad(x: Tensor):
    flat = x.reshape(-1)
    bad = flat[(flat != 0) & (flat != 1)][:3]
    return ", ".join(f"{v:g}" for v in bad.double().tolist())
