"""Speech front end of the HM2-BP TI46 experiments (spec §4.3): audio -> Lyon ear -> BSA spikes.

1. Audio is read as floats in [-1, 1) (like MATLAB's ``audioread``): PCM WAV (8/16/24/32-bit
   integer) or NIST SPHERE (TI46's native LDC format, uncompressed PCM), and resampled to 12.5 kHz
   (TI46's own rate) with a polyphase filter when needed.
2. Slaney's Lyon passive ear model, via the ``lyon`` package (``LyonPassiveEar(x, 12500, 200)``):
   78 cochlear channels at 62.5 frames/s (16 ms a frame). Channel 0 is the **highest** frequency
   (the model runs from the base of the cochlea to the apex).
3. BSA (:func:`~hm2bp.datamodules.encoding.bsa_encode`): gain 2000, each frame held 10 steps
   (1.6 ms a step), 24-tap Gaussian FIR, threshold 0.6, spike at step ``i + 1``.

Output of :class:`SpeechEncoder`: ``(channels, times)`` spike lists; 78 input neurons.
"""
from __future__ import annotations

import wave
from dataclasses import asdict, dataclass
from math import gcd
from pathlib import Path

import numpy as np

from hm2bp.errors import DataError, DataNotFoundError
from hm2bp.datamodules.encoding import BSA_GAIN, BSA_HOLD, BSA_TAPS, BSA_THRESHOLD, bsa_encode

LYON_RATE = 12500  # TI46 sample rate; the authors ran LyonPassiveEar at 12.5 kHz
LYON_DECIMATION = 200  # -> 62.5 frames/s
LYON_CHANNELS = 78  # channels LyonPassiveEar gives at 12.5 kHz with its default ear Q and step


class AudioFormatError(DataError):
    """An audio file cannot be read (unsupported format, sample width or truncated)."""


def _pcm_to_float(raw: bytes, width: int, channels: int, path: Path, big_endian: bool = False) -> np.ndarray:
    """Interleaved integer PCM -> mono float64 in [-1, 1) (channels averaged)."""
    if width not in (1, 2, 3, 4):
        raise AudioFormatError(
            f"{path}: unsupported sample width of {width} bytes ({8 * width}-bit); "
            "supported: 8, 16, 24 or 32-bit integer PCM. Convert it, e.g. `sox in.wav -b 16 out.wav`"
        )
    frame = width * channels
    n = len(raw) // frame
    raw = raw[: n * frame]
    if width == 1:  # 8-bit WAV is unsigned
        x = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        lo, hi = (b[:, 2], b[:, 0]) if big_endian else (b[:, 0], b[:, 2])
        v = lo | (b[:, 1] << 8) | (hi << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float64) / float(1 << 23)
    else:
        dt = np.dtype(f"{'>' if big_endian else '<'}i{width}")
        x = np.frombuffer(raw, dt).astype(np.float64) / float(1 << (8 * width - 1))
    return x.reshape(n, channels).mean(1)


def _read_sphere(path: Path, data: bytes) -> tuple[np.ndarray, int]:
    """NIST SPHERE (``NIST_1A`` header): uncompressed integer PCM only."""
    try:
        header_len = int(data[8:16].split()[0])
        fields = {}
        for line in data[16:header_len].decode("ascii", "replace").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] != "end_head":
                fields[parts[0]] = parts[2]
        rate = int(fields["sample_rate"])
        width = int(fields.get("sample_n_bytes", "2"))
        channels = int(fields.get("channel_count", "1"))
    except (ValueError, KeyError, IndexError) as err:
        raise AudioFormatError(f"{path}: malformed NIST SPHERE header ({err})") from err
    coding = fields.get("sample_coding", "pcm")
    if coding != "pcm":
        raise AudioFormatError(
            f"{path}: SPHERE sample_coding {coding!r} is not supported (only uncompressed pcm); "
            "decompress it first, e.g. `sph2pipe -f wav in.sph out.wav`"
        )
    big = fields.get("sample_byte_format", "01") in ("10", "1")
    return _pcm_to_float(data[header_len:], width, channels, path, big_endian=big and width > 1), rate


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float64 samples in [-1, 1) and the sample rate of a PCM WAV or NIST SPHERE file."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"audio file not found: {path}")
    data = path.read_bytes()
    if data[:7] == b"NIST_1A":
        x, rate = _read_sphere(path, data)
    else:
        try:
            with wave.open(str(path), "rb") as w:
                width, channels, rate, n = w.getsampwidth(), w.getnchannels(), w.getframerate(), w.getnframes()
                raw = w.readframes(n)
        except (wave.Error, EOFError) as err:
            raise AudioFormatError(
                f"{path}: not a readable PCM WAV file ({err}); supported: 8/16/24/32-bit integer PCM WAV "
                "or uncompressed NIST SPHERE"
            ) from err
        if len(raw) < n * width * channels:
            raise AudioFormatError(f"{path}: truncated ({len(raw)} of {n * width * channels} data bytes)")
        x = _pcm_to_float(raw, width, channels, path)
    if x.size == 0:
        raise AudioFormatError(f"{path}: no audio samples")
    return x, rate


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


@dataclass(frozen=True)
class SpeechEncoder:
    """Audio file -> spike lists: read, resample to ``rate``, Lyon ear, BSA (spec §4.3).

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
