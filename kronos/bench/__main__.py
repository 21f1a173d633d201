"""`python -m kronos.bench [engine|backtest|combined|training|api|hub|scan|memory|calibrated-api] [options]`: see
kronos.bench."""

import importlib
import sys

from kronos.process import prepare

prepare()  # before torch loads
BENCHMARKS = ("engine", "backtest", "combined", "training", "api", "hub", "scan", "memory", "calibrated-api")
arguments = sys.argv[1:]
name = arguments.pop(0) if arguments and arguments[0] in BENCHMARKS else "engine"
importlib.import_module(f"kronos.bench.{name.replace('-', '_')}").main(arguments)
