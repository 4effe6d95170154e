"""``SpikeRasterLogger``: fixed sample and neurons, PNG output, log_image, modes, rank zero, cadence."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from hm2bp.callbacks import SpikeRasterLogger
from tests.helpers.digits import T_DIGITS, digits_data, digits_model, tiny_trainer
from tests.helpers.recording import RecordingLogger


class ImageLogger(RecordingLogger):
    """A logger with ``log_image`` (the WandbLogger signature) that keeps the calls."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict] = []

    def log_image(self, key, images, step=None, **kwargs) -> None:
        self.images.append(dict(key=key, images=images, step=step, **kwargs))


def test_pngs_every_n_epochs_without_an_image_logger(tmp_path, spy):
    cb = SpikeRasterLogger(num_samples=2, max_neurons=30, every_n_epochs=2)
    trainer = tiny_trainer(tmp_path, [cb, spy], max_epochs=3, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(digits_model(), digits_data())
    files = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert files == [f"raster-epoch{e:03d}-{n}.png" for e in (0, 2) for n in ("fc1", "input", "output")]
    w, h = cb.image_size
    assert (w, h) == (640, 320)
    for f in files:
        with Image.open(tmp_path / "plots" / f) as im:
            assert im.format == "PNG" and im.size == (w, h)
    # the fixed sample is the first 2 validation samples
    assert cb._labels.tolist() == spy.val[0][1][:2].tolist()
    assert cb._spikes.dtype == torch.uint8 and tuple(cb._spikes.shape) == (T_DIGITS, 2, 8, 8)


def test_log_image_calls_and_fixed_neurons(tmp_path, spy):
    logger = ImageLogger()
    cb = SpikeRasterLogger(num_samples=3, max_neurons=20, seed=7)
    trainer = tiny_trainer(tmp_path, [cb, spy], logger=logger, max_epochs=2, limit_train_batches=1,
                           limit_val_batches=1)
    trainer.fit(digits_model(), digits_data())
    assert len(list((tmp_path / "plots").glob("raster-epoch*.png"))) == 6  # PNGs too, whatever the logger
    keys = [c["key"] for c in logger.images]
    assert keys == ["spikes/input/raster", "spikes/fc1/raster", "spikes/output/raster"] * 2
    for i, call in enumerate(logger.images):
        (image,) = call["images"]
        assert image.dtype == np.uint8 and image.shape == (3 * 160, 640, 3)
        assert call["caption"][0].startswith(f"epoch {i // 3};")
    labels = spy.val[0][1][:3].tolist()
    assert all(f"{labels[0]}->" in c["caption"][0] for c in logger.images)
    # 100 hidden neurons -> a fixed sorted subset of 20; input 64 -> 20; output 10 -> all
    idx = cb._neurons["fc1"]
    assert idx.numel() == 20 and torch.equal(idx, idx.sort().values) and idx.unique().numel() == 20
    assert cb._neurons["output"] is None and cb._total == {"fc1": 100, "output": 10, "input": 64}
    again = SpikeRasterLogger(max_neurons=20, seed=7)
    again._select("input", torch.zeros(5, 1, 64))
    again._select("fc1", torch.zeros(5, 1, 100))
    assert torch.equal(again._neurons["fc1"], idx)  # same seed and layer order -> same subset


def test_rasters_show_the_selected_neurons_of_an_eval_no_grad_forward(tmp_path):
    model = digits_model()
    dm = digits_data()
    dm.setup("fit")
    spikes, labels, _ = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)  # encoded batch
    cb = SpikeRasterLogger(num_samples=2, max_neurons=30)
    cb.on_validation_batch_end(SimpleNamespace(is_global_zero=True), model, None, (spikes, labels), 0)
    seen = []
    model.network.layers["fc1"].register_forward_hook(
        lambda mod, inp, out: seen.append((mod.training, torch.is_grad_enabled()))
    )
    model.train()
    model.network.layers["output"].eval()  # a mixed state must come back exactly
    layers, preds = cb._run(model)
    assert seen == [(False, False)]
    assert model.training and model.network.layers["fc1"].training and not model.network.layers["output"].training
    with torch.no_grad():
        ref = model.network(spikes[:, :2], return_all=True)
    idx = cb._neurons["fc1"]
    assert torch.equal(layers["fc1"], ref["fc1"].reshape(T_DIGITS, 2, -1)[..., idx].bool())
    assert torch.equal(layers["output"], ref["output"].bool())
    assert preds == ref["output"].sum(0).argmax(-1).tolist()
    assert layers["fc1"].device.type == "cpu" and layers["fc1"].dtype == torch.bool


def test_sample_is_taken_once_across_small_batches_and_only_on_rank_zero():
    cb = SpikeRasterLogger(num_samples=3)
    x = torch.randint(0, 2, (5, 2, 4), dtype=torch.uint8)
    for b in range(3):  # batches of 2 samples: labels 0 1 | 2 3 | 4 5
        batch = (x, torch.tensor([2 * b, 2 * b + 1]))
        cb.on_validation_batch_end(SimpleNamespace(is_global_zero=False), None, None, batch, b)
        assert cb._labels is None
    for b in range(3):
        batch = (x, torch.tensor([2 * b, 2 * b + 1]))
        cb.on_validation_batch_end(SimpleNamespace(is_global_zero=True), None, None, batch, b)
    assert cb._labels.tolist() == [0, 1, 2] and tuple(cb._spikes.shape) == (5, 3, 4)


class _Trainer(SimpleNamespace):
    """A trainer whose ``log_dir`` counts its calls (a collective under DDP: every rank must ask)."""

    asked = 0
    default_root_dir = "."

    @property
    def log_dir(self):
        self.asked += 1
        return None


def test_not_rendered_on_other_ranks_or_in_sanity_check():
    cb = SpikeRasterLogger()
    cb._labels = torch.tensor([0])
    called = []
    cb.log_rasters = lambda trainer, module: called.append(1)
    for rank_zero, sanity in ((False, False), (True, True)):
        trainer = _Trainer(sanity_checking=sanity, is_global_zero=rank_zero, current_epoch=0)
        cb.on_validation_epoch_end(trainer, None)
        assert trainer.asked == (0 if sanity else 1)  # the other rank joins rank 0's log_dir broadcast
    assert called == []
    cb.on_validation_epoch_end(_Trainer(sanity_checking=False, is_global_zero=True, current_epoch=0), None)
    assert called == [1]


def test_bad_options():
    with pytest.raises(ValueError, match="max_neurons"):
        SpikeRasterLogger(max_neurons=0)
