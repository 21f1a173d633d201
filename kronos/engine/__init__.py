"""The sampling engine: a loaded Kronos tokenizer + predictor that turns candle histories into Monte Carlo paths.

    preprocess   histories and sampling arguments checked, normalised and stamped (`Prepared`)
    histories    what is kept per history between forecasts: ids and pre-filled keys/values (`HistoryCache`)
    planning     which forecasts share a generation loop, its turns, and the random draws
    forecaster   `Forecaster`: loading, `forecast` and `forecast_many`
    generation   `Generator`: the generation loop (prefill, one step at a time, decode)
    source       `ForecastSource`: what callers rely on of a Forecaster or of a Batcher running one

The tuning constants (PATH_CHUNK, HISTORIES_KEPT) are read where they are defined: patch them there.
"""

from kronos.engine.forecaster import Forecaster
from kronos.engine.planning import DRAW_SCHEME, HISTORIES_PER_BATCH, draw_uniforms
from kronos.engine.preprocess import Prepared, column_scales, normalise, time_features
from kronos.engine.source import ForecastSource, Progress

__all__ = ["DRAW_SCHEME", "HISTORIES_PER_BATCH", "ForecastSource", "Forecaster", "Prepared", "Progress",
           "column_scales", "draw_uniforms", "normalise", "time_features"]
