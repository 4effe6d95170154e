"""On-disk cache of encoded spike lists that cannot go stale.

Layout: ``<cache_dir>/<name>-<hash12>/<split>.npz`` plus ``params.json``. ``hash12`` is the sha256 of
the canonical JSON of the **key**: the cache format version, the datamodule class, the resolved
source folder and every encoding parameter (:meth:`SpikeListDataModule.cache_params`). So a second
data folder, another class or another parameter gets its own folder.

Each ``<split>.npz`` also stores what it was built from (:class:`SourceRecords`): per source file
its path relative to the folder, its size and its modification time in ns, and for a file modified
less than :data:`RACY_NS` before the scan its sha256 (a file edited again within the same timestamp
tick keeps its mtime; git's "racy clean" case). Before an entry is used, the current files are
scanned and compared: an added, removed, renamed, resized or touched file, or a racy file whose
content changed, makes the entry stale, and it is rebuilt (with a warning). Not detected: a content
change whose mtime is then set back to the old value by hand (``touch -r``, ``cp -p`` over it) on a
file older than :data:`RACY_NS` at build time; delete the cache folder after such edits.

Files are written atomically (temporary file, then ``os.replace``), so a killed build leaves no
half-written entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from hm2bp.atomic import atomic_write
from hm2bp.errors import OutputError

ENV_CACHE_DIR = "HM2BP_CACHE_DIR"
CACHE_VERSION = 2  # bump when the stored format or an encoder changes (2: source records, root in the key)
RACY_NS = 3_000_000_000  # files modified this close to the scan are hashed (coarse timestamp ticks, NFS)


@dataclass
class SpikeLists:
    """Encoded samples of one split, CSR: sample ``i`` owns ``channels/times[offsets[i]:offsets[i+1]]``."""

    channels: np.ndarray  # [nnz] int
    times: np.ndarray  # [nnz] int, steps (0-based, not capped at T)
    offsets: np.ndarray  # [n + 1] int64
    labels: np.ndarray  # [n] int64
    sources: np.ndarray  # [n] str, source file of each sample (relative to the data folder)

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def from_samples(cls, samples: Sequence[tuple[np.ndarray, np.ndarray]], labels, sources) -> "SpikeLists":
        counts = np.array([len(c) for c, _ in samples], dtype=np.int64)
        offsets = np.zeros(len(samples) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        ch = np.concatenate([c for c, _ in samples]) if samples else np.zeros(0, np.int64)
        tt = np.concatenate([t for _, t in samples]) if samples else np.zeros(0, np.int64)
        return cls(
            channels=ch.astype(_small_int(ch)),
            times=tt.astype(_small_int(tt)),
            offsets=offsets,
            labels=np.asarray(labels, dtype=np.int64),
            sources=np.asarray([str(s) for s in sources], dtype=str),
        )

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.channels[a:b], self.times[a:b]

    def dense(self, i: int, time_steps: int, num_channels: int) -> np.ndarray:
        """Sample ``i`` as a dense ``[T, channels]`` uint8 array (spikes at ``t >= T`` dropped)."""
        ch, t = self.sample(i)
        out = np.zeros((time_steps, num_channels), dtype=np.uint8)
        m = t < time_steps
        out[t[m].astype(np.int64), ch[m].astype(np.int64)] = 1
        return out


def _small_int(a: np.ndarray):
    if a.size == 0 or (a.min() >= -(2**15) and a.max() < 2**15):
        return np.int16
    return np.int32


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class SourceRecords:
    """What a split was built from: per file ``(relative path, size, mtime_ns, sha256 if racy else "")``."""

    paths: np.ndarray  # [n] str, relative to the source folder (posix)
    sizes: np.ndarray  # [n] int64
    mtimes: np.ndarray  # [n] int64, ns
    hashes: np.ndarray  # [n] str, sha256 of files modified within RACY_NS of the scan, else ""

    @classmethod
    def scan(cls, root: Path, files: Sequence[Path]) -> "SourceRecords":
        """Stat every file (and hash the racily recent ones) now."""
        now = time.time_ns()
        paths, sizes, mtimes, hashes = [], [], [], []
        for f in files:
            st = os.stat(f)
            paths.append(Path(f).relative_to(root).as_posix())
            sizes.append(st.st_size)
            mtimes.append(st.st_mtime_ns)
            hashes.append(_sha256(Path(f)) if st.st_mtime_ns >= now - RACY_NS else "")
        return cls(np.asarray(paths, dtype=str), np.asarray(sizes, np.int64), np.asarray(mtimes, np.int64),
                   np.asarray(hashes, dtype=str))

    def stale_reason(self, stored: "SourceRecords", root: Path) -> str | None:
        """Why an entry built from ``stored`` does not match these (current) files, or ``None``."""
        if len(stored.paths) != len(self.paths) or not np.array_equal(stored.paths, self.paths):
            return "the list of source files changed"
        changed = np.nonzero((stored.sizes != self.sizes) | (stored.mtimes != self.mtimes))[0]
        if changed.size:
            return f"{root / str(self.paths[changed[0]])} changed since it was encoded (size or modification time)"
        for i in np.nonzero(stored.hashes != "")[0]:
            if _sha256(root / str(self.paths[i])) != str(stored.hashes[i]):
                return f"{root / str(self.paths[i])} changed since it was encoded (content)"
        return None


class CacheEntryError(ValueError):
    """A cache file is unreadable, inconsistent or stale (the datamodule rebuilds it)."""


_LISTS = ("channels", "times", "offsets", "labels", "sources")
_RECORDS = ("src_sizes", "src_mtimes", "src_hashes")


def save_spike_lists(path: Path, lists: SpikeLists, records: SourceRecords) -> None:
    """Write ``lists`` and the ``records`` they were built from to ``path`` (.npz) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
        np.savez(f, **{k: getattr(lists, k) for k in _LISTS}, src_sizes=records.sizes, src_mtimes=records.mtimes,
                 src_hashes=records.hashes, version=np.asarray(CACHE_VERSION))


def load_spike_lists(path: Path, current: SourceRecords | None = None, root: Path | None = None) -> SpikeLists:
    """Read a cache file; :class:`CacheEntryError` if it is corrupt, or stale against ``current`` files."""
    try:
        with np.load(path, allow_pickle=False) as z:
            version = int(z["version"]) if "version" in z.files else -1
            if version != CACHE_VERSION:
                raise CacheEntryError(f"cache file {path} has format version {version}, expected {CACHE_VERSION}")
            data = {k: z[k] for k in (*_LISTS, *_RECORDS)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        if isinstance(err, CacheEntryError):
            raise
        raise CacheEntryError(f"cache file {path} is corrupt ({type(err).__name__}: {err})") from err
    lists = SpikeLists(*(data[k] for k in _LISTS))
    n = len(lists.labels)
    if (
        len(lists.offsets) != n + 1
        or len(lists.sources) != n
        or int(lists.offsets[0]) != 0
        or int(lists.offsets[-1]) != len(lists.channels)
        or len(lists.channels) != len(lists.times)
        or (n and np.any(np.diff(lists.offsets) < 0))
        or any(len(data[k]) != n for k in _RECORDS)
    ):
        raise CacheEntryError(f"cache file {path} is inconsistent (truncated or edited)")
    if current is not None:
        stored = SourceRecords(lists.sources, data["src_sizes"], data["src_mtimes"], data["src_hashes"])
        reason = current.stale_reason(stored, root if root is not None else Path("."))
        if reason is not None:
            raise CacheEntryError(f"cache file {path} is stale: {reason}")
    return lists


def params_hash(params: dict) -> str:
    """First 12 hex digits of the sha256 of the canonical JSON of ``params`` (with the format version)."""
    blob = json.dumps({"cache_version": CACHE_VERSION, **params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir`` > ``$HM2BP_CACHE_DIR`` > ``~/.cache/hm2bp`` (never inside the data folder)."""
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hm2bp"


class SpikeCache:
    """Encoded splits of one source under ``<cache_dir>/<name>-<hash12>/`` (see the module docstring).

    ``key`` must hold everything the encoded trains depend on: the datamodule, the resolved source
    folder and every encoding parameter.
    """

    def __init__(self, cache_dir: Path, name: str, key: dict) -> None:
        self.key = key
        self.folder = Path(cache_dir) / f"{name}-{params_hash(key)}"

    def path(self, split: str) -> Path:
        return self.folder / f"{split}.npz"

    def get(self, split: str, root: Path, files: Sequence[Path], build: Callable[[], "SpikeLists"]) -> SpikeLists:
        """The cached split if present and built from exactly these files, else ``build()`` (cached atomically)."""
        records = SourceRecords.scan(root, files)  # before building: a file edited meanwhile is stale next time
        path = self.path(split)
        if path.is_file():
            try:
                return load_spike_lists(path, records, root)
            except CacheEntryError as err:
                warnings.warn(f"{err}; rebuilding it", stacklevel=2)
        lists = build()
        try:
            self._write_params()
            save_spike_lists(path, lists, records)
        except OSError as err:
            raise OutputError(
                f"cannot write the spike cache {path} ({err.strerror or err}); set "
                f"data.init_args.cache_dir (or $HM2BP_CACHE_DIR) to a writable folder"
            ) from err
        return lists

    def _write_params(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        params_file = self.folder / "params.json"
        if params_file.is_file():
            return
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".json.part")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"cache_version": CACHE_VERSION, **self.key}, f, indent=1, sort_keys=True, default=str)
            os.chmod(tmp, 0o644)
            os.replace(tmp, params_file)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
