"""Install files agree with each other and the code imports only pytorch_lightning."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req.split("#")[0]).lower()


def _requirements() -> set[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return {_norm(l) for l in lines if _norm(l)}


def test_pyproject_matches_requirements():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = {_norm(d) for d in project["dependencies"]} | {_norm(d) for d in project["optional-dependencies"]["dev"]}
    assert deps == _requirements()


def test_environment_yml_matches_requirements():
    text = (REPO / "environment.yml").read_text()
    pip = {_norm(m) for m in re.findall(r"^\s+- ([^-#\s][^\n]*)$", text, flags=re.M) if not m.startswith(("python", "pip"))}
    pip = {p for p in pip if p not in {"conda-forge", "nodefaults"}}
    assert pip == _requirements()


def test_torch_is_pinned_exactly():
    assert "torch==2.13.0" in _requirements()


def test_no_unified_lightning_imports():
    offenders = []
    for folder in ("src", "datamodules", "callbacks", "tests", "benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            if re.search(r"^\s*(import lightning\b|from lightning\b)", path.read_text(), flags=re.M):
                offenders.append(str(path))
    assert not offenders, f"use pytorch_lightning, not lightning: {offenders}"
