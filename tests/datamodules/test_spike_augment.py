"""Augmentation of spike-list training trains (hm2bp.datamodules.spike_augment): each magnitude
against its equation, the keying, and the TI46 datamodule and CLI around it."""
from __future__ import annotations

import pytest
import torch

from hm2bp.datamodules import TI46DataModule
from hm2bp.datamodules.spike_augment import SpikeJitter, jitter_spikes, spike_ranks
from hm2bp.datamodules.spikelists import collate_spike_lists
from hm2bp.errors import ConfigError


def _batch(seed: int = 0, batch: int = 6, per_sample: int = 400, T: int = 700):
    """COO spikes grouped by sample, sorted by channel then time (as the spike cache stores them)."""
    g = torch.Generator().manual_seed(seed)
    samples = []
    for b in range(batch):
        key = torch.unique(torch.randint(0, 78 * T, (per_sample,), generator=g))
        samples.append((key // T, key % T, b % 26, 100 + 7 * b))
    return collate_spike_lists(samples)


def _per_sample(channels, times, sample, b):
    m = sample == b
    return channels[m], times[m]


def test_no_magnitude_is_the_identity():
    ch, t, s, _, idx = _batch()
    out = jitter_spikes(ch, t, s, idx, SpikeJitter(), epoch=3, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(out, (ch, t, s)))


def test_ranks_count_within_each_sample():
    sample = torch.tensor([0, 0, 0, 2, 2, 3])
    assert spike_ranks(sample, 4).tolist() == [0, 1, 2, 0, 1, 0]


def test_stretch_scales_each_sample_by_one_factor_in_range():
    ch, t, s, _, idx = _batch()
    c2, t2, s2 = jitter_spikes(ch, t, s, idx, SpikeJitter(stretch=0.2), epoch=0, seed=1)
    assert torch.equal(c2, ch) and torch.equal(s2, s)  # nothing dropped or moved across channels
    factors = []
    for b in range(len(idx)):
        tb, t2b = t[s == b], t2[s == b]
        late = tb >= 100
        ratio = t2b[late].double() / tb[late].double()
        factor = float(ratio.median())
        assert 0.8 <= factor <= 1.2
        # one factor per sample: round(t * f) for every spike, up to the rounding
        assert torch.all((t2b.double() - tb.double() * factor).abs() <= 0.5 + 1e-9 + tb.double() * 5e-3)
        factors.append(factor)
    assert len({round(f, 3) for f in factors}) == len(factors)  # drawn per sample


def test_jitter_moves_each_spike_by_at_most_j_steps_evenly():
    ch, t, s, _, idx = _batch(batch=8, per_sample=3000)
    t = t + 10  # none can reach step -1
    c2, t2, s2 = jitter_spikes(ch, t, s, idx, SpikeJitter(jitter=2), epoch=0, seed=0)
    assert torch.equal(c2, ch) and torch.equal(s2, s)
    shift = t2 - t
    assert shift.abs().max() <= 2
    share = torch.bincount(shift + 2, minlength=5).double() / len(shift)
    assert torch.all((share - 0.2).abs() < 0.02), share  # uniform over -2..2
    assert abs(float(shift.double().mean())) < 0.05


def test_spikes_shifted_before_step_zero_are_dropped():
    ch = torch.zeros(200, dtype=torch.int64)
    t = torch.zeros(200, dtype=torch.int64)
    s = torch.arange(200)
    idx = torch.arange(200)
    _, t2, s2 = jitter_spikes(ch, t, s, idx, SpikeJitter(jitter=1), epoch=0, seed=0)
    assert t2.min() >= 0 and set(t2.tolist()) <= {0, 1}
    assert 0.55 < len(t2) / 200 < 0.8  # a third land at -1 and go


def test_drop_deletes_the_given_share_and_leaves_the_rest():
    ch, t, s, _, idx = _batch(batch=8, per_sample=3000)
    c2, t2, s2 = jitter_spikes(ch, t, s, idx, SpikeJitter(drop=0.25), epoch=0, seed=0)
    kept = len(t2) / len(t)
    assert abs(kept - 0.75) < 0.015, kept
    key = lambda c, tt, ss: set(zip(c.tolist(), tt.tolist(), ss.tolist()))  # noqa: E731
    assert key(c2, t2, s2) <= key(ch, t, s)  # kept spikes are unchanged


def test_a_sample_is_augmented_the_same_in_any_batch_and_anew_each_epoch():
    ch, t, s, labels, idx = _batch()
    mags = SpikeJitter(stretch=0.1, jitter=2, drop=0.1)
    full = jitter_spikes(ch, t, s, idx, mags, epoch=4, seed=9)
    # sample 3 alone (as sample 0 of a batch of one) equals its part of the full batch
    c3, t3 = _per_sample(ch, t, s, 3)
    alone = jitter_spikes(c3, t3, torch.zeros_like(c3), idx[3:4], mags, epoch=4, seed=9)
    assert torch.equal(alone[0], full[0][full[2] == 3]) and torch.equal(alone[1], full[1][full[2] == 3])
    again = jitter_spikes(ch, t, s, idx, mags, epoch=4, seed=9)
    assert all(torch.equal(a, b) for a, b in zip(full, again))
    other_epoch = jitter_spikes(ch, t, s, idx, mags, epoch=5, seed=9)
    other_seed = jitter_spikes(ch, t, s, idx, mags, epoch=4, seed=10)
    assert not torch.equal(full[1], other_epoch[1]) or len(full[1]) != len(other_epoch[1])
    assert not torch.equal(full[1], other_seed[1]) or len(full[1]) != len(other_seed[1])


@pytest.mark.parametrize("kwargs, key", [
    (dict(stretch=-0.1), "stretch"), (dict(stretch=1.5), "stretch"), (dict(jitter=1.5), "jitter"),
    (dict(jitter=-1), "jitter"), (dict(drop=1.0), "drop"), (dict(drop=float("nan")), "drop"),
])
def test_bad_magnitudes_name_their_key(kwargs, key):
    with pytest.raises(ConfigError, match=rf"data\.init_args\.augment\.{key}"):
        SpikeJitter(**kwargs)


def test_integral_float_jitter_is_an_int():
    assert SpikeJitter(jitter=2.0).jitter == 2 and isinstance(SpikeJitter(jitter=2.0).jitter, int)


def test_ti46_augments_training_batches_only(shared_data, tmp_path):
    kwargs = dict(source="spikes", data_dir=str(shared_data), cache_dir=str(tmp_path), batch_size=16)
    plain = TI46DataModule(**kwargs)
    aug = TI46DataModule(**kwargs, augment={"stretch": 0.1, "jitter": 2, "drop": 0.2})
    assert aug.augment == SpikeJitter(stretch=0.1, jitter=2, drop=0.2)
    for dm in (plain, aug):
        dm.prepare_data()
        dm.setup("fit")
    batch = next(iter(aug.train_dataloader()))
    x_train, y_train, i_train = aug.to_spikes(batch, "train")
    x_plain, y_plain, i_plain = plain.to_spikes(batch, "train")
    assert torch.equal(y_train, y_plain) and torch.equal(i_train, i_plain) and x_train.shape == x_plain.shape
    assert not torch.equal(x_train, x_plain)
    ratio = float(x_train.sum()) / float(x_plain.sum())
    assert 0.7 < ratio < 0.86, ratio  # 20 % dropped, a few merged or pushed past T
    for stage in ("val", "test"):
        assert torch.equal(aug.to_spikes(batch, stage)[0], x_plain)


def test_ti46_rejects_unknown_augment_keys(shared_data, tmp_path):
    with pytest.raises(ConfigError, match=r"data\.init_args\.augment: unknown key\(s\) \['shift'\]"):
        TI46DataModule(data_dir=str(shared_data), cache_dir=str(tmp_path), augment={"shift": 2})
