"""Command-line options shared by sub-commands, each group with the function that turns it into settings.

Defaults, ranges and help texts come from kronos.settings (ForecastSettings, MarketChoice: their fields' metadata)
and the environment (Environment.read()), the same as the HTTP API's and the dashboard's.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Callable

from pydantic import BaseModel

from kronos.data.candles import Candles
from kronos.data.market import SOURCES, load_candles
from kronos.data.store import CandleStore
from kronos.settings import MODES, SETTING_NAMES, Environment, ForecastSettings, MarketChoice, ModelChoice, help_texts


def add_dataclass_options(parser: argparse.ArgumentParser, settings: type, names: tuple[str, ...] | None = None,
                          **extra: dict) -> None:
    """`--name` for each field of the settings dataclass or pydantic model (all, or those in `names`), its default,
    type and help text (its metadata or description, plus the default) taken from the class; `extra` adds argparse
    arguments by field name."""
    helps = help_texts(settings)
    for name, default, annotation in _fields(settings):
        if names is None or name in names:
            shown = "" if default is None else f" (default {default})"
            kind = next(t for t in typing.get_args(annotation) or (annotation,) if t is not type(None))
            parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default,
                                help=helps[name] + shown, **extra.get(name, {}))


def _fields(settings: type) -> list[tuple[str, typing.Any, typing.Any]]:
    """(name, default, type) of each field of a settings dataclass or pydantic model."""
    if issubclass(settings, BaseModel):
        return [(name, field.default, field.annotation) for name, field in settings.model_fields.items()]
    types = typing.get_type_hints(settings)
    return [(field.name, field.default, types[field.name]) for field in dataclasses.fields(settings)]


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """`--store PATH` (default: $KRONOS_STORE or the per-user data folder)."""
    parser.add_argument("--store", default=None, help="candle store file (default $KRONOS_STORE or per-user data)")


def store_from(args: argparse.Namespace) -> CandleStore:
    """The candle store named by --store (or the default one)."""
    return CandleStore(getattr(args, "store", None))


def writable_store(args: argparse.Namespace) -> CandleStore:
    """The store named by --store, checked for writing now (a write made and rolled back), before any work whose
    results it keeps; its StoreUnavailableError (read-only, damaged, ...) otherwise."""
    store = store_from(args)
    fault = store.health()
    if fault is not None:
        raise fault
    return store


def add_market_options(parser: argparse.ArgumentParser, mode: bool = True) -> None:
    """`--exchange --symbol --timeframe [--mode]` with the shared defaults."""
    names = ("exchange", "symbol", "timeframe", "mode") if mode else ("exchange", "symbol", "timeframe")
    add_dataclass_options(parser, MarketChoice, names, mode={"choices": MODES})


def market_from(args: argparse.Namespace) -> MarketChoice:
    """The market the options name; InvalidInputError for a bad symbol, timeframe or mode."""
    return MarketChoice(args.exchange, args.symbol, args.timeframe, getattr(args, "mode", MarketChoice.mode))


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """`--model --tokenizer --revision --max-context` (defaults: KRONOS_MODEL / KRONOS_TOKENIZER, else mini)."""
    parser.add_argument("--model", help="preset (mini, small, base), hub id or checkpoint directory "
                                        "(default: env KRONOS_MODEL, else mini)")
    parser.add_argument("--tokenizer", help="tokenizer hub id or directory (default: env KRONOS_TOKENIZER, else the "
                                            "model's)")
    parser.add_argument("--revision", help="hub revision of the model (default: pinned)")
    parser.add_argument("--max-context", type=int, help="context length (default: the model's)")


def model_from(args: argparse.Namespace) -> ModelChoice:
    """The model the options name, the environment filling what they leave out."""
    env = Environment.read().model
    return ModelChoice(args.model or env.model, args.tokenizer or (None if args.model else env.tokenizer))


def add_settings_options(parser: argparse.ArgumentParser, names: tuple[str, ...] | None = None) -> None:
    """`--horizon --samples --temperature --top-p --top-k --lookback --seed --hour-idx` (all, or those in `names`)
    with the shared defaults and help texts."""
    add_dataclass_options(parser, ForecastSettings, names)


def settings_from(args: argparse.Namespace) -> ForecastSettings:
    """The checked settings; InvalidInputError naming each value out of range."""
    return ForecastSettings(**{name: getattr(args, name) for name in SETTING_NAMES if hasattr(args, name)})


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """Where the candles come from: `--source`, `--csv`, `--json`, the market options and `--store`."""
    parser.add_argument("--source", choices=SOURCES,
                        help="where the candles come from (default: csv/json when a file is named, else exchange)")
    parser.add_argument("--csv", help="OHLCV CSV file (timestamps, open, high, low, close[, volume, amount])")
    parser.add_argument("--json", help='JSON file {"timestamps": [...], "open": [...], ...}')
    add_market_options(parser)
    add_store_option(parser)


def candles_from(args: argparse.Namespace, limit: int) -> Candles:
    """The latest `limit` candles from the source the options name; notes about them go to stderr."""
    source = args.source or ("csv" if args.csv else "json" if args.json else "exchange")
    candles = load_candles(source, market_from(args), limit, path=args.csv if source == "csv" else args.json,
                           store=store_from(args))
    for note in candles.notes:
        print(f"note: {note}", file=sys.stderr)
    return candles


def progress_bar(label: str) -> Callable[[int, int], None]:
    """A progress callback drawing `label [#####.....] step/total` on stderr (a line per tenth when not a terminal)."""
    terminal, shown = sys.stderr.isatty(), [-1]

    def progress(step: int, total: int) -> None:
        tenth = 10 * step // total
        if terminal:
            bar = "#" * (30 * step // total)
            print(f"\r{label} [{bar:<30}] {step}/{total}", end="\n" if step == total else "", file=sys.stderr,
                  flush=True)
        elif tenth != shown[0]:
            shown[0] = tenth
            print(f"{label}: {step}/{total}", file=sys.stderr, flush=True)

    return progress
