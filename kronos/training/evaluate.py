"""Judge a training run by the track record: the walk-forward backtest of the validation period, out of sample.

Origins fall every `every` rows inside the validation period (a forecast's own rows are never training rows; its
lookback may reach back before the split, as any forecast's history does). The new weights, their base (when
fine-tuning), the baselines and the combined forecast are scored on the same origins with the same paths per origin.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kronos.engine import Forecaster
from kronos.evaluation.backtest import BacktestSettings, run_backtest
from kronos.evaluation.registry import BASELINES
from kronos.evaluation.scores import Scores, plain
from kronos.model import checkpoints
from kronos.settings import ORIGIN_LIMITS, ForecastSettings
from kronos.training.data import Series
from kronos.training.run import EvaluationRequest

EVERY = 24  # rows between origins
SAMPLES = 30  # paths per origin, as the live forecast
KEPT = ("crps", "brier_upside", "coverage")  # per-hour scores kept in the record


def evaluation_settings(lookback: int, horizon: int, origins: int = ORIGIN_LIMITS.training) -> BacktestSettings:
    """The validation backtest's settings: the run's lookback and horizon, SAMPLES paths, `origins` every EVERY rows
    (at most ORIGIN_LIMITS.training); InvalidInputError when a backtest cannot take them (checked before training)."""
    return BacktestSettings(ForecastSettings(horizon=horizon, samples=SAMPLES, lookback=lookback),
                            origins=min(origins, ORIGIN_LIMITS.training), every=EVERY)


def evaluate_on_validation(request: EvaluationRequest) -> dict:
    """The validation period's backtest of the new weights, their base and the random walk, for record.json."""
    trained = Forecaster.from_pretrained(str(request.model), str(request.tokenizer), max_context=request.max_context)
    contenders = {"trained": trained}
    if request.base is not None:
        base = request.base
        contenders["base"] = Forecaster(checkpoints.load_tokenizer(base.tokenizer),
                                        checkpoints.load_predictor(base.model),
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
    settings = evaluation_settings(request.lookback, request.horizon, origins)
    scored = {name: run_backtest(forecaster, frame, settings) for name, forecaster in contenders.items()}
    any_run = next(iter(scored.values()))
    result = {"name": series.name, "origins": len(any_run.origin_times),
              "first_origin": any_run.origin_times[0].isoformat(), "last_origin": any_run.origin_times[-1].isoformat(),
              "baseline_window": settings.forecast.lookback - 1, "best_baseline": any_run.best_baseline,
              **{name: _kept(any_run.scores[name]) for name in BASELINES}}
    for name, run in scored.items():
        result[name] = _kept(run.scores["model"])
        result[f"{name}_calibrated"] = _kept(run.scores["model_calibrated"])
        result[f"{name}_combined"] = _kept(run.scores["combined"])
        result[f"{name}_skill"] = plain(run.skill["model"])
        result[f"{name}_calibrated_skill"] = plain(run.skill["model_calibrated"])
        result[f"{name}_combined_skill"] = plain(run.skill["combined"])
        result[f"{name}_combined_weights"] = plain(run.weights)
    return result


def _kept(scores: Scores) -> dict:
    """The per-hour scores a training record keeps of one forecaster."""
    return plain({key: getattr(scores, key) for key in KEPT})
