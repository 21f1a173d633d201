"""The package metadata agrees with the hand-edited lock inputs: pyproject's dependencies are requirements.in's."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _requirements(path: Path) -> set[str]:
    """The requirement lines of a requirements .in file, normalised (comments, options and blank lines dropped)."""
    lines = (line.split(" #")[0].strip() for line in path.read_text().splitlines())
    return {str(Requirement(line)) for line in lines if line and not line.startswith(("#", "-"))}


def test_the_projects_dependencies_are_requirements_in():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {str(Requirement(line)) for line in project["dependencies"]} == _requirements(ROOT / "requirements.in")
    assert {str(Requirement(line)) for line in project["optional-dependencies"]["ray"]} == \
        _requirements(ROOT / "requirements-ray.in")
    assert project["requires-python"] == ">=3.11"


def test_ruff_is_pinned_in_the_test_lock_and_run_before_pytest():
    assert any(line.startswith("ruff==") for line in (ROOT / "tests" / "requirements.txt").read_text().splitlines())
    assert "ruff check" in (ROOT / "tests" / "run").read_text()
