"""CNN benchmark sweep: the paper CNN against the MLP step, and time/memory against T, one process per configuration.

    python benchmarks/run_cnn.py                                   # the default sweep below
    python benchmarks/run_cnn.py --T 50 100 --rules hm2bp bptt     # a subset

Two parts, each interleaved (every configuration of a row runs back to back, so load drift hits
them alike), every record with the 1-minute load average before and after it:

* **ratio** (T ``--ratio-T``, default 400, batch ``--ratio-batch``, default 64): the HM2-BP CNN train step and forward
  (``bench_cnn.py``) and the HM2-BP MLP 784-800-10 train step (``bench_mlp.py``, p = 0.03), in
  ``--ratio-rounds`` rounds; the table gives CNN step / MLP step of each round.
* **sweep** (batch ``--batch``, default 16, T in ``--T``): ``bench_cnn.py`` for the HM2-BP forward,
  the HM2-BP step, the surrogate-gradient BPTT CNN of ``hm2bp.baselines`` and snnTorch's CNN (if
  importable); the least-squares slope of the peak memory against T gives the growth per 100 steps.
  BPTT and snnTorch run only up to ``--bptt-max-T`` (their memory and time grow fastest).

Writes ``--out`` (default ``benchmarks/results/cnn``): ``results.json``, ``tables.md``,
``cnn_time_vs_T.png``, ``cnn_memory_vs_T.png``. Do not edit ``src/`` while it runs.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_all import _fmt, _run, _slope_per_100  # noqa: E402

CNN_RULES = {
    "forward": ["--rule", "hm2bp", "--mode", "forward"],
    "hm2bp": ["--rule", "hm2bp", "--mode", "train"],
    "bptt": ["--rule", "bptt", "--mode", "train"],
    "snntorch": ["--rule", "snntorch", "--mode", "train"],
}
LABELS = {
    "forward": "HM2-BP CNN forward",
    "hm2bp": "HM2-BP CNN step",
    "bptt": "BPTT CNN step (same neurons)",
    "snntorch": "snnTorch CNN step",
    "mlp": "HM2-BP MLP step",
}


def _show(tag: str, rec: dict) -> None:
    if "error" in rec:
        print(f"{tag}: error {rec['error']}", flush=True)
    else:
        print(f"{tag}: best {rec['s_per_step_min']:.3f} s all {rec['s_per_step_all']} "
              f"+{rec['peak_above_baseline_mib']:.0f} MiB load {rec['load_before'][0]}->{rec['load_after'][0]}", flush=True)


def tables(records: list[dict], rules: list[str], Ts: list[int], batch: int, ratio_batch: int, threads: int) -> str:
    out = []
    ratio = [r for r in records if r.get("part") == "ratio"]
    if ratio:
        ratio_T = ratio[0]["T"]
        out += [f"### Paper CNN against the MLP, T = {ratio_T}, batch {ratio_batch}, {threads} thread(s) (best step of each process)",
                "", "| round | CNN forward s | CNN step s | MLP step s | CNN step / MLP step | CNN step / CNN forward | load avg (1 min) |",
                "|---|---|---|---|---|---|---|"]
        for k in sorted({r["round"] for r in ratio}):
            row = {r["label"]: r for r in ratio if r["round"] == k and "error" not in r}
            f, c, m = (row.get(x, {}).get("s_per_step_min") for x in ("forward", "hm2bp", "mlp"))
            loads = [v for r in row.values() for v in (r["load_before"][0], r["load_after"][0])]
            out.append(f"| {k} | {_fmt(f)} | {_fmt(c)} | {_fmt(m, 3)} | {_fmt(c / m if c and m else None, 1)} | "
                       f"{_fmt(c / f if c and f else None)} | {min(loads):.1f}–{max(loads):.1f} |" if loads else f"| {k} | — |")
        out.append("")
    by = {(r["label"], r["T"]): r for r in records if r.get("part") == "sweep" and "error" not in r}
    out += [f"### Paper CNN 28x28-15C5-P2-40C5-P2-300-10, batch {batch}, {threads} thread(s): seconds per step (best) "
            "and peak MiB above baseline", ""]
    out += ["| T | " + " | ".join(f"{LABELS[r]} s" for r in rules) + " | " + " | ".join(f"{LABELS[r]} MiB" for r in rules)
            + " | load avg (1 min) |", "|" + "---|" * (2 + 2 * len(rules))]
    for T in Ts:
        row = [str(T)] + [_fmt(by.get((r, T), {}).get("s_per_step_min")) for r in rules]
        row += [_fmt(by.get((r, T), {}).get("peak_above_baseline_mib"), 0) for r in rules]
        loads = [v for r in rules for v in (by.get((r, T), {}).get("load_before", [None])[0],
                                            by.get((r, T), {}).get("load_after", [None])[0]) if v is not None]
        row.append(f"{min(loads):.1f}–{max(loads):.1f}" if loads else "—")
        out.append("| " + " | ".join(row) + " |")
    out += ["", "| rule | memory growth, MiB per 100 steps (least squares over the T measured) | T used |", "|---|---|---|"]
    slopes = {}
    for r in rules:
        pts = [(T, by[(r, T)]["peak_above_baseline_mib"]) for T in Ts if (r, T) in by]
        slopes[r] = _slope_per_100(pts)
        out.append(f"| {LABELS[r]} | {_fmt(slopes[r], 1)} | {', '.join(str(t) for t, _ in pts)} |")
    for other in ("bptt", "snntorch"):
        if slopes.get("hm2bp") and slopes.get(other):
            out.append(f"\nHM2-BP growth / {LABELS[other]} growth = {slopes['hm2bp'] / slopes[other]:.3f}")
    return "\n".join(out) + "\n"


def plots(records: list[dict], rules: list[str], Ts: list[int], outdir: Path, batch: int) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r["label"], r["T"]): r for r in records if r.get("part") == "sweep" and "error" not in r}
    files = []
    for key, ylabel, fname, logy in (("s_per_step_min", "seconds per step (best)", "cnn_time_vs_T.png", True),
                                     ("peak_above_baseline_mib", "peak RSS above baseline (MiB)", "cnn_memory_vs_T.png", False)):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        for r in rules:
            pts = [(T, by[(r, T)][key]) for T in Ts if (r, T) in by]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=LABELS[r])
        ax.set_xlabel("time steps T")
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_title(f"28x28-15C5-P2-40C5-P2-300-10, batch {batch} (CPU)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(outdir / fname)
        plt.close(fig)
        files.append(str(outdir / fname))
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[50, 100, 200, 400])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--ratio-batch", type=int, default=64)
    ap.add_argument("--ratio-T", type=int, default=400, help="T of the CNN-vs-MLP part")
    ap.add_argument("--ratio-rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rules", nargs="+", default=list(CNN_RULES), choices=list(CNN_RULES))
    ap.add_argument("--bptt-max-T", type=int, default=200)
    ap.add_argument("--no-ratio", action="store_true", help="skip the CNN-vs-MLP part")
    ap.add_argument("--no-sweep", action="store_true", help="skip the time/memory-vs-T part")
    ap.add_argument("--data-dir", default=None, help="folder with MNIST/raw (default: synthetic images)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per subprocess, seconds")
    ap.add_argument("--out", default=str(HERE / "results" / "cnn"))
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    rules = [r for r in args.rules if r != "snntorch" or importlib.util.find_spec("snntorch") is not None]
    meta = {"start": time.strftime("%Y-%m-%d %H:%M:%S"), "load_start": os.getloadavg(), "device": args.device,
            "threads": args.threads, "cpus": os.cpu_count()}
    records: list[dict] = []
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    common = ["--repeats", str(args.repeats), "--threads", str(args.threads), "--device", args.device]

    def save():
        (outdir / "results.json").write_text(json.dumps({"meta": meta, "records": records}, indent=1))

    if not args.no_ratio:
        for k in range(args.ratio_rounds):
            for label in ("forward", "hm2bp", "mlp"):
                if label == "mlp":
                    cmd = [sys.executable, str(HERE / "bench_mlp.py"), "--rule", "hm2bp", "--mode", "train",
                           "--batch", str(args.ratio_batch), "--T", str(args.ratio_T), *common]
                else:
                    cmd = [sys.executable, str(HERE / "bench_cnn.py"), *CNN_RULES[label], "--batch",
                           str(args.ratio_batch), "--T", str(args.ratio_T), *common, *data]
                rec = _run(cmd, args.timeout)
                rec.update(part="ratio", label=label, round=k + 1, T=args.ratio_T)
                records.append(rec)
                _show(f"ratio round {k + 1} {label}", rec)
                save()
    for T in [] if args.no_sweep else args.T:
        for r in rules:
            if r in ("bptt", "snntorch") and T > args.bptt_max_T:
                continue
            cmd = [sys.executable, str(HERE / "bench_cnn.py"), *CNN_RULES[r], "--batch", str(args.batch), "--T", str(T),
                   *common, *data]
            rec = _run(cmd, args.timeout)
            rec.update(part="sweep", label=r, T=T)
            records.append(rec)
            _show(f"T={T} {r}", rec)
            save()
    meta["end"] = time.strftime("%Y-%m-%d %H:%M:%S")
    meta["load_end"] = os.getloadavg()
    save()
    text = tables(records, rules, args.T, args.batch, args.ratio_batch, args.threads)
    (outdir / "tables.md").write_text(text)
    print()
    print(text)
    for f in plots(records, rules, args.T, outdir, args.batch):
        print("wrote", f)


if __name__ == "__main__":
    main()
