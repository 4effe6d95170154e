"""Test-time averaging: a trained run's accuracy with the output counts of k input spike draws summed.

    python scripts/average_draws.py runs/mnist_mlp --draws 5 --data-dir /path/to/data   # the latest run

``RUN`` is a run folder written by ``hm2bp fit`` (its ``config.yaml`` rebuilds the datamodule; the
weights are its best checkpoint, or ``last.ckpt`` with ``--checkpoint last``), a checkpoint file
inside one, or a folder of runs (``trainer.default_root_dir``: its latest run). Draw 0 is the
split's usual fixed train, so the ``k = 1`` row is the plain test (or validation) accuracy; each
further draw costs one more inference pass (``hm2bp.draws``). Prints a Markdown table (k, accuracy
of the summed counts, accuracy of draw k alone) and, with ``--json``, writes the numbers to a file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import hm2bp
from hm2bp.draws import SPLITS, average_draws
from hm2bp.errors import ConfigError, HM2BPError
from hm2bp.loading import CONFIG_FILE, read_run_config
from hm2bp.runs import is_run_dir, latest_run, run_dir_of
from hm2bp.settings import build_module


def run_datamodule(run: Path, data_dir: str | None, batch_size: int | None):
    """The datamodule of ``run``'s ``config.yaml`` (``data`` section), with ``data_dir`` and
    ``batch_size`` replaced when given."""
    from pytorch_lightning import LightningDataModule

    config = run / CONFIG_FILE
    data = read_run_config(config).get("data")
    if not isinstance(data, dict) or "class_path" not in data:
        raise ConfigError(f"{config} has no data section {{class_path, init_args}}")
    init_args = dict(data.get("init_args") or {})
    if data_dir is not None:
        init_args["data_dir"] = data_dir
    if batch_size is not None:
        init_args["batch_size"] = batch_size
    init_args["num_workers"] = 0
    return build_module({"class_path": data["class_path"], "init_args": init_args}, "data", base=LightningDataModule)


def resolve_run(path: Path) -> tuple[Path, Path]:
    """``(run folder, what hm2bp.load reads)`` for a run folder, a checkpoint inside one, or a folder of runs."""
    if path.is_dir() and not is_run_dir(path):
        found = latest_run(path)
        if found is None:
            raise ConfigError(f"{path} holds no run of hm2bp fit (<run>/run.json and <run>/checkpoints/last.ckpt)")
        return found[0], found[0]
    run = path if path.is_dir() else run_dir_of(path)
    if run is None:
        raise ConfigError(f"{path} is neither a run folder, a folder of runs, nor a checkpoint inside a run "
                          "(<run>/checkpoints/)")
    return run, path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run folder of hm2bp fit, a checkpoint file inside one, or a folder of runs")
    ap.add_argument("--draws", type=int, default=5, help="input draws per sample (k = 1 .. draws are reported)")
    ap.add_argument("--split", choices=SPLITS, default="test")
    ap.add_argument("--checkpoint", choices=["best", "last"], default="best", help="for a run folder")
    ap.add_argument("--data-dir", default=None, help="replaces the run's data.init_args.data_dir")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--limit-batches", type=int, default=None, help="score only the first batches of the split")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        run, source = resolve_run(args.run)
        model = hm2bp.load(source, checkpoint=args.checkpoint, map_location=args.device)
        datamodule = run_datamodule(run, args.data_dir, args.batch_size)
        result = average_draws(model, datamodule, args.draws, args.split, limit_batches=args.limit_batches)
    except HM2BPError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{run}: {result.split} split, {result.samples} samples")
    print("| draws k | summed counts % | draw k alone % |")
    print("|---|---|---|")
    for row in result.rows():
        print(f"| {row['draws']} | {100 * row['averaged']:.2f} | {100 * row['single']:.2f} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"run": str(run), "split": result.split, "samples": result.samples,
                                         "rows": result.rows()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
