"""`python -m kronos backtest`: walk-forward backtest of the model against baselines on a file or a market; JSON out."""

from __future__ import annotations

import argparse
import json
import sys

from kronos.cli.options import (add_model_options, add_settings_options, add_source_options, candles_from, model_from,
                                progress_bar, store_from)
from kronos.engine import Forecaster
from kronos.evaluation.backtest import BacktestSettings, rows_needed, run_backtest

DEFAULTS = BacktestSettings()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The candles' source, the model, the sampling settings, the origins and `--calibrate`."""
    add_source_options(parser)
    add_model_options(parser)
    add_settings_options(parser, ("horizon", "samples", "temperature", "top_p", "top_k", "lookback", "seed"))
    parser.add_argument("--origins", type=int, default=DEFAULTS.origins,
                        help=f"forecast origins, the latest ones (default {DEFAULTS.origins})")
    parser.add_argument("--every", type=int, default=DEFAULTS.every,
                        help=f"rows between origins (default {DEFAULTS.every})")
    parser.add_argument("--min-count", type=int, default=DEFAULTS.min_count,
                        help=f"known outcomes before an origin is calibrated (default {DEFAULTS.min_count})")
    parser.add_argument("--calibrate", action="store_true",
                        help="also forecast after the last candle, calibrated on the whole record (`latest`)")


def run(args: argparse.Namespace) -> int:
    """Print the backtest's JSON (settings, origins, scores per forecaster, skill) plus `data` on stdout."""
    settings = BacktestSettings(origins=args.origins, every=args.every, horizon=args.horizon, samples=args.samples,
                                lookback=args.lookback, temperature=args.temperature, top_p=args.top_p,
                                top_k=args.top_k, seed=args.seed, min_count=args.min_count)
    candles = candles_from(args, rows_needed(settings))
    choice = model_from(args)
    forecaster = Forecaster.from_pretrained(choice.model, choice.tokenizer, revision=args.revision,
                                            max_context=args.max_context)
    result = run_backtest(forecaster, candles.frame, settings, store=store_from(args), latest=args.calibrate,
                          progress=progress_bar("backtest"))
    json.dump({**result.to_dict(), "data": candles.describe().model_dump(mode="json")}, sys.stdout)
    sys.stdout.write("\n")
    return 0
