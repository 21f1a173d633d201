"""The Forecaster: one loaded Kronos tokenizer + predictor that turns candle histories into Monte Carlo paths.

The flow of `forecast_many` (G histories of L candles in one loop, P paths each, horizon H, model width D):

    history  --prepare-->  Prepared: x (L, 6) normalised, features (L, 5), future_features (H, 5)
             --HistoryCache.histories-->  History: ids s1, s2 (L,), encoded once and kept for the next forecast
    plan_loops: forecasts of one history share its paths; histories of one length run side by side
    per loop, draws (H, 2, G, P) from each forecast's own seed; per turn of paths, kronos.engine.generation:
        prefill   the predictor's window of each history at batch 1: prefix keys/values (G, heads, L, E),
                  last hidden state (G, D); kept on the history for later forecasts
        step i    run step i-1's ids (G*P, 1) through the predictor, each path appending to its own key/value
                  suffix: last hidden states (G*P, D); sample step i's coarse then fine ids (G*P,) from them
        decode    the tokenizer decoder over each history's prefix + its paths' ids: rows (G*P, H, 6)
    denormalise: Forecast paths (samples, H, 6) and ids (samples, H, 2)

Once the window slides (history + generated tokens longer than the context), positions shift and every
step pre-fills the window again: still exactly, because both models are causal, the history part at
batch 1 and only the generated part per path. Every forecast equals the one `forecast` gives alone.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from kronos.data.validation import FEATURE_COLUMNS
from kronos.engine import preprocess
from kronos.engine.forecast import Forecast
from kronos.engine.generation import Generator
from kronos.engine.planning import Loop, loop_uniforms, plan_loops, turns
from kronos.engine.preprocess import Prepared
from kronos.engine.source import Progress
from kronos.errors import InvalidInputError
from kronos.model import Kronos, KronosTokenizer, checkpoints
from kronos.model.checkpoints import model_label
from kronos.settings import FORECAST_DEFAULTS, draw_seed


class Forecaster:
    """A Kronos tokenizer + predictor ready to forecast; safe to share between threads. `name` is how forecasts,
    scans and pages name it: a hub id or a local checkpoint's run name (kronos.model.checkpoints.model_label), never a
    path."""

    def __init__(self, tokenizer: KronosTokenizer, model: Kronos, *, max_context: int, device: str = "cpu",
                 name: str = "kronos"):
        self.tokenizer, self.model = tokenizer.eval(), model.eval()
        self.max_context, self.device, self.name = max_context, torch.device(device), name
        self._generator = Generator(self.tokenizer, self.model, max_context, self.device)

    @classmethod
    def from_pretrained(cls, model: str = "mini", tokenizer: str | None = None, *, revision: str | None = None,
                        max_context: int | None = None, device: str = "cpu", compile: bool = False) -> Forecaster:
        """Load a preset (`mini`, `small`, `base`), hub id or checkpoint directory (see kronos.model.checkpoints); with
        `compile`, the decode step is compiled (see `compile_step`)."""
        dev = checkpoints.check_device(device)
        chosen = checkpoints.select(model, tokenizer, max_context)
        forecaster = cls(checkpoints.load_tokenizer(chosen.tokenizer, device=str(dev)),
                         checkpoints.load_predictor(chosen.model, revision, device=str(dev)),
                         max_context=chosen.max_context, device=str(dev), name=model_label(chosen.model))
        if compile:
            forecaster.compile_step()
        return forecaster

    def compile_step(self) -> float | None:
        """Compile the predictor's decode step with torch.compile (for long-lived servers) and warm it up; the
        seconds that took, or None (with a warning) where no C compiler is found. Paths then agree with the
        uncompiled engine's to float rounding, not to the bit."""
        if shutil.which("cc") is None and shutil.which("gcc") is None:
            warnings.warn("no C compiler found: the decode step stays uncompiled", stacklevel=2)
            return None
        started = time.perf_counter()
        self.model.step = torch.compile(self.model.step, dynamic=True)
        history = pd.DataFrame({"timestamps": pd.date_range("2024-01-01", periods=64, freq="h"),
                                **{c: np.linspace(1.0, 2.0, 64) for c in FEATURE_COLUMNS}})
        for horizon in (2, 3):  # the first and a later step's shapes
            self.forecast(history, horizon=horizon, samples=2, seed=0)
        return time.perf_counter() - started

    @functools.cached_property
    def fingerprint(self) -> str:
        """A short hash of both models' weights and configs: the identity results are stored under."""
        return _fingerprint(self.tokenizer, self.model)

    def forecast(self, history: pd.DataFrame, *, horizon: int = FORECAST_DEFAULTS.horizon,
                 samples: int = FORECAST_DEFAULTS.samples, temperature: float = FORECAST_DEFAULTS.temperature,
                 top_p: float = FORECAST_DEFAULTS.top_p, top_k: int = FORECAST_DEFAULTS.top_k,
                 lookback: int | None = None, seed: int | None = None, progress: Progress | None = None) -> Forecast:
        """Sample `samples` paths of `horizon` future candles after the last `lookback` rows of `history`.

        `history` has `timestamps` and open/high/low/close (volume, amount optional); `lookback` defaults
        to every row up to the context. The same seed gives the same paths; without one a seed is drawn
        and recorded. `progress(step, total)` is called after every generated step.
        """
        return self.forecast_many([history], horizon=horizon, samples=samples, temperature=temperature, top_p=top_p,
                                  top_k=top_k, lookback=lookback, seeds=[seed], progress=progress)[0]

    def forecast_many(self, histories: Sequence[pd.DataFrame], *, horizon: int = FORECAST_DEFAULTS.horizon,
                      samples: int | Sequence[int] = FORECAST_DEFAULTS.samples,
                      temperature: float = FORECAST_DEFAULTS.temperature, top_p: float = FORECAST_DEFAULTS.top_p,
                      top_k: int = FORECAST_DEFAULTS.top_k, lookback: int | None = None,
                      seeds: Sequence[int | None] | None = None, progress: Progress | None = None,
                      first_path: int = 0) -> list[Forecast]:
        """`forecast` of several histories with the same settings, one seed (and optionally a sample count) each.

        With `first_path` F, each forecast's paths are paths F .. F + samples - 1 of the forecast with F + samples
        paths and the same seed (its draws; to float rounding, its paths): how a kept forecast gets more paths.
        They share generation loops where they can: the same history given several times runs once with the
        union of their paths; different histories of the same length and path count run HISTORIES_PER_BATCH at
        a time. Every forecast equals the one `forecast` gives for its history, sample count and seed.
        """
        counts, asked = preprocess.per_history(len(histories), samples, seeds)
        prepared = [self.prepare(h, horizon, lookback) for h in histories]  # raises for bad input first
        for count in sorted(set(counts)):
            self.check_arguments(horizon, count, temperature, top_p, top_k, asked)
        if first_path < 0:
            raise InvalidInputError(f"first_path must be 0 or more, got {first_path}")
        chosen = [draw_seed() if s is None else int(s) for s in asked]
        loops = plan_loops(prepared, counts)
        tick = _ticker(horizon * sum(len(turns(loop)) for loop in loops), progress)
        made: dict[int, Forecast] = {}  # by history
        with torch.inference_mode():
            for loop in loops:
                uniforms = loop_uniforms(loop, chosen, counts, [first_path] * len(counts), horizon,
                                         self.device)  # (H, 2, G, P)
                sampling = (temperature, top_k, top_p)
                rows, ids = self._generator.run(loop, prepared, uniforms, sampling, tick)  # (G, P, H, ...)
                for m, own in _paths_of(loop, counts):  # forecast m's paths: rows[own], ids[own]
                    settings = dict(horizon=horizon, samples=counts[m], temperature=temperature, top_p=top_p,
                                    top_k=top_k, lookback=len(prepared[m].frame), max_context=self.max_context)
                    if first_path:
                        settings["first_path"] = first_path
                    made[m] = Forecast(prepared[m].denormalise(rows[own]), prepared[m].future, prepared[m].frame,
                                       chosen[m], self.name, settings, ids[own])
        return [made[m] for m in range(len(histories))]

    def prepare(self, history: pd.DataFrame, horizon: int, lookback: int | None = None) -> Prepared:
        """Check a history and make it ready for the model (see preprocess.prepare)."""
        return preprocess.prepare(history, horizon, lookback, self.max_context)

    def check_arguments(self, horizon: int, samples: int, temperature: float, top_p: float, top_k: int,
                        seeds: Sequence[int | None] = ()) -> None:
        """Raise InvalidInputError naming each bad sampling argument and its allowed range."""
        preprocess.check_arguments(self.max_context, horizon, samples, temperature, top_p, top_k, seeds)


def _paths_of(loop: Loop, counts: Sequence[int]) -> Iterator[tuple[int, tuple[int, slice]]]:
    """Each forecast of a loop with where its paths are in the loop's (G, P, ...) results: (m, (g, paths))."""
    for g, members in enumerate(loop.groups):
        bounds = np.cumsum([0] + [counts[m] for m in members])
        for m, start, end in zip(members, bounds[:-1], bounds[1:]):
            yield m, (g, slice(start, end))


def _fingerprint(*modules: torch.nn.Module) -> str:
    """A short hash of the modules' configs and weights."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(repr(module.config).encode())
        for name, tensor in module.state_dict().items():
            digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _ticker(total: int, progress: Progress | None) -> Callable[[], None]:
    """A function to call after every generated step: it reports (step, total) to `progress`."""
    ticks = iter(range(1, total + 1))

    def tick() -> None:
        done = next(ticks)
        if progress is not None:
            progress(done, total)

    return tick
