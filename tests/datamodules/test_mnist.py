"""MNISTDataModule on the real files, the paper encoding, and its bad-input errors."""
from __future__ import annotations

import gzip
import shutil

import pytest
import torch

from hm2bp.datamodules import MNISTDataModule
from hm2bp.datamodules.encoding import bernoulli_rate
from hm2bp.datamodules.idx import IDXFormatError, read_idx


def test_real_mnist_counts_and_batches(shared_data):
    dm = MNISTDataModule(data_dir=shared_data, val_size=5000, batch_size=8, time_steps=50)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.train_set) + len(dm.val_set) == 60000 and len(dm.val_set) == 5000
    assert len(dm.test_set) == 10000
    assert set(dm.train_set.indices.tolist()).isdisjoint(dm.val_set.indices.tolist())
    images, labels, index = next(iter(dm.train_dataloader()))
    spikes, y, _ = dm.on_after_batch_transfer((images, labels, index), 0)
    assert spikes.shape == (50, 8, 28, 28) and spikes.dtype == torch.uint8
    assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) <= 9
    assert spikes[0].sum() == 0  # no spike at t = 0
    assert dm.num_inputs == 784 and dm.num_classes == 10


def test_encoding_rate_matches_paper(shared_data):
    images = torch.from_numpy(read_idx(shared_data / "MNIST/raw/t10k-images-idx3-ubyte.gz")[:32].copy())
    T = 400
    spikes = bernoulli_rate(images, T, index=torch.arange(32), seed=1)
    p = images.double() / (5.5 * 255)  # [32, 28, 28]
    n = T - 1
    emp = spikes[1:].double().mean(0)
    # per-pixel sampling error: |emp - p| < 5 sigma; aggregate over all pixels much tighter
    sigma = (p * (1 - p) / n).sqrt()
    assert ((emp - p).abs() <= 5 * sigma + 1e-12).float().mean() > 0.999
    total_sigma = (p * (1 - p) * n).sum().sqrt()
    assert abs(spikes[1:].double().sum() - p.sum() * n) < 4 * total_sigma
    assert spikes[:, images == 0].sum() == 0  # zero pixels never spike
    assert float(p.max()) == pytest.approx(1 / 5.5)


def test_encoding_is_keyed_by_seed_index_epoch():
    img = torch.full((3, 5, 5), 200, dtype=torch.uint8)
    a = bernoulli_rate(img, 60, index=torch.tensor([4, 5, 6]), epoch=2, seed=9)
    b = bernoulli_rate(img[1:], 60, index=torch.tensor([5, 6]), epoch=2, seed=9)
    assert torch.equal(a[:, 1:], b)  # independent of batch composition
    assert not torch.equal(a, bernoulli_rate(img, 60, index=torch.tensor([4, 5, 6]), epoch=3, seed=9))
    assert not torch.equal(a, bernoulli_rate(img, 60, index=torch.tensor([4, 5, 6]), epoch=2, seed=10))


def test_missing_folder_error(tmp_path):
    dm = MNISTDataModule(data_dir=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"nowhere/MNIST/raw/train-images-idx3-ubyte\[\.gz\] not found"):
        dm.prepare_data()
    assert not (tmp_path / "nowhere").exists()  # nothing created


def _copy_mnist(shared_data, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (shared_data / "MNIST/raw").iterdir():
        shutil.copy(f, raw / f.name)
    return raw


def test_wrong_magic_number_error(shared_data, tmp_path):
    raw = _copy_mnist(shared_data, tmp_path)
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        data = bytearray(f.read())
    data[2] = 0x42  # not a known IDX type code
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes(data))
    dm = MNISTDataModule(data_dir=tmp_path)
    with pytest.raises(IDXFormatError, match=r"t10k-labels-idx1-ubyte\.gz is not an IDX file \(magic number 0x00004201\)"):
        dm.setup("test")


def test_truncated_file_error(shared_data, tmp_path):
    raw = _copy_mnist(shared_data, tmp_path)
    with gzip.open(raw / "t10k-images-idx3-ubyte.gz", "rb") as f:
        data = f.read()
    (raw / "t10k-images-idx3-ubyte.gz").unlink()
    (raw / "t10k-images-idx3-ubyte").write_bytes(data[: len(data) // 2])  # raw file, cut in half
    dm = MNISTDataModule(data_dir=tmp_path)
    with pytest.raises(IDXFormatError, match=r"t10k-images-idx3-ubyte is truncated or padded"):
        dm.setup("test")


def test_truncated_gzip_stream_error(shared_data, tmp_path):
    raw = _copy_mnist(shared_data, tmp_path)
    path = raw / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(IDXFormatError, match=r"train-labels-idx1-ubyte\.gz.*corrupt or truncated"):
        MNISTDataModule(data_dir=tmp_path).setup("fit")


def test_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HM2BP_DATA_DIR", str(tmp_path))
    assert MNISTDataModule().raw_dir == tmp_path / "MNIST" / "raw"


def test_compact_pixel_order_packs_nonzero_pixels_in_raster_order():
    """The official MLP reader: input k carries the image's k-th nonzero pixel, the rest are silent."""
    from hm2bp.datamodules.encoding import compact_nonzero

    images = torch.tensor([[[0, 3], [0, 5]], [[7, 0], [0, 1]], [[0, 0], [0, 0]]], dtype=torch.uint8)
    out = compact_nonzero(images)
    assert out.shape == images.shape
    assert out.reshape(3, 4).tolist() == [[3, 5, 0, 0], [7, 1, 0, 0], [0, 0, 0, 0]]


def test_compact_pixel_order_on_real_batches(shared_data):
    """Each real image keeps its intensities in raster order; only the first K_b inputs can fire."""
    from hm2bp.datamodules.encoding import compact_nonzero

    raster = MNISTDataModule(data_dir=shared_data, batch_size=16, time_steps=100)
    compact = MNISTDataModule(data_dir=shared_data, batch_size=16, time_steps=100, pixel_order="compact")
    for dm in (raster, compact):
        dm.setup("test")
    images, labels, index = next(iter(compact.test_dataloader()))
    s_raster, _, _ = raster.on_after_batch_transfer((images, labels, index), 0)
    s_compact, _, _ = compact.on_after_batch_transfer((images, labels, index), 0)
    flat = images.reshape(16, -1)
    k = (flat > 0).sum(1)  # nonzero pixels per image
    fired = s_compact.reshape(100, 16, -1).sum(0) > 0  # [16, 784]
    packed_images = compact_nonzero(images).reshape(16, -1)
    for b in range(16):
        assert not fired[b, int(k[b]):].any()  # nothing beyond the packed pixels
        assert torch.equal(packed_images[b, : int(k[b])], flat[b][flat[b] > 0])  # raster order kept
    assert not torch.equal(s_raster, s_compact)
    with pytest.raises(ValueError, match="pixel_order"):
        MNISTDataModule(data_dir=shared_data, pixel_order="sorted")
