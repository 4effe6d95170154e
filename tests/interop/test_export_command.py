"""``hm2bp export --config ... --ckpt_path ... --out model.nir`` through the real console entry point."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nir
import pytest
import torch

from hm2bp.cli import cli_main, main
from hm2bp.nir import import_nir
from tests.helpers.cli_args import tiny_fit_args

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "configs/experiment/digits_nir.yaml"


def test_export_a_trained_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit = cli_main(tiny_fit_args(DIGITS, tmp_path) + ["--test_after_fit", "false"])
    ckpt = fit.trainer.checkpoint_callback.last_model_path
    assert Path(ckpt).is_file()
    out = tmp_path / "digits.nir"
    monkeypatch.setattr(sys, "argv", ["hm2bp", "export", "--config", str(DIGITS), "--ckpt_path", ckpt,
                                      "--out", str(out), "--data.init_args.time_steps", "30"])
    main()
    graph = nir.read(out)
    encoding = json.loads(graph.metadata["input_encoding"])
    assert encoding["datamodule"].endswith("DigitsDataModule") and encoding["time_steps"] == 30
    back = import_nir(graph)
    assert back.layers["fc1"].refractory == 0 and back.layers["output"].lateral_inhibition == 1.0
    for name, p in fit.model.network.named_parameters():
        assert torch.equal(p.detach(), dict(back.named_parameters())[name])
    assert not list(tmp_path.glob("digits.nir.tmp-*"))


def test_export_errors_come_before_any_work(tmp_path):
    from hm2bp.nir.command import export_command

    with pytest.raises(FileNotFoundError, match="--ckpt_path .*missing.ckpt: no such checkpoint file"):
        export_command(["--config", str(DIGITS), "--ckpt_path", str(tmp_path / "missing.ckpt"), "--out", "x.nir"])
    ckpt = tmp_path / "a.ckpt"
    ckpt.write_bytes(b"PK")
    with pytest.raises(FileNotFoundError, match="folder .*nowhere does not exist"):
        export_command(["--config", str(DIGITS), "--ckpt_path", str(ckpt), "--out", str(tmp_path / "nowhere/x.nir")])
