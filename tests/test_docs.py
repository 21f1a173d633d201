"""Every Python example of README.md and docs/ runs as written, so none can go stale.

Each ```python block runs in a fresh namespace, in a folder holding `candles.csv` (the parity fixture's candles), with
every preset and hub id resolved to the parity checkpoint (the hub is out of reach in tests) and no network.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import PARITY

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def blocks() -> list[tuple[str, str]]:
    """(where, code) of every Python block of the documents, `where` being the file and the block's first line."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        for match in BLOCK.finditer(text):
            found.append((f"{document.name}:{text[:match.start()].count(chr(10)) + 1}", match.group(1)))
    return found


@pytest.fixture
def parity_everywhere(monkeypatch, tmp_path):
    """Presets and hub ids load the parity checkpoint; the working folder holds candles.csv."""
    from kronos.model import checkpoints

    real = checkpoints.select

    def select(model, tokenizer=None, max_context=None):
        local = Path(model).is_dir()
        return real(model if local else str(PARITY / "model"), tokenizer if local else str(PARITY / "tokenizer"),
                    max_context or (None if local else 128))

    monkeypatch.setattr(checkpoints, "select", select)
    shutil.copy(PARITY / "input.csv", tmp_path / "candles.csv")
    monkeypatch.chdir(tmp_path)


def test_the_documents_have_python_examples():
    assert len(blocks()) >= 1, "README.md and docs/ should show the Python API in at least one example"


@pytest.mark.parametrize(("where", "code"), blocks(), ids=[where for where, _ in blocks()])
def test_every_python_example_runs(where, code, parity_everywhere):
    exec(compile(code, where, "exec"), {"__name__": "__docs__"})
