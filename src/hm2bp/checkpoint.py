"""Checkpoint files that are never half-written and fail loudly when damaged.

``AtomicCheckpointIO`` (a Lightning ``CheckpointIO``; the CLI installs it) writes a checkpoint to
a temporary file in the target folder, flushes it to disk, then ``os.replace``-s it onto the final
name, so a run killed at any moment leaves either the previous complete file or the new complete
file (never a truncated ``last.ckpt``). Loading uses ``weights_only=True`` unless asked otherwise
(our hyper-parameters are plain types) and turns any read error into one message naming the file.
Remote (fsspec URL) paths fall back to Lightning's own writer.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.plugins.io import TorchCheckpointIO

from hm2bp.atomic import TMP_MARK, atomic_write, remove_stale
from hm2bp.errors import HM2BPError

__all__ = ["TMP_MARK", "AtomicCheckpointIO", "atomic_torch_save", "load_checkpoint_file"]


class CheckpointNotFoundError(HM2BPError, FileNotFoundError):
    """A checkpoint file (``--ckpt_path``) does not exist."""


class CorruptCheckpointError(HM2BPError, RuntimeError):
    """A checkpoint file exists but cannot be read."""


def _is_local(path) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` through :func:`hm2bp.atomic.atomic_write`, flushed to disk."""
    path = Path(str(path).removeprefix("file://"))
    remove_stale(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_write(path, durable=True) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def load_checkpoint_file(path, map_location=None, weights_only: bool | None = True) -> dict:
    """``torch.load`` with one clear error naming the file when it is missing, truncated or not a checkpoint."""
    fs = get_filesystem(path)
    if not fs.exists(path):
        raise CheckpointNotFoundError(f"checkpoint file not found: {path}")
    try:
        with fs.open(path, "rb") as f:
            ckpt = torch.load(f, map_location=map_location, weights_only=True if weights_only is None else weights_only)
    except Exception as err:  # pickle, zip and EOF errors all mean the same thing to the user
        if "Weights only load failed" in str(err):
            raise CorruptCheckpointError(
                f"checkpoint {path} holds objects that are not plain tensors/containers, so it was not loaded with "
                f"weights_only=True; if you trust the file, load it with weights_only=False ({type(err).__name__}: "
                f"{str(err).splitlines()[0]})"
            ) from err
        raise CorruptCheckpointError(
            f"cannot read checkpoint {path}: the file is corrupt or truncated, or not a PyTorch checkpoint "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); delete it and resume from "
            f"another one"
        ) from err
    if not isinstance(ckpt, dict):
        raise CorruptCheckpointError(f"checkpoint {path} is not a Lightning checkpoint (a {type(ckpt).__name__}, not a dict)")
    return ckpt


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with atomic local writes and clear, ``weights_only`` loading."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only: bool | None = None) -> dict:
        return load_checkpoint_file(path, map_location=map_location, weights_only=weights_only)
