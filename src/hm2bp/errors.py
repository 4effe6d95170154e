"""Errors caused by the user's input: a bad key or value, a bad data file, a bad tensor.

Every class derives from :class:`HM2BPError` and from the built-in type a caller would expect
(``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` keeps working. The
``hm2bp`` command prints an ``HM2BPError`` as one line, ``hm2bp: error: <message>``, and exits
with status 2; anything else is a bug and keeps its traceback. Messages name the file or key and
say what to do.
"""
from __future__ import annotations


class HM2BPError(Exception):
    """Base class of the errors the user can fix (the CLI prints them as one line)."""


class ConfigError(HM2BPError, ValueError):
    """A configuration key has a bad value, or keys disagree (e.g. the network does not fit the data)."""


class DataError(HM2BPError, ValueError):
    """A data file is corrupt, truncated, mislabelled or in the wrong format."""


class DataNotFoundError(HM2BPError, FileNotFoundError):
    """A data folder or file is missing; the message names the expected layout."""


class OutputError(HM2BPError, OSError):
    """An output folder (run directory, cache) cannot be created or written."""


class InputError(HM2BPError, ValueError):
    """A tensor given to the Python API is not what it expects (not spikes, bad layout, bad labels)."""


class TrainingDivergedError(HM2BPError, FloatingPointError):
    """A loss, gradient or weight became NaN or Inf during training."""
