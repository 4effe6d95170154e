"""``fit --test_after_fit``, ``test`` and ``validate`` print their score with the number of samples scored."""
from __future__ import annotations

import re

from tests.helpers.cli_args import SMALL
from tests.helpers.cli_runs import run_cli, run_folder
from tests.helpers.paths import DIGITS

SCORE = re.compile(r"^(TEST|VALIDATION) ACCURACY: (\d+\.\d\d) % on (\d+) samples \(checkpoint: (.+?)[,)]", re.M)


def _args(verb: str, root) -> list[str]:
    return [verb, "--config", str(DIGITS), "--trainer.accelerator", "cpu", "--trainer.devices", "1",
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root), *SMALL]


def test_scores_name_the_samples_and_the_checkpoint(tmp_path):
    fit = run_cli(_args("fit", tmp_path) + ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                                            "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "3",
                                            "--test_after_fit", "true"], cwd=tmp_path)
    ((stage, _, samples, ckpt),) = SCORE.findall(fit.stdout)
    assert (stage, samples) == ("TEST", "24")  # 3 batches of 8
    run = run_folder(tmp_path)
    assert ckpt.startswith(str(run / "checkpoints"))

    test = run_cli(_args("test", tmp_path) + ["--ckpt_path", "last"], cwd=tmp_path)
    ((stage, acc, samples, ckpt),) = SCORE.findall(test.stdout)
    assert (stage, samples, ckpt) == ("TEST", "360", str(run / "checkpoints" / "last.ckpt"))  # digits' test split
    assert 0.0 <= float(acc) <= 100.0

    val = run_cli(_args("validate", tmp_path) + ["--ckpt_path", "last", "--trainer.limit_val_batches", "2"],
                  cwd=tmp_path)
    ((stage, _, samples, _),) = SCORE.findall(val.stdout)
    assert (stage, samples) == ("VALIDATION", "16")
