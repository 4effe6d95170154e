"""Official CNN augmentation (datamodules/augment.py) and its MNISTDataModule option."""
from __future__ import annotations

import math

import pytest
import torch

from hm2bp.datamodules import MNISTDataModule
from hm2bp.datamodules.augment import gaussian_field_kernel, random_distortion


def _digit(B=3, H=28, W=28):
    img = torch.zeros(B, H, W, dtype=torch.uint8)
    img[:, 6:22, 12:16] = 255  # a vertical bar
    img[:, 6:9, 8:20] = 200
    return img


def test_zero_magnitudes_are_the_identity():
    x = _digit()
    out = random_distortion(x, index=torch.arange(3), elastic=0, scale=0, rotation=0)
    assert out.dtype == torch.uint8 and torch.equal(out, x)
    xf = x.float() / 255
    torch.testing.assert_close(random_distortion(xf, index=torch.arange(3), elastic=0, scale=0, rotation=0), xf)


def test_deterministic_per_seed_index_epoch():
    x = _digit()
    idx = torch.tensor([5, 6, 7])
    a = random_distortion(x, index=idx, epoch=2, seed=1)
    assert torch.equal(a, random_distortion(x, index=idx, epoch=2, seed=1))
    # a sample's distortion does not depend on its batch neighbours
    assert torch.equal(a[1:2], random_distortion(x[1:2], index=idx[1:2], epoch=2, seed=1))
    assert not torch.equal(a, random_distortion(x, index=idx, epoch=3, seed=1))
    assert not torch.equal(a, random_distortion(x, index=idx, epoch=2, seed=2))
    assert not torch.equal(a[0], a[1])  # different samples, different fields


def test_distortion_is_mild_and_mass_preserving():
    x = _digit(B=16)
    out = random_distortion(x, index=torch.arange(16))
    mass_in, mass_out = x.float().sum((1, 2)), out.float().sum((1, 2))
    ratio = mass_out / mass_in
    assert ((ratio > 0.7) & (ratio < 1.35)).all(), ratio  # scale <= 12 %: area within (0.88^2, 1.12^2)
    changed = (out.float() - x.float()).abs().mean((1, 2))
    assert (changed > 0).all()


def test_pure_rotation_moves_pixels_by_at_most_the_angle():
    x = torch.zeros(1, 29, 29)
    x[0, 14, 24] = 1.0  # 10 px right of the centre
    out = random_distortion(x, index=torch.tensor([0]), elastic=0, scale=0, rotation=12.0)
    ys, xs = torch.meshgrid(torch.arange(29.0), torch.arange(29.0), indexing="ij")
    m = out[0].sum()
    cy, cx = float((out[0] * ys).sum() / m), float((out[0] * xs).sum() / m)
    angle = math.degrees(math.atan2(cy - 14, cx - 14))
    assert abs(angle) <= 12.0 + 1e-3 and abs(math.hypot(cy - 14, cx - 14) - 10) < 0.5


def test_gaussian_field_kernel():
    k = gaussian_field_kernel(4.0, 21)
    assert k.shape == (21, 21) and k.argmax() == 220
    assert float(k[10, 10]) == pytest.approx(1 / (8 * math.pi))
    with pytest.raises(ValueError, match="odd"):
        gaussian_field_kernel(4.0, 20)


def test_mnist_datamodule_augments_training_batches_only(tmp_path):
    dm = MNISTDataModule(data_dir=str(tmp_path), augment=True, time_steps=5)
    x, idx = _digit(), torch.tensor([0, 1, 2])
    dm._batch_index = idx
    assert torch.equal(dm.augment(x, "val"), x) and torch.equal(dm.augment(x, "test"), x)
    assert torch.equal(dm.augment(x, "train"), random_distortion(x, index=idx, epoch=0, seed=0))
    plain = MNISTDataModule(data_dir=str(tmp_path), time_steps=5)
    plain._batch_index = idx
    assert torch.equal(plain.augment(x, "train"), x)
    spikes, labels, _ = dm.on_after_batch_transfer((x, torch.zeros(3, dtype=torch.long), idx), 0)
    assert spikes.shape == (5, 3, 28, 28) and spikes.dtype == torch.uint8
    with pytest.raises(ValueError, match=r"data.init_args.rotation=-1 must be >= 0; an augmentation magnitude"):
        MNISTDataModule(data_dir=str(tmp_path), rotation=-1)
