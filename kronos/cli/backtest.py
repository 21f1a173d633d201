"""`python -m kronos backtest`: walk-forward backtest of the model against baselines on a file or a market; JSON out."""

from __future__ import annotations

import argparse
import json
import sys

from kronos.cli.options import (
    add_dataclass_options,
    add_model_options,
    add_settings_options,
    add_source_options,
    candles_from,
    model_from,
    progress_bar,
    settings_from,
    writable_store,
)
from kronos.engine import Forecaster
from kronos.evaluation.backtest import BacktestSettings, rows_needed, run_backtest
from kronos.flows import backtest_answer

SAMPLING_OPTIONS = ("horizon", "samples", "temperature", "top_p", "top_k", "lookback", "seed")  # no hour_idx: all hours
ORIGIN_OPTIONS = ("origins", "every", "min_count")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The candles' source, the model, the sampling settings, the origins and `--calibrate`."""
    add_source_options(parser)
    add_model_options(parser)
    add_settings_options(parser, SAMPLING_OPTIONS)
    add_dataclass_options(parser, BacktestSettings, ORIGIN_OPTIONS)
    parser.add_argument("--calibrate", action="store_true",
                        help="also forecast after the last candle, calibrated on the whole record (`latest`)")


def backtest_settings_from(args: argparse.Namespace) -> BacktestSettings:
    """The checked settings; InvalidInputError naming each value out of range."""
    return BacktestSettings(settings_from(args), **{name: getattr(args, name) for name in ORIGIN_OPTIONS})


def run(args: argparse.Namespace) -> int:
    """Print the backtest's JSON (settings, origins, scores per forecaster, skill) plus `data` on stdout."""
    settings = backtest_settings_from(args)
    store = writable_store(args)  # it keeps every origin's paths: checked before the work
    candles = candles_from(args, rows_needed(settings))
    choice = model_from(args)
    forecaster = Forecaster.from_pretrained(choice.model, choice.tokenizer, revision=args.revision,
                                            max_context=args.max_context)
    result = run_backtest(forecaster, candles.frame, settings, store=store, latest=args.calibrate,
                          progress=progress_bar("backtest"))
    json.dump(backtest_answer(result, candles).model_dump(mode="json"), sys.stdout)
    sys.stdout.write("\n")
    return 0
