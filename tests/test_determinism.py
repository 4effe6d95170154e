"""Same seed -> identical metrics and weights; the batches do not depend on ``num_workers``."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hm2bp.cli import cli_main
from hm2bp.datamodules import DigitsDataModule
from tests.helpers.cli_args import count_args

REPO = Path(__file__).resolve().parents[1]


def _fit(tmp_path: Path, name: str):
    root = tmp_path / name
    cli = cli_main([
        "fit", "--config", str(REPO / "configs/experiment/digits.yaml"),
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
        "--trainer.logger", "false", "--trainer.enable_checkpointing", "false", "--trainer.callbacks", "[]",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root), "--test_after_fit", "false",
        "--data.init_args.time_steps", "30", "--data.init_args.batch_size", "8",
        "--model.network.init_args.thresholds", "[5,4]", *count_args(30),
    ])
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    return metrics, {k: v.clone() for k, v in cli.model.network.state_dict().items()}


def test_same_seed_gives_identical_metrics_and_weights(tmp_path):
    m1, w1 = _fit(tmp_path, "a")
    m2, w2 = _fit(tmp_path, "b")
    assert m1 and m1 == m2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def _encoded_batches(num_workers: int, epochs=(0, 1)):
    dm = DigitsDataModule(time_steps=20, batch_size=16, num_workers=num_workers, seed=3)
    dm.setup("fit")
    loader = dm.train_dataloader()
    out = []
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        for k, (images, labels, index) in enumerate(loader):
            if k == 4:
                break
            out.append((index.clone(), labels.clone(), dm.encode(images, index, "train", epoch)))
    return out


def test_batches_and_encodings_do_not_depend_on_num_workers():
    single = _encoded_batches(0)
    multi = _encoded_batches(2)
    assert len(single) == len(multi) == 8
    for (i0, y0, s0), (i2, y2, s2) in zip(single, multi):
        assert torch.equal(i0, i2) and torch.equal(y0, y2) and torch.equal(s0, s2)
    assert not torch.equal(single[0][0], single[4][0])  # epochs are shuffled differently
    assert single[0][2].sum() > 0


def test_swap_order_is_the_authors_partial_shuffle():
    """File order plus 5000 swaps per epoch, cumulative, keyed by (seed, epoch) only."""
    from hm2bp.datamodules.base import ResumableSampler, swap_permutation

    n = 60000
    e0, e1 = swap_permutation(n, 0, 0), swap_permutation(n, 0, 1)
    assert sorted(e0.tolist()) == list(range(n))
    moved0 = int((e0 != torch.arange(n)).sum())
    assert 0 < moved0 <= 2 * 5000  # each swap moves at most two samples
    assert int((e1 != torch.arange(n)).sum()) > moved0  # the swaps accumulate over epochs
    assert torch.equal(e1, swap_permutation(n, 0, 1)) and not torch.equal(e1, swap_permutation(n, 1, 1))
    s = ResumableSampler(n, shuffle=True, seed=0, order="swaps")
    s.set_epoch(1)
    assert s.indices() == e1.tolist()
    # the order is checked once, where the user gives it (the datamodule), not again by the sampler
    from hm2bp.datamodules import MNISTDataModule
    from hm2bp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data\.init_args\.order must be one of \('permutation', 'swaps'\)"):
        MNISTDataModule(order="sorted")
