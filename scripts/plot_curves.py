"""Draw per-epoch test accuracy of hm2bp runs over the authors' logged curve: one PNG per experiment.

    python scripts/plot_curves.py --experiment mnist_mlp --official official-curves.csv \
        --run "batch 64, seed 0=runs/mnist_mlp/curves.csv" --run "batch 1=runs/b1/curves.csv" \
        --ref "paper, mean of 200 epochs=98.84" --ref "authors' program, issue 9=97.30" \
        --out docs/img/curve_mnist_mlp.png

Each ``--run LABEL=PATH`` is a ``curves.csv`` written by ``hm2bp.callbacks.EpochCurve`` (columns
``epoch, train_acc, val_acc, test_acc, train_seconds, lr``; epochs from 1). ``--official`` is the
CSV of the authors' logs (columns ``experiment, epoch, test_acc, ...``; accuracy in percent); rows
of ``--experiment`` are drawn as the reference. ``--x seconds`` puts cumulative training seconds on
the x axis instead of epochs (time-to-accuracy). Each ``--ref LABEL=VALUE`` draws a horizontal
reference line at VALUE percent (a published final accuracy, say). The script also prints the plotted numbers as a
Markdown table, so a results page can quote exactly what the figure shows.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_run(path: Path) -> list[dict]:
    if not path.is_file():
        raise SystemExit(f"error: run file {path} not found (EpochCurve writes <run dir>/curves.csv)")
    rows = [r for r in csv.DictReader(open(path)) if r.get("test_acc")]
    if not rows:
        raise SystemExit(f"error: {path} has no row with a test accuracy")
    out, seconds = [], 0.0
    for r in rows:
        seconds += float(r["train_seconds"] or 0)
        out.append({"epoch": int(r["epoch"]), "acc": 100.0 * float(r["test_acc"]), "seconds": seconds})
    return out


def read_official(path: Path, experiment: str) -> list[dict]:
    if not path.is_file():
        raise SystemExit(f"error: official curve file {path} not found")
    rows = [r for r in csv.DictReader(open(path)) if r["experiment"] == experiment]
    if not rows:
        raise SystemExit(f"error: {path} has no rows for experiment {experiment!r}")
    out, seconds = [], 0.0
    for r in sorted(rows, key=lambda r: int(r["epoch"])):
        seconds += float(r.get("epoch_train_seconds") or 0)
        out.append({"epoch": int(r["epoch"]), "acc": float(r["test_acc"]), "seconds": seconds})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", required=True, help="name of the experiment (title; official rows)")
    ap.add_argument("--run", action="append", default=[], metavar="LABEL=PATH", help="an EpochCurve CSV")
    ap.add_argument("--official", type=Path, help="the authors' per-epoch curves (CSV)")
    ap.add_argument("--ref", action="append", default=[], metavar="LABEL=VALUE",
                    help="a horizontal reference line at VALUE percent")
    ap.add_argument("--max-epoch", type=int, default=None, help="clip the official curve to this many epochs")
    ap.add_argument("--x", choices=("epoch", "seconds"), default="epoch")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if not args.run:
        raise SystemExit("error: give at least one --run LABEL=PATH")

    runs = []
    for spec in args.run:
        label, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"error: --run {spec!r} must be LABEL=PATH")
        runs.append((label, read_run(Path(path))))
    refs = []
    for spec in args.ref:
        label, sep, value = spec.rpartition("=")
        try:
            refs.append((label, float(value)))
        except ValueError:
            sep = ""
        if not sep or not label:
            raise SystemExit(f"error: --ref {spec!r} must be LABEL=VALUE with VALUE a percentage, e.g. 'paper=98.84'")
    max_epoch = args.max_epoch or max(r[-1]["epoch"] for _, r in runs)

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    table = []
    if args.official is not None:
        official = [r for r in read_official(args.official, args.experiment) if r["epoch"] <= max_epoch]
        ax.plot([r[args.x] for r in official], [r["acc"] for r in official], "k--o", ms=3,
                label="authors' program (batch 1, GPU)")
        table.append(("authors' program", official))
    for label, rows in runs:
        ax.plot([r[args.x] for r in rows], [r["acc"] for r in rows], "-o", ms=3, label=label)
        table.append((label, rows))
    for (label, value), style in zip(refs, [":", "-.", (0, (5, 1)), (0, (1, 3))] * (1 + len(refs) // 4)):
        ax.axhline(value, color="0.4", linestyle=style, linewidth=1, label=f"{label}: {value:.2f} %")
    ax.set_xlabel("epoch" if args.x == "epoch" else "cumulative training seconds")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(args.experiment)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)

    epochs = sorted({r["epoch"] for _, rows in table for r in rows})
    print("| epoch | " + " | ".join(label for label, _ in table) + " |")
    print("|---|" + "---|" * len(table))
    for e in epochs:
        cells = []
        for _, rows in table:
            hit = [r for r in rows if r["epoch"] == e]
            cells.append(f"{hit[0]['acc']:.2f}" if hit else "")
        print(f"| {e} | " + " | ".join(cells) + " |")
    for label, value in refs:
        print(f"reference line: {label}: {value:.2f} %")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
