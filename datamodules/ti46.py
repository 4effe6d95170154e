"""TI46-Alpha: the 26 spoken English letters of the TI46 corpus (LDC93S9).

Layouts, encoding and the test split are described in docs/datasets.md, "TI46-Alpha (spoken letters)".

Two sources, both giving 78-channel spike trains (one input neuron per cochlear channel):

``source="audio"`` — the corpus's own audio, in the LDC directory layout (16 speakers f1..f8,
m1..m8; 12.5 kHz; 10 training tokens and 16 test tokens per speaker and letter)::

    <data_dir>/TI46/ti_alpha/train/<spk>/<code><spk>set<k>.wav     k = 0..9   (e.g. 0af1set0.wav)
    <data_dir>/TI46/ti_alpha/test/<spk>/<code><spk>s<k>t<j>.wav    sessions k, tokens j = 0, 1

``<code>`` is the letter, optionally prefixed by ``0`` (the authors' ``TI46_Lyon_ear.m`` uses
``0a`` .. ``0z``); ``.sph`` (uncompressed NIST SPHERE, the CD's own format) is read too. Each file
goes through the speech front end (:class:`~hm2bp.datamodules.speech.SpeechEncoder`: Lyon
passive ear at 12.5 kHz, decimation 200 -> BSA), and the trains are cached on disk.

``source="spikes"`` — trains already encoded by the authors (``TI46_alpha_spikes``)::

    <data_dir>/TI46_alpha_spikes/<c>/<spk>_u<k>_c<c>.dat[.gz]    c = 0..25 -> 'a'..'z', k = 1..10

one ``channel<TAB>step`` line per spike between ``-1 -1`` sentinels. These are the corpus's
training tokens only; as in the authors' loader, utterances ``u2`` and ``u3`` form the test set
(``test_utterances``). The authors simulate ``n_steps = 700`` (default ``time_steps``).
"""
from __future__ import annotations

import gzip
import re
import string
from pathlib import Path

import numpy as np

from hm2bp.datamodules.speech import LYON_CHANNELS, SpeechEncoder
from hm2bp.datamodules.spike_augment import SpikeJitter
from hm2bp.datamodules.spikelists import SpikeListDataModule
from hm2bp.errors import ConfigError, DataError, DataNotFoundError

LETTERS = list(string.ascii_lowercase)
AUDIO_NAME = re.compile(r"^0?(?P<letter>[a-z])(?P<speaker>[fm]\d+)(?:set\d+|s\d+t\d+)\.(?:wav|sph)$", re.IGNORECASE)
SPIKE_NAME = re.compile(r"^(?P<speaker>[fm]\d+)_u(?P<utt>\d+)_c(?P<cls>\d+)\.dat(?:\.gz)?$")


class SpikeFileError(DataError):
    """A spike-list file is not in the ``channel<TAB>step`` format."""


def read_spike_file(path: Path, num_channels: int = LYON_CHANNELS) -> tuple[np.ndarray, np.ndarray]:
    """``channel step`` lines (``-1 -1`` sentinels skipped; ``.gz`` ok) -> sorted unique ``(channels, steps)``."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as f:
            text = f.read()
        vals = np.array(text.split(), dtype=np.int64)
    except (OSError, EOFError, ValueError) as err:
        raise SpikeFileError(f"{path}: cannot read spike list ({err}); expected 'channel<TAB>step' integer lines") from err
    if vals.size % 2:
        raise SpikeFileError(f"{path}: odd number of integers; expected 'channel<TAB>step' pairs (truncated?)")
    pairs = vals.reshape(-1, 2)
    pairs = pairs[~((pairs[:, 0] == -1) & (pairs[:, 1] == -1))]
    ch, t = pairs[:, 0], pairs[:, 1]
    if ch.size and (ch.min() < 0 or ch.max() >= num_channels or t.min() < 0):
        raise SpikeFileError(f"{path}: channel outside 0..{num_channels - 1} or negative step")
    key = np.unique(ch * (int(t.max(initial=0)) + 1) + t)
    span = int(t.max(initial=0)) + 1
    return key // span, key % span


class TI46DataModule(SpikeListDataModule):
    """TI46-Alpha, 78 inputs, 26 classes (a..z).

    Args:
        source: ``"spikes"`` (authors' encoded trains) or ``"audio"`` (LDC audio -> Lyon -> BSA).
        data_dir: root (default ``$HM2BP_DATA_DIR`` or ``./data``).
        folder: dataset folder under ``data_dir`` (default ``TI46_alpha_spikes`` or ``TI46/ti_alpha``).
        test_utterances: (spikes source) utterance numbers used as test (authors: 2 and 3).
        time_steps: T (authors' spike trains: 700; the official TI46 config: 1000).
        val_size: training samples held out for validation (count, or fraction in (0, 1)).
        cache_dir: where encoded trains are cached (default ``$HM2BP_CACHE_DIR`` or ``~/.cache/hm2bp``).
        batch_size, num_workers, seed: see ``SpikeDataModule``.
        augment: new stretched, jittered and thinned training trains each epoch, e.g.
            ``{stretch: 0.1, jitter: 2, drop: 0.1}`` (see ``SpikeListDataModule``); null keeps them fixed.
    """

    num_classes = 26
    input_shape = (LYON_CHANNELS,)
    class_names = LETTERS
    data_keys = ("data_dir", "folder")

    def __init__(
        self,
        source: str = "spikes",
        data_dir: str | None = None,
        folder: str | None = None,
        test_utterances: list[int] = (2, 3),
        time_steps: int = 700,
        val_size: int | float = 0.1,
        cache_dir: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        augment: SpikeJitter | None = None,
    ) -> None:
        if source not in ("spikes", "audio"):
            raise ConfigError(f"data.init_args.source must be 'spikes' or 'audio', got {source!r}")
        for u in test_utterances:
            if isinstance(u, bool) or not isinstance(u, int) or u < 1:
                raise ConfigError(f"data.init_args.test_utterances must be utterance numbers >= 1, got {list(test_utterances)}")
        super().__init__(time_steps, val_size, cache_dir, batch_size, num_workers, seed, augment=augment)
        self.source = source
        self.data_dir = data_dir  # resolved by the base class
        self.folder = folder or ("TI46_alpha_spikes" if source == "spikes" else "TI46/ti_alpha")
        self.test_utterances = sorted(int(u) for u in test_utterances)
        self.encoder = SpeechEncoder()
        self.cache_name = f"ti46-{source}"

    def source_root(self) -> Path:
        return self.data_dir / self.folder

    def _missing(self, where: Path) -> DataNotFoundError:
        layout = (
            "<data_dir>/TI46_alpha_spikes/<c>/<spk>_u<k>_c<c>.dat[.gz]" if self.source == "spikes"
            else "<data_dir>/TI46/ti_alpha/{train,test}/<spk>/<letter><spk>set<k>.wav (LDC layout)"
        )
        return self.missing_data(f"TI46 {self.source} files under {where}", layout)

    def source_files(self, split: str) -> list[tuple[Path, int]]:
        root = self.source_root()
        if not root.is_dir():
            raise self._missing(root)
        return self._spike_files(root, split) if self.source == "spikes" else self._audio_files(root, split)

    def _spike_files(self, root: Path, split: str) -> list[tuple[Path, int]]:
        files = []
        for sub in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name)):
            for f in sorted(sub.iterdir()):
                m = SPIKE_NAME.match(f.name)
                if m is None:
                    continue
                if not sub.name.isdigit() or int(m.group("cls")) != int(sub.name):
                    raise DataError(f"{f}: class c{m.group('cls')} in the name disagrees with its folder {sub.name!r}")
                if (int(m.group("utt")) in self.test_utterances) == (split == "test"):
                    files.append((f, int(sub.name)))
        if not files:
            raise self._missing(root)
        return files

    def _audio_files(self, root: Path, split: str) -> list[tuple[Path, int]]:
        subdirs = [p for p in root.iterdir() if p.is_dir() and p.name.lower() == split]
        if not subdirs:
            raise self._missing(root / split)
        files = []
        for f in sorted(subdirs[0].glob("*/*")):
            m = AUDIO_NAME.match(f.name)
            if m is not None:
                files.append((f, LETTERS.index(m.group("letter").lower())))
        if not files:
            raise self._missing(subdirs[0])
        return files

    def cache_params(self) -> dict:
        params = {"source": self.source, "root": str(self.source_root().resolve())}
        if self.source == "audio":
            params.update(self.encoder.params())
        else:
            params["test_utterances"] = self.test_utterances
        return params

    def encode_file(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        return read_spike_file(path) if self.source == "spikes" else self.encoder(path)
