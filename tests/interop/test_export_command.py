"""``hm2bp export --config ... --ckpt_path ... --out model.nir`` through the real console entry point."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nir
import pytest
import torch

from hm2bp.cli import cli_main, main
from hm2bp.errors import OutputError
from hm2bp.nir import import_nir
from tests.helpers.cli_args import count_args, tiny_fit_args
from tests.helpers.cli_runs import cli_env

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
    with pytest.raises(OutputError, match="folder .*nowhere does not exist"):
        export_command(["--config", str(DIGITS), "--ckpt_path", str(ckpt), "--out", str(tmp_path / "nowhere/x.nir")])


def hm2bp_export(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hm2bp.cli", "export", *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=240)


def test_export_help_shows_what_it_needs(tmp_path):
    proc = hm2bp_export("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for flag in ("--config FILE", "--ckpt_path FILE", "--out FILE", "--overwrite", "--data.init_args"):
        assert flag in proc.stdout, flag


@pytest.mark.parametrize("args, message", [
    ([], "export: the following arguments are required: -c/--config, --ckpt_path, --out"),
    (["--ckpt_path", "a.ckpt", "--out", "x.nir"], "the following arguments are required: -c/--config"),
    (["--config", str(DIGITS), "--ckpt_path", "missing.ckpt", "--out", "x.nir"],
     "--ckpt_path missing.ckpt: no such checkpoint file"),
    (["--config", str(DIGITS), "--ckpt_path", "a.ckpt", "--out", "nowhere/x.nir"], "nowhere does not exist"),
    (["--config", str(DIGITS), "--ckpt_path", "a.ckpt", "--out", "."], "--out . is a folder"),
    (["--config", str(DIGITS), "--ckpt_path", "a.ckpt", "--out", "old.nir"],
     "--out old.nir already exists; pass --overwrite to replace it"),
    (["--config", "nope.yaml", "--ckpt_path", "a.ckpt", "--out", "x.nir"], "--config nope.yaml: no such file"),
    (["--config", str(DIGITS), "--ckpt_path", "a.ckpt", "--out", "x.nir"], "checkpoint a.ckpt"),
])
def test_export_errors_are_one_line(args, message, tmp_path):
    (tmp_path / "a.ckpt").write_bytes(b"PK")  # not a checkpoint
    (tmp_path / "old.nir").write_bytes(b"old")
    proc = hm2bp_export(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("hm2bp: error: ") and "Traceback" not in proc.stderr
    assert message in proc.stderr.splitlines()[-1] and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert (tmp_path / "old.nir").read_bytes() == b"old" and not (tmp_path / "x.nir").exists()


def test_export_says_what_nir_drops_and_never_overwrites(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit = cli_main(tiny_fit_args(DIGITS, tmp_path) + ["--test_after_fit", "false"])
    ckpt = fit.trainer.checkpoint_callback.last_model_path
    out = tmp_path / "digits.nir"
    args = ["--config", str(DIGITS), "--ckpt_path", ckpt, "--out", str(out), "--data.init_args.time_steps", "30",
            *count_args(30)]

    first = hm2bp_export(*args, "--model.network.init_args.refractory", "2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    notes = [line for line in first.stderr.splitlines() if line.startswith("hm2bp: note: ")]
    assert len(notes) == 2
    assert "no refractory period" in notes[0] and "2 steps in fc1, output" in notes[0]
    assert "lateral inhibition of output (w0 = 1)" in notes[1] and "some importers ignore it" in notes[1]
    written = out.read_bytes()

    again = hm2bp_export(*args, cwd=tmp_path)
    assert again.returncode == 2 and "already exists; pass --overwrite" in again.stderr
    assert out.read_bytes() == written

    replaced = hm2bp_export(*args, "--model.network.init_args.refractory", "0", "--overwrite", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    notes = [line for line in replaced.stderr.splitlines() if line.startswith("hm2bp: note: ")]
    assert len(notes) == 1 and "lateral inhibition" in notes[0]  # refractory 0: nothing dropped there
    assert nir.read(out).nodes["fc1_lif"].metadata["refractory_steps"] == 0
