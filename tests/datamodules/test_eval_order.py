"""Validation and test batches come in a fixed seeded order, never class by class, so limited
evaluation (``limit_val_batches``/``limit_test_batches``) and the best-checkpoint choice score every class."""
from __future__ import annotations

import pytorch_lightning as pl
import torch

from hm2bp import SpikeCountLoss, SpikingClassifier, SpikingNetwork
from hm2bp.datamodules import NMNISTDataModule
from hm2bp.datamodules.base import ResumableSampler, evaluation_permutation
from tests.fakes import fake_nmnist

CLASSES = tuple(range(10))


def _class_sorted_nmnist(tmp_path, per_class=20, **kw) -> NMNISTDataModule:
    """A folder stored class by class (Test/0/*, Test/1/*, ...), as N-MNIST and TI46 are."""
    root = fake_nmnist(tmp_path / "data", n_per_class=per_class, classes=CLASSES)
    return NMNISTDataModule(data_dir=str(root), cache_dir=str(tmp_path / "cache"), time_steps=20, stabilize=False,
                            **{"val_size": 40, "batch_size": 20, **kw})


def test_evaluation_order_is_a_fixed_permutation():
    s = ResumableSampler(50, shuffle=False, seed=3)
    first = list(s)
    s.set_epoch(4)
    assert list(s) == first  # the same every epoch
    assert sorted(first) == list(range(50)) and first != list(range(50))
    assert first == evaluation_permutation(50, 3).tolist()
    assert list(ResumableSampler(50, shuffle=False, seed=4)) != first  # keyed by the data seed
    assert list(ResumableSampler(50, shuffle=False, seed=3, permute=False)) == list(range(50))  # predict: dataset order


def test_first_evaluation_batches_hold_many_classes(tmp_path):
    dm = _class_sorted_nmnist(tmp_path)
    dm.setup("fit")
    dm.setup("test")
    assert dm.load_split("test").labels.tolist() == sorted(dm.load_split("test").labels.tolist())  # stored sorted
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        _, _, _, labels, _ = next(iter(loader))
        assert len(set(labels.tolist())) >= 6, labels.tolist()
    predict = next(iter(dm.predict_dataloader()))
    assert predict[4].tolist() == list(range(20))  # predictions keep the dataset order


def test_a_silent_network_is_not_scored_100_percent_on_one_batch(tmp_path):
    """All-silent output predicts class 0; on the first 20 samples of a class-sorted test set that
    would be 100 %. In the evaluation order it is the share of class 0 in a mixed batch."""
    dm = _class_sorted_nmnist(tmp_path)
    pl.seed_everything(0, verbose=False)
    net = SpikingNetwork("2312-20-10", thresholds=[1e6, 1e6])
    model = SpikingClassifier(net, SpikeCountLoss(6, 1, 1))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_test_batches=1, default_root_dir=str(tmp_path / "run"))
    (result,) = trainer.test(model, datamodule=dm)
    assert result["test/silent_output"] == 1.0
    assert result["test/acc"] < 0.4, result
    order = evaluation_permutation(len(dm.test_set), dm.seed)[:20]
    labels = torch.as_tensor(dm.load_split("test").labels)[order]
    assert result["test/acc"] == (labels == 0).float().mean().item()
