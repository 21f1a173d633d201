"""Benchmark the engine against the reference's full-recompute method on random weights of the real shapes.

    python -m kronos.bench [engine]                  # every case, markdown table on stdout
    python -m kronos.bench engine --case demo --recompute-steps 24

The recompute method is timed over its first `--recompute-steps` steps and scaled to the horizon
when that is shorter than the horizon (its steps cost about the same once the window is full).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import torch

from kronos.engine.reference import recompute_forecast
from kronos.engine.synthetic import random_forecaster, random_walk


@dataclass(frozen=True)
class Case:
    model: str
    rows: int
    horizon: int
    samples: int
    target_s: float  # a new history
    warm_target_s: float | None = None  # the same history with a new seed


CASES = {
    "demo": Case("mini", 383, 24, 30, 0.18, 0.14),
    "small": Case("small", 488, 24, 30, 0.5),
    "max": Case("mini", 2000, 48, 100, 1.6),
}


def timed(fn, repeat: int) -> float:
    """Median wall time of `repeat` calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_case(name: str, recompute_steps: int, repeat: int) -> dict:
    """Time one case: a history seen for the first time (cold), the same history with another seed (warm,
    as after a slider change), and the reference's recompute; return a table row."""
    case = CASES[name]
    forecaster = random_forecaster(case.model)
    settings = dict(horizon=case.horizon, samples=case.samples, temperature=1.0, top_p=0.9)
    forecaster.forecast(random_walk(case.rows, seed=999), horizon=2, samples=2)  # warm-up
    histories = iter([random_walk(case.rows, seed=s) for s in range(repeat + 1)])
    cold = timed(lambda: forecaster.forecast(next(histories), seed=1, **settings), repeat)
    history = next(histories)
    seeds = iter(range(repeat + 1))
    forecaster.forecast(history, seed=next(seeds), **settings)
    warm = timed(lambda: forecaster.forecast(history, seed=next(seeds), **settings), repeat)
    steps = min(recompute_steps, case.horizon)
    recompute = timed(lambda: recompute_forecast(forecaster, history, **settings | {"horizon": steps, "top_k": 0},
                                                 seed=1), 1)
    recompute *= case.horizon / steps
    return {"case": name, "model": case.model, "rows": case.rows, "horizon": case.horizon, "paths": case.samples,
            "cold_s": cold, "warm_s": warm, "recompute_s": recompute, "extrapolated": steps < case.horizon,
            "speedup": recompute / cold, "target_s": case.target_s, "warm_target_s": case.warm_target_s}


def ops_per_step(model: str = "mini", rows: int = 383, samples: int = 30) -> tuple[float, float]:
    """Top-level torch operations and milliseconds per generated step (a 12-step forecast less a 2-step one, over
    10 steps, of one kept history), counted with torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    forecaster, history = random_forecaster(model), random_walk(rows)
    forecaster.forecast(history, horizon=2, samples=samples, seed=0)  # the history's caches kept

    def measure(horizon: int) -> tuple[int, float]:
        started = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as profiled:
            forecaster.forecast(history, horizon=horizon, samples=samples, seed=0)
        seconds = time.perf_counter() - started
        return sum(e.cpu_parent is None and e.name.startswith("aten::") for e in profiled.events()), seconds

    (short_ops, _), (long_ops, _) = measure(2), measure(12)
    plain = timed(lambda: forecaster.forecast(history, horizon=12, samples=samples, seed=0), 5) - \
        timed(lambda: forecaster.forecast(history, horizon=2, samples=samples, seed=0), 5)
    return (long_ops - short_ops) / 10, 1000 * plain / 10


def serving_peak_mb() -> float:
    """Peak resident memory (MB) of a fresh process that loads Kronos-mini's shapes and serves the demo forecast."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec
    code = ("from kronos.process import prepare; prepare(); "
            "from kronos.engine.synthetic import random_forecaster, random_walk;"
            "f = random_forecaster('mini'); f.forecast(random_walk(383), horizon=24, samples=30, top_p=0.9, seed=1);"
            "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=list(CASES), action="append", help="case(s) to run (default: all)")
    parser.add_argument("--recompute-steps", type=int, default=4, help="recompute steps timed before scaling")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each engine timing; the median is reported")
    args = parser.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, Python {platform.python_version()}")
    print("| case | model | rows | horizon | paths | new history (s) | target (s) | same history, new seed (s) "
          "| target (s) | reference recompute (s) | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.case or list(CASES):
        r = run_case(name, args.recompute_steps, args.repeat)
        mark = "*" if r["extrapolated"] else ""
        warm_target = "-" if r["warm_target_s"] is None else f"<= {r['warm_target_s']}"
        print(f"| {r['case']} | {r['model']} | {r['rows']} | {r['horizon']} | {r['paths']} | {r['cold_s']:.3f} "
              f"| <= {r['target_s']} | {r['warm_s']:.3f} | {warm_target} | {r['recompute_s']:.1f}{mark} "
              f"| {r['speedup']:.0f}x |", flush=True)
    print("\n* recompute timed over its first --recompute-steps steps and scaled to the horizon")
    ops, ms = ops_per_step()
    print(f"demo shapes: {ops:.0f} top-level torch operations and {ms:.1f} ms per generated step (30 paths)")
    print(f"peak memory of a process serving the demo forecast: {serving_peak_mb():.0f} MB (target <= 600 MB)")

