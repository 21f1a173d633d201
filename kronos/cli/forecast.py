"""`python -m kronos forecast`: forecast candles from a file or a market and print the JSON the API returns."""

from __future__ import annotations

import argparse
import sys

from kronos.cli import options
from kronos.engine import Forecaster
from kronos.evaluation.combined import ORIGINS, calibration_rows
from kronos.flows import answer, calibrated, forecast_candles
from kronos.schemas.calibrated import Calibrated


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The candles' source, the model, the sampling settings, `--all-samples` and `--calibrate`."""
    options.add_source_options(parser)
    options.add_model_options(parser)
    options.add_settings_options(parser)
    parser.add_argument("--all-samples", action="store_true", help="include every path (all_samples)")
    parser.add_argument("--calibrate", action="store_true",
                        help=f"add `calibrated`: the combined forecast, from a backtest of the data's recent history "
                             f"({ORIGINS} origins, these settings; its origins kept in --store, so a first call may "
                             "take tens of seconds and later ones reuse them)")
    parser.add_argument("--calibration", choices=("quick", "full"), default="full",
                        help="with --calibrate: full (default) fits the whole record; quick returns at the first "
                             "usable, provisional record (its origins newest first, each learning only from the "
                             "past); stderr and `calibrated.record` say which and on how many origins")


def run(args: argparse.Namespace) -> int:
    """Print the forecast's JSON, with where its data came from (and its calibration with --calibrate), on stdout."""
    settings = options.settings_from(args)
    store = options.writable_store(args) if args.calibrate else options.store_from(args)  # calibrating keeps origins
    rows = calibration_rows(settings.lookback, settings.horizon) if args.calibrate else settings.lookback
    candles = options.candles_from(args, rows)
    choice = options.model_from(args)
    forecaster = Forecaster.from_pretrained(choice.model, choice.tokenizer, revision=args.revision,
                                            max_context=args.max_context)
    forecast = forecast_candles(forecaster, candles, settings, log=store)
    block = calibrated(forecaster, candles, forecast, store, settings.hour_idx, options.progress_bar("calibration"),
                       quick=args.calibration == "quick") if args.calibrate else None
    if isinstance(block, Calibrated):
        record = block.record
        print(f"calibrated ({args.calibration}): " + (f"a provisional record of {record.origins} origins (of "
              f"{record.target})" if record.provisional else f"the full record of {record.origins} origins"),
              file=sys.stderr)
    sys.stdout.write(answer(forecast, candles, settings.hour_idx, args.all_samples, block).model_dump_json() + "\n")
    return 0
