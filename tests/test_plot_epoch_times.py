"""scripts/plot_epoch_times.py draws the latest epoch time per (network, device, processes) and names bad columns."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from PIL import Image

from tests.helpers.paths import REPO

SCRIPT = REPO / "scripts" / "plot_epoch_times.py"
HEADER = "date,device,network,epoch_seconds,processes,threads,command,note\n"


def _script():
    spec = importlib.util.spec_from_file_location("plot_epoch_times", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_latest_epoch_per_group_is_drawn(tmp_path, capsys):
    data = tmp_path / "epochs.csv"
    data.write_text(HEADER
                    + '2026-11-29,CPU,MLP,389,1,,"hm2bp fit --config a.yaml",quiet\n'
                    + "2026-11-30,CPU,MLP,434,1,1,hm2bp fit --config b.yaml,\n"
                    + "2026-11-30,CPU,MLP,420,1,1,hm2bp fit --config c.yaml,listed last that day\n"
                    + "2026-11-30,GPU,MLP,101.3,1,,hm2bp fit --trainer.accelerator gpu,H200\n"
                    + "2026-11-30,CPU,CNN,3873,2,1,hm2bp fit --trainer.devices 2,DDP\n")
    out = tmp_path / "img" / "epochs.png"
    _script().main(["--csv", str(data), "--out", str(out)])
    text = capsys.readouterr().out
    assert "| MLP | CPU | 1 x 1 | 7 min (420 s) | 2026-11-30 | 2 | `hm2bp fit --config c.yaml` |" in text
    assert "| MLP | GPU | 1 (threads not recorded) | 101.3 s | 2026-11-30 | 0 |" in text
    assert "| CNN | CPU | 2 x 1 | 64 min 33 s (3873 s) | 2026-11-30 | 0 |" in text
    assert "target: CNN, CPU: 30 min" in text
    assert Image.open(out).format == "PNG" and Image.open(out).size[0] > 100


def test_a_missing_column_is_named(tmp_path):
    data = tmp_path / "epochs.csv"
    data.write_text(HEADER.replace("network,", "") + "2026-11-30,CPU,434,1,1,hm2bp fit,\n")
    with pytest.raises(SystemExit, match=r"lacks the column network \(expected"):
        _script().main(["--csv", str(data), "--out", str(tmp_path / "o.png")])
    # from the command line: one line naming the column, no traceback
    proc = subprocess.run([sys.executable, str(SCRIPT), "--csv", str(data), "--out", str(tmp_path / "o.png")],
                          capture_output=True, text=True, env=dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1"))
    assert proc.returncode == 1
    assert "lacks the column network" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.png").exists()


def test_bad_values_name_the_line(tmp_path):
    data = tmp_path / "epochs.csv"
    data.write_text(HEADER + "2026-11-30,CPU,MLP,fast,1,1,hm2bp fit,\n")
    with pytest.raises(SystemExit, match=r"epochs.csv:2: .*epoch_seconds a number"):
        _script().main(["--csv", str(data), "--out", str(tmp_path / "o.png")])
    data.write_text(HEADER)
    with pytest.raises(SystemExit, match="has no rows"):
        _script().main(["--csv", str(data), "--out", str(tmp_path / "o.png")])


def test_the_repository_csv_is_readable():
    rows = _script().read_rows(REPO / "docs" / "data" / "epoch_times.csv")
    assert {(r["network"], r["device"]) for r in rows} >= {("MLP", "CPU"), ("MLP", "GPU"), ("CNN", "CPU")}
    assert all(r["command"].strip() for r in rows)
