"""Speech front end of the HM2-BP TI46 experiments: audio -> Lyon ear -> BSA spikes.

The encoding is described in docs/datasets.md, "TI46-Alpha (spoken letters)".

1. Audio is read as floats in [-1, 1) (like MATLAB's ``audioread``) with ``soundfile``
   (libsndfile): WAV (integer or float PCM), FLAC, NIST SPHERE (TI46's native LDC format,
   uncompressed PCM) and the other formats libsndfile reads; several channels are averaged. It is
   resampled to 12.5 kHz (TI46's own rate) with a polyphase filter when needed.
2. Slaney's Lyon passive ear model, via the ``lyon`` package (``LyonPassiveEar(x, 12500, 200)``):
   78 cochlear channels at 62.5 frames/s (16 ms a frame). Channel 0 is the **highest** frequency
   (the model runs from the base of the cochlea to the apex).
3. BSA (:func:`bsa_encode`): gain 2000, each frame held 10 steps
   (1.6 ms a step), 24-tap Gaussian FIR, threshold 0.6, spike at step ``i + 1``.

Output of :class:`SpeechEncoder`: ``(channels, times)`` spike lists; 78 input neurons.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile

from hm2bp.errors import DataError, DataNotFoundError

LYON_RATE = 12500  # TI46 sample rate; the authors ran LyonPassiveEar at 12.5 kHz
LYON_DECIMATION = 200  # -> 62.5 frames/s
LYON_CHANNELS = 78  # channels LyonPassiveEar gives at 12.5 kHz with its default ear Q and step


class AudioFormatError(DataError):
    """An audio file cannot be read (unsupported format, sample width or truncated)."""


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float64 samples in [-1, 1) and the sample rate of an audio file (``soundfile``).

    Integer PCM of ``b`` bits is scaled by :math:`2^{-(b-1)}` (8-bit WAV, which is unsigned, around
    128), as MATLAB's ``audioread`` does; several channels are averaged.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"audio file not found: {path}")
    try:
        x, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        with open(path, "rb") as f:
            sphere = f.read(7) == b"NIST_1A"
        hint = ("only uncompressed NIST SPHERE is read; decompress it first, e.g. `sph2pipe -f wav in.sph out.wav`"
                if sphere else "convert it to PCM WAV, e.g. `sox in.xxx -b 16 out.wav`")
        raise AudioFormatError(f"{path}: not a readable audio file ({err}); {hint}") from err
    if x.size == 0:
        raise AudioFormatError(f"{path}: no audio samples")
    return x.mean(1), int(rate)


def resample(x: np.ndarray, rate: int, target: int = LYON_RATE) -> np.ndarray:
    """Polyphase resampling (scipy ``resample_poly``), e.g. 8 kHz -> 12.5 kHz is up 25, down 16."""
    if rate == target:
        return x
    from scipy.signal import resample_poly

    g = gcd(int(rate), int(target))
    return resample_poly(x, target // g, rate // g)


def lyon_frames(x: np.ndarray, rate: int = LYON_RATE, decimation: int = LYON_DECIMATION) -> np.ndarray:
    """Lyon passive ear model: samples -> ``[channels, frames]`` (78 x n/decimation at 12.5 kHz)."""
    from lyon.calc import LyonCalc

    y = LyonCalc().lyon_passive_ear(np.ascontiguousarray(x, dtype=np.float64), rate, decimation_factor=decimation)
    return np.ascontiguousarray(y.T)  # [channels, frames]


# --------------------------------------------------------------------------------------------
# BSA (Ben's Spiker Algorithm; Schrauwen & Van Campenhout 2003) for speech
# (docs/datasets.md, "TI46-Alpha (spoken letters)")
# --------------------------------------------------------------------------------------------

BSA_TAPS = 24  # official FIR length
BSA_THRESHOLD = 0.6  # official threshold
BSA_GAIN = 2000.0  # Lyon frame value -> BSA signal (official reader: analog * 2e3)
BSA_HOLD = 10  # each Lyon frame (16 ms) is held for 10 steps (1.6 ms per step)


def bsa_kernel(taps: int = BSA_TAPS, width: float = 25.0) -> np.ndarray:
    r"""FIR kernel :math:`k[n] \propto \exp(-(n - taps/2)^2 / width)`, normalised to sum 1."""
    n = np.arange(taps, dtype=np.float64)
    k = np.exp(-((n - taps / 2.0) ** 2) / width)
    return k / k.sum()


def bsa_encode(
    frames,
    *,
    gain: float = BSA_GAIN,
    hold: int = BSA_HOLD,
    taps: int = BSA_TAPS,
    threshold: float = BSA_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    r"""BSA-encode analog channels into spike lists, as the authors' speech reader does.

    It reproduces the authors' golden TI46 input spikes exactly (docs/algorithm.md, "Golden files of
    the authors' program").

    ``frames`` ``[C, F]`` (channels x frames, e.g. 78 Lyon channels) are cast to float32 (the
    official reader parses floats), scaled by ``gain`` (float64) and each frame is held for
    ``hold`` steps, giving a signal :math:`s` of ``F * hold`` steps followed by ``taps`` zeros.
    For :math:`i = 0 \dots F \cdot hold - 1`, channel by channel, a spike is emitted at step
    :math:`i + 1` when

    .. math:: \sum_n |s[i+n] - k[n]| < \sum_n |s[i+n]| - \text{threshold},

    and :math:`k` is then subtracted from :math:`s[i \dots i + taps - 1]`.

    Returns ``(channels, times)`` int64 arrays, sorted by channel then time. Times range over
    ``1 .. F * hold``; callers drop ``time >= T``.
    """
    x = np.asarray(frames)
    if x.ndim != 2:
        raise ValueError(f"bsa_encode expects frames [channels, frames], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("bsa_encode: frames contain NaN or inf")
    C, F = x.shape
    k = bsa_kernel(taps)
    L = F * hold
    s = np.zeros((C, L + taps), dtype=np.float64)  # [C, L + taps]
    s[:, :L] = np.repeat(x.astype(np.float32).astype(np.float64) * gain, hold, axis=1)
    fired = np.zeros((C, L), dtype=bool)  # [C, L]: spike at step i + 1
    abs_s = np.abs(s)
    for i in range(L):
        w = s[:, i : i + taps]  # [C, taps]
        err_with = np.abs(w - k).sum(1)  # [C]
        err_without = abs_s[:, i : i + taps].sum(1)  # [C]
        hit = err_with < err_without - threshold
        if hit.any():
            fired[hit, i] = True
            s[hit, i : i + taps] -= k
            abs_s[hit, i : i + taps] = np.abs(s[hit, i : i + taps])
    ch, t = np.nonzero(fired)  # row-major: sorted by channel, then time
    return ch.astype(np.int64), t.astype(np.int64) + 1


@dataclass(frozen=True)
class SpeechEncoder:
    """Audio file -> spike lists: read, resample to ``rate``, Lyon ear, BSA (see the module docstring).

    Args:
        rate: rate of the ear model (TI46: 12500 Hz).
        decimation: Lyon decimation factor (200 -> 16 ms frames at 12.5 kHz).
        gain, hold, taps, threshold: BSA parameters (official 2000, 10, 24, 0.6).
    """

    rate: int = LYON_RATE
    decimation: int = LYON_DECIMATION
    gain: float = BSA_GAIN
    hold: int = BSA_HOLD
    taps: int = BSA_TAPS
    threshold: float = BSA_THRESHOLD

    def params(self) -> dict:
        return {"front_end": "lyon+bsa", **asdict(self)}

    def frames(self, path: str | Path) -> np.ndarray:
        x, rate = read_audio(path)
        return lyon_frames(resample(x, rate, self.rate), self.rate, self.decimation)

    def __call__(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        return bsa_encode(self.frames(path), gain=self.gain, hold=self.hold, taps=self.taps, threshold=self.threshold)
