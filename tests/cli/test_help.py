"""``hm2bp --help``, ``hm2bp <verb> --help`` (one screen) and ``--help full``, through the console entry point."""
from __future__ import annotations

import subprocess
import sys

import pytest

from hm2bp.cli_help import OPTIONS, VERBS
from tests.helpers.cli_runs import cli_env
from tests.helpers.paths import MNIST, REPO


def hm2bp(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hm2bp.cli", *args], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def test_main_help_lists_every_verb_and_option_one_line_each():
    proc = hm2bp("--help")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for verb in VERBS:
        assert any(line.split()[:1] == [verb] for line in lines), verb
    for flag in ("--config", "--ckpt_path", "--threads", "--debug", "--seed_everything", "--test_after_fit",
                 "--allocator", "--print_config", "--overwrite", "--help"):
        line = next(line for line in lines if line.startswith("  -") and flag in line[:34])
        assert line[34:].strip(), f"{flag}: its text is not on its line: {line!r}"
    assert len(lines) < 40 and max(map(len, lines)) <= 100


@pytest.mark.parametrize("verb", ["fit", "validate", "test", "predict"])
def test_verb_help_fits_on_a_screen_or_two(verb):
    proc = hm2bp(verb, "--help")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert len(out.splitlines()) < 60 and max(map(len, out.splitlines())) <= 100
    for flag in ("--config", "--data.init_args.data_dir", "--trainer.devices", "--trainer.accelerator",
                 "--ckpt_path", "--seed_everything", "--threads", f"hm2bp {verb} --help full"):
        assert flag in out, flag
    if verb == "fit":
        assert "--trainer.max_epochs" in out and "--model.network.init_args.thresholds" in out
        lines = out.splitlines()
        first = {flag: next(k for k, line in enumerate(lines) if flag in line)
                 for flag in ("--config", "--trainer.max_epochs", "--model.network.init_args.thresholds",
                              "--print_config")}
        assert first["--config"] < first["--trainer.max_epochs"] < first["--print_config"]  # the options people change lead


def test_help_full_is_lightnings_complete_help():
    proc = hm2bp("fit", "--help", "full")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert len(out.splitlines()) > 1000
    for flag in ("--trainer.gradient_clip_val", "--trainer.max_epochs", "--model.network", "--threads",
                 "--allocator", "--test_after_fit", "--ckpt_path", "--weights_only"):
        assert flag in out, flag


@pytest.mark.parametrize("verb", ["fit", "test"])
def test_every_option_the_short_page_names_parses(verb, tmp_path):
    """Each option of the verb's page, with its example value, is accepted by the parser (no drift)."""
    args = [verb, "--config", str(MNIST)]
    for opt in OPTIONS:
        if verb in opt.verbs and opt.example is not None and not opt.flag.startswith("-c,"):
            args += [opt.flag.split()[0], opt.example]
    proc = hm2bp(*args, "--print_config")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "data_dir: /tmp/data" in proc.stdout and "threads: 2" in proc.stdout
    if verb == "fit":
        assert "max_epochs: 3" in proc.stdout and "- 20.0" in proc.stdout


@pytest.mark.parametrize("args, message", [
    ([], "give a verb: fit, validate, test, predict, export"),
    (["train"], "unknown verb 'train': choose fit, validate, test, predict, export"),
    (["fit"], "fit needs --config FILE"),
    (["test", "--ckpt_path", "last"], "test needs --config FILE"),
])
def test_usage_errors_are_one_line(args, message):
    proc = hm2bp(*args)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("hm2bp: error: ")
    assert message in proc.stderr
