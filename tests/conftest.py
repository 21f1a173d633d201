"""Shared fixtures: the parity checkpoint copied into tests/, and the real data read in place from ../shared."""

from __future__ import annotations

import os
from pathlib import Path

from kronos.process import prepare

prepare()  # the test process's start: before torch loads
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

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


@pytest.fixture
def store(monkeypatch, tmp_path):
    """An empty candle store for the app, the parity checkpoint as its model, and no network."""
    import streamlit as st
    from app_server import offline

    from kronos.data import market
    from kronos.data.store import CandleStore

    monkeypatch.setenv("KRONOS_MODEL", str(PARITY / "model"))
    monkeypatch.setenv("KRONOS_TOKENIZER", str(PARITY / "tokenizer"))
    monkeypatch.setenv("KRONOS_STORE", str(tmp_path / "candles.sqlite"))
    monkeypatch.setattr(market, "make_exchange", offline)
    st.cache_data.clear()  # candles are cached by market, not by store
    return CandleStore()


@pytest.fixture
def filled(store, parity_input):
    """The store holding the parity fixture's 200 hourly candles as Binance BTC/USDT."""
    store.merge(parity_input, "binance", "BTC/USDT", "1h")
    return store


def shared_file(relative: str) -> Path:
    """A file under ../shared, or skip the test saying it is absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} is absent: this test reads the shared data in place")
    return path
