"""Judge a training run by the track record: the walk-forward backtest of the validation period, out of sample.

Origins fall every `every` rows inside the validation period (a forecast's own rows are never training rows; its
lookback may reach back before the split, as any forecast's history does). The new weights, their base (when
fine-tuning) and the baselines are scored on the same origins with the same paths per origin.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kronos import checkpoints
from kronos.engine import Forecaster
from kronos.evaluation.backtest import BacktestSettings, run_backtest
from kronos.training.data import Series
from kronos.training.run import EvaluationRequest

EVERY = 24  # rows between origins
SAMPLES = 30  # paths per origin, as the live forecast
MAX_ORIGINS = 300  # the latest ones, to bound the time the evaluation takes
KEPT = ("crps", "brier_upside", "coverage")  # per-hour scores kept in the record


def evaluate_on_validation(request: EvaluationRequest) -> dict:
    """The validation period's backtest of the new weights, their base and the random walk, for record.json."""
    trained = Forecaster.from_pretrained(str(request.model), str(request.tokenizer), max_context=request.max_context)
    contenders = {"trained": trained}
    if request.base is not None:
        base = request.base
        contenders["base"] = Forecaster(checkpoints.load_tokenizer(base.tokenizer), checkpoints.load_predictor(base.model),
                                        max_context=base.max_context, name=base.model)
    results = [_series(series, request, contenders) for series in request.series]
    return {"every": EVERY, "samples": SAMPLES, "series": [r for r in results if r is not None]}


def _series(series: Series, request: EvaluationRequest, contenders: dict[str, Forecaster]) -> dict | None:
    """One series' validation backtest: per contender the scores per hour, and skill against the random walk."""
    frame = pd.DataFrame(series.values, columns=["open", "high", "low", "close", "volume", "amount"])
    frame.insert(0, "timestamps", series.stamps)
    first = int(np.searchsorted(series.stamps, request.val_from))
    origins = (len(frame) - request.horizon - max(first, request.lookback)) // EVERY + 1
    if origins < 1:
        return None
    settings = BacktestSettings(origins=min(origins, MAX_ORIGINS), every=EVERY, horizon=request.horizon,
                                samples=SAMPLES, lookback=request.lookback)
    scored = {name: run_backtest(forecaster, frame, settings).to_dict() for name, forecaster in contenders.items()}
    any_run = next(iter(scored.values()))
    result = {"name": series.name, "origins": any_run["origins"], "first_origin": any_run["origin_times"][0],
              "last_origin": any_run["origin_times"][-1], "baseline_window": any_run["baseline_window"],
              "random_walk": {k: any_run["scores"]["random_walk"][k] for k in KEPT}}
    for name, run in scored.items():
        result[name] = {k: run["scores"]["model"][k] for k in KEPT}
        result[f"{name}_calibrated"] = {k: run["scores"]["model_calibrated"][k] for k in KEPT}
        result[f"{name}_skill"] = run["skill"]["model"]
        result[f"{name}_calibrated_skill"] = run["skill"]["model_calibrated"]
    return result
