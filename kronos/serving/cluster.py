"""Scale-out on a Ray cluster: the forecasts of many histories (a scan's markets, a backtest's origins) run on actors
that each load the weights once.

    ray start --head                                  # on the head machine
    ray start --address HEAD:6379                     # on each worker machine
    python -m kronos scan --top 200 --ray auto        # on any machine of the cluster
    python -m kronos scan --top 200 --ray auto --calibrate   # and every market's first-sight backtest there

`RayForecaster` stands in for a Forecaster wherever only `forecast_many` (and the weights' identity) is used, as in
`kronos.scan.ranking.scan` and `kronos.evaluation.backtest.run_backtest` (a scan's first sights,
kronos.scan.combining): the
histories are cut into pieces, several per actor, that a `ray.util.ActorPool` hands out in turn (an actor that
finishes takes the next piece, so a slow piece or a slow machine leaves no actor idle), and each actor runs its pieces
through its own Forecaster. Every forecast equals the one a local Forecaster gives for the same history, settings and
seed, to the bit, however the histories are cut (see kronos.engine). The results come back to the caller, in its
order, which writes them to its store. The weights must be loadable on every machine: a hub id (downloaded there
once) or a directory each machine has.

Ray is optional: `pip install -r requirements-ray.txt`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from kronos.engine import HISTORIES_PER_BATCH, Forecaster, Progress
from kronos.engine.forecast import Forecast
from kronos.errors import InvalidInputError, KronosError
from kronos.settings import FORECAST_DEFAULTS, ModelChoice, draw_seed

LOCAL = "local"  # start a Ray instance on this machine, for trying it
START_TIMEOUT_S = 300.0  # for every worker to load the weights
INSTALL = "pip install -r requirements-ray.txt"
PIECES_PER_ACTOR = 2  # at least, so that an actor done early takes another's work; each at most a full engine batch


def _ray() -> Any:
    """The ray module; InvalidInputError saying how to install it when it is missing."""
    try:
        import ray
    except ImportError:
        raise InvalidInputError(f"scanning on Ray needs the optional ray package: {INSTALL}") from None
    return ray


def connect(address: str, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at `address` ("auto": the one this machine belongs to, "ray://HEAD:10001", "HEAD:6379"),
    or start one here (`local`, with `num_cpus`, default every core); nothing when already connected."""
    ray = _ray()
    if ray.is_initialized():
        return
    try:
        if address == LOCAL:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise InvalidInputError(f"no Ray cluster could be reached at {address!r} ({error}); start one with "
                                "`ray start --head`, or use --ray local") from None


def _absolute(model: str) -> str:
    """A directory here as an absolute path (a worker's folder differs from the caller's), any other name as given."""
    return str(Path(model).expanduser().resolve()) if Path(model).expanduser().is_dir() else model


class _Worker:
    """A Ray actor's state: one Forecaster, loaded when the actor starts."""

    def __init__(self, choice: ModelChoice, revision: str | None, max_context: int | None):
        self.forecaster = Forecaster.from_pretrained(choice.model, choice.tokenizer, revision=revision,
                                                     max_context=max_context)

    def identity(self) -> tuple[str, int, str]:
        """The model's name, context and fingerprint."""
        return self.forecaster.name, self.forecaster.max_context, self.forecaster.fingerprint

    def forecast_many(self, first: int, histories: list[pd.DataFrame], arguments: dict) -> tuple[int, list[Forecast]]:
        """The forecasts of the caller's histories from position `first` on, with `first` (to put them back)."""
        return first, self.forecaster.forecast_many(histories, **arguments)


class RayForecaster:
    """A Forecaster's `forecast_many` on `workers` Ray actors (default: one per CPU of the cluster), each with
    `threads` torch threads; `connect` first."""

    check_arguments = Forecaster.check_arguments  # needs only `max_context`

    def __init__(self, choice: ModelChoice, *, revision: str | None = None, max_context: int | None = None,
                 workers: int | None = None, threads: int = 1):
        ray = _ray()
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1) // threads))
        if workers < 1 or threads < 1:
            raise InvalidInputError(f"need at least one Ray worker and thread, got {workers} and {threads}")
        choice = ModelChoice(_absolute(choice.model), choice.tokenizer and _absolute(choice.tokenizer))
        actor = ray.remote(num_cpus=threads)(_Worker)
        self._actors = [actor.remote(choice, revision, max_context) for _ in range(workers)]  # Ray sets their threads
        started = [a.identity.remote() for a in self._actors]
        if len(ray.wait(started, num_returns=workers, timeout=START_TIMEOUT_S)[0]) < workers:
            self.close()
            free = ray.available_resources().get("CPU", 0)
            raise InvalidInputError(f"Ray did not start {workers} workers of {threads} CPU(s) each within "
                                    f"{START_TIMEOUT_S:g} s (the cluster has {free:g} CPUs free); ask for fewer with "
                                    "--workers")
        with _raised_here():
            self.name, self.max_context, self.fingerprint = ray.get(started)[0]

    @property
    def workers(self) -> int:
        return len(self._actors)

    def forecast_many(self, histories: Sequence[pd.DataFrame], *,
                      samples: int | Sequence[int] = FORECAST_DEFAULTS.samples,
                      seeds: Sequence[int | None] | None = None, progress: Progress | None = None,
                      **arguments: Any) -> list[Forecast]:
        """As Forecaster.forecast_many, the histories cut into pieces that the actors take in turn, the forecasts in
        the histories' order; `progress` counts the histories done."""
        n = len(histories)
        counts = [samples] * n if isinstance(samples, int) else list(samples)
        seeds = [draw_seed() if s is None else int(s) for s in (seeds if seeds is not None else [None] * n)]
        if not len(counts) == len(seeds) == n:
            raise InvalidInputError(f"give one seed and one sample count per history: {n} histories, {len(seeds)} "
                                    f"seeds, {len(counts)} sample counts")
        size = max(1, min(HISTORIES_PER_BATCH, math.ceil(n / (PIECES_PER_ACTOR * len(self._actors)))))
        pieces = [range(start, min(n, start + size)) for start in range(0, n, size)]

        def submit(actor: Any, piece: range) -> Any:
            return actor.forecast_many.remote(piece.start, [histories[i] for i in piece], {
                **arguments, "samples": [counts[i] for i in piece], "seeds": [seeds[i] for i in piece]})

        made: dict[int, list[Forecast]] = {}  # by the piece's first history
        pool = _ray().util.ActorPool(self._actors)
        with _raised_here():  # unordered: an ordered pool frees an actor only once the pieces before its are back
            for first, forecasts in pool.map_unordered(submit, pieces):
                made[first] = forecasts
                if progress is not None:
                    progress(sum(map(len, made.values())), n)
        return [forecast for first in sorted(made) for forecast in made[first]]

    def close(self) -> None:
        """Stop the actors."""
        ray = _ray()
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []


@contextmanager
def _raised_here() -> Iterator[None]:
    """A KronosError raised on a worker raised here as itself (not wrapped in Ray's task error)."""
    ray = _ray()
    try:
        yield
    except ray.exceptions.RayTaskError as error:
        cause = error.cause if hasattr(error, "cause") else None
        if isinstance(cause, KronosError):
            raise cause from None
        raise
