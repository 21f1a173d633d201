"""Scans: every market of a watchlist forecast in shared generation loops, then ranked.

The candles of all the markets are fetched together (kronos.scan.watchlist); the markets with enough of them are
forecast by `forecast_many`, every one with the scan's seed, so that each forecast equals the one the live page makes
of that market with the same settings (its row links there). Each row then takes its figures at the scan's hour from
the market's combined forecast (`combine`: kronos.scan.combining.ScanCalibration, from the market's first-sight
backtest, stored or run now), else from the model's raw paths, labelled "raw" with a note why. The forecasts are
logged to the store's forecast log, to be scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import pandas as pd

from kronos.data import market
from kronos.data.candles import Candles
from kronos.data.store import CandleStore
from kronos.engine import Progress
from kronos.engine.forecast import Forecast
from kronos.errors import InvalidInputError, KronosError
from kronos.evaluation.combined import calibration_rows
from kronos.evaluation.record import log_forecast
from kronos.scan.combining import ScanCalibration
from kronos.scan.watchlist import Fetched, fetch_watchlist, given, top_markets
from kronos.schemas.markets import Combined, MarketRow, Scan, ScanQuery, Watchlist
from kronos.settings import MAX_REQUEST_WORK, RANGES, SCAN_MAX_MARKETS_CLI, ForecastSettings
from kronos.timeframes import timeframe_delta
from kronos.views.texts import headline

MIN_ROWS = RANGES["lookback"][0]  # candles a market needs to be forecast
DAY = pd.Timedelta(days=1)
WAITING_HERE = "not calibrated yet: ask with calibrate (the command's --calibrate) to run its first-sight backtest"
AGAIN = ("not calibrated yet: its first-sight backtest is beyond this request's budget; ask again (calibrated "
         "markets are reused from the store)")
# The hook for the combined forecast (kronos.scan.combining.ScanCalibration): (the market's candles, its raw forecast,
# the hour) -> its combined figures, or why it has none yet (a note), or None; the row then shows the raw figures,
# labelled "raw".
Combine = Callable[[Candles, Forecast, int], "Combined | str | None"]


class Forecasts(Protocol):
    """What a scan needs of a forecaster: a Forecaster, a Batcher or a RayForecaster (kronos.serving.cluster)."""

    name: str
    fingerprint: str

    def forecast_many(self, histories: Sequence[pd.DataFrame], **arguments) -> list[Forecast]: ...


def scan(forecaster: Forecasts, watchlist: Watchlist, settings: ForecastSettings, store: CandleStore, *,
         live: bool = True, combine: Combine | None = None, progress: Progress | None = None) -> Scan:
    """Fetch (`live`: from the exchange, else the store only), forecast and rank every market of the watchlist; a
    market without candles is a row saying why. Rows in watchlist order: see `Scan.sorted_by`."""
    limit = settings.lookback if combine is None else max(settings.lookback, calibration_rows(settings.lookback,
                                                                                           settings.horizon))
    fetched = fetch_watchlist(watchlist, limit, store, live=live)  # the combined forecast's backtest reads more
    usable = [f for f in fetched if f.candles is not None and len(f.candles.frame) >= MIN_ROWS]
    made = forecast_markets(forecaster, [f.candles for f in usable], settings, progress)
    forecasts = dict(zip((f.symbol for f in usable), made, strict=True))
    hour = settings.hour_idx or settings.horizon
    now = market.utc_now().floor("us")
    rows = []
    for found in fetched:
        forecast = forecasts.get(found.symbol)
        if forecast is not None:
            log_forecast(store, found.candles, forecast, forecaster.fingerprint)
        combined, problem = _combined(combine, found.candles, forecast, hour)
        rows.append(market_row(found, watchlist.exchange, forecast, hour, now, combined))
        if problem:
            rows[-1].notes.append(problem)
    return Scan(watchlist=watchlist, settings=settings, model=forecaster.name, fingerprint=forecaster.fingerprint,
                hour_idx=hour, made=now.to_pydatetime(), rows=rows)


def _combined(combine: Combine | None, candles: Candles | None, forecast: Forecast | None,
              hour: int) -> tuple[Combined | None, str | None]:
    """The market's combined figures from the hook, or None (and why, when the hook failed on the market)."""
    if combine is None or forecast is None:
        return None, None
    try:
        combined = combine(candles, forecast, hour)
    except KronosError as error:
        return None, f"no combined forecast: {error.public()}"
    return (None, combined) if isinstance(combined, str) else (combined, None)


def forecast_markets(forecaster: Forecasts, candles: list[Candles], settings: ForecastSettings,
                     progress: Progress | None = None) -> list[Forecast]:
    """Forecast every market's candles with the settings and the settings' seed, the lookback cut to the rows each has:
    one `forecast_many` call per lookback length, so markets share generation loops."""
    lookbacks = [min(settings.lookback, len(c.frame)) for c in candles]
    groups = {length: [i for i, n in enumerate(lookbacks) if n == length] for length in sorted(set(lookbacks))}
    arguments = {k: v for k, v in settings.engine_arguments().items() if k not in ("seed", "lookback")}
    results: list[Forecast | None] = [None] * len(candles)
    for g, (length, members) in enumerate(groups.items()):
        def step(done: int, total: int, g: int = g) -> None:  # one progress over every call: per mille
            if progress is not None:
                progress(int(1000 * (g + done / total) / len(groups)), 1000)

        made = forecaster.forecast_many([candles[i].frame for i in members], lookback=length,
                                        seeds=[settings.seed] * len(members), progress=step, **arguments)
        for i, forecast in zip(members, made, strict=True):
            results[i] = forecast
    return results


def market_row(found: Fetched, exchange: str, forecast: Forecast | None, hour_idx: int, now: pd.Timestamp,
               combined: Combined | None = None) -> MarketRow:
    """A market's ranking row at the 1-based hour: its data's source and age, then the combined figures when given,
    else the forecast's raw ones; without a forecast, the reason."""
    candles = found.candles
    if candles is None:
        return MarketRow(symbol=found.symbol, exchange=exchange, available=False, problem=found.problem)
    data = {"symbol": found.symbol, "exchange": candles.exchange or exchange, "source": candles.source,
            "newest_candle": candles.as_of.to_pydatetime(), "age_s": (now - candles.as_of).total_seconds(),
            "is_stale": candles.is_stale, "notes": list(candles.notes)}
    if forecast is None:
        return MarketRow(**data, available=False, rows=len(candles.frame),
                         problem=f"only {len(candles.frame)} candles, fewer than the {MIN_ROWS} a forecast needs")
    figures = combined if combined is not None else _raw(forecast, hour_idx)
    return MarketRow(**data, available=True, rows=len(forecast.history), last_price=forecast.last_close,
                     change_1d=day_change(forecast.history, candles.timeframe), **figures.model_dump(),
                     band_width=figures.return_high - figures.return_low,
                     basis="raw" if combined is None else "combined")


def _raw(forecast: Forecast, hour_idx: int) -> Combined:
    """The forecast's own figures at the hour, in the combined forecast's shape (no record: no skill, no weight)."""
    figures = headline(forecast, hour_idx)
    return Combined(upside_probability=figures.upside_probability, expected_return=figures.expected_return,
                    return_low=figures.return_low, return_high=figures.return_high,
                    volatility_amplification_probability=figures.volatility_amplification_probability,
                    crps_skill=None, model_weight=None)


def day_change(history: pd.DataFrame, timeframe: str) -> float | None:
    """The close's change over the history's last day (its last candle against the one a day before); None when the
    history is shorter than a day (a timeframe of a day or more: the last candle against the one before)."""
    back = max(1, int(DAY / timeframe_delta(timeframe)))
    closes = history["close"].to_numpy()
    if len(closes) <= back:
        return None
    return float(closes[-1] / closes[-1 - back] - 1)


def with_combined(result: Scan, found: dict[str, Combined | str], waiting: str) -> Scan:
    """The scan with these markets' rows (by symbol) filled in: their combined figures, or the note of why they have
    none, in place of the `waiting` note (the background's results, kronos.scan.combining)."""
    rows = []
    for row in result.rows:
        figures = found.get(row.symbol) if row.available else None
        if figures is not None:
            notes = [n for n in row.notes if n != waiting]
            if isinstance(figures, str):
                row = row.model_copy(update={"notes": notes + [figures]})
            else:
                row = row.model_copy(update={**figures.model_dump(), "notes": notes, "basis": "combined",
                                             "band_width": figures.return_high - figures.return_low})
        rows.append(row)
    return result.model_copy(update={"rows": rows})


def watchlist_of(query: ScanQuery, store: CandleStore) -> Watchlist:
    """The query's watchlist: its symbols, or the exchange's top markets (the stored ones with `source` "store")."""
    if query.symbols:
        return given(query.symbols, query.exchange, query.timeframe)
    return top_markets(query.exchange, query.timeframe, query.quote, query.top, store=store,
                       live=query.source == "exchange")


def scan_answer(query: ScanQuery, forecaster: Forecasts, store: CandleStore, *, remote: bool = True,
                calibration: ScanCalibration | None = None, progress: Progress | None = None) -> Scan:
    """The one flow of GET /scan, the Markets page and `python -m kronos scan`: the query's watchlist scanned and
    sorted, each market combined where its calibration is stored (`query.calibrate`: its first-sight backtest run
    now, a request's within MAX_REQUEST_WORK steps); InvalidInputError beyond the budget of one request (`remote`)
    or the command line's limit. `calibration` replaces the default hook (and lists the markets left pending)."""
    problems = query.over_budget() if remote else \
        query.over_budget(SCAN_MAX_MARKETS_CLI, SCAN_MAX_MARKETS_CLI * RANGES["samples"][1])
    if problems:
        raise InvalidInputError(problems)
    settings = query.settings()
    if calibration is None:
        budget = MAX_REQUEST_WORK - query.markets() * query.samples * query.horizon if remote else None
        calibration = ScanCalibration(forecaster, store, run=query.calibrate, budget=budget,
                                      waiting=AGAIN if query.calibrate else WAITING_HERE)
    result = scan(forecaster, watchlist_of(query, store), settings, store, live=query.source == "exchange",
                  combine=calibration, progress=progress)
    return result.sorted_by(query.sort, query.descending)


def upside_risk_chart(result: Scan):
    """A plotly scatter of the available markets: upside probability against the 80% band's width (the risk)."""
    import plotly.graph_objects as go

    rows = result.available
    figure = go.Figure(go.Scatter(
        x=[r.band_width for r in rows], y=[r.upside_probability for r in rows], mode="markers+text",
        text=[r.symbol for r in rows], textposition="top center", name="markets",
        customdata=[[r.expected_return, r.basis] for r in rows],
        hovertemplate="%{text}<br>upside %{y:.0%}<br>80% band width %{x:.2%}<br>expected return "
                      "%{customdata[0]:+.2%} (%{customdata[1]})<extra></extra>"))
    figure.add_hline(y=0.5, line_dash="dot", line_color="grey")
    figure.update_layout(title=f"Upside against risk, hour {result.hour_idx}",
                         xaxis_title="80% band width of the return", yaxis_title="Upside probability",
                         xaxis_tickformat=".1%", yaxis_tickformat=".0%", yaxis_range=[0, 1], margin={"t": 50, "b": 40})
    return figure
