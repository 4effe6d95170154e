"""Speech front end: audio readers, resampling, the Lyon ear's channel order, the full encoder."""
from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from hm2bp.datamodules.speech import AudioFormatError, SpeechEncoder, lyon_frames, read_audio, resample

RATE = 12500


def _tone(freq, seconds=0.4, rate=RATE, amp=0.3):
    t = np.arange(int(seconds * rate)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def _wav(path: Path, x, rate=RATE, width=2, channels=1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        scale = float(1 << (8 * width - 1)) - 1
        if width == 1:
            data = (np.clip(x, -1, 1) * 127 + 128).astype(np.uint8).tobytes()
        elif width == 3:
            v = (np.clip(x, -1, 1) * scale).astype("<i4")
            data = b"".join(int(s).to_bytes(3, "little", signed=True) for s in v)
        else:
            data = (np.clip(x, -1, 1) * scale).astype(f"<i{width}").tobytes()
        w.writeframes(data)
    return path


def test_lyon_channel_order_on_tones():
    """Channel 0 is the highest frequency: a tone's energy moves to higher channels as it gets lower."""
    peaks = {}
    for f in (250, 1000, 4000):
        frames = lyon_frames(_tone(f))
        assert frames.shape == (78, int(0.4 * RATE) // 200)
        peaks[f] = int(frames.mean(1).argmax())
        energy = frames.mean(1)
        band = slice(max(peaks[f] - 8, 0), peaks[f] + 9)
        assert energy[band].sum() > 0.6 * energy.sum()  # concentrated around one band
    assert peaks[4000] < peaks[1000] < peaks[250]
    assert peaks[4000] < 25 and peaks[250] > 55


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_read_wav_widths(tmp_path, width):
    x = _tone(440, 0.05)
    got, rate = read_audio(_wav(tmp_path / "a.wav", x, width=width))
    assert rate == RATE and got.shape == x.shape
    np.testing.assert_allclose(got, x, atol=2.0 / (1 << (8 * width - 1)) + (1 / 127 if width == 1 else 0))


def test_read_sphere(tmp_path):
    x = (_tone(300, 0.02) * 32767).astype(">i2")
    body = "\n".join(["NIST_1A", "   1024", "sample_rate -i 12500", "sample_n_bytes -i 2", "channel_count -i 1",
                      "sample_byte_format -s2 10", "sample_coding -s3 pcm", "end_head", ""])
    header = body.encode().ljust(1024, b" ")
    path = tmp_path / "a.sph"
    path.write_bytes(header + x.tobytes())
    got, rate = read_audio(path)
    assert rate == 12500
    np.testing.assert_allclose(got, x.astype(np.float64) / 32768)
    path.write_bytes(header.replace(b"pcm\n", b"pcm,embedded-shorten-v2.00\n") + x.tobytes())
    with pytest.raises(AudioFormatError, match=r"a\.sph: not a readable audio file.*sph2pipe"):
        read_audio(path)


def _wav_header(n_bytes: int, bits: int, fmt: int = 1, rate: int = 8000) -> bytes:
    block = (bits + 7) // 8
    fmt_chunk = struct.pack("<HHIIHH", fmt, 1, rate, rate * block, block, bits)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt_chunk) + 8 + n_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk + b"data" + struct.pack("<I", n_bytes))


def test_float_and_stereo_wavs(tmp_path):
    flt = tmp_path / "float.wav"
    flt.write_bytes(_wav_header(40, 32, fmt=3) + np.full(10, 0.25, "<f4").tobytes())  # IEEE float
    got, rate = read_audio(flt)
    assert rate == 8000 and np.array_equal(got, np.full(10, 0.25))
    x = _tone(440, 0.02)
    stereo = np.stack([x, -0.5 * x], 1).reshape(-1)  # interleaved L, R
    got, _ = read_audio(_wav(tmp_path / "st.wav", stereo, width=2, channels=2))
    np.testing.assert_allclose(got, 0.25 * x, atol=2 / 32768)  # channels averaged


def test_unsupported_and_broken_audio(tmp_path):
    odd = tmp_path / "odd_width.wav"
    odd.write_bytes(_wav_header(50, 40) + bytes(50))  # 40-bit samples
    with pytest.raises(AudioFormatError, match=r"odd_width\.wav: not a readable audio file.*sox"):
        read_audio(odd)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"hello")
    with pytest.raises(AudioFormatError, match=r"junk\.wav: not a readable audio file"):
        read_audio(junk)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        read_audio(tmp_path / "missing.wav")


def test_real_fsdd_recording_decodes_to_the_exact_pcm_samples(shared_data):
    """soundfile gives the same samples as decoding the 16-bit PCM by hand (int / 2^15)."""
    path = sorted((shared_data / "FSDD" / "recordings").glob("*.wav"))[0]
    with wave.open(str(path), "rb") as w:
        assert (w.getsampwidth(), w.getnchannels()) == (2, 1)
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        rate = w.getframerate()
    got, got_rate = read_audio(path)
    assert got_rate == rate and got.dtype == np.float64
    assert np.array_equal(got, pcm.astype(np.float64) / 32768)


def test_resample_8k_to_12k5_keeps_the_tone():
    x = _tone(1000, 0.5, rate=8000)
    y = resample(x, 8000, RATE)
    assert len(y) == int(0.5 * RATE)
    spec = np.abs(np.fft.rfft(y))
    assert np.fft.rfftfreq(len(y), 1 / RATE)[spec.argmax()] == pytest.approx(1000, abs=3)
    assert resample(x, RATE, RATE) is x


def test_encoder_end_to_end(tmp_path):
    enc = SpeechEncoder()
    ch, t = enc(_wav(tmp_path / "tone.wav", _tone(2000, 0.3, rate=8000), rate=8000))
    frames = int(0.3 * RATE) // 200
    assert t.min() >= 1 and t.max() <= frames * 10
    assert ch.min() >= 0 and ch.max() < 78 and len(ch) > 50
    assert enc.params()["gain"] == 2000 and enc.params()["threshold"] == 0.6
    ch0, _ = enc(_wav(tmp_path / "silence.wav", np.zeros(4000)))
    assert len(ch0) == 0
