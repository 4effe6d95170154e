"""`make demo` (the digits experiment, full budget) reaches at least 90% test accuracy."""
from __future__ import annotations

from pathlib import Path

import pytest

from hm2bp.cli import cli_main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_digits_demo_reaches_90_percent(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cli = cli_main([
        "fit", "--config", str(REPO / "configs/experiment/digits.yaml"),
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path),
        "--trainer.logger.init_args.save_dir", str(tmp_path),
    ])
    acc = float(cli.trainer.callback_metrics["test/acc"])
    print(f"digits demo test accuracy: {acc:.4f}")
    assert "TEST ACCURACY" in capsys.readouterr().out
    assert acc >= 0.90, f"digits demo reached only {acc:.2%}"
