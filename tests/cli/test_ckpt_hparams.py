"""``--ckpt_path`` applies a checkpoint's hyper-parameters, except the network's and the loss's settings:
the config and the command line keep those (hm2bp.cli_private, ``_parse_ckpt_path``)."""
from __future__ import annotations

import yaml

from tests.helpers.cli_args import SMALL, tiny_fit_args
from tests.helpers.cli_runs import run_cli, run_folder
from tests.helpers.paths import REPO

DIGITS = REPO / "configs" / "experiment" / "digits.yaml"


def test_command_line_network_flags_beat_the_checkpoint_settings(tmp_path):
    fit = run_cli([*tiny_fit_args(DIGITS, tmp_path), *SMALL, "--test_after_fit", "false"], cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-2000:]
    run = run_folder(tmp_path)
    ckpt = run / "checkpoints" / "last.ckpt"
    # the checkpoint holds thresholds [5, 4] and desired 6; validate with thresholds [4, 3] and desired 5
    other = [a if a not in ("[5,4]", "6") else {"[5,4]": "[4,3]", "6": "5"}[a] for a in SMALL]
    args = [a if a != "fit" else "validate" for a in tiny_fit_args(DIGITS, tmp_path)]
    args = [a for a in args if a != "--test_after_fit"]
    val = run_cli([*args, *other, "--ckpt_path", str(ckpt)], cwd=tmp_path)
    assert val.returncode == 0, val.stderr[-2000:]
    configs = sorted(run.glob("validate-*/config.yaml"))
    assert len(configs) == 1, list(run.iterdir())
    model = yaml.safe_load(configs[0].read_text())["model"]
    assert model["network"]["init_args"]["thresholds"] == [4, 3]
    assert model["loss"]["init_args"]["desired"] == 5
