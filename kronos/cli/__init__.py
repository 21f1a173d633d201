"""`python -m kronos`: forecast, backtest, scan, fetch, import, serve and train from the command line; one small
module per sub-command.

Every sub-command module has `add_arguments(parser)` and `run(args) -> int`. Bad input or missing weights
give one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from kronos.cli import backtest, fetch, forecast, imports, scan, serve, train
from kronos.errors import KronosError
from kronos.settings import Environment

COMMANDS = {
    "forecast": (forecast, "forecast and print JSON"),
    "backtest": (backtest, "backtest the model against baselines over many origins and print JSON"),
    "scan": (scan, "forecast a watchlist or an exchange's top markets and rank them"),
    "fetch": (fetch, "fetch candles from an exchange into the local store"),
    "import": (imports, "validate a CSV/JSON file and merge it into the store"),
    "serve": (serve, "serve the HTTP API (FastAPI on uvicorn)"),
    "train": (train, "train or fine-tune the tokenizer and the predictor on your candles"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line on stderr and exit status 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser with all sub-commands."""
    parser = _Parser(prog="python -m kronos", description="Kronos probabilistic forecasts as JSON")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (module, summary) in COMMANDS.items():
        module.add_arguments(commands.add_parser(name, help=summary, description=summary))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a sub-command; a KronosError becomes one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        Environment.read()  # a bad KRONOS_* variable is refused before any work, whatever the command reads
        return COMMANDS[args.command][0].run(args)
    except KronosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
