"""scripts/plot_curves.py draws a run over the official curve and prints the plotted numbers."""
from __future__ import annotations

import importlib.util

import pytest
from PIL import Image

from tests.helpers.paths import REPO


def _script():
    spec = importlib.util.spec_from_file_location("plot_curves", REPO / "scripts" / "plot_curves.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_plot_run_over_official_curve(tmp_path, capsys):
    run = tmp_path / "curves.csv"
    run.write_text("epoch,train_acc,val_acc,test_acc,train_seconds,lr\n1,0.9,0.95,0.9612,300.5,0.001\n"
                   "2,0.96,0.97,0.9703,299.0,0.001\n")
    official = tmp_path / "official.csv"
    official.write_text("experiment,epoch,test_acc,best_so_far,epoch_train_seconds,lr\n"
                        "mnist_mlp,1,97.32,97.32,682.8,0.001\nmnist_mlp,2,97.79,97.79,738.7,0.001\n"
                        "mnist_mlp,3,98.04,98.04,778.5,0.0007\nother,1,50,50,1,0.1\n")
    out = tmp_path / "img" / "c.png"
    _script().main(["--experiment", "mnist_mlp", "--official", str(official), "--run", f"ours={run}",
                    "--out", str(out)])
    text = capsys.readouterr().out
    assert "| 1 | 97.32 | 96.12 |" in text and "| 2 | 97.79 | 97.03 |" in text and "| 3 |" not in text
    assert Image.open(out).size[0] > 100


def test_plot_errors_name_the_file(tmp_path):
    with pytest.raises(SystemExit, match="not found"):
        _script().main(["--experiment", "x", "--run", f"a={tmp_path / 'missing.csv'}", "--out", str(tmp_path / "o.png")])
    with pytest.raises(SystemExit, match="LABEL=PATH"):
        _script().main(["--experiment", "x", "--run", "nolabel", "--out", str(tmp_path / "o.png")])


def test_reference_lines(tmp_path, capsys):
    run = tmp_path / "curves.csv"
    run.write_text("epoch,train_acc,val_acc,test_acc,train_seconds,lr\n1,0.9,0.95,0.9612,300.5,0.001\n")
    out = tmp_path / "c.png"
    _script().main(["--experiment", "x", "--run", f"ours={run}", "--ref", "paper, mean=98.84",
                    "--ref", "issue 9=97.3", "--out", str(out)])
    text = capsys.readouterr().out
    assert "reference line: paper, mean: 98.84 %" in text and "reference line: issue 9: 97.30 %" in text
    for bad in ("paper", "paper=high", "=98.8"):
        with pytest.raises(SystemExit, match="LABEL=VALUE"):
            _script().main(["--experiment", "x", "--run", f"ours={run}", "--ref", bad, "--out", str(out)])
