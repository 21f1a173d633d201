"""Set a process up for forecasting: called once where a process starts (CLI, server, dashboard), never on import."""

from __future__ import annotations

import ctypes
import os
import sys


def prepare(threads: int | None = None) -> None:
    """Let idle OpenMP threads sleep and optionally fix torch's thread count.

    With OpenMP's default spinning, a forecast slows down ten-fold as soon as another process or a
    concurrent forecast keeps the cores busy. The policy only takes effect before torch is loaded;
    an explicit OMP_WAIT_POLICY wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if threads:
        import torch

        torch.set_num_threads(threads)


def release_memory() -> None:
    """glibc: give the system back the freed memory its heaps keep (malloc_trim); a no-op elsewhere.

    glibc keeps what a big job (a backtest's tensors and arrays) freed in the heaps of the threads that used it:
    without this, the API grew by about 600 MiB over three 500-origin backtests and kept it
    (`python -m kronos.bench memory`). Mapping big blocks on their own instead (mallopt M_MMAP_THRESHOLD) also
    bounds it, but slowed forecasts by a third here."""
    if sys.platform.startswith("linux"):
        trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
        if trim is not None:
            trim(0)
