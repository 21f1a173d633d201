"""Synthetic candles and models for templates, benchmarks and tests: no market data or weights needed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from kronos.engine import Forecaster


def random_walk(rows: int, seed: int = 0) -> pd.DataFrame:
    """Synthetic hourly BTC-like candles (geometric random walk)."""
    rng = np.random.default_rng(seed)
    close = 60000 * np.exp(np.cumsum(rng.normal(0, 0.006, rows)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 0.003, rows)) * close
    volume = rng.lognormal(7, 0.5, rows)
    return pd.DataFrame({
        "timestamps": pd.date_range("2025-01-01", periods=rows, freq="h"),
        "open": open_, "high": np.maximum(open_, close) + spread, "low": np.minimum(open_, close) - spread,
        "close": close, "volume": volume, "amount": volume * close})


def random_forecaster(model: str = "mini", seed: int = 0) -> Forecaster:
    """A Forecaster with random weights of a published model's shapes (a preset name), for benchmarks and tests."""
    import torch

    from kronos.engine import Forecaster
    from kronos.model import Kronos, KronosTokenizer
    from kronos.model.checkpoints import PRESETS

    torch.manual_seed(seed)
    preset = PRESETS[model]
    return Forecaster(KronosTokenizer(preset.tokenizer_config), Kronos(preset.predictor_config),
                      max_context=preset.max_context, name=f"random-{model}")


def random_checkpoint(directory: Path, model: str = "mini") -> dict[str, str]:
    """A preset's shapes with random weights saved under `directory` (model/, tokenizer/); the KRONOS_MODEL and
    KRONOS_TOKENIZER environment naming them."""
    from kronos.model.checkpoints import save_checkpoint

    forecaster = random_forecaster(model)
    save_checkpoint(forecaster.model, directory / "model")
    save_checkpoint(forecaster.tokenizer, directory / "tokenizer")
    return {"KRONOS_MODEL": str(directory / "model"), "KRONOS_TOKENIZER": str(directory / "tokenizer")}
