"""How the ``hm2bp`` command speaks to the user: notes (:func:`say`, global rank zero only) and errors,
a known one as a single line, anything else in full.

Known errors are the user's to fix: :class:`hm2bp.errors.HM2BPError` (bad value, key, data file,
checkpoint, output folder), a command line or config file that does not parse (jsonargparse's
``ArgumentError``, condensed to the key and the complaint) and a trainer option Lightning rejects
(``MisconfigurationException``). They print as ``hm2bp: error: <message>`` and the command exits
with status 2. ``--debug`` or ``HM2BP_DEBUG=1`` shows the full traceback instead. Anything else is
a bug and keeps its traceback.
"""
from __future__ import annotations

import os
import re

ENV_DEBUG = "HM2BP_DEBUG"
EXIT_USAGE = 2

_KEY = re.compile(r'^Parser key "([^"]+)":\s*(.*)$')
_NOISE = (
    "Does not validate against any of the",
    "Subtypes:",
    "Errors:",
    "Given value type:",
    "Given value:",
    "- Expected a <class 'NoneType'>",
    "Expected a <class 'NoneType'>",
)


def say(msg: str) -> None:
    """A note for the user (``hm2bp: <msg>``), printed by global rank zero only."""
    from pytorch_lightning.utilities import rank_zero_info

    rank_zero_info(f"hm2bp: {msg}")


def debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """``(debug?, argv without --debug)``; also on with ``$HM2BP_DEBUG`` set to anything but 0/empty."""
    debug = "--debug" in argv or os.environ.get(ENV_DEBUG, "") not in ("", "0", "false", "False")
    return debug, [a for a in argv if a != "--debug"]


def is_known(err: BaseException) -> bool:
    from jsonargparse import ArgumentError
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    from hm2bp.errors import HM2BPError

    return isinstance(err, (HM2BPError, ArgumentError, MisconfigurationException))


def known_cause(err: BaseException) -> BaseException | None:
    """The first :class:`~hm2bp.errors.HM2BPError` in ``err``'s cause/context chain (jsonargparse wraps a
    constructor's error in a ``ValueError`` about union subtypes)."""
    from hm2bp.errors import HM2BPError

    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, HM2BPError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def condense_argument_error(message: str) -> str:
    """jsonargparse's nested, multi-line messages -> ``<dotted key>: <innermost complaint>``.

    ``Parser key "data": ... Problem with given class_path '...': Parser key "batch_size": Expected a
    <class 'int'>. Got value: sixteen`` becomes ``data.batch_size: Expected a <class 'int'>. Got
    value: sixteen``. Messages without nesting are returned unchanged.
    """
    keys: list[str] = []
    detail: list[str] = []
    for raw in message.splitlines():
        line = raw.strip().lstrip("- ").strip()
        if not line:
            continue
        m = _KEY.match(line)
        if m:
            keys.append(m.group(1))
            if m.group(2):
                detail.append(m.group(2))
            continue
        if any(line.startswith(n) for n in _NOISE) or line.startswith("Problem with given class_path"):
            continue
        detail.append(line)
    if not keys:
        return " ".join(message.split())
    key = ".".join(dict.fromkeys(keys))  # nested keys in order, without repeats
    text = detail[-1] if detail else "invalid value"
    return f"{key}: {text}"


def one_line(err: BaseException) -> str:
    from jsonargparse import ArgumentError

    msg = condense_argument_error(str(err)) if isinstance(err, ArgumentError) else str(err)
    return " ".join(msg.split()) or type(err).__name__
