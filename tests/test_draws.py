"""Test-time averaging over input spike draws (``hm2bp.draws``, ``scripts/average_draws.py``): draw 0 is
the split's fixed train, redraws are new and reproducible, one draw scores what ``trainer.test`` scores,
k draws sum the output counts, and bad requests get one clear error."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from hm2bp.draws import average_draws
from hm2bp.errors import ConfigError
from tests.helpers.cli_runs import small_digits_run
from tests.helpers.digits import digits_data, digits_model, tiny_trainer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A digits model after a short fit, and its datamodule."""
    model, data = digits_model(), digits_data(batch_size=32)
    tiny_trainer(tmp_path_factory.mktemp("fit"), callbacks=[], max_epochs=1, limit_train_batches=8).fit(model, data)
    return model.eval(), data


def test_draw_zero_is_the_evaluation_train_and_redraws_are_new(fitted):
    _, data = fitted
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    images, _, index = batch
    fixed = data.to_spikes(batch, "test")[0]
    assert torch.equal(data.encode_draw(images, index, "test", 0), fixed)
    one, two = (data.encode_draw(images, index, "test", d) for d in (1, 2))
    assert not torch.equal(one, fixed) and not torch.equal(one, two)
    assert torch.equal(data.encode_draw(images, index, "test", 1), one)  # a pure function of (seed, split, index, draw)
    # the same rates: mean spike counts per image agree to a few percent
    counts = torch.stack([s.sum((0, 2, 3)).float() for s in (fixed, one, two)])
    assert torch.allclose(counts[1:], counts[0].expand(2, -1), rtol=0.25)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="draw must be"):
            data.encode_draw(images, index, "test", bad)
    with pytest.raises(ValueError, match="evaluation splits"):
        data.encode_draw(images, index, "train", 1)


def test_one_draw_scores_what_trainer_test_scores(fitted, tmp_path):
    model, data = fitted
    tested = tiny_trainer(tmp_path, callbacks=[]).test(model, data, verbose=False)[0]["test/acc"]
    result = average_draws(model, data, 1)
    assert result.samples == 360 and result.draws == 1
    assert result.averaged[0] == pytest.approx(tested, abs=1e-6) and result.single == result.averaged


def test_k_draws_sum_the_output_counts(fitted):
    model, data = fitted
    data.setup("test")
    result = average_draws(model, data, 3, limit_batches=2)
    correct_sum, correct_single, n = [0, 0, 0], [0, 0, 0], 0
    with torch.no_grad():
        for i, (images, labels, index) in enumerate(data.test_dataloader()):
            if i == 2:
                break
            per_draw = [model(data.encode_draw(images, index, "test", d)) for d in range(3)]
            for d in range(3):
                summed = torch.stack(per_draw[: d + 1]).sum(0)
                correct_sum[d] += int((summed.argmax(-1) == labels).sum())
                correct_single[d] += int((per_draw[d].argmax(-1) == labels).sum())
            n += labels.numel()
    assert result.samples == n == 64
    assert result.averaged == tuple(c / n for c in correct_sum)
    assert result.single == tuple(c / n for c in correct_single)
    assert [r["draws"] for r in result.rows()] == [1, 2, 3]
    assert not model.training  # the model's mode is restored


def test_bad_requests_give_one_clear_error(fitted):
    model, data = fitted
    for draws in (0, -2, 2.0, True):
        with pytest.raises(ConfigError, match="draws must be"):
            average_draws(model, data, draws)
    with pytest.raises(ConfigError, match="split must be one of"):
        average_draws(model, data, 2, "train")
    with pytest.raises(ConfigError, match="cannot redraw.*rate-coded image datamodule"):
        average_draws(model, object(), 2)
    no_val = digits_data(val_size=0)
    with pytest.raises(ConfigError, match="val split is empty"):
        average_draws(model, no_val, 2, "val")


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> Path:
    return small_digits_run(tmp_path_factory.mktemp("runs"), epochs=1)


def _script():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import average_draws as script
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return script


def test_script_scores_a_run_folder(cli_run, tmp_path, capsys):
    import hm2bp

    script = _script()
    out = tmp_path / "draws.json"
    assert script.main([str(cli_run), "--draws", "2", "--limit-batches", "3", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| draws k | summed counts % | draw k alone % |" in table
    numbers = json.loads(out.read_text())
    assert numbers["split"] == "test" and numbers["samples"] == 48 and len(numbers["rows"]) == 2
    # the same numbers from the library on the run's model and its config's datamodule (T = 30)
    data = script.run_datamodule(cli_run, None, None)
    assert data.time_steps == 30
    expected = average_draws(hm2bp.load(cli_run), data, 2, limit_batches=3)
    assert [r["averaged"] for r in numbers["rows"]] == list(expected.averaged)
    assert f"| 1 | {100 * expected.averaged[0]:.2f} |" in table
    # a checkpoint inside the run, and the folder of runs (its latest run), work too
    best = next((cli_run / "checkpoints").glob("*.ckpt"))
    for source in (best, cli_run.parent):
        assert script.main([str(source), "--draws", "1", "--limit-batches", "1"]) == 0
        assert capsys.readouterr().out.startswith(f"{cli_run}: test split, 16 samples")
    # a path outside any run is one error line
    assert script.main([str(tmp_path)]) == 2
    assert "holds no run of hm2bp fit" in capsys.readouterr().err
    stray = tmp_path / "stray.ckpt"
    stray.write_bytes(b"x")
    assert script.main([str(stray)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
