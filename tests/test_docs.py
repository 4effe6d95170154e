"""Docs that cannot rot: every ```python block of README.md and docs/*.md, and every script the docs
tell users to run, runs here on small data (the embedded digits, or ``$HM2BP_TEST_DATA``).

Each block runs as written, in a fresh interpreter, in a temporary working directory, under a time
limit; a Lightning ``Trainer`` it builds sees 2 training batches and 1 validation, test and predict
batch per epoch (Lightning's ``PL_TRAINER_LIMIT_*`` defaults, :data:`BLOCK_TRAINER`; arguments the
block passes win). Its file is padded so that a traceback's line numbers are the Markdown file's, and a failure
names ``<doc>:<line>``. An HTML comment on the line(s) right before the fence changes that:

* ``<!-- doctest: skip (reason) -->``: not run; the test is skipped with the reason;
* ``<!-- doctest: needs-data NAME (reason) -->``: runs only when ``$HM2BP_TEST_DATA/NAME`` exists
  (skipped with the reason otherwise); ``./data`` in the working directory is that folder;
* ``<!-- doctest: files NAME (reason) -->``: the block reads a file that the shell commands before it
  write; the test writes it first, with the same commands on small data (:data:`FILES`).

Scripts: every file of ``benchmarks/`` and ``scripts/`` that a doc names must have a small run in
:data:`SCRIPTS` (small sizes, one repeat) or a reason it cannot run here.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(`{3,})\s*(python|py)\s*$")
MARKER = re.compile(r"^<!--\s*doctest:\s*(?P<kind>[a-z-]+)\s*(?P<arg>[^(\s]*)\s*(?:\((?P<reason>.*)\))?\s*-->\s*$")
KINDS = ("skip", "needs-data", "files")
TIMEOUT = 300  # seconds per block or script
# small data for the Trainers of the blocks: defaults that Lightning reads from the environment
BLOCK_TRAINER = {"PL_TRAINER_LIMIT_TRAIN_BATCHES": "2", "PL_TRAINER_LIMIT_VAL_BATCHES": "1",
                 "PL_TRAINER_LIMIT_TEST_BATCHES": "1", "PL_TRAINER_LIMIT_PREDICT_BATCHES": "1"}
DIGITS = REPO / "configs" / "experiment" / "digits.yaml"
DIGITS_NIR = REPO / "configs" / "experiment" / "digits_nir.yaml"
# the digits experiments, shrunk: one epoch of 2 batches, one validation and one test batch
SMALL_FIT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
             "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false"]


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # 1-based line of the first line of code (after the fence)
    code: str
    markers: tuple[tuple[str, str, str], ...]  # (kind, argument, reason)

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def python_blocks(doc: Path) -> list[Block]:
    """The ```python blocks of ``doc`` with the doctest markers on the lines right before each fence."""
    lines = doc.read_text().splitlines()
    blocks, k = [], 0
    while k < len(lines):
        m = FENCE.match(lines[k])
        if not m:
            k += 1
            continue
        markers, j = [], k - 1
        while j >= 0 and lines[j].lstrip().startswith("<!--") and "doctest" in lines[j]:
            mm = MARKER.match(lines[j].strip())
            if not mm or mm["kind"] not in KINDS:
                raise ValueError(f"{doc.relative_to(REPO)}:{j + 1}: unknown doctest marker {lines[j].strip()!r}; "
                                 f"expected <!-- doctest: {'|'.join(KINDS)} [ARG] (reason) -->")
            markers.append((mm["kind"], mm["arg"], (mm["reason"] or "").strip()))
            j -= 1
        end = next((e for e in range(k + 1, len(lines)) if lines[e].strip() == m[1]), None)
        if end is None:
            raise ValueError(f"{doc.relative_to(REPO)}:{k + 1}: unclosed ```python block")
        blocks.append(Block(doc, k + 2, "\n".join(lines[k + 1:end]) + "\n", tuple(reversed(markers))))
        k = end + 1
    return blocks


BLOCKS = [b for doc in DOCS for b in python_blocks(doc)]


def _env(tmp_path: Path, extra: dict | None = None) -> dict:
    env = dict(os.environ, **(extra or {}))
    env.update(WANDB_MODE="disabled", WANDB_DIR=str(tmp_path), WANDB_SILENT="true", MPLBACKEND="Agg", OMP_NUM_THREADS="1",
               HM2BP_CACHE_DIR=str(tmp_path / "hm2bp-cache"), PYTHONUNBUFFERED="1")
    env.pop("WANDB_API_KEY", None)
    return env


def _run(cmd: list[str], cwd: Path, what: str, timeout: float = TIMEOUT, env: dict | None = None
         ) -> subprocess.CompletedProcess:
    """Run ``cmd``; a non-zero exit or a timeout fails the test naming ``what`` with the output's tail."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=_env(cwd, env), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{what}: still running after {timeout:.0f} s\n{(err.stderr or b'')[-3000:]!s}", pytrace=False)
    if proc.returncode != 0:
        out = (proc.stdout[-1500:] + "\n" + proc.stderr[-4000:]).strip()
        pytest.fail(f"{what}: exit {proc.returncode}\n{out}", pytrace=False)
    return proc


def _data_root() -> Path | None:
    env = os.environ.get("HM2BP_TEST_DATA")
    root = Path(env) if env else REPO.parent / "shared" / "data"
    return root if root.is_dir() else None


# ---------------------------------------------------------------------------------------------------------------
# Files a block reads that the shell commands before it write, made the same way on small data


HM2BP = str(Path(sys.executable).parent / "hm2bp")


@pytest.fixture(scope="module")
def digits_nir_run(tmp_path_factory) -> Path:
    """A folder where ``hm2bp fit --config configs/experiment/digits_nir.yaml`` ran, shrunk (one per module)."""
    cwd = tmp_path_factory.mktemp("digits_nir")
    _run([HM2BP, "fit", "--config", str(DIGITS_NIR), *SMALL_FIT], cwd,
         "hm2bp fit --config configs/experiment/digits_nir.yaml (small)")
    return cwd


def _last_checkpoint(cwd: Path) -> Path:
    found = sorted((cwd / "runs" / "digits_nir").glob("**/last.ckpt"), key=lambda p: p.stat().st_mtime)
    assert found, f"no last.ckpt under {cwd / 'runs' / 'digits_nir'}"
    return found[-1]


def _digits_nir_file(cwd: Path, request) -> None:
    """docs/interop.md, "Example": fit digits_nir, then ``hm2bp export ... --out digits.nir``."""
    ckpt = _last_checkpoint(request.getfixturevalue("digits_nir_run"))
    _run([HM2BP, "export", "--config", str(DIGITS_NIR), "--ckpt_path", str(ckpt), "--out", "digits.nir"], cwd,
         "hm2bp export --config configs/experiment/digits_nir.yaml ... --out digits.nir")


def _digits_runs(cwd: Path, request) -> None:
    """docs/python-api.md: ``runs/digits/<run>`` of ``hm2bp fit --config configs/experiment/digits.yaml``, shrunk."""
    _run([HM2BP, "fit", "--config", str(DIGITS), *SMALL_FIT], cwd,
         "hm2bp fit --config configs/experiment/digits.yaml (small)")


FILES = {"digits.nir": _digits_nir_file, "runs/digits": _digits_runs}


def test_the_docs_have_python_blocks_and_every_marker_is_known():
    assert len(BLOCKS) >= 5 and any(b.doc.name == "README.md" for b in BLOCKS)
    for block in BLOCKS:
        for kind, arg, reason in block.markers:
            assert reason or kind == "files", f"{block.where}: a {kind} marker needs a (reason)"
            assert kind != "files" or arg in FILES, f"{block.where}: no recipe for file {arg!r} (FILES)"
            assert kind != "needs-data" or arg, f"{block.where}: needs-data names the folder under $HM2BP_TEST_DATA"


def test_markers_are_read_from_the_lines_before_the_fence(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    doc = tmp_path / "page.md"
    doc.write_text("text\n\n<!-- doctest: needs-data MNIST (the full MNIST) -->\n<!-- doctest: skip (slow) -->\n"
                   "```python\nprint(1)\n```\n\n```python\nprint(2)\n```\n<!-- doctest: sikp (typo) -->\n```py\n```\n")
    with pytest.raises(ValueError, match=r"page.md:12: unknown doctest marker"):
        python_blocks(doc)
    doc.write_text("\n".join(doc.read_text().splitlines()[:11]) + "\n")
    first, second = python_blocks(doc)
    assert (first.line, first.code, first.markers) == (6, "print(1)\n", (("needs-data", "MNIST", "the full MNIST"),
                                                                         ("skip", "", "slow")))
    assert (second.where, second.code, second.markers) == ("page.md:10", "print(2)\n", ())


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_python_block_runs(block: Block, tmp_path, request):
    for kind, arg, reason in block.markers:
        if kind == "skip":
            pytest.skip(f"{block.where}: {reason}")
        if kind == "needs-data":
            root = _data_root()
            if root is None or not (root / arg).exists():
                pytest.skip(f"{block.where}: needs $HM2BP_TEST_DATA/{arg} ({reason})")
            (tmp_path / "data").symlink_to(root)
    for kind, arg, _ in block.markers:
        if kind == "files":
            FILES[arg](tmp_path, request)
    script = tmp_path / f"{block.doc.name}.py"
    script.write_text("\n" * (block.line - 1) + block.code)  # tracebacks give the Markdown file's line numbers
    _run([sys.executable, str(script)], tmp_path, f"{block.where}: the python block failed (line numbers are "
         f"{block.doc.relative_to(REPO)}'s)", env=BLOCK_TRAINER)


# ---------------------------------------------------------------------------------------------------------------
# Scripts the docs tell users to run


@dataclass(frozen=True)
class Script:
    args: tuple[str, ...] = ()
    skip: str = ""  # why it cannot run here
    slow: bool = False
    needs_run: bool = False  # runs where a small digits_nir fit ran (its checkpoints; it writes nothing there)


SCRIPTS: dict[str, Script] = {
    "benchmarks/bench_mlp.py": Script(("--T", "20", "--batch", "4", "--repeats", "1", "--threads", "1")),
    "benchmarks/bench_cnn.py": Script(("--T", "10", "--batch", "2", "--repeats", "1", "--threads", "1")),
    "benchmarks/bench_input_checks.py": Script(("--T", "20", "--batch", "4", "--repeats", "1", "--threads", "1")),
    "benchmarks/profile_step.py": Script(("--T", "20", "--batch", "4", "--repeats", "1", "--threads", "1")),
    "benchmarks/profile_cuda.py": Script(("--device", "cpu", "--T", "20", "--batch", "4", "--warmup", "1",
                                          "--top", "3")),
    "benchmarks/profile_cnn.py": Script(("1", "1")),  # threads, batch
    "benchmarks/conv_paths.py": Script(("--batch", "1", "--T", "20", "--repeats", "1"), slow=True),
    "benchmarks/device_check.py": Script(("--device", "cpu")),  # CPU against CPU; the CUDA run is @pytest.mark.gpu
    # Triton's interpreter on the CPU (the script's own smoke mode)
    "benchmarks/fused_scans.py": Script(("--device", "cpu", "--T", "8", "--batch", "2", "--no-timing")),
    "benchmarks/lif_numba_probe.py": Script(("--T", "20", "--shape", "2", "2", "2", "2")),
    "benchmarks/lif_compile_probe.py": Script(("--neurons", "100", "--T", "32", "--repeats", "1"), slow=True),
    "benchmarks/run_all.py": Script(("--T", "20", "--batch", "4", "--repeats", "1", "--threads", "1", "--no-cnn",
                                     "--rules", "hm2bp", "--out", "results"), slow=True),
    "benchmarks/run_cnn.py": Script(("--T", "10", "--batch", "2", "--ratio-batch", "2", "--ratio-T", "10",
                                     "--ratio-rounds", "1", "--repeats", "1", "--threads", "1", "--rules", "hm2bp",
                                     "--out", "results"), slow=True),
    "benchmarks/nir_parity.py": Script(("--config", str(DIGITS_NIR), "--ckpt_path", "last", "--max_batches", "1",
                                        "--simulator", "norse"), needs_run=True),
    "benchmarks/gpu_session.sh": Script(skip="needs a CUDA device and MNIST; `bash -n` checks its syntax here"),
    "scripts/plot_curves.py": Script(("--experiment", "mnist_mlp", "--run", "hm2bp=curves.csv", "--out",
                                      "img/curve.png")),
    # the latest run of the small digits_nir fit, 2 draws of one test batch
    "scripts/average_draws.py": Script(("runs/digits_nir", "--draws", "2", "--limit-batches", "1"), needs_run=True),
    # the repository's docs/data/epoch_times.csv, drawn into the temporary folder
    "scripts/plot_epoch_times.py": Script(("--out", "img/epoch_times.png")),
}


def documented_scripts() -> set[str]:
    """Files of benchmarks/ and scripts/ that README.md or docs/*.md name (with or without their folder)."""
    text = "\n".join(doc.read_text() for doc in DOCS)
    files = [p for folder in ("benchmarks", "scripts") for p in (REPO / folder).glob("*") if p.suffix in (".py", ".sh")]
    return {str(p.relative_to(REPO)) for p in files if re.search(rf"(?<![\w/]){re.escape(p.name)}\b", text)
            or str(p.relative_to(REPO)) in text}


def test_every_documented_script_has_a_small_run():
    documented = documented_scripts()
    assert {"benchmarks/nir_parity.py", "scripts/plot_curves.py"} <= documented
    missing = sorted(documented - SCRIPTS.keys())
    assert not missing, f"documented scripts without a small run in tests/test_docs.py SCRIPTS: {missing}"


def test_gpu_session_script_parses():
    subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "gpu_session.sh")], check=True)


def _script_params():
    for name, script in SCRIPTS.items():
        marks = [pytest.mark.slow] if script.slow else []
        yield pytest.param(name, script, id=name, marks=marks)


@pytest.mark.parametrize("name,script", list(_script_params()))
def test_documented_script_runs_on_small_data(name: str, script: Script, tmp_path, request):
    if script.skip:
        pytest.skip(f"{name}: {script.skip}")
    cwd = request.getfixturevalue("digits_nir_run") if script.needs_run else tmp_path
    args = list(script.args)
    if name == "scripts/plot_curves.py":
        (tmp_path / "curves.csv").write_text("epoch,train_acc,val_acc,test_acc,train_seconds,lr\n"
                                             "1,0.90,0.95,0.9612,300.5,0.001\n2,0.96,0.97,0.9703,299.0,0.001\n")
        root = _data_root()
        if root is not None and (root / "official-curves.csv").is_file():
            args += ["--official", str(root / "official-curves.csv")]
    cmd = ["bash" if name.endswith(".sh") else sys.executable, str(REPO / name), *args]
    _run(cmd, cwd, f"python {name} {' '.join(args)}")
