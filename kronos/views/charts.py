"""Plotly figures of a forecast and of a backtest; no Streamlit here, so the dashboard and the HTTP API draw the same
charts. The backtest figures take the typed `Backtest` (kronos.evaluation.backtest) and read its attributes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.basedatatypes import BaseTraceType
from plotly.subplots import make_subplots

from kronos.engine.forecast import Forecast
from kronos.errors import InvalidInputError
from kronos.evaluation import registry
from kronos.evaluation.scores import Scores
from kronos.schemas.calibrated import Calibrated
from kronos.views.texts import price_text

if TYPE_CHECKING:
    from kronos.evaluation.backtest import Backtest

BANDS = ((0.95, "rgba(31,119,180,0.12)"), (0.80, "rgba(31,119,180,0.22)"), (0.50, "rgba(31,119,180,0.35)"))
BLUE, ORANGE, GREY, RED, BLACK = "#1f77b4", "#ff7f0e", "#7f7f7f", "#d62728", "#000000"
# the forecasters that are not baselines (kronos.evaluation.registry): label and colour in every chart
OWN = {"model": ("model (raw)", BLUE), "model_calibrated": ("model (calibrated)", ORANGE),
       "combined": ("combined", BLACK)}
SHOWN = ("model", "model_calibrated", "combined", registry.REFERENCE)  # the coverage and reliability charts' default
LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "legend": {"orientation": "h"}}
SCORE_LAYOUT = {**LAYOUT, "legend": {"orientation": "h", "y": -0.2, "yanchor": "top"}}  # legend below the x title


def forecasters() -> dict[str, tuple[str, str]]:
    """A backtest's forecasters (keys of its `scores`, in their order) and the pool's components: label and colour in
    every chart, the baselines' from the registry."""
    return {name: OWN[name] if name in OWN else (registry.BASELINES[name].label, registry.BASELINES[name].colour)
            for name in registry.forecasters()}


def candles_trace(frame: pd.DataFrame, name: str = "history") -> go.Candlestick:
    """One candlestick trace of a frame with `timestamps` and open/high/low/close."""
    return go.Candlestick(x=frame["timestamps"], open=frame["open"], high=frame["high"], low=frame["low"],
                          close=frame["close"], name=name)


def candles_chart(frame: pd.DataFrame, title: str = "", rows: int = 500) -> go.Figure:
    """The last `rows` candles of a frame, e.g. to preview custom data before forecasting."""
    figure = go.Figure(candles_trace(frame.iloc[-rows:]))
    figure.update_layout(xaxis_rangeslider_visible=False, title=title, yaxis_title="price", **LAYOUT)
    return figure


def _band_trace(x: list, low, high, width: float, colour: str) -> go.Scatter:
    return go.Scatter(x=x + x[::-1], y=list(high) + list(low)[::-1], fill="toself", fillcolor=colour,
                      line={"width": 0}, hoverinfo="skip", name=f"{width:.0%} band")


def _add_bands(figure: go.Figure, forecast: Forecast) -> None:
    """The 95/80/50% bands of the close (widest first, so the narrow ones stay visible)."""
    x = list(forecast.timestamps)
    for width, colour in BANDS:
        low, high = forecast.quantile((1 - width) / 2)["close"], forecast.quantile((1 + width) / 2)["close"]
        figure.add_trace(_band_trace(x, low, high, width, colour))


def fan_chart(forecast: Forecast, calibration_rows: int = 120, calibrated: Calibrated | None = None) -> go.Figure:
    """Candles of the recent history, then the forecast's median, mean and 50/80/95% bands of the close; with
    `calibrated`, the bands and the median are the combined forecast's, Kronos alone's median and 80% band beside."""
    figure = go.Figure(candles_trace(forecast.history.iloc[-calibration_rows:]))
    x, raw_median = list(forecast.timestamps), forecast.quantile(0.5)["close"]
    if calibrated is None:
        _add_bands(figure, forecast)
        figure.add_trace(go.Scatter(x=x, y=raw_median, name="median", line={"color": BLUE}))
        figure.add_trace(go.Scatter(x=x, y=forecast.mean()["close"], name="mean",
                                    line={"color": ORANGE, "dash": "dot"}))
    else:
        for width, colour in BANDS:
            band = calibrated.bands[f"{width * 100:.0f}"]
            figure.add_trace(_band_trace(x, band.low, band.high, width, colour))
        figure.add_trace(go.Scatter(x=x, y=calibrated.median, name="median", line={"color": BLUE}))
        figure.add_trace(go.Scatter(x=x, y=raw_median, name="Kronos alone: median",
                                    line={"color": ORANGE, "dash": "dot"}))
        for side, quantile in (("low", 0.1), ("high", 0.9)):
            figure.add_trace(go.Scatter(x=x, y=forecast.quantile(quantile)["close"], name="Kronos alone: 80% band",
                                        legendgroup="kronos_band", showlegend=side == "low",
                                        line={"color": ORANGE, "dash": "dash", "width": 1}))
    figure.update_layout(xaxis_rangeslider_visible=False, yaxis_title="price", **LAYOUT)
    return figure


def upside_chart(forecast: Forecast, hour_idx: int | None = None, calibrated: Calibrated | None = None) -> go.Figure:
    """The probability that the close is above the last close, one bar per hour ahead; the chosen hour stands out.
    With `calibrated`, the bars are the combined forecast's and Kronos alone's are markers beside them."""
    chosen = forecast.hour_index(hour_idx)
    hours = np.arange(1, forecast.horizon + 1)
    raw = forecast.upside_probability()
    bars = raw if calibrated is None else calibrated.upside_probability_all_hours
    figure = go.Figure(go.Bar(x=hours, y=bars, name="upside probability",
                              marker_color=[ORANGE if h == chosen else BLUE for h in hours],
                              hovertemplate="hour %{x}: %{y:.0%}<extra></extra>"))
    if calibrated is not None:
        figure.add_trace(go.Scatter(x=hours, y=raw, name="Kronos alone", mode="markers",
                                    marker={"color": BLACK, "symbol": "diamond"},
                                    hovertemplate="Kronos alone, hour %{x}: %{y:.0%}<extra></extra>"))
    figure.add_hline(y=0.5, line={"color": GREY, "dash": "dash"})
    figure.update_layout(title="Probability of closing above the last price", xaxis_title="hours ahead",
                         yaxis={"range": [0, 1], "tickformat": ".0%"}, **LAYOUT)
    return figure


def volume_chart(forecast: Forecast, calibration_rows: int = 48) -> go.Figure:
    """Recent volume, then the forecast's median volume per hour with its 10-90% range as error bars."""
    past = forecast.history.iloc[-calibration_rows:]
    median, low, high = (forecast.quantile(q)["volume"] for q in (0.5, 0.1, 0.9))
    figure = go.Figure(go.Bar(x=past["timestamps"], y=past["volume"], name="history", marker_color=GREY))
    figure.add_trace(go.Bar(x=forecast.timestamps, y=median, name="forecast median", marker_color=BLUE,
                            error_y={"type": "data", "array": high - median, "arrayminus": median - low}))
    figure.update_layout(title="Volume", yaxis_title="volume", barmode="overlay", **LAYOUT)
    return figure


def paths_chart(forecast: Forecast, show_paths: bool = True, calibration_rows: int = 48) -> go.Figure:
    """The recent close, every sampled path (optional) and the quantile fan of the close."""
    past = forecast.history.iloc[-calibration_rows:]
    figure = go.Figure(go.Scatter(x=past["timestamps"], y=past["close"], name="history", line={"color": "black"}))
    if show_paths:
        closes = forecast.column("close")
        for number, path in enumerate(closes, start=1):
            figure.add_trace(go.Scatter(x=forecast.timestamps, y=path, name=f"path {number}", showlegend=False,
                                        line={"width": 1, "color": "rgba(127,127,127,0.35)"}))
    _add_bands(figure, forecast)
    figure.add_trace(go.Scatter(x=forecast.timestamps, y=forecast.quantile(0.5)["close"], name="median",
                                line={"color": BLUE}))
    figure.update_layout(title=f"{forecast.samples} sampled paths of the close", yaxis_title="price", **LAYOUT)
    return figure


def final_close_histogram(forecast: Forecast) -> go.Figure:
    """The distribution of the close at the last hour ahead, with the last known close marked."""
    figure = go.Figure(go.Histogram(x=forecast.column("close")[:, -1], name="final close", marker_color=BLUE,
                                    nbinsx=min(40, max(5, forecast.samples // 2))))
    figure.add_vline(x=forecast.last_close, line={"color": RED, "dash": "dash"},
                     annotation_text=f"last close {price_text(forecast.last_close)}")
    figure.update_layout(title=f"Close after {forecast.horizon} steps", xaxis_title="price",
                         yaxis_title="paths", **LAYOUT)
    return figure


def path_candles(forecast: Forecast, path: int, calibration_rows: int = 48) -> go.Figure:
    """One sampled path (1-based) as OHLC candles after the recent history."""
    if not 1 <= path <= forecast.samples:
        raise InvalidInputError(f"path must be between 1 and {forecast.samples}, got {path}")
    sampled = forecast.paths[path - 1]
    figure = go.Figure(candles_trace(forecast.history.iloc[-calibration_rows:]))
    figure.add_trace(go.Ohlc(x=forecast.timestamps, open=sampled[:, 0], high=sampled[:, 1], low=sampled[:, 2],
                             close=sampled[:, 3], name=f"path {path}", increasing_line_color=BLUE,
                             decreasing_line_color=ORANGE))
    figure.update_layout(xaxis_rangeslider_visible=False, title=f"Path {path} as candles", yaxis_title="price",
                         **LAYOUT)
    return figure


def _per_forecaster(result: Backtest, names: tuple[str, ...], trace: Callable[[Scores, str, str], BaseTraceType],
                    **options) -> list[BaseTraceType]:
    """One trace per forecaster of a backtest: `trace(scores, label, colour)`, with shared legend groups."""
    styles = forecasters()
    traces = [trace(result.scores[name], *styles[name]) for name in names]
    for name, made in zip(names, traces):
        made.update(legendgroup=name, **options)
    return traces


def _hours(result: Backtest) -> list[int]:
    return list(range(1, result.settings.forecast.horizon + 1))


def crps_chart(result: Backtest) -> go.Figure:
    """Mean CRPS of the close's log return per hour ahead: the model raw and calibrated, the baselines, combined."""
    hours = _hours(result)
    figure = go.Figure(_per_forecaster(result, tuple(forecasters()), lambda scores, label, colour: go.Scatter(
        x=hours, y=scores.crps, name=label, mode="lines+markers", line={"color": colour},
        hovertemplate=label + ", hour %{x}: %{y:.5f}<extra></extra>")))
    figure.update_layout(title="CRPS per hour ahead (log return; lower is better)", xaxis_title="hours ahead",
                         yaxis_title="CRPS", **SCORE_LAYOUT)
    return figure


def weights_chart(result: Backtest) -> go.Figure:
    """The combined forecast's mean pool weight per component and hour ahead, stacked to 1."""
    hours, styles = _hours(result), forecasters()
    figure = go.Figure([go.Bar(x=hours, y=weights, name=styles[name][0], marker_color=styles[name][1],
                               hovertemplate=styles[name][0] + ", hour %{x}: %{y:.0%}<extra></extra>")
                        for name, weights in result.weights.items()])
    figure.update_layout(title="Weights of the combined forecast (mean over the origins that had learnt them)",
                         xaxis_title="hours ahead", yaxis={"range": [0, 1], "tickformat": ".0%"}, barmode="stack",
                         **SCORE_LAYOUT)
    return figure


def coverage_chart(result: Backtest, names: tuple[str, ...] = SHOWN) -> go.Figure:
    """Per central band (50/80/95%): the share of outcomes inside it per hour ahead, with its 95% Wilson interval,
    against the nominal level (dashed)."""
    hours, levels = _hours(result), list(result.scores["model"].coverage)
    figure = make_subplots(1, len(levels), shared_yaxes=True, subplot_titles=[f"{level}% band" for level in levels])
    for column, level in enumerate(levels, start=1):
        for made in _per_forecaster(result, names, lambda scores, label, colour, level=level: go.Scatter(
                x=hours, y=scores.coverage[level], name=label, mode="lines+markers", line={"color": colour},
                error_y={"type": "data", "symmetric": False,
                         "array": scores.coverage_high[level] - scores.coverage[level],
                         "arrayminus": scores.coverage[level] - scores.coverage_low[level]},
                hovertemplate=label + ", hour %{x}: %{y:.0%}<extra></extra>"), showlegend=column == 1):
            figure.add_trace(made, row=1, col=column)
        figure.add_hline(y=float(level) / 100, line={"color": "black", "dash": "dash"}, row=1, col=column)
    figure.update_yaxes(range=[0, 1.05], tickformat=".0%")
    figure.update_xaxes(title="hours ahead")
    figure.update_layout(title="Coverage of the central bands (dashed: nominal; bars: 95% Wilson interval)",
                         **SCORE_LAYOUT)
    figure.update_layout(margin_t=80)  # room for the subplot titles under the title
    return figure


def reliability_chart(result: Backtest, names: tuple[str, ...] = SHOWN) -> go.Figure:
    """Reliability of the upside probability, pooled over hours: per probability bin, the mean forecast against the
    observed frequency of up moves (marker area: the bin's count); on the diagonal is reliable."""
    def points(scores: Scores, label: str, colour: str) -> go.Scatter:
        table = scores.reliability
        used = table["count"] > 0
        count = table["count"][used].tolist()
        return go.Scatter(x=table["mean_forecast"][used], y=table["observed_frequency"][used],
                          name=label, mode="lines+markers", line={"color": colour}, customdata=count,
                          marker={"size": count, "sizemode": "area", "sizeref": 2 * max(count) / 30**2, "sizemin": 4},
                          hovertemplate=label + ": forecast %{x:.0%}, observed %{y:.0%}, %{customdata} forecasts"
                                                "<extra></extra>")

    figure = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], name="perfectly reliable", mode="lines",
                                  line={"color": "black", "dash": "dash"}, hoverinfo="skip"))
    figure.add_traces(_per_forecaster(result, names, points))
    figure.update_layout(title="Reliability of the upside probability (all hours)", xaxis_title="forecast probability",
                         yaxis_title="observed frequency", xaxis={"range": [-0.02, 1.02], "tickformat": ".0%"},
                         yaxis={"range": [-0.02, 1.02], "tickformat": ".0%"}, **SCORE_LAYOUT)
    return figure


def pit_chart(result: Backtest, names: tuple[str, ...] = ("model", "model_calibrated", "combined"),
              bins: int = 10) -> go.Figure:
    """Histogram (density) of the PIT values over every origin and hour; a calibrated forecast is flat at 1."""
    figure = go.Figure(_per_forecaster(result, names, lambda scores, label, colour: go.Histogram(
        x=np.ravel(scores.pit), name=label, marker_color=colour, opacity=0.6, histnorm="probability density",
        xbins={"start": 0, "end": 1, "size": 1 / bins})))
    figure.add_hline(y=1, line={"color": "black", "dash": "dash"}, annotation_text="uniform")
    figure.update_layout(title="PIT histogram (U: too confident; hump: too cautious)", xaxis_title="PIT",
                         yaxis_title="density", barmode="overlay", xaxis={"range": [0, 1]}, **SCORE_LAYOUT)
    return figure
