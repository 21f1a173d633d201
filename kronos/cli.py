"""`python -m kronos`: forecast from a file or a market and print the JSON the API returns."""

from __future__ import annotations

import argparse
import json
import os
import sys

from kronos.api import add_serve_arguments, serve_command
from kronos.engine import Forecaster
from kronos.errors import KronosError
from kronos.market import MODES, add_fetch_arguments, fetch_command, load_source
from kronos.store import add_import_arguments, add_store_argument, import_command


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line on stderr and exit status 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_forecast_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=("exchange", "store", "csv", "json"),
                        help="where the candles come from (default: csv/json when a file is named, else exchange)")
    parser.add_argument("--csv", help="OHLCV CSV file (timestamps, open, high, low, close[, volume, amount])")
    parser.add_argument("--json", help='JSON file {"timestamps": [...], "open": [...], ...}')
    parser.add_argument("--exchange", default="binance", help="exchange for --source exchange/store")
    parser.add_argument("--symbol", default="BTC/USDT")
    parser.add_argument("--timeframe", default="1h")
    parser.add_argument("--mode", choices=MODES, default="aligned", help="aligned drops the still-open candle")
    add_store_argument(parser)
    parser.add_argument("--model", default=os.environ.get("KRONOS_MODEL", "mini"),
                        help="preset (mini, small, base), hub id or checkpoint directory (env KRONOS_MODEL)")
    parser.add_argument("--tokenizer", default=os.environ.get("KRONOS_TOKENIZER"),
                        help="tokenizer hub id or directory (env KRONOS_TOKENIZER; default: the model's)")
    parser.add_argument("--revision", help="hub revision of the model (default: pinned)")
    parser.add_argument("--max-context", type=int, help="context length (default: the model's)")
    parser.add_argument("--lookback", type=int, help="history rows to use (default: up to the context)")
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--seed", type=int, help="random seed (default: a fresh one, printed in the output)")
    parser.add_argument("--hour-idx", type=int, help="hour whose upside probability is reported (default: the horizon)")
    parser.add_argument("--all-samples", action="store_true", help="include every path (all_samples)")


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser with all sub-commands."""
    parser = _Parser(prog="python -m kronos", description="Kronos probabilistic forecasts as JSON")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_forecast_arguments(commands.add_parser("forecast", help="forecast and print JSON"))
    add_fetch_arguments(commands.add_parser("fetch", help="fetch candles from an exchange into the local store"))
    add_import_arguments(commands.add_parser("import", help="validate a CSV/JSON file and merge it into the store"))
    add_serve_arguments(commands.add_parser("serve", help="serve the HTTP API (FastAPI on uvicorn)"))
    return parser


def forecast_command(args: argparse.Namespace) -> int:
    """Run `forecast`: print the forecast's JSON, with where its data came from, on stdout."""
    args.source = args.source or ("csv" if args.csv else "json" if args.json else "exchange")
    candles = load_source(args)
    for note in candles.notes:
        print(f"note: {note}", file=sys.stderr)
    forecaster = Forecaster.from_pretrained(args.model, args.tokenizer, revision=args.revision,
                                            max_context=args.max_context)
    forecast = forecaster.forecast(candles.frame, horizon=args.horizon, samples=args.samples,
                                   temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                                   lookback=args.lookback, seed=args.seed)
    result = forecast.to_dict(hour_idx=args.hour_idx, all_samples=args.all_samples)
    json.dump({**result, "data": candles.describe()}, sys.stdout)
    sys.stdout.write("\n")
    return 0


COMMANDS = {"forecast": forecast_command, "fetch": fetch_command, "import": import_command, "serve": serve_command}


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a sub-command; a KronosError becomes one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KronosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
