"""A small reader for IDX files (MNIST/EMNIST), raw or gzipped, with one clear error per problem."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from hm2bp.errors import DataError, DataNotFoundError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IDXFormatError(DataError):
    """An IDX file is corrupt, truncated or not an IDX file."""


def read_idx(path: str | Path, expected_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a numpy array; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:  # bad gzip stream, truncated .gz
        raise IDXFormatError(f"cannot read {path}: {err}; the file is corrupt or truncated, re-download it") from err
    if len(data) < 4:
        raise IDXFormatError(f"{path} is truncated ({len(data)} bytes); re-download it")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _DTYPES or ndim == 0:
        raise IDXFormatError(
            f"{path} is not an IDX file (magic number 0x{int.from_bytes(data[:4], 'big'):08X}); "
            "expected e.g. 0x00000803 for images or 0x00000801 for labels"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        raise IDXFormatError(f"{path} has {ndim} dimensions, expected {expected_ndim} (wrong file?)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"{path} is truncated inside its header; re-download it")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise IDXFormatError(
            f"{path} is truncated or padded: header says shape {shape} ({expected} bytes of data) but "
            f"{len(data) - header} bytes follow; re-download it"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
