"""The authors' boosting (docs/algorithm.md, "Boosting"): the per-sample weights against a hand
computation and against an independent recomputation from a real run's recorded predictions; the
weighted output error; epoch 1 unchanged by it; checkpoints; one clear error without indices."""
from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch

from hm2bp import SampleBoosting, SpikeCountLoss, SpikingClassifier
from hm2bp.errors import ConfigError
from tests.helpers.cli_runs import run_cli
from tests.helpers.digits import digits_data, digits_model, tiny_trainer
from tests.helpers.paths import REPO


def test_update_matches_hand_computation():
    boost = SampleBoosting()
    boost.begin(0)
    # six samples, classes 0 and 1; indices need not be contiguous (sample 3 never seen)
    index = torch.tensor([0, 1, 2, 4, 5, 6])
    target = torch.tensor([0, 0, 0, 1, 1, 1])
    preds = torch.tensor([0, 1, 1, 1, 0, 1])  # class 0: samples 1, 2 wrong; class 1: sample 5 wrong
    assert torch.equal(boost.batch_weights(index), torch.ones(6))  # epoch 1: all weights 1
    boost.record(index, target, preds)
    assert boost.begin(1)  # a new epoch applies the update of the records held
    err0, err1 = 2 / 3, 1 / 3
    expected = torch.tensor([1, math.exp(err0 / 20), math.exp(err0 / 20), 1, 1, math.exp(err1 / 20), 1],
                            dtype=torch.float64)
    assert torch.allclose(boost.weights, expected, rtol=0, atol=1e-15)
    assert boost.last_errors == pytest.approx({"0": err0, "1": err1})
    assert not boost.begin(1)  # once per epoch
    # second epoch: the class error is weighted by the current weights
    w = boost.weights.clone()
    boost.record(torch.tensor([1, 2, 4]), torch.tensor([0, 0, 1]), torch.tensor([1, 0, 1]))
    boost.record(torch.tensor([0]), torch.tensor([0]), torch.tensor([0]))
    boost.begin(2)
    err0 = float(w[1] / (w[0] + w[1] + w[2]))
    assert boost.weights[1] == pytest.approx(float(w[1]) * math.exp(err0 / 20), rel=1e-15)
    assert torch.equal(boost.weights[[0, 2, 4, 5]], w[[0, 2, 4, 5]])
    assert bool((boost.weights <= math.exp(0.05) ** 2 + 1e-12).all())  # at most e^0.05 per epoch


def test_weight_scales_the_output_error():
    counts = torch.tensor([[40.0, 0.0, 12.0], [3.0, 30.0, 9.0]], requires_grad=True)
    target = torch.tensor([0, 1])
    SpikeCountLoss()(counts, target).backward()
    g = counts.grad.clone()
    counts.grad = None
    beta = torch.tensor([1.25, 0.5])
    SpikeCountLoss()(counts, target, weight=beta).backward()
    assert torch.equal(counts.grad, g * beta[:, None])


class Recorder(pl.Callback):
    """Each training batch's (index, label, prediction), in order."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.rows.append((trainer.current_epoch, batch[2].clone(), outputs["target"].clone(), outputs["preds"].clone()))


def _fit(tmp_path, boosting, epochs, callbacks=()):
    model = digits_model()
    model.boosting = SampleBoosting() if boosting else None
    trainer = tiny_trainer(tmp_path, list(callbacks), max_epochs=epochs, limit_train_batches=6, limit_val_batches=0)
    trainer.fit(model, datamodule=digits_data(batch_size=16))
    return model


def test_real_run_weights_equal_recomputation_and_epoch_one_is_unchanged(tmp_path):
    rec = Recorder()
    boosted = _fit(tmp_path / "a", True, 3, [rec])
    # independent recomputation: plain Python over the recorded predictions of epochs 1 and 2
    weights: dict[int, float] = {}
    for epoch in (0, 1):
        rows = [r for r in rec.rows if r[0] == epoch]
        seen = {int(i): (int(y), int(p)) for _, idx, ys, ps in rows for i, y, p in zip(idx, ys, ps)}
        classes = {y for y, _ in seen.values()}
        for c in classes:
            members = [i for i, (y, _) in seen.items() if y == c]
            wrong = [i for i in members if seen[i][1] != c]
            err = sum(weights.get(i, 1.0) for i in wrong) / sum(weights.get(i, 1.0) for i in members)
            for i in wrong:
                weights[i] = weights.get(i, 1.0) * math.exp(err / 20)
    assert any(v > 1 for v in weights.values())
    # the model applied epoch 2's update when epoch 3 began
    for i, v in weights.items():
        assert float(boosted.boosting.weights[i]) == pytest.approx(v, rel=1e-12)
    untouched = set(range(boosted.boosting.weights.numel())) - set(weights)
    assert all(float(boosted.boosting.weights[i]) == 1.0 for i in untouched)
    # during the first epoch every weight is 1: the first epoch trains exactly as without boosting
    one_a = _fit(tmp_path / "b", True, 1)
    one_b = _fit(tmp_path / "c", False, 1)
    for (name, a), (_, b) in zip(one_a.network.state_dict().items(), one_b.network.state_dict().items()):
        assert torch.equal(a, b), name


def test_state_dict_round_trip_of_any_size():
    boost = SampleBoosting()
    boost.begin(0)
    boost.record(torch.tensor([3, 7]), torch.tensor([1, 2]), torch.tensor([0, 2]))
    boost.begin(1)
    fresh = SampleBoosting()
    fresh.load_state_dict(boost.state_dict())
    assert torch.equal(fresh.weights, boost.weights) and int(fresh.records_epoch) == 1
    assert fresh.weights.numel() == 8 and float(fresh.weights[3]) > 1
    # a checkpoint of a run without boosting: turning it on at resume starts from weights 1
    model = SpikingClassifier(digits_model().network, boosting=SampleBoosting())
    plain = SpikingClassifier(digits_model().network).state_dict()
    model.load_state_dict(plain)
    assert model.boosting.weights.numel() == 0 and int(model.boosting.records_epoch) == -1
    # and the reverse: a boosted run's checkpoint tested by a model without boosting
    plain_model = SpikingClassifier(digits_model().network)
    ckpt = {"state_dict": model.state_dict(), "epoch": 0}
    ckpt["state_dict"]["boosting.weights"] = torch.ones(5, dtype=torch.float64)
    plain_model.on_load_checkpoint(ckpt)
    plain_model.load_state_dict(ckpt["state_dict"])  # strict: no boosting keys left


def test_boosting_without_sample_index_is_one_clear_error():
    model = SpikingClassifier(digits_model().network, boosting=SampleBoosting())
    spikes = torch.zeros(100, 2, 8, 8, dtype=torch.uint8)
    with pytest.raises(ConfigError, match="model.boosting needs each training batch's sample index"):
        model.model_step((spikes, torch.tensor([0, 1])), "train")


def test_cli_config_turns_boosting_on(tmp_path):
    """``--model.boosting hm2bp.SampleBoosting`` on the digits experiment: two epochs, and the
    checkpoint carries the weights (some above 1 after the first epoch's update)."""
    root = tmp_path / "runs"
    proc = run_cli(["fit", "--config", str(REPO / "configs/experiment/digits.yaml"), "--model.boosting",
                    "hm2bp.SampleBoosting", "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "6",
                    "--trainer.limit_val_batches", "2", "--trainer.enable_progress_bar", "false",
                    "--trainer.default_root_dir", str(root), "--test_after_fit", "false",
                    "--trainer.logger", "false"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = next(root.glob("**/last.ckpt"))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    weights = state["boosting.weights"]
    assert weights.numel() > 0 and float(weights.max()) > 1.0 and float(weights.max()) <= math.exp(0.05)


def _records() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """24 of 40 samples, three classes, about 40 % misclassified; sorted by sample index."""
    g = torch.Generator().manual_seed(3)
    index = torch.randperm(40, generator=g)[:24].sort().values
    target = torch.randint(0, 3, (24,), generator=g)
    preds = torch.where(torch.rand(24, generator=g) < 0.4, (target + 1) % 3, target)
    return index, target, preds


def _rank_update(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """One gloo rank: record its share of the epoch (rank 0 the 12 lowest sample indices, so its
    tables are shorter than rank 1's), update, save the weights."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        boost = SampleBoosting()
        boost.begin(0)
        share = slice(0, 12) if rank == 0 else slice(12, 24)
        index, target, preds = _records()
        boost.record(index[share], target[share], preds[share])
        boost.begin(1)
        torch.save(boost.weights, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ranks_merge_their_records_before_the_update(tmp_path):
    """Two gloo processes, each recording a disjoint share of an epoch: both end with the weights
    one process gets from all the records (the merge is what makes them agree)."""
    import torch.multiprocessing as mp

    mp.spawn(_rank_update, args=(2, str(tmp_path / "pg"), str(tmp_path)), nprocs=2, join=True)
    single = SampleBoosting()
    single.begin(0)
    single.record(*_records())
    single.begin(1)
    assert float(single.weights.max()) > 1.0
    for rank in (0, 1):
        assert torch.equal(torch.load(tmp_path / f"rank{rank}.pt", weights_only=True), single.weights)
