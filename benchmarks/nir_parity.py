"""hm2bp against another simulator on the held-out set: spike mismatches and accuracy of an exported model.

    python benchmarks/nir_parity.py --config configs/experiment/digits.yaml --ckpt_path last

Builds the model and datamodule from ``--config`` (plus any ``--data...``/``--model...`` overrides),
loads the checkpoint (``--ckpt_path``: a file, or ``last``/``best`` of the experiment's latest run, as
``hm2bp test``), exports the network to NIR and runs every test batch three ways:

* hm2bp as trained (its refractory period);
* the exported graph in ``--simulator``, which has no refractory period: snnTorch 1.0.0
  (``--method``: ``nirtorch`` runs lateral inhibition exactly, ``import_from_nir`` is snnTorch's own
  importer), Norse 1.1.0 or SpikingJelly 2.0.0 (their own importers; docs/interop.md);
* hm2bp with the refractory period set to 0 (the model NIR describes).

Prints, per layer, the (t, sample, neuron) bins where the simulator and hm2bp disagree, as a count
and as a share of all bins and of hm2bp's spikes, and the test accuracy of each run (argmax of
output counts, ties to the lowest class, as ``hm2bp test``). ``--max_batches`` limits the test batches.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import torch


def _simulator(name: str, method: str):
    """``(graph, spikes) -> {layer: spikes on hm2bp's clock}`` of ``name``."""
    if name == "norse":
        from hm2bp.nir.norse import run_norse
        return run_norse
    if name == "spikingjelly":
        from hm2bp.nir.spikingjelly import run_spikingjelly
        return run_spikingjelly
    from hm2bp.nir.snntorch import run_snntorch
    return lambda graph, x: run_snntorch(graph, x, method=method)


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--simulator", default="snntorch", choices=("snntorch", "norse", "spikingjelly"))
    parser.add_argument("--method", default="nirtorch", choices=("nirtorch", "import_from_nir"),
                        help="snnTorch's model builder (hm2bp.nir.snntorch)")
    parser.add_argument("--max_batches", type=int, default=0, help="0: the whole test set")
    args, rest = parser.parse_known_args(argv)

    from pathlib import Path

    from hm2bp import SpikingNetwork, runs
    from hm2bp.checkpoint import load_checkpoint_file
    from hm2bp.ckpt_path import resolve_ckpt_path
    from hm2bp.cli import cli_main
    from hm2bp.nir import export_nir

    simulate = _simulator(args.simulator, args.method)
    cli = cli_main(rest + ["--trainer.logger", "false"], run=False)
    ckpt = resolve_ckpt_path("test", args.ckpt_path, Path(cli.trainer.default_root_dir),
                             runs.explicit_ckpt_dirs(cli.config.get("trainer"))).ckpt_path
    cli.model.load_state_dict(load_checkpoint_file(ckpt, map_location="cpu")["state_dict"])
    net = cli.model.network.eval()
    graph = export_nir(net)
    # same weights and options, refractory 0 in every layer
    no_ref = SpikingNetwork.from_records([dataclasses.replace(layer.neuron, refractory=0)
                                          for layer in net.layers.values()], **net.init_kwargs)
    no_ref.load_state_dict(net.state_dict())
    dm = cli.datamodule
    dm.setup("test")
    stats = {"mismatch": {}, "bins": {}, "spikes": {}, "snn_vs_ref0_mismatch": {}}
    correct = {"hm2bp": 0, args.simulator: 0, "hm2bp_refractory0": 0}
    n = 0
    for k, batch in enumerate(dm.test_dataloader()):
        if args.max_batches and k >= args.max_batches:
            break
        x, y = dm.on_after_batch_transfer(batch, 0)[:2]  # (spikes [T, B, ...], labels, sample index)
        with torch.no_grad():
            ours = net(x, return_all=True)
            zero = no_ref(x, return_all=True)
        theirs = simulate(graph, x)
        for name in ours:
            a, b = ours[name].float(), theirs[name]
            stats["mismatch"][name] = stats["mismatch"].get(name, 0) + int((a != b).sum())
            stats["bins"][name] = stats["bins"].get(name, 0) + a.numel()
            stats["spikes"][name] = stats["spikes"].get(name, 0) + int(a.sum())
            stats["snn_vs_ref0_mismatch"][name] = (stats["snn_vs_ref0_mismatch"].get(name, 0)
                                                   + int((zero[name].float() != b).sum()))
        out = net.layer_names[-1]
        for key, spikes in (("hm2bp", ours), (args.simulator, theirs), ("hm2bp_refractory0", zero)):
            correct[key] += int((spikes[out].float().sum(0).argmax(-1) == y).sum())
        n += len(y)
    result = {
        "samples": n,
        "checkpoint": str(ckpt),
        "refractory": [layer.refractory for layer in net.layers.values()],
        "simulator": args.simulator,
        "method": args.method if args.simulator == "snntorch" else None,
        "accuracy": {k: v / n for k, v in correct.items()},
        **stats,
    }
    for name in stats["mismatch"]:
        print(f"{name:8s} mismatched bins {stats['mismatch'][name]:9d} of {stats['bins'][name]:10d} "
              f"({100 * stats['mismatch'][name] / stats['bins'][name]:.3f} % of bins, "
              f"{100 * stats['mismatch'][name] / max(stats['spikes'][name], 1):.1f} % of hm2bp's "
              f"{stats['spikes'][name]} spikes)")
    print("accuracy on", n, "test samples:", {k: f"{100 * v:.2f} %" for k, v in result["accuracy"].items()})
    print(args.simulator, "vs hm2bp with refractory 0: mismatched bins", stats["snn_vs_ref0_mismatch"])
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
