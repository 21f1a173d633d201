"""`python -m kronos scan`: forecast a watchlist (the symbols given, or an exchange's top markets by volume) and print
the ranking, as a table or as the JSON GET /scan returns; on a Ray cluster with `--ray`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import pandas as pd

from kronos.cli.options import (
    add_model_options,
    add_settings_options,
    add_store_option,
    model_from,
    store_from,
    writable_store,
)
from kronos.engine import Forecaster
from kronos.errors import DataUnavailableError, listed
from kronos.scan.combining import ScanCalibration
from kronos.scan.ranking import WAITING_HERE, scan_answer
from kronos.schemas.markets import SORT_COLUMNS, Scan, ScanQuery
from kronos.settings import SCAN_QUOTE, SCAN_TOP, Environment, MarketChoice
from kronos.timeframes import describe_age
from kronos.views.texts import price_text

MARKET = MarketChoice()
SHOWN = {"symbol": "market", "last_price": "last", "change_1d": "1 d", "upside_probability": "upside",
         "expected_return": "return", "return_low": "low 10%", "return_high": "high 90%", "band_width": "risk",
         "volatility_amplification_probability": "vol amp", "crps_skill": "skill", "model_weight": "weight",
         "basis": "basis", "source": "source", "age_s": "age"}
SIGNED, SHARE = "{:+.1%}".format, "{:.0%}".format
FORMATS = {"last_price": price_text, "change_1d": SIGNED, "upside_probability": SHARE, "expected_return": SIGNED,
           "return_low": SIGNED, "return_high": SIGNED, "band_width": "{:.1%}".format,
           "volatility_amplification_probability": SHARE, "crps_skill": SIGNED, "model_weight": SHARE}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The watchlist, where candles come from, the model, the settings, the order, `--json` and `--ray`."""
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--symbols", nargs="+", metavar="SYMBOL",
                        help="markets to scan, BASE/QUOTE, separated by spaces or commas (default: the top markets)")
    chosen.add_argument("--top", type=int, default=SCAN_TOP,
                        help=f"scan the exchange's N spot markets of --quote with the most 24 h quote volume "
                             f"(default {SCAN_TOP})")
    parser.add_argument("--quote", default=SCAN_QUOTE, help=f"quote currency of the top markets (default {SCAN_QUOTE})")
    parser.add_argument("--exchange", default=MARKET.exchange, help=f"exchange (default {MARKET.exchange})")
    parser.add_argument("--timeframe", default=MARKET.timeframe, help=f"candle length (default {MARKET.timeframe})")
    parser.add_argument("--source", choices=("exchange", "store"), default="exchange",
                        help="exchange: live candles, the store when the exchange fails; store: stored candles only, "
                             "and the stored markets as the top ones (default exchange)")
    add_store_option(parser)
    add_model_options(parser)
    add_settings_options(parser, ("horizon", "samples", "temperature", "top_p", "top_k", "lookback", "seed"))
    parser.add_argument("--hour", type=int, default=None, help="hour ahead the figures describe (default: the horizon)")
    parser.add_argument("--sort", choices=SORT_COLUMNS, default=SORT_COLUMNS[0],
                        help=f"column to rank by (default {SORT_COLUMNS[0]})")
    parser.add_argument("--ascending", action="store_true", help="smallest first")
    parser.add_argument("--json", action="store_true", help="print the scan as JSON (GET /scan's answer)")
    parser.add_argument("--calibrate", action="store_true",
                        help="run the first-sight backtest of every market not calibrated yet, market by market "
                             "(tens of seconds each the first time, progress on stderr; on Ray with --ray); "
                             "without it, only markets calibrated before are combined, the others shown raw")
    parser.add_argument("--ray", metavar="ADDRESS", default=None,
                        help="forecast on a Ray cluster: auto, local (start one here), or HOST:PORT / ray://HOST:PORT "
                             "(default: env KRONOS_RAY_ADDRESS, else on this machine)")
    parser.add_argument("--workers", type=int, default=None, help="Ray actors (default: one per CPU of the cluster)")


def run(args: argparse.Namespace) -> int:
    """Print the ranking (exit 0); when no market could be forecast, DataUnavailableError saying why (one line,
    exit 2)."""
    symbols = [s for part in args.symbols for s in part.split(",") if s.strip()] if args.symbols else None
    query = ScanQuery.checked(symbols=symbols, top=args.top, quote=args.quote, exchange=args.exchange,
                      timeframe=args.timeframe, source=args.source, horizon=args.horizon, samples=args.samples,
                      temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, lookback=args.lookback,
                      seed=args.seed, hour_idx=args.hour, sort=args.sort, descending=not args.ascending,
                      calibrate=args.calibrate)
    store = writable_store(args) if args.calibrate else store_from(args)  # calibrating keeps what it fits
    address = args.ray or Environment.read().ray_address
    forecaster = _forecaster(args, address)
    try:
        calibration = ScanCalibration(forecaster, store, run=args.calibrate, tell=_told(), waiting=WAITING_HERE)
        result = scan_answer(query, forecaster, store, remote=False, calibration=calibration)
    finally:
        if address:
            forecaster.close()
    if not result.available:
        reasons = [f"{row.symbol}: {row.problem}" for row in result.rows] or result.watchlist.notes or ["none listed"]
        raise DataUnavailableError(f"no market could be forecast ({'; '.join(listed(reasons, 3, 'market(s)'))})")
    for note in result.watchlist.notes:
        print(f"note: {note}", file=sys.stderr)
    print(result.model_dump_json() if args.json else table(result))
    return 0


def _told() -> Callable[[str, int, int], None]:
    """Progress of the first-sight backtests on stderr: a line per market and per tenth of it."""
    shown: dict[str, int] = {}

    def tell(symbol: str, done: int, total: int) -> None:
        tenth = 10 * done // max(total, 1)
        if shown.get(symbol) != tenth:
            shown[symbol] = tenth
            print(f"calibrating {symbol}: backtest {10 * tenth}%", file=sys.stderr, flush=True)
    return tell


def _forecaster(args: argparse.Namespace, address: str | None):
    """The model on this machine, or on Ray actors at `address`."""
    choice = model_from(args)
    if not address:
        return Forecaster.from_pretrained(choice.model, choice.tokenizer, revision=args.revision,
                                          max_context=args.max_context)
    from kronos.serving.cluster import RayForecaster, connect

    connect(address)
    return RayForecaster(choice, revision=args.revision, max_context=args.max_context, workers=args.workers)


def table(result: Scan) -> str:
    """The ranking as a text table, percentages for returns and probabilities, then the unavailable markets."""
    frame = result.table()
    shown = frame[frame["available"]][list(SHOWN)].copy()
    for column, form in FORMATS.items():
        shown[column] = shown[column].map(lambda v, form=form: "" if v is None or v != v else form(v))
    shown["age_s"] = shown["age_s"].map(lambda seconds: describe_age(pd.Timedelta(seconds=seconds)))
    lines = [f"{result.watchlist.exchange} {result.watchlist.timeframe}, {len(result.available)} of "
             f"{len(result.rows)} markets, hour {result.hour_idx}, {result.settings.samples} paths, seed "
             f"{result.settings.seed}, model {result.model}, sorted by {result.sort}"]
    if not shown.empty:
        lines.append(shown.rename(columns=SHOWN).to_string(index=False))
    lines += [f"unavailable: {r.symbol}: {r.problem}" for r in result.rows if not r.available]
    return "\n".join(lines)
