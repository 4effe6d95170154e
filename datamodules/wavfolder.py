"""A folder of labelled audio files through the speech front end (Lyon ear + BSA).

The front end is described in docs/datasets.md, "TI46-Alpha (spoken letters)".

Two layouts:

* one sub-folder per class: ``<data_dir>/<folder>/<label>/*.wav`` (``label_regex: null``);
* flat names with the label in them, matched by ``label_regex`` (a named group ``label``), e.g.
  the Free Spoken Digit Dataset's ``<digit>_<speaker>_<index>.wav``:
  ``^(?P<label>\\d)_(?P<speaker>[a-z]+)_(?P<index>\\d+)\\.wav$``.

Test split: files whose path (relative to the folder) matches ``test_regex`` (FSDD's official
split: recording index 0-4, ``_[0-4]\\.wav$``; by speaker: ``_theo_``), else a seeded
``test_size`` fraction. Validation is carved from the rest with a seeded generator.
Encoded spike trains are cached on disk, keyed by the front-end parameters.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from hm2bp.checks import number
from hm2bp.datamodules.speech import LYON_CHANNELS, SpeechEncoder
from hm2bp.datamodules.spike_augment import SpikeJitter
from hm2bp.datamodules.spikelists import SpikeListDataModule
from hm2bp.errors import ConfigError, DataError, DataNotFoundError

AUDIO_SUFFIXES = (".wav", ".sph")


class WavFolderDataModule(SpikeListDataModule):
    """Labelled audio files -> 78-channel BSA spike trains.

    Args:
        data_dir: root (default ``$HM2BP_DATA_DIR`` or ``./data``); files are under ``data_dir/folder``.
        folder: sub-folder holding the audio files (e.g. ``FSDD/recordings``).
        classes: class names in label order; default: the sorted labels found (numeric labels
            sorted as numbers). A file whose label is not in ``classes`` is an error.
        label_regex: regex with a named group ``label`` matched against each file name (flat
            layout); ``None``: the label is the name of the file's parent folder.
        test_regex: files whose relative path matches it form the test split; ``None``: a seeded
            ``test_size`` fraction of the files.
        test_size: test fraction when ``test_regex`` is None.
        time_steps: T (1.6 ms a step; longer utterances are cut).
        val_size: training files held out for validation (count, or fraction in (0, 1)).
        rate, decimation, gain, hold, taps, threshold: front end (see ``SpeechEncoder``).
        cache_dir: where encoded trains are cached (default ``$HM2BP_CACHE_DIR`` or ``~/.cache/hm2bp``).
        batch_size, num_workers, seed: see ``SpikeDataModule``.
        augment: new stretched, jittered and thinned training trains each epoch (see ``SpikeListDataModule``).
    """

    input_shape = (LYON_CHANNELS,)
    cache_name = "wavfolder"
    data_keys = ("data_dir", "folder")

    def __init__(
        self,
        data_dir: str | None = None,
        folder: str = ".",
        classes: list[str] | None = None,
        label_regex: str | None = None,
        test_regex: str | None = None,
        test_size: float = 0.1,
        time_steps: int = 500,
        val_size: int | float = 0.1,
        rate: int = 12500,
        decimation: int = 200,
        gain: float = 2000.0,
        hold: int = 10,
        taps: int = 24,
        threshold: float = 0.6,
        cache_dir: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        augment: SpikeJitter | None = None,
    ) -> None:
        super().__init__(time_steps, val_size, cache_dir, batch_size, num_workers, seed, augment=augment)
        self.data_dir = data_dir  # resolved by the base class
        self.folder = folder
        self.label_regex = re.compile(label_regex) if label_regex else None
        if self.label_regex is not None and "label" not in self.label_regex.groupindex:
            raise ConfigError(f"data.init_args.label_regex {label_regex!r} needs a named group (?P<label>...)")
        self.test_regex = re.compile(test_regex) if test_regex else None
        self.test_size = number("data.init_args.test_size", test_size, low=0, high=1, low_open=True, high_open=True,
                                hint="the fraction of files used as test when test_regex is null")
        for key, value in (("rate", rate), ("decimation", decimation), ("hold", hold), ("taps", taps)):
            number(f"data.init_args.{key}", value, low=1, integer=True)
        number("data.init_args.gain", gain, low=0, low_open=True)
        number("data.init_args.threshold", threshold)
        self.encoder = SpeechEncoder(rate, decimation, gain, hold, taps, threshold)
        self._given_classes = list(classes) if classes is not None else None
        self._classes: list[str] | None = self._given_classes
        self._files: list[tuple[Path, str]] | None = None

    # -- discovery ---------------------------------------------------------------------------
    def source_root(self) -> Path:
        return self.data_dir / self.folder

    def _label_of(self, path: Path) -> str:
        if self.label_regex is None:
            return path.parent.name
        m = self.label_regex.search(path.name)
        if m is None:
            raise DataError(f"{path}: file name does not match data.init_args.label_regex {self.label_regex.pattern!r}")
        return m.group("label")

    def _scan(self) -> list[tuple[Path, str]]:
        if self._files is None:
            root = self.source_root()
            if not root.is_dir():
                layout = "<label>_*.wav files matched by label_regex" if self.label_regex else "<label>/*.wav sub-folders"
                raise self.missing_data(f"audio folder {root}", f"{layout} under <data_dir>/{self.folder}")
            pattern = "*" if self.label_regex is not None else "*/*"
            paths = sorted(p for p in root.glob(pattern) if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not paths:
                raise DataNotFoundError(f"no .wav/.sph files found as {root}/{pattern}")
            self._files = [(p, self._label_of(p)) for p in paths]
        return self._files

    @property
    def classes(self) -> list[str]:
        if self._classes is None:
            labels = {lab for _, lab in self._scan()}
            numeric = all(lab.isdigit() for lab in labels)
            self._classes = sorted(labels, key=(lambda s: (int(s), s)) if numeric else None)
        return self._classes

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return len(self.classes)

    def _label_index(self, path: Path, label: str) -> int:
        try:
            return self.classes.index(label)
        except ValueError:
            raise DataError(
                f"{path}: label {label!r} is not one of data.init_args.classes {self.classes}; "
                "remove the file or add the class"
            ) from None

    def source_files(self, split: str) -> list[tuple[Path, int]]:
        files = [(p, self._label_index(p, lab)) for p, lab in self._scan()]
        root = self.source_root()
        if self.test_regex is not None:
            is_test = np.array([bool(self.test_regex.search(p.relative_to(root).as_posix())) for p, _ in files])
        else:
            g = torch.Generator().manual_seed(self.seed ^ 0x7E57)
            perm = torch.randperm(len(files), generator=g).numpy()
            is_test = np.zeros(len(files), bool)
            is_test[perm[: int(round(self.test_size * len(files)))]] = True
        want = split == "test"
        return [f for f, t in zip(files, is_test) if t == want]

    def cache_params(self) -> dict:
        return {
            **self.encoder.params(),
            "root": str(self.source_root().resolve()),
            "label_regex": self.label_regex.pattern if self.label_regex else None,
            "classes": self.classes,
        }

    def encode_file(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        return self.encoder(path)


FSDD_LABEL_REGEX = r"^(?P<label>\d)_(?P<speaker>[a-z]+)_(?P<index>\d+)\.wav$"
FSDD_OFFICIAL_TEST = r"_[0-4]\.wav$"  # FSDD README: recordings 0-4 of every speaker and digit are test


class FSDDDataModule(WavFolderDataModule):
    """Free Spoken Digit Dataset (``<data_dir>/FSDD/recordings/<digit>_<speaker>_<index>.wav``).

    Official split by default: index 0-4 test (300 files), 5-49 train (2,700); same six speakers in both.
    Pass ``test_regex: _theo_`` (or another speaker) for a speaker-independent split.
    """

    cache_name = "fsdd"

    def __init__(
        self,
        data_dir: str | None = None,
        folder: str = "FSDD/recordings",
        test_regex: str | None = FSDD_OFFICIAL_TEST,
        time_steps: int = 500,
        val_size: int | float = 270,
        cache_dir: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        augment: SpikeJitter | None = None,
    ) -> None:
        super().__init__(
            data_dir=data_dir, folder=folder, classes=[str(d) for d in range(10)], label_regex=FSDD_LABEL_REGEX,
            test_regex=test_regex, time_steps=time_steps, val_size=val_size, cache_dir=cache_dir,
            batch_size=batch_size, num_workers=num_workers, seed=seed, augment=augment,
        )
