"""`python -m kronos`: forecast from a file or a market and print the JSON the API returns."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd

from kronos.engine import Forecaster
from kronos.errors import KronosError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line on stderr and exit status 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_forecast_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, help="OHLCV CSV file (timestamps, open, high, low, close[, volume, amount])")
    source.add_argument("--json", type=Path, help='JSON file {"timestamps": [...], "open": [...], ...}')
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
    return parser


def read_history(args: argparse.Namespace) -> pd.DataFrame:
    """The history named by --csv or --json, as a frame the engine checks."""
    path = args.csv or args.json
    try:
        if args.csv:
            return pd.read_csv(path)
        return pd.DataFrame(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise KronosError(f"cannot read {path}: {exc}") from exc


def forecast_command(args: argparse.Namespace) -> int:
    """Run `forecast`: print the forecast's JSON on stdout."""
    history = read_history(args)
    forecaster = Forecaster.from_pretrained(args.model, args.tokenizer, revision=args.revision,
                                            max_context=args.max_context)
    forecast = forecaster.forecast(history, horizon=args.horizon, samples=args.samples,
                                   temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                                   lookback=args.lookback, seed=args.seed)
    json.dump(forecast.to_dict(hour_idx=args.hour_idx, all_samples=args.all_samples), sys.stdout)
    sys.stdout.write("\n")
    return 0


COMMANDS = {"forecast": forecast_command}


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a sub-command; a KronosError becomes one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KronosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
