"""Run the benchmark suite (``make bench``): one configuration per subprocess, then tables and plots.

    python benchmarks/run_all.py                          # full T sweep + paper CNN
    python benchmarks/run_all.py --T 50 200 400 --no-cnn  # a subset

MLP sweep (``bench_mlp.py``): 784-800-10, batch 64, Bernoulli input at p = 0.03, 2 threads, best
(min) of ``--repeats`` steps after one warm-up, for

* ``forward``: the HM2-BP network's forward simulation alone (no_grad),
* ``hm2bp``: one HM2-BP training step (forward + HM2-BP backward + Adam),
* ``bptt``: one step of ``hm2bp.baselines.BPTTNetwork`` (same neurons, surrogate-gradient BPTT),
* ``snntorch``: one step of an snnTorch BPTT network of the same shape (only if importable).

Memory is the peak RSS during the timed steps minus the RSS after imports, model and data
creation (``peak_above_baseline_mib``). Each run gets its own process, so peaks don't mix.
The paper CNN (28x28-15C5-P2-40C5-P2-300-10) is swept by ``run_cnn.py`` afterwards (its own
tables and plots in ``results/cnn/``): CNN step against the MLP step at T = 400, batch 64, and
HM2-BP, BPTT and snnTorch CNN time and memory against T.

Writes ``benchmarks/results/``: ``results.json`` (every raw record with the load average before
and after it), ``tables.md`` (what docs/benchmarks.md quotes), ``time_vs_T.png``, ``memory_vs_T.png``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RULES = {  # label -> bench_mlp.py arguments
    "forward": ["--rule", "hm2bp", "--mode", "forward"],
    "hm2bp": ["--rule", "hm2bp", "--mode", "train"],
    "bptt": ["--rule", "bptt", "--mode", "train"],
    "snntorch": ["--rule", "snntorch", "--mode", "train"],
}
LABELS = {
    "forward": "HM2-BP forward only",
    "hm2bp": "HM2-BP train step",
    "bptt": "BPTT baseline train step",
    "snntorch": "snnTorch BPTT train step",
}


def _run(cmd: list[str], timeout: float) -> dict:
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s", "cmd": " ".join(cmd)}
    rec: dict = {"cmd": " ".join(cmd), "wall_s": round(time.perf_counter() - t0, 1)}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        rec["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return rec
    rec.update(json.loads(lines[-1]))
    rec["load_before"] = [round(v, 2) for v in load0]
    rec["load_after"] = [round(v, 2) for v in os.getloadavg()]
    return rec


def _fmt(v, nd=2):
    return "—" if v is None else f"{v:.{nd}f}"


def _slope_per_100(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of memory (MiB) against T, per 100 time steps."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(m for _, m in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    sxy = sum((t - mx) * (m - my) for t, m in points)
    return 100.0 * sxy / sxx if sxx else None


def tables(records: list[dict], rules: list[str], Ts: list[int], batch: int = 64, threads: int = 2) -> str:
    by = {(r.get("label"), r.get("T")): r for r in records if "error" not in r and r.get("suite") == "mlp"}
    out = [f"### MLP 784-800-10, batch {batch}, p = 0.03, {threads} thread(s): seconds per step (best of N) and peak MiB above baseline", ""]
    head = "| T | " + " | ".join(f"{LABELS[r]} s" for r in rules) + " | " + " | ".join(f"{LABELS[r]} MiB" for r in rules)
    head += " | load avg (1 min) during the row |"
    out += [head, "|" + "---|" * (1 + 2 * len(rules) + 1)]
    for T in Ts:
        row = [str(T)]
        row += [_fmt(by.get((r, T), {}).get("s_per_step_min")) for r in rules]
        row += [_fmt(by.get((r, T), {}).get("peak_above_baseline_mib"), 0) for r in rules]
        loads = [v for r in rules for v in (by.get((r, T), {}).get("load_before", [None])[0],
                                            by.get((r, T), {}).get("load_after", [None])[0]) if v is not None]
        row.append(f"{min(loads):.1f}–{max(loads):.1f}" if loads else "—")
        out.append("| " + " | ".join(row) + " |")
    out += ["", "### Ratios (same run)", ""]
    out += ["| T | HM2-BP step / BPTT step | BPTT step / HM2-BP step | HM2-BP step / HM2-BP forward |"
            + (" snnTorch step / HM2-BP step |" if "snntorch" in rules else ""),
            "|---|---|---|---|" + ("---|" if "snntorch" in rules else "")]
    for T in Ts:
        h = by.get(("hm2bp", T), {}).get("s_per_step_min")
        b = by.get(("bptt", T), {}).get("s_per_step_min")
        f = by.get(("forward", T), {}).get("s_per_step_min")
        s = by.get(("snntorch", T), {}).get("s_per_step_min")
        row = [str(T), _fmt(h / b if h and b else None), _fmt(b / h if h and b else None), _fmt(h / f if h and f else None)]
        if "snntorch" in rules:
            row.append(_fmt(s / h if s and h else None))
        out.append("| " + " | ".join(row) + " |")
    out += ["", "### Memory growth (least-squares slope of peak MiB above baseline vs T)", ""]
    out += ["| rule | MiB per 100 steps |", "|---|---|"]
    slopes = {}
    for r in rules:
        pts = [(T, by[(r, T)]["peak_above_baseline_mib"]) for T in Ts if (r, T) in by]
        slopes[r] = _slope_per_100(pts)
        out.append(f"| {LABELS[r]} | {_fmt(slopes[r], 1)} |")
    if slopes.get("hm2bp") and slopes.get("bptt"):
        out += ["", f"HM2-BP growth / BPTT growth = {slopes['hm2bp'] / slopes['bptt']:.2f}"]
    return "\n".join(out) + "\n"


def plots(records: list[dict], rules: list[str], Ts: list[int], outdir: Path, batch: int = 64) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r.get("label"), r.get("T")): r for r in records if "error" not in r and r.get("suite") == "mlp"}
    files = []
    for key, ylabel, fname, logy in (("s_per_step_min", "seconds per step (best of N)", "time_vs_T.png", True),
                                     ("peak_above_baseline_mib", "peak RSS above baseline (MiB)", "memory_vs_T.png", False)):
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
        ax.set_title(f"784-800-10, batch {batch} (CPU)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(outdir / fname)
        plt.close(fig)
        files.append(str(outdir / fname))
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[50, 100, 200, 400, 800])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    ap.add_argument("--no-cnn", action="store_true", help="skip the paper CNN sweep (run_cnn.py)")
    ap.add_argument("--timeout", type=float, default=900.0, help="per subprocess, seconds")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--device", default="cpu", help="cpu or cuda (every configuration runs there)")
    args = ap.parse_args()
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    rules = [r for r in args.rules if r != "snntorch" or importlib.util.find_spec("snntorch") is not None]
    if len(rules) < len(args.rules):
        print("snntorch not importable: skipping it (pip install -e .[bench])", flush=True)
    meta = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(), "device": args.device,
            "start": time.strftime("%Y-%m-%d %H:%M:%S"), "load_start": os.getloadavg()}
    try:
        import torch

        meta["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    records: list[dict] = []
    common = ["--batch", str(args.batch), "--repeats", str(args.repeats), "--threads", str(args.threads),
              "--device", args.device]
    for T in args.T:  # rules interleaved per T, so load drift hits all of them alike
        for r in rules:
            cmd = [sys.executable, str(HERE / "bench_mlp.py"), *RULES[r], "--T", str(T), *common]
            rec = _run(cmd, args.timeout)
            rec.update(suite="mlp", label=r, T=T)
            records.append(rec)
            print(f"T={T:4d} {r:9s} "
                  + (f"error: {rec['error']}" if "error" in rec else
                     f"best {rec['s_per_step_min']:.3f} s  all {rec['s_per_step_all']}  "
                     f"+{rec['peak_above_baseline_mib']:.0f} MiB  load {rec['load_before'][0]}->{rec['load_after'][0]}"),
                  flush=True)
            (outdir / "results.json").write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    meta["end"] = time.strftime("%Y-%m-%d %H:%M:%S")
    meta["load_end"] = os.getloadavg()
    (outdir / "results.json").write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    text = tables(records, rules, args.T, args.batch, args.threads)
    (outdir / "tables.md").write_text(text)
    print()
    print(text)
    for f in plots(records, rules, args.T, outdir, args.batch):
        print("wrote", f)
    if not args.no_cnn:  # the paper CNN: against the MLP step at T = 400, and time/memory against T
        cmd = [sys.executable, str(HERE / "run_cnn.py"), "--threads", str(args.threads), "--device", args.device,
               "--out", str(outdir / "cnn"), "--timeout", str(args.timeout)]
        print("running", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=False)


if __name__ == "__main__":
    main()
