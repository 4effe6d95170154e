"""BSA encoder (docs/algorithm.md, "Input encoding") against the official golden TI46 input spikes."""
from __future__ import annotations

import numpy as np
import pytest

from hm2bp.datamodules.speech import bsa_encode, bsa_kernel
from tests.parity.golden import read_spike_list


def _golden_pairs(path):
    """All (channel, time) pairs of a golden spike list, including times >= T."""
    pairs = np.array(path.read_text().split(), dtype=np.int64).reshape(-1, 2)
    body = pairs[1:]
    end = np.nonzero((body[:, 0] == -1) & (body[:, 1] == -1))[0]
    return body[: end[0]] if len(end) else body


def test_kernel_shape_and_normalisation():
    k = bsa_kernel()
    assert k.shape == (24,)
    assert k.sum() == pytest.approx(1.0)
    assert int(np.argmax(k)) == 12  # centred at n = 12: exp(-(n-12)^2/25)
    assert k[11] == pytest.approx(k[13])


def test_bsa_reproduces_golden_ti46_input(golden_dir):
    frames = np.loadtxt(golden_dir / "test_inputs/ti_alpha/0/f1_u10_c0.dat", dtype=np.float32)
    assert frames.shape == (78, 68)
    ch, t = bsa_encode(frames)
    golden = _golden_pairs(golden_dir / "speech/ti_alpha/spikes/Input_Response/0/input_spikes_0_0.dat")
    # every spike, in the same order (by channel, then time), including the one at t = T = 658
    np.testing.assert_array_equal(np.stack([ch, t], 1), golden)
    T = 658
    dense = np.zeros((T, 78), np.uint8)
    keep = t < T
    dense[t[keep], ch[keep]] = 1
    ref = read_spike_list(golden_dir / "speech/ti_alpha/spikes/Input_Response/0/input_spikes_0_0.dat", 78, T).numpy()
    np.testing.assert_array_equal(dense, ref)


def test_bsa_silence_and_first_step():
    ch, t = bsa_encode(np.zeros((3, 5)))
    assert ch.size == 0 and t.size == 0
    ch, t = bsa_encode(np.full((1, 10), 1e-3))  # 2.0 after the gain: fires regularly
    assert t.min() >= 1 and t.max() <= 100  # spike at step i + 1, i < frames * hold
    assert np.all(np.diff(t) > 0)


def test_bsa_rejects_bad_input():
    with pytest.raises(ValueError, match="channels, frames"):
        bsa_encode(np.zeros(10))
    with pytest.raises(ValueError, match="NaN"):
        bsa_encode(np.array([[np.nan]]))
