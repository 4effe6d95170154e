"""Draw the time per MNIST training epoch, MLP and CNN, CPU and GPU, against the performance targets.

    python scripts/plot_epoch_times.py --csv docs/data/epoch_times.csv --out docs/img/epoch_times.png

The CSV holds one row per measured full epoch (no projections), with the columns
``date, device, network, epoch_seconds, processes, threads, command, note``: ``date`` as
YYYY-MM-DD, ``device`` CPU or GPU, ``network`` MLP or CNN, ``processes`` the number of training
processes (DDP ranks), ``threads`` the intra-op threads per process (empty where not recorded).
Rows of one date are listed in the order they were measured.

The figure has one row per (network, device). For each number of processes it draws the latest
epoch (the latest date; within that date, the row listed last) as a bar labelled with its time and
date, earlier epochs as grey dots, and each target as a dashed mark. The time axis is
logarithmic. The script also prints the plotted numbers as a Markdown table, so a page can quote
exactly what the figure shows.
"""
from __future__ import annotations

import argparse
import csv
import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("date", "device", "network", "epoch_seconds", "processes", "threads", "command", "note")
# (network, device) -> target seconds per epoch (the performance issue's targets)
TARGETS = {("MLP", "GPU"): 20.0, ("CNN", "GPU"): 90.0, ("CNN", "CPU"): 1800.0}
ROW_ORDER = [("MLP", "CPU"), ("MLP", "GPU"), ("CNN", "CPU"), ("CNN", "GPU")]
TICKS = [(10, "10 s"), (30, "30 s"), (60, "1 min"), (120, "2 min"), (300, "5 min"), (600, "10 min"),
         (1800, "30 min"), (3600, "1 h"), (7200, "2 h")]


def duration(seconds: float) -> str:
    """``101.3`` -> ``101.3 s``; ``389`` -> ``6 min 29 s``; ``3873`` -> ``64 min 33 s``."""
    if seconds < 120:
        return f"{seconds:g} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def read_rows(path: Path) -> list[dict]:
    """The CSV's rows with ``epoch_seconds`` as a float and ``processes`` as an int; a clear error otherwise."""
    if not path.is_file():
        raise SystemExit(f"error: epoch-time file {path} not found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise SystemExit(f"error: {path} lacks the column{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(missing)} (expected the columns {','.join(COLUMNS)})")
        rows = []
        for line, r in enumerate(reader, start=2):
            try:
                datetime.date.fromisoformat(r["date"])
                seconds, processes = float(r["epoch_seconds"]), int(r["processes"])
            except (TypeError, ValueError):
                raise SystemExit(f"error: {path}:{line}: date must be YYYY-MM-DD, epoch_seconds a number and "
                                 f"processes an integer (got {r['date']!r}, {r['epoch_seconds']!r}, "
                                 f"{r['processes']!r})") from None
            if seconds <= 0 or processes < 1:
                raise SystemExit(f"error: {path}:{line}: epoch_seconds must be > 0 and processes >= 1")
            rows.append(dict(r, epoch_seconds=seconds, processes=processes, order=line))
    if not rows:
        raise SystemExit(f"error: {path} has no rows")
    return rows


def latest(rows: list[dict]) -> dict[tuple[str, str, int], dict]:
    """(network, device, processes) -> the latest row: latest date, then the row listed last."""
    out: dict[tuple[str, str, int], dict] = {}
    for r in sorted(rows, key=lambda r: (r["date"], r["order"])):
        out[(r["network"], r["device"], r["processes"])] = r
    return out


def label(r: dict) -> str:
    procs = f"{r['processes']} process{'es' if r['processes'] > 1 else ''}"
    threads = f" x {r['threads']} thread{'s' if r['threads'] != '1' else ''}" if r["threads"] else ""
    return f"{duration(r['epoch_seconds'])} ({r['date']}, {procs}{threads})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path, default=REPO / "docs" / "data" / "epoch_times.csv",
                    help="measured epochs (default: docs/data/epoch_times.csv)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "epoch_times.png",
                    help="the PNG to write (default: docs/img/epoch_times.png)")
    args = ap.parse_args(argv)

    rows = read_rows(args.csv)
    last = latest(rows)
    groups = [g for g in ROW_ORDER if any(k[:2] == g for k in last) or g in TARGETS]
    groups += sorted({k[:2] for k in last} - set(groups))

    fig, ax = plt.subplots(figsize=(8.0, 1.0 + 0.9 * len(groups)))
    seconds = [r["epoch_seconds"] for r in rows] + list(TARGETS.values())
    left = min(10.0, 0.5 * min(seconds))
    right = 4.0 * max(seconds)
    table = []
    for y, (network, device) in enumerate(groups):
        keys = sorted(k for k in last if k[:2] == (network, device))
        height = 0.7 / max(len(keys), 1)
        for j, key in enumerate(keys):
            r = last[key]
            yy = y - 0.35 + height * (j + 0.5)
            ax.barh(yy, r["epoch_seconds"] - left, left=left, height=0.8 * height,
                    color="tab:blue" if device == "CPU" else "tab:orange")
            earlier = [q["epoch_seconds"] for q in rows if (q["network"], q["device"], q["processes"]) == key
                       and q is not r]
            ax.plot(earlier, [yy] * len(earlier), "o", color="0.6", ms=3, zorder=3)
            ax.text(max([r["epoch_seconds"], *earlier]) * 1.1, yy, label(r), va="center", fontsize=8)
            table.append((network, device, r, len(earlier)))
        if not keys:
            ax.text(left * 1.1, y, "no measured epoch", va="center", fontsize=8, color="0.3")
        target = TARGETS.get((network, device))
        if target is not None:
            ax.plot([target, target], [y - 0.38, y + 0.38], "k--", linewidth=1.2)
            ax.text(target, y + 0.44, f"target {duration(target)}", ha="center", va="top", fontsize=7)
    handles = [Patch(color="tab:blue", label="latest epoch, CPU"), Patch(color="tab:orange", label="latest epoch, GPU"),
               Line2D([], [], marker="o", linestyle="", color="0.6", ms=3, label="earlier epochs"),
               Line2D([], [], color="k", linestyle="--", linewidth=1.2, label="target")]
    ax.set_xscale("log")
    ax.set_xlim(left, right)
    ticks = [(t, s) for t, s in TICKS if left <= t <= right]
    ax.set_xticks([t for t, _ in ticks], [s for _, s in ticks])
    ax.minorticks_off()
    ax.set_yticks(range(len(groups)), [f"{n}, {d}" for n, d in groups])
    ax.set_ylim(len(groups) - 0.3, -0.6)
    ax.set_xlabel("time per epoch (log scale)")
    ax.set_title("Time per MNIST epoch")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    plt.close(fig)

    print("| network | device | processes x threads | latest epoch | date | earlier epochs in the CSV | command |")
    print("|---|---|---|---|---|---|---|")
    for network, device, r, n in table:
        run = f"{r['processes']} x {r['threads']}" if r["threads"] else f"{r['processes']} (threads not recorded)"
        time = duration(r["epoch_seconds"])
        time += f" ({r['epoch_seconds']:g} s)" if r["epoch_seconds"] >= 120 else ""
        print(f"| {network} | {device} | {run} | {time} | {r['date']} | {n} | `{r['command']}` |")
    for (network, device), target in TARGETS.items():
        print(f"target: {network}, {device}: {duration(target)}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
