"""Plotly figures of a forecast; no Streamlit here, so the dashboard and the HTTP API draw the same charts."""

from __future__ import annotations

import plotly.graph_objects as go

from kronos.forecast import Forecast

BANDS = ((0.95, "rgba(31,119,180,0.12)"), (0.80, "rgba(31,119,180,0.22)"), (0.50, "rgba(31,119,180,0.35)"))


def fan_chart(forecast: Forecast, history_rows: int = 120) -> go.Figure:
    """Candles of the recent history, then the forecast's median, mean and 50/80/95% bands of the close."""
    past = forecast.history.iloc[-history_rows:]
    figure = go.Figure()
    figure.add_trace(go.Candlestick(x=past["timestamps"], open=past["open"], high=past["high"], low=past["low"],
                                    close=past["close"], name="history"))
    x = list(forecast.timestamps)
    for width, colour in BANDS:
        low, high = forecast.quantile((1 - width) / 2)["close"], forecast.quantile((1 + width) / 2)["close"]
        figure.add_trace(go.Scatter(x=x + x[::-1], y=list(high) + list(low)[::-1], fill="toself", fillcolor=colour,
                                    line={"width": 0}, hoverinfo="skip", name=f"{width:.0%} band"))
    figure.add_trace(go.Scatter(x=x, y=forecast.quantile(0.5)["close"], name="median", line={"color": "#1f77b4"}))
    figure.add_trace(go.Scatter(x=x, y=forecast.mean()["close"], name="mean",
                                line={"color": "#ff7f0e", "dash": "dot"}))
    figure.update_layout(xaxis_rangeslider_visible=False, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         legend={"orientation": "h"}, yaxis_title="price")
    return figure
