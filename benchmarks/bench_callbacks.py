"""Cost of the spike-observability callbacks on the MNIST MLP (784-800-10, T = 400, batch 64).

Runs short ``fit``s in fresh subprocesses, alternating "plain" (WandbLogger offline, no spike
callbacks) and "callbacks" (the same plus ``FiringRateMonitor`` and ``SpikeRasterLogger``), and prints:

* median training-iteration time (wall time between successive ``on_train_batch_start`` calls, so
  it includes the callbacks' hooks and logging) and the validation-epoch time (rasters included);
* the time spent inside the two callbacks' own hooks (measured directly, robust to noise from other
  processes on a shared machine) as a fraction of the training time;
* peak memory: ``torch.cuda.max_memory_allocated`` on GPU, the process's peak RSS on CPU;
* the bytes the callbacks retain (metric states + the fixed raster sample): bounded by construction.

    python benchmarks/bench_callbacks.py --data-dir /work/shared/data            # CPU, ~10 min on 2 cores
    python benchmarks/bench_callbacks.py --steps 40 --log-every 1 --accelerator gpu

``--log-every 1`` is the worst case (statistics computed and logged every step).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time


def _child(args: argparse.Namespace) -> dict:
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.loggers import WandbLogger

    from hm2bp import SpikeCountLoss, SpikingClassifier, SpikingNetwork
    from hm2bp.callbacks import FiringRateMonitor, SpikeRasterLogger
    from hm2bp.datamodules import MNISTDataModule

    torch.set_num_threads(args.threads)
    pl.seed_everything(0, verbose=False)

    class Timer(pl.Callback):
        def __init__(self):
            self.starts, self.val = [], []

        def on_train_batch_start(self, *a):
            self.starts.append(time.perf_counter())

        def on_train_epoch_end(self, *a):
            self.starts.append(time.perf_counter())  # closes the last iteration

        def on_validation_epoch_start(self, *a):
            self._v = time.perf_counter()

        def on_validation_epoch_end(self, *a):
            self.val.append(time.perf_counter() - self._v)

    hook_time = {"train": 0.0, "val": 0.0}

    def timed(cb, names, bucket):
        for name in names:
            fn = getattr(cb, name)

            def wrapper(*a, _fn=fn, **k):
                t = time.perf_counter()
                try:
                    return _fn(*a, **k)
                finally:
                    hook_time[bucket] += time.perf_counter() - t

            setattr(cb, name, wrapper)
        return cb

    net = SpikingNetwork("784-800-10", thresholds=[20.0, 8.0], output_lateral_inhibition=1.0, target_injection=35.0)
    model = SpikingClassifier(net, SpikeCountLoss(35.0, 5.0, 5.0))  # Adam at lr 5e-3 (the default)
    dm = MNISTDataModule(data_dir=args.data_dir, time_steps=400, batch_size=64)
    timer = Timer()
    callbacks = []
    spike_cbs = []
    if args.mode == "callbacks":
        rates = timed(FiringRateMonitor(), ["on_train_batch_end", "on_train_epoch_start"], "train")
        timed(rates, ["on_validation_batch_end", "on_validation_epoch_end", "on_validation_epoch_start"], "val")
        raster = timed(SpikeRasterLogger(num_samples=4, max_neurons=100),
                       ["on_validation_batch_end", "on_validation_epoch_end"], "val")
        spike_cbs = [rates, raster]
        callbacks += spike_cbs
    callbacks.append(timer)  # last: its hooks run after the spike callbacks'
    save_dir = tempfile.mkdtemp(prefix="bench_cb_")
    logger = WandbLogger(offline=True, save_dir=save_dir, project="hm2bp-bench")
    trainer = pl.Trainer(
        accelerator=args.accelerator, devices=1, max_epochs=1, limit_train_batches=args.steps,
        limit_val_batches=args.val_batches, num_sanity_val_steps=0, log_every_n_steps=args.log_every,
        logger=logger, callbacks=callbacks, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=save_dir,
    )
    cuda = torch.cuda.is_available() and args.accelerator != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(model, dm)
    logger.experiment.finish()
    iters = [b - a for a, b in zip(timer.starts, timer.starts[1:])][args.warmup:]
    retained = 0
    if spike_cbs:
        rates, raster = spike_cbs
        for metrics in rates._stats.values():
            for m in metrics.values():
                retained += sum(getattr(m, s).numel() * getattr(m, s).element_size() for s in m._defaults)
        retained += raster._spikes.numel() * raster._spikes.element_size()
    return {
        "mode": args.mode,
        "iter_median_s": statistics.median(iters),
        "iter_mean_s": statistics.fmean(iters),
        "train_total_s": sum(iters),
        "val_epoch_s": timer.val[-1] if timer.val else float("nan"),
        "hook_train_s": hook_time["train"],
        "hook_val_s": hook_time["val"],
        "peak_mem_mb": (torch.cuda.max_memory_allocated() if cuda else
                        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20,
        "peak_kind": "cuda max_memory_allocated" if cuda else "peak RSS",
        "retained_bytes": retained,
        "steps_timed": len(iters),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("HM2BP_DATA_DIR", "/work/shared/data"))
    p.add_argument("--steps", type=int, default=14, help="training batches per run")
    p.add_argument("--warmup", type=int, default=2, help="iterations left out of the timing")
    p.add_argument("--val-batches", type=int, default=4)
    p.add_argument("--log-every", type=int, default=2, help="trainer log_every_n_steps")
    p.add_argument("--repeats", type=int, default=2, help="plain/callbacks pairs (alternated)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--mode", choices=["plain", "callbacks"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:  # child process
        print("RESULT " + json.dumps(_child(args)), flush=True)
        return
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    results: dict[str, list[dict]] = {"plain": [], "callbacks": []}
    for _ in range(args.repeats):
        for mode in ("plain", "callbacks"):
            cmd = [sys.executable, __file__, "--mode", mode] + [
                a for k, v in vars(args).items() if k != "mode" for a in (f"--{k.replace('_', '-')}", str(v))
            ]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if out.returncode or not line:
                sys.exit(f"{mode} run failed:\n{out.stderr[-3000:]}")
            r = json.loads(line[-1][7:])
            results[mode].append(r)
            print(f"  {mode:9s} iter {r['iter_median_s']:.3f} s  val {r['val_epoch_s']:.2f} s  "
                  f"hooks {r['hook_train_s']:.4f}+{r['hook_val_s']:.3f} s  peak {r['peak_mem_mb']:.0f} MB", flush=True)

    def med(mode, key):
        return statistics.median(r[key] for r in results[mode])

    plain, cb = "plain", "callbacks"
    it_p, it_c = med(plain, "iter_median_s"), med(cb, "iter_median_s")
    val_p, val_c = med(plain, "val_epoch_s"), med(cb, "val_epoch_s")
    mem_p, mem_c = med(plain, "peak_mem_mb"), med(cb, "peak_mem_mb")
    hook_frac = med(cb, "hook_train_s") / med(cb, "train_total_s")
    print()
    print(f"MNIST MLP 784-800-10, T=400, batch 64, {args.steps} steps ({args.warmup} warm-up), "
          f"log_every_n_steps={args.log_every}, {args.val_batches} val batches, {args.accelerator}, "
          f"{args.repeats} alternated runs each (medians)")
    print("| quantity | plain | with callbacks | overhead |")
    print("|---|---|---|---|")
    print(f"| train iteration (median) | {it_p:.3f} s | {it_c:.3f} s | {100 * (it_c / it_p - 1):+.1f}% |")
    print(f"| callback hooks in training (measured inside) | – | {med(cb, 'hook_train_s'):.4f} s | "
          f"{100 * hook_frac:.2f}% of training time |")
    print(f"| validation epoch ({args.val_batches} batches, rasters incl.) | {val_p:.2f} s | {val_c:.2f} s | "
          f"{100 * (val_c / val_p - 1):+.1f}% (hooks {med(cb, 'hook_val_s'):.2f} s) |")
    print(f"| peak memory ({results[cb][0]['peak_kind']}) | {mem_p:.0f} MB | {mem_c:.0f} MB | "
          f"{100 * (mem_c / mem_p - 1):+.1f}% |")
    print(f"| state retained by the callbacks | – | {med(cb, 'retained_bytes') / 1024:.0f} KiB | |")


if __name__ == "__main__":
    main()
