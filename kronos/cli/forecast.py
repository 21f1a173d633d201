"""`python -m kronos forecast`: forecast candles from a file or a market and print the JSON the API returns."""

from __future__ import annotations

import argparse
import sys

from kronos.cli.options import (add_model_options, add_settings_options, add_source_options, candles_from, model_from,
                                settings_from, store_from)
from kronos.engine import Forecaster
from kronos.flows import answer, forecast_candles


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The candles' source, the model, the sampling settings and `--all-samples`."""
    add_source_options(parser)
    add_model_options(parser)
    add_settings_options(parser)
    parser.add_argument("--all-samples", action="store_true", help="include every path (all_samples)")


def run(args: argparse.Namespace) -> int:
    """Print the forecast's JSON, with where its data came from, on stdout."""
    settings = settings_from(args)
    candles = candles_from(args, settings.lookback)
    choice = model_from(args)
    forecaster = Forecaster.from_pretrained(choice.model, choice.tokenizer, revision=args.revision,
                                            max_context=args.max_context)
    forecast = forecast_candles(forecaster, candles, settings, log=store_from(args))
    sys.stdout.write(answer(forecast, candles, settings.hour_idx, args.all_samples).model_dump_json() + "\n")
    return 0
