"""Loop planning: which forecasts share a generation loop, in what turns its paths go, and the random draws.

A forecast's draws depend only on its seed, sample count and horizon (drawn DRAW_CHUNK paths at a time),
never on how its paths are batched or split into turns: that is what lets batched forecasts equal
forecasts made alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from kronos.engine.preprocess import Prepared

PATH_CHUNK = 512  # paths of one history generated together; more are done in turns to bound memory
DRAW_CHUNK = 128  # the random stream's order: a forecast's draws are made this many paths at a time
# histories generated together by forecast_many (measured: 8 1.55x, 16 1.66x, 24 1.58x, 48 1.40x over single forecasts)
HISTORIES_PER_BATCH = 16


class Loop(NamedTuple):
    """One generation loop: the forecasts (indices) sharing each of its G histories, and the paths per history."""

    groups: list[list[int]]
    paths: int


def draw_uniforms(generator: torch.Generator, samples: int, horizon: int) -> torch.Tensor:
    """The uniform draws of one forecast, (horizon, 2, samples): coarse then fine per step.

    Drawn DRAW_CHUNK paths at a time, step by step within each (the order of the first engine, which
    generated paths in such turns), so that a path's draws are the same however the paths are later
    batched or split into turns.
    """
    chunks = [torch.rand(horizon, 2, min(DRAW_CHUNK, samples - start), generator=generator,
                         device=generator.device) for start in range(0, samples, DRAW_CHUNK)]
    return torch.cat(chunks, dim=2)


def loop_uniforms(loop: Loop, seeds: Sequence[int], counts: Sequence[int], horizon: int,
                  device: torch.device) -> torch.Tensor:
    """The draws of a loop's paths, (horizon, 2, G, paths): each history's forecasts' draws one after the other."""
    def drawn(m: int) -> torch.Tensor:
        return draw_uniforms(torch.Generator(device=device).manual_seed(seeds[m]), counts[m], horizon)

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
