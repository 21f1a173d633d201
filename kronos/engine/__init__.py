"""The sampling engine: a loaded Kronos tokenizer + predictor that turns candle histories into Monte Carlo paths.

    preprocess   histories and sampling arguments checked, normalised and stamped (`Prepared`)
    histories    what is kept per history between forecasts: ids and pre-filled keys/values (`HistoryCache`)
    planning     which forecasts share a generation loop, its turns, and the random draws
    forecaster   `Forecaster`: loading, `forecast`, `forecast_many` and the generation loop
    source       `ForecastSource`: what callers rely on of a Forecaster or of a Batcher running one
"""

from kronos.engine.forecaster import Forecaster
from kronos.engine.planning import DRAW_CHUNK, HISTORIES_PER_BATCH, PATH_CHUNK, draw_uniforms
from kronos.engine.preprocess import CLIP, Prepared, normalise, time_features
from kronos.engine.source import ForecastSource, Progress

__all__ = ["CLIP", "DRAW_CHUNK", "HISTORIES_PER_BATCH", "PATH_CHUNK", "ForecastSource", "Forecaster", "Prepared",
           "Progress", "draw_uniforms", "normalise", "time_features"]
