"""Set a process up for forecasting: called once where a process starts (CLI, server, dashboard), never on import."""

from __future__ import annotations

import os


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
