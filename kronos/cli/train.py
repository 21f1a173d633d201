"""`python -m kronos train`: train or fine-tune the tokenizer and the predictor on CSV files or a stored market.

Ctrl-C stops after the current step with the state saved; run the same command with --resume to continue.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

from kronos.cli.options import add_market_options, add_store_option, market_from, store_from
from kronos.training.data import read_csv_series, read_store_series
from kronos.training.evaluate import evaluate_on_validation, evaluation_settings
from kronos.training.loop import Progress
from kronos.training.models import SHAPES, Init
from kronos.training.run import SAVE_MINUTES, STAGE_DEFAULTS, STAGES, TrainSettings, train

TRAIN_DEFAULTS = TrainSettings()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Starting weights, data, stages, windows, optimisation, split, output."""
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--from", dest="base", help="fine-tune this preset (mini, small, base), hub id or directory")
    start.add_argument("--scratch", choices=list(SHAPES), help="train from scratch: a preset's shape, or tiny (tests)")
    parser.add_argument("--tokenizer", help="tokenizer hub id or directory (default: the base model's, or a fresh one)")
    parser.add_argument("--csv", action="append", help="OHLCV CSV file; repeat for several (windows stay inside each)")
    add_market_options(parser, mode=False)
    add_store_option(parser)
    parser.add_argument("--stage", choices=list(STAGES), default=TRAIN_DEFAULTS.stage,
                        help="both: the tokenizer, then the predictor on its ids (default both)")
    for name, kind, text in (("lookback", int, "history rows of a window"), ("horizon", int, "rows after them"),
                             ("batch_size", int, "windows per step"), ("epochs", int, "passes over the windows"),
                             ("max_steps", int, "stop each stage after this many steps"),
                             ("lr", float, "peak learning rate (default: tokenizer {0.lr_finetune:g}, predictor "
                                           "{1.lr_finetune:g}; from scratch {0.lr_scratch:g} and {1.lr_scratch:g})"
                              .format(STAGE_DEFAULTS["tokenizer"], STAGE_DEFAULTS["predictor"])),
                             ("val_every", int, "steps between validations (and at every epoch's end)"),
                             ("val_windows", int, "validation windows, spread evenly over the validation period"),
                             ("patience", int, "validations without improvement before early stopping"),
                             ("seed", int, "random seed: the same seed, data and settings give the same weights")):
        default = getattr(TRAIN_DEFAULTS, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default,
                            help=text + ("" if default is None or name == "lr" else f" (default {default})"))
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--val-from", help="validate from this date on, e.g. 2025-06-01")
    split.add_argument("--val-fraction", type=float, default=TRAIN_DEFAULTS.val_fraction,
                       help=f"validate on this last fraction of the time span (default {TRAIN_DEFAULTS.val_fraction})")
    parser.add_argument("--max-minutes", type=float, help="stop each stage after this many minutes")
    parser.add_argument("--save-minutes", type=float, default=SAVE_MINUTES,
                        help="save the state at least this often, in minutes of training, besides every validation "
                             f"(a killed run resumes from there; default {SAVE_MINUTES:g})")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--out", required=True, help="output folder: tokenizer/, model/, state/, record.json")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out (same command line)")
    parser.add_argument("--evaluate", action="store_true", help="backtest the result on the validation period")


def run(args: argparse.Namespace) -> int:
    """Train, then print a JSON summary (status, best validation loss and speed per stage, the record's path)."""
    init = Init(base=args.base, scratch=args.scratch, tokenizer=args.tokenizer)
    settings = TrainSettings(stage=args.stage, lookback=args.lookback, horizon=args.horizon,
                             batch_size=args.batch_size, epochs=args.epochs, max_steps=args.max_steps, lr=args.lr,
                             val_from=args.val_from, val_fraction=args.val_fraction, val_every=args.val_every,
                             val_windows=args.val_windows, patience=args.patience, seed=args.seed)
    if args.evaluate:
        evaluation_settings(settings.lookback, settings.horizon)  # refused before training rather than after it
    if args.csv:
        series, warnings = read_csv_series(args.csv)
        for warning in warnings:
            print(f"note: {warning}", file=sys.stderr)
    else:
        market = market_from(args)
        series = [read_store_series(store_from(args), market.exchange, market.symbol, market.timeframe)]
    with _bars() as progress, _stop_on_interrupt() as should_stop:
        record = train(series, init, settings, args.out, resume=args.resume, device=args.device,
                       max_minutes=args.max_minutes, progress=progress, should_stop=should_stop,
                       evaluate=evaluate_on_validation if args.evaluate else None, save_minutes=args.save_minutes)
    if record.status == "interrupted":
        print("note: stopped with the state saved; continue with the same command and --resume", file=sys.stderr)
    summary = {name: {"stopped": s.stopped, "steps": s.step, "best": s.best and s.best.model_dump(),
                      "windows_per_second": round(s.windows_per_second, 2)} for name, s in record.stages.items()}
    json.dump({"status": record.status, "out": str(args.out), "stages": summary,
               "record": f"{args.out}/record.json"}, sys.stdout)
    sys.stdout.write("\n")
    return 0


@contextmanager
def _bars() -> Iterator[Callable[[Progress], None]]:
    """A tqdm bar per stage on stderr: step, epoch, loss, validation loss, windows per second."""
    bars: dict[str, tqdm] = {}

    def show(p: Progress) -> None:
        bar = bars.get(p.stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[p.stage] = tqdm(total=p.steps, initial=p.step - 1, desc=p.stage, unit="step", file=sys.stderr,
                                       mininterval=0.5 if sys.stderr.isatty() else 30, dynamic_ncols=True)
        val = "-" if p.val_loss is None else f"{p.val_loss:.4f}"
        bar.set_postfix_str(f"epoch {p.epoch} loss {p.loss:.4f} val {val} {p.windows_per_second:.1f} win/s",
                            refresh=False)
        bar.update(p.step - bar.n)

    try:
        yield show
    finally:
        for bar in bars.values():
            bar.close()


@contextmanager
def _stop_on_interrupt() -> Iterator[Callable[[], bool]]:
    """The first Ctrl-C asks the run to stop after its current step (state saved); a second one aborts."""
    asked = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield asked.is_set
        return

    def handler(signum, frame) -> None:
        asked.set()
        signal.signal(signal.SIGINT, previous)
        print("\nstopping after this step with the state saved (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield asked.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
