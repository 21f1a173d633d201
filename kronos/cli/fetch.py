"""`python -m kronos fetch`: fetch a market's candles into the local store (and optionally a CSV file)."""

from __future__ import annotations

import argparse
import sys

from kronos.cli.options import add_market_options, add_store_option, market_from, writable_store
from kronos.data.market import DEFAULT_LIMIT, fetch_candles


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The market, `--limit`, `--out FILE.csv` and `--store`."""
    add_market_options(parser)
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"candles wanted (default {DEFAULT_LIMIT})")
    parser.add_argument("--out", metavar="FILE.csv", default=None, help="also write the candles to this CSV file")
    add_store_option(parser)


def run(args: argparse.Namespace) -> int:
    """Fill the store; exit 0 when an exchange answered, 1 when only the store could; a store that cannot be
    written is an error before anything is fetched."""
    store = writable_store(args)
    candles = fetch_candles(market_from(args), args.limit, store=store)
    for note in candles.notes:
        print(note, file=sys.stderr)
    if args.out:
        candles.frame.to_csv(args.out, index=False)
    print(f"{len(candles.frame)} {candles.symbol} {candles.timeframe} candles from {candles.exchange} "
          f"({candles.source}), newest {candles.as_of}{' (stale)' if candles.is_stale else ''}"
          + (f", written to {args.out}" if args.out else ""))
    return 0 if candles.source == "exchange" else 1
