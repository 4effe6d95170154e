"""EpochCurve: one row per epoch, and its test score equals Lightning's own test pass."""
from __future__ import annotations

import csv

import pytest

from hm2bp.callbacks import EpochCurve
from tests.helpers.digits import digits_data, digits_model, tiny_trainer


def test_rows_per_epoch_and_test_score_equals_trainer_test(tmp_path):
    model, data = digits_model(), digits_data(batch_size=16)
    curve = EpochCurve()
    trainer = tiny_trainer(tmp_path, [curve], max_epochs=2, limit_test_batches=3)
    trainer.fit(model, datamodule=data)
    rows = list(csv.DictReader(open(tmp_path / "curves.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    # the rate each epoch trained with: digits_model uses lr 5e-3 and lr / sqrt(epoch + 1)
    assert [float(r["lr"]) for r in rows] == pytest.approx([5e-3, 5e-3 / 2**0.5])
    for r in rows:
        assert 0.0 <= float(r["test_acc"]) <= 1.0 and 0.0 <= float(r["val_acc"]) <= 1.0
        assert float(r["train_seconds"]) > 0 and float(r["lr"]) > 0
    # the last row scored the final weights: the same number as a test pass over the same 3 batches
    result = trainer.test(model, datamodule=data, verbose=False)[0]
    assert float(rows[-1]["test_acc"]) == pytest.approx(result["test/acc"], abs=1e-6)


def test_never_testing_leaves_the_column_empty(tmp_path):
    trainer = tiny_trainer(tmp_path, [EpochCurve(test_every_n_epochs=0)], max_epochs=1)
    trainer.fit(digits_model(), datamodule=digits_data())
    rows = list(csv.DictReader(open(tmp_path / "curves.csv")))
    assert len(rows) == 1 and rows[0]["test_acc"] == ""
    with pytest.raises(ValueError, match="test_every_n_epochs"):
        EpochCurve(test_every_n_epochs=-1)
