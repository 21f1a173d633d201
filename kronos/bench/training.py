"""Training throughput: windows per second of each stage for a model shape on this machine.

    python -m kronos.bench training                      # mini shapes, windows of 383 + 24 rows, batch 16
    python -m kronos.bench training --shape small --batch-size 8 --steps 3 --device cuda

Fresh weights of the shape (as `train --scratch`), synthetic candles (kronos.engine.synthetic.random_walk), the real
training code (kronos.training.run.train). The first step of each stage is a warm-up; the figure is the
following steps' windows over their wall time (data preparation, forward, backward, optimiser; no validation).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import torch

from kronos.engine.synthetic import random_walk
from kronos.training.data import Series
from kronos.training.loop import Progress
from kronos.training.models import SHAPES, Init
from kronos.training.run import TrainSettings, train


def measure(shape: str = "mini", lookback: int = 383, horizon: int = 24, batch_size: int = 16, steps: int = 4,
            device: str = "cpu") -> dict[str, float]:
    """Windows per second of the tokenizer and the predictor stage over `steps` steps after a warm-up step."""
    width = lookback + horizon
    train_rows = width + batch_size * (steps + 1)
    frame = random_walk(train_rows + width)
    ticks: dict[str, list[float]] = {}

    def tick(progress: Progress) -> None:
        ticks.setdefault(progress.stage, []).append(time.perf_counter())

    settings = TrainSettings(lookback=lookback, horizon=horizon, batch_size=batch_size, epochs=1, max_steps=steps + 1,
                             val_from=str(frame["timestamps"][train_rows]), val_every=10**9, val_windows=1)
    with tempfile.TemporaryDirectory() as out:
        train([Series.from_frame("random walk", "csv", frame)], Init(scratch=shape), settings, out, device=device,
              progress=tick)
    return {stage: steps * batch_size / (t[-1] - t[0]) for stage, t in ticks.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=list(SHAPES), default="mini")
    parser.add_argument("--lookback", type=int, default=383)
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per stage, after one warm-up step")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    rates = measure(args.shape, args.lookback, args.horizon, args.batch_size, args.steps, args.device)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, device {args.device}")
    print("| shape | window (rows) | batch | stage | windows/s | s/step |\n|---|---|---|---|---|---|")
    for stage, rate in rates.items():
        print(f"| {args.shape} | {args.lookback} + {args.horizon} | {args.batch_size} | {stage} | {rate:.2f} "
              f"| {args.batch_size / rate:.2f} |")
