"""Shared fixtures: the parity checkpoint copied into tests/, and the real data read in place from ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PARITY = Path(__file__).parent / "fixtures" / "kronos_parity"
SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def parity_input() -> pd.DataFrame:
    """The parity fixture's 200 synthetic hourly candles."""
    return pd.read_csv(PARITY / "input.csv", parse_dates=["timestamps"])


@pytest.fixture(scope="session")
def forecaster():
    """A Forecaster on the parity fixture's tiny checkpoint."""
    from kronos import Forecaster

    return Forecaster.from_pretrained(str(PARITY / "model"), str(PARITY / "tokenizer"), max_context=128)


def shared_file(relative: str) -> Path:
    """A file under ../shared, or skip the test saying it is absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} is absent: this test reads the shared data in place")
    return path
