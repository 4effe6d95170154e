"""``SpikingClassifier``'s per-stage MetricCollections: logged names, and checkpoints written before them."""
from __future__ import annotations

import torch
from torchmetrics import MetricCollection

from hm2bp import SpikingClassifier, SpikingNetwork
from hm2bp.module import METRICS, STAGES


def _model() -> SpikingClassifier:
    return SpikingClassifier(SpikingNetwork("4-3-2", thresholds=[1.0, 1.0]))


def test_one_collection_per_stage_with_separate_states():
    model = _model()
    for stage in STAGES:
        metrics = model.stage_metrics(stage)
        assert isinstance(metrics, MetricCollection) and set(metrics.keys()) == set(METRICS)
    assert model.stage_metrics("train")["acc"] is not model.stage_metrics("val")["acc"]
    model.stage_metrics("train")["loss"].update(torch.tensor(3.0))
    model.stage_metrics("train")["silent_output"].update(torch.tensor(0.0))
    assert float(model.stage_metrics("train")["loss"].compute()) == 3.0
    assert float(model.stage_metrics("train")["silent_output"].compute()) == 0.0


def test_training_metric_states_are_in_the_checkpoint_and_old_names_load():
    model = _model()
    model.stage_metrics("train")["acc"].update(torch.tensor([1, 0]), torch.tensor([1, 1]))
    state = model.state_dict()
    train_keys = [k for k in state if k.startswith("train_metrics.")]
    assert {k.split(".")[1] for k in train_keys} == set(METRICS)
    assert not any(k.startswith(("val_metrics.", "test_metrics.")) for k in state)
    # a checkpoint of the version before the collections: train_acc.*, train_loss.*, train_silent.*
    old_names = {"acc": "train_acc", "loss": "train_loss", "silent_output": "train_silent"}
    old = {}
    for k, v in state.items():
        if k.startswith("train_metrics."):
            _, member, rest = k.split(".", 2)
            old[f"{old_names[member]}.{rest}"] = v.clone()
        else:
            old[k] = v
    ckpt = {"state_dict": old, "epoch": 0}
    fresh = _model()
    fresh.on_load_checkpoint(ckpt)
    fresh.load_state_dict(ckpt["state_dict"], strict=True)
    assert float(fresh.stage_metrics("train")["acc"].compute()) == 0.5
