"""Install files agree with each other and the code imports only pytorch_lightning."""
from __future__ import annotations

import re
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req.split("#")[0]).lower()


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_pyproject_is_the_one_dependency_list():
    assert not (REPO / "requirements.txt").exists(), "dependencies live in pyproject.toml only"
    text = (REPO / "environment.yml").read_text()
    pip = [_norm(m) for m in re.findall(r"^\s+- (-e [^\n]*)$", text, flags=re.M)]
    assert pip == ["-e.[dev]"], "environment.yml installs the project with its dev extras, nothing else"
    assert re.search(r'pip install -q -e "\.\[dev\]"', (REPO / "Makefile").read_text())


def test_torch_is_pinned_exactly():
    assert "torch==2.13.0" in {_norm(d) for d in _pyproject()["dependencies"]}
    assert not any(_norm(d).startswith("torch") and _norm(d) != "torch==2.13.0"
                   for extra in _pyproject()["optional-dependencies"].values() for d in extra)


def test_no_unified_lightning_imports():
    offenders = []
    for folder in ("src", "datamodules", "callbacks", "tests", "benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            if re.search(r"^\s*(import lightning\b|from lightning\b)", path.read_text(), flags=re.M):
                offenders.append(str(path))
    assert not offenders, f"use pytorch_lightning, not lightning: {offenders}"
