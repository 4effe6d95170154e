"""``hm2bp export``: write a trained network as a NIR file.

    hm2bp export --config configs/experiment/digits.yaml --ckpt_path runs/digits/checkpoints/last.ckpt --out model.nir

``--config`` (repeatable) and any ``--model...``/``--data...`` overrides build the model and the
datamodule exactly as ``hm2bp fit``/``test`` would; ``--ckpt_path`` is a Lightning checkpoint of
that model or the authors' text checkpoint (:mod:`hm2bp.official`). The datamodule's encoding
(class, T, rate divisor) goes into the graph's metadata. Every check (files, the checkpoint's
keys) runs before the file is written, and the file is written atomically.
"""
from __future__ import annotations

import argparse
import os

from hm2bp.atomic import atomic_write
from hm2bp.ckpt_path import require_checkpoint_file


def _encoding(datamodule) -> dict:
    """What turns the data into spikes, as plain values for the graph's metadata."""
    info = {"datamodule": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}"}
    for key in ("time_steps", "rate_divisor", "input_shape", "num_classes", "seed"):
        value = getattr(datamodule, key, None)
        if value is not None:
            info[key] = list(value) if isinstance(value, tuple) else value
    return info


def export_command(argv: list[str]) -> str:
    """Run ``hm2bp export`` with ``argv`` (after the verb); returns the path written."""
    parser = argparse.ArgumentParser(prog="hm2bp export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", required=True, help="Lightning checkpoint or the authors' text checkpoint")
    parser.add_argument("--out", required=True, help="NIR file to write (HDF5), e.g. model.nir")
    args, rest = parser.parse_known_args(argv)
    require_checkpoint_file(args.ckpt_path)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise FileNotFoundError(f"--out {args.out}: folder {out_dir} does not exist; create it first")

    import nir

    from hm2bp.checkpoint import load_checkpoint_file
    from hm2bp.cli_app import cli_main
    from hm2bp.nir import export_nir
    from hm2bp.official import is_official_checkpoint, load_checkpoint

    official = is_official_checkpoint(args.ckpt_path)
    state = None if official else load_checkpoint_file(args.ckpt_path, map_location="cpu").get("state_dict")
    if not official and state is None:
        raise ValueError(f"--ckpt_path {args.ckpt_path} has no 'state_dict'; pass a checkpoint written by hm2bp fit")
    cli = cli_main(rest + ["--trainer.logger", "false"], run=False)
    network = cli.model.network
    if official:
        load_checkpoint(network, args.ckpt_path)
    else:
        missing, unexpected = cli.model.load_state_dict(state, strict=False)
        bad = [k for k in missing + unexpected if k.startswith("network.")]
        if bad:
            raise ValueError(f"--ckpt_path {args.ckpt_path} does not fit the configured network ({bad[:4]}); pass the "
                             f"--config the checkpoint was trained with")
    graph = export_nir(network, input_encoding=_encoding(cli.datamodule))
    with atomic_write(args.out) as tmp:
        nir.write(tmp, graph)
    print(f"wrote {args.out}: {len(graph.nodes)} NIR nodes, network {network.spec!r}")
    return args.out
