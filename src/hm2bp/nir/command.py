"""``hm2bp export``: write a trained network as a NIR file.

    hm2bp export --config configs/experiment/digits.yaml --ckpt_path runs/digits/<run>/checkpoints/last.ckpt --out model.nir

``--config`` (repeatable) and any ``--model...``/``--data...`` overrides build the model and the
datamodule exactly as ``hm2bp fit``/``test`` would; ``--ckpt_path`` is a Lightning checkpoint of
that model or the authors' text checkpoint (:mod:`hm2bp.official`). The datamodule's encoding
(class, T, rate divisor) goes into the graph's metadata. Every check (files, the checkpoint's
keys) runs before the file is written, and the file is written atomically; an existing ``--out``
is replaced only with ``--overwrite``. Errors are one line (:class:`~hm2bp.errors.HM2BPError`).

After writing, one note per feature NIR cannot carry (:func:`nir_notes`): the refractory period
(NIR's ``CubaLIF`` has none; hm2bp keeps it in the node metadata, other simulators drop it) and
lateral inhibition or a recurrent matrix (a recurrent ``Linear`` that some importers ignore or
wire differently; docs/interop.md).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from hm2bp.atomic import atomic_write
from hm2bp.ckpt_path import require_checkpoint_file
from hm2bp.errors import ConfigError, OutputError

EPILOG = """\
Any other option goes to the configuration, as for hm2bp fit/test: --model.network.init_args.<arg>,
--data.init_args.<arg> (e.g. --data.init_args.time_steps 30, written into the graph's encoding).

example:
  hm2bp export --config configs/experiment/digits.yaml --ckpt_path best.ckpt --out digits.nir
"""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one :class:`ConfigError` (``hm2bp: error: ...``), not usage + exit."""

    def error(self, message: str):
        raise ConfigError(f"export: {message} (hm2bp export --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hm2bp export", description="Write a trained network as a NIR graph (HDF5) for other simulators.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("-c", "--config", action="append", required=True, metavar="FILE",
                        help="the experiment file the checkpoint was trained with (repeatable, as for fit)")
    parser.add_argument("--ckpt_path", required=True, metavar="FILE",
                        help="Lightning checkpoint of that model, or the authors' text checkpoint")
    parser.add_argument("--out", required=True, metavar="FILE", help="NIR file to write (HDF5), e.g. model.nir")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists (else refused)")
    return parser


def _check_out(out: str, overwrite: bool) -> None:
    """``--out`` must be a file in an existing folder, and new unless ``overwrite``."""
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise OutputError(f"--out {out}: folder {out_dir} does not exist; create it first")
    if os.path.isdir(out):
        raise OutputError(f"--out {out} is a folder; give a file name, e.g. {os.path.join(out, 'model.nir')}")
    if os.path.exists(out) and not overwrite:
        raise OutputError(f"--out {out} already exists; pass --overwrite to replace it, or choose another file")


def _encoding(datamodule) -> dict:
    """What turns the data into spikes, as plain values for the graph's metadata."""
    info = {"datamodule": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}"}
    for key in ("time_steps", "rate_divisor", "input_shape", "num_classes", "seed"):
        value = getattr(datamodule, key, None)
        if value is not None:
            info[key] = list(value) if isinstance(value, tuple) else value
    return info


def nir_notes(network) -> list[str]:
    """One line per feature of ``network`` that NIR does not carry for other simulators."""
    refractory: dict[int, list[str]] = {}
    recurrent: list[str] = []
    for name, layer in network.layers.items():
        steps = int(getattr(layer, "refractory", 0) or 0)
        if steps > 0:
            refractory.setdefault(steps, []).append(name)
        if getattr(layer, "lateral", None) is not None:
            w0 = float(getattr(layer, "lateral_inhibition", 0.0) or 0.0)
            recurrent.append(f"{name} (w0 = {w0:g})" if w0 else f"{name} (a recurrent matrix)")
    notes = []
    if refractory:
        which = "; ".join(f"{steps} step{'s' * (steps != 1)} in {', '.join(names)}" for steps, names in refractory.items())
        notes.append(f"NIR's CubaLIF has no refractory period: other simulators drop the refractory period ({which}); "
                     "hm2bp's import_nir restores it from the node metadata (docs/interop.md)")
    if recurrent:
        notes.append(f"lateral inhibition of {', '.join(recurrent)} is a recurrent Linear node (<layer>_rec); some "
                     "importers ignore it or wire it differently (snnTorch's import_from_nir; docs/interop.md, "
                     "\"Lateral inhibition\")")
    return notes


def export_command(argv: list[str]) -> str:
    """Run ``hm2bp export`` with ``argv`` (after the verb); returns the path written."""
    args, rest = _parser().parse_known_args(argv)
    for path in args.config:
        if not os.path.isfile(path):
            raise ConfigError(f"--config {path}: no such file")
    require_checkpoint_file(args.ckpt_path)
    _check_out(args.out, args.overwrite)

    import nir

    from hm2bp.checkpoint import load_checkpoint_file
    from hm2bp.cli_app import cli_main
    from hm2bp.cli_checks import check_checkpoint_fits
    from hm2bp.cli_errors import say
    from hm2bp.nir import export_nir
    from hm2bp.official import is_official_checkpoint, load_checkpoint

    official = is_official_checkpoint(args.ckpt_path)
    state = None if official else load_checkpoint_file(args.ckpt_path, map_location="cpu").get("state_dict")
    if not official and state is None:
        raise ConfigError(f"--ckpt_path {args.ckpt_path} has no 'state_dict'; pass a checkpoint written by hm2bp fit")
    configs = [arg for path in args.config for arg in ("--config", path)]
    cli = cli_main(configs + rest + ["--trainer.logger", "false"], run=False)
    network = cli.model.network
    if official:
        load_checkpoint(network, args.ckpt_path)
    else:
        check_checkpoint_fits(cli.model, Path(args.ckpt_path))  # another network's shapes: one error
        missing, unexpected = cli.model.load_state_dict(state, strict=False)
        bad = [k for k in missing + unexpected if k.startswith("network.")]
        if bad:
            raise ConfigError(f"--ckpt_path {args.ckpt_path} does not fit the configured network ({bad[:4]}); pass "
                              f"the --config the checkpoint was trained with")
    graph = export_nir(network, input_encoding=_encoding(cli.datamodule))
    try:
        with atomic_write(args.out) as tmp:
            nir.write(tmp, graph)
    except OSError as err:
        raise OutputError(f"--out {args.out}: cannot write it ({err.strerror or err}); choose a writable folder") from err
    print(f"wrote {args.out}: {len(graph.nodes)} NIR nodes, network {network.spec!r}")
    for note in nir_notes(network):
        say(f"note: {note}")
    return args.out
