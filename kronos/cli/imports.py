"""`python -m kronos import`: validate a CSV/JSON file of candles and merge it into the local store."""

from __future__ import annotations

import argparse
import sys

from kronos.cli.options import add_market_options, add_store_option, market_from, store_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`FILE.csv` and the market it holds (`--exchange --symbol --timeframe`), and `--store`."""
    parser.add_argument("file", metavar="FILE.csv", help="CSV (.csv, .csv.gz) or custom-format JSON file")
    add_market_options(parser, mode=False)
    add_store_option(parser)


def run(args: argparse.Namespace) -> int:
    """Merge the file; print what was added and any warnings."""
    market, store = market_from(args), store_from(args)
    report = store.import_file(args.file, market.exchange, market.symbol, market.timeframe)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{report.rows_added} new of {report.rows_read} candles merged into {store.path} "
          f"({market.exchange} {market.symbol} {market.timeframe})")
    return 0
