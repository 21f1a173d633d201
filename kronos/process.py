"""Set a process up for forecasting: called once where a process starts (CLI, server, dashboard), never on import."""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 2**20  # bytes: a block this large gets its own mapping, given back to the system when freed
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def prepare(threads: int | None = None) -> None:
    """Let idle OpenMP threads sleep, keep freed memory from piling up, and optionally fix torch's thread count.

    With OpenMP's default spinning, a forecast slows down ten-fold as soon as another process or a
    concurrent forecast keeps the cores busy. The policy only takes effect before torch is loaded;
    an explicit OMP_WAIT_POLICY wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return_big_blocks()
    if threads:
        import torch

        torch.set_num_threads(threads)


def return_big_blocks() -> None:
    """glibc: blocks of MMAP_THRESHOLD bytes or more are mapped on their own, so freeing one gives it back.

    By default glibc raises that threshold (up to 32 MiB) each time a big block is freed, after which a big
    backtest's tensors and arrays stay in its heaps once freed: the API grew by about 600 MiB over two 200-origin
    backtests and kept it (`python -m kronos.bench memory`). An explicit MALLOC_MMAP_THRESHOLD_ wins."""
    if sys.platform.startswith("linux") and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
        if mallopt is not None:
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def release_memory() -> None:
    """glibc: give the system back the freed memory the heaps keep (malloc_trim); a no-op elsewhere."""
    if sys.platform.startswith("linux"):
        trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
        if trim is not None:
            trim(0)
