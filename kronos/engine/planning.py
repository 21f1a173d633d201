"""Loop planning: which forecasts share a generation loop, in what turns its paths go, and the random draws.

Each draw is a function of (seed, path, step, coarse/fine) alone (DRAW_SCHEME): path p's draws never depend on how
many paths or steps its forecast has, nor on how its paths are batched or split into turns. That lets batched
forecasts equal forecasts made alone, and makes the first S paths (and the first H steps) of a larger forecast the
paths of the smaller one with the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from kronos.engine.preprocess import Prepared

PATH_CHUNK = 512  # paths of one history generated together; more are done in turns to bound memory
DRAW_SCHEME = "splitmix64-per-path"  # names how draws are made: results stored under another scheme are not reused
# histories generated together by forecast_many (measured: 8 1.55x, 16 1.66x, 24 1.58x, 48 1.40x over single forecasts)
HISTORIES_PER_BATCH = 16


class Loop(NamedTuple):
    """One generation loop: the forecasts (indices) sharing each of its G histories, and the paths per history."""

    groups: list[list[int]]
    paths: int


def draw_uniforms(seed: int, samples: int, horizon: int, first_path: int = 0,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """The uniform draws of paths first_path .. first_path + samples - 1 of a forecast, (horizon, 2, samples):
    coarse then fine per step, each in [0, 1) with 24 bits, as torch.rand's float32.

    Path p has its own SplitMix64 stream, seeded by a hash of (seed, p); step t's coarse and fine draws are its
    outputs 2t and 2t + 1, computed directly from that counter (no state is carried), so a path's draws are the same
    whatever the forecast's sample count, horizon, batching or turns.
    """
    paths = np.arange(first_path, first_path + samples, dtype=np.uint64)
    stream = _mix(_mix(np.full(samples, seed, np.uint64) + _GOLDEN) + paths * _GOLDEN)  # (S,) each path's state
    counters = np.arange(1, 2 * horizon + 1, dtype=np.uint64).reshape(horizon, 2, 1)  # (H, 2, 1) outputs 1..2H
    bits = _mix(stream + counters * _GOLDEN) >> np.uint64(40)  # (H, 2, S): the top 24 bits
    return torch.from_numpy(bits.astype(np.float32) * np.float32(2.0 ** -24)).to(device)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function of states z (uint64, wrapping)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def loop_uniforms(loop: Loop, seeds: Sequence[int], counts: Sequence[int], firsts: Sequence[int], horizon: int,
                  device: torch.device) -> torch.Tensor:
    """The draws of a loop's paths, (horizon, 2, G, paths): each history's forecasts' draws one after the other
    (forecast m's are its paths firsts[m] .. firsts[m] + counts[m] - 1)."""
    def drawn(m: int) -> torch.Tensor:
        return draw_uniforms(seeds[m], counts[m], horizon, firsts[m], device)

    return torch.stack([torch.cat([drawn(m) for m in members], 2) for members in loop.groups], 2)


def turns(loop: Loop) -> list[tuple[int, int]]:
    """A loop's turns: (paths per history, first path); one history's paths go PATH_CHUNK at a time."""
    if len(loop.groups) > 1:
        return [(loop.paths, 0)]
    return [(min(PATH_CHUNK, loop.paths - first), first) for first in range(0, loop.paths, PATH_CHUNK)]


def plan_loops(prepared: Sequence[Prepared], counts: Sequence[int]) -> list[Loop]:
    """Group forecasts into generation loops.

    Forecasts of the same history share its paths (one group); different histories of the same length and
    path count, up to PATH_CHUNK paths each, run HISTORIES_PER_BATCH at a time; any other runs alone.
    """
    groups: dict[bytes, list[int]] = {}
    for i, p in enumerate(prepared):
        groups.setdefault(p.identity, []).append(i)
    by_shape: dict[tuple[int, int], list[list[int]]] = {}
    loops = []
    for members in groups.values():
        paths = sum(counts[m] for m in members)
        if paths > PATH_CHUNK:
            loops.append(Loop([members], paths))
        else:
            by_shape.setdefault((len(prepared[members[0]].frame), paths), []).append(members)
    for (_, paths), shaped in by_shape.items():
        loops += [Loop(shaped[k:k + HISTORIES_PER_BATCH], paths) for k in range(0, len(shaped), HISTORIES_PER_BATCH)]
    return loops
