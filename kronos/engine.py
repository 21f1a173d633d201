"""The sampling engine: one loaded tokenizer + predictor that turns candle histories into Monte Carlo paths.

Each history is normalised, encoded and pre-filled once at batch 1 (kept for the next forecast of the
same history); its keys and values are shared by all of its paths, and each path then adds one position
per step to a key/value cache. Several histories of the same length can run in one generation loop
(`forecast_many`): their prefixes are stacked and every step runs all their paths as one batch, with
each history's own random stream, so each forecast equals what `forecast` gives alone. Once the
predictor's window slides (history + generated tokens longer than the context), positions shift and
every step recomputes the window: still exactly, because both models are causal, the history part at
batch 1 and only the generated part per path.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from kronos import checkpoints
from kronos.data.validation import FEATURE_COLUMNS, check_history
from kronos.errors import InvalidInputError
from kronos.forecast import Forecast
from kronos.layers import KVCache, stack_prefixes
from kronos.model import Kronos, KronosTokenizer, PredictorCache
from kronos.sampling import sample_ids
from kronos.settings import DEFAULTS, MAX_ENGINE_SAMPLES, SEED_RANGE, draw_seed
from kronos.timeframes import median_step

CLIP = 5.0
PATH_CHUNK = 512  # paths of one history generated together; more are done in turns to bound memory
DRAW_CHUNK = 128  # the random stream's order: a forecast's draws are made this many paths at a time
HISTORIES_PER_BATCH = 16  # histories generated together by forecast_many (measured here: 8 1.55x, 16 1.66x, 24 1.58x, 48 1.40x over single forecasts)
HISTORIES_KEPT = 4  # recent histories whose ids and caches are kept for the next forecast
Progress = Callable[[int, int], None]


def time_features(stamps: pd.DatetimeIndex) -> np.ndarray:
    """Minute, hour, weekday (Monday=0), day of month and month of each timestamp: (T, 5) int64."""
    return np.stack([stamps.minute, stamps.hour, stamps.day_of_week, stamps.day, stamps.month], axis=1).astype(np.int64)


def normalise(values: np.ndarray, fit_rows: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column (x - mean) / (std + 1e-5) clipped to +-5, in float32 as the reference: (normalised, mean, std).

    The mean and population std come from the first `fit_rows` rows (all by default): a training window
    is normalised from its lookback only, as a forecast is."""
    x = values.astype(np.float32)
    mean, std = x[:fit_rows].mean(axis=0), x[:fit_rows].std(axis=0)
    return np.clip((x - mean) / (std + 1e-5), -CLIP, CLIP), mean, std


def draw_uniforms(generator: torch.Generator, samples: int, horizon: int) -> torch.Tensor:
    """The uniform draws of one forecast, (horizon, 2, samples): coarse then fine per step.

    Drawn DRAW_CHUNK paths at a time, step by step within each (the order of the first engine, which
    generated paths in such turns), so that a path's draws are the same however the paths are later
    batched or split into turns.
    """
    chunks = [torch.rand(horizon, 2, min(DRAW_CHUNK, samples - start), generator=generator,
                         device=generator.device) for start in range(0, samples, DRAW_CHUNK)]
    return torch.cat(chunks, dim=2)


@dataclass(frozen=True)
class Prepared:
    """A history made ready for the model: its last `lookback` rows, normalised, with time features."""

    frame: pd.DataFrame  # the lookback rows
    x: np.ndarray  # (L, 6) normalised float32
    mean: np.ndarray  # (6,)
    std: np.ndarray  # (6,)
    features: np.ndarray  # (L, 5)
    future: pd.DatetimeIndex  # the horizon's candle times
    future_features: np.ndarray  # (horizon, 5)

    def denormalise(self, rows: np.ndarray) -> np.ndarray:
        """Normalised rows (..., 6) back to prices and volumes (float64)."""
        return rows.astype(np.float64) * (self.std.astype(np.float64) + 1e-5) + self.mean


class Forecaster:
    """A Kronos tokenizer + predictor ready to forecast; safe to share between threads."""

    def __init__(self, tokenizer: KronosTokenizer, model: Kronos, *, max_context: int, device: str = "cpu",
                 name: str = "kronos"):
        self.tokenizer, self.model = tokenizer.eval(), model.eval()
        self.max_context, self.device, self.name = max_context, torch.device(device), name
        self._histories: OrderedDict[str, _History] = OrderedDict()  # most recently used last
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, model: str = "mini", tokenizer: str | None = None, *, revision: str | None = None,
                        max_context: int | None = None, device: str = "cpu", compile: bool = False) -> "Forecaster":
        """Load a preset (`mini`, `small`, `base`), hub id or checkpoint directory (see kronos.checkpoints); with
        `compile`, the decode step is compiled (see `compile_step`)."""
        dev = checkpoints.check_device(device)
        chosen = checkpoints.select(model, tokenizer, max_context)
        forecaster = cls(checkpoints.load_tokenizer(chosen.tokenizer, device=str(dev)),
                         checkpoints.load_predictor(chosen.model, revision, device=str(dev)),
                         max_context=chosen.max_context, device=str(dev), name=chosen.model)
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
        digest = hashlib.sha256()
        for module in (self.tokenizer, self.model):
            digest.update(repr(module.config).encode())
            for name, tensor in module.state_dict().items():
                digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def forecast(self, history: pd.DataFrame, *, horizon: int = DEFAULTS.horizon, samples: int = DEFAULTS.samples,
                 temperature: float = DEFAULTS.temperature, top_p: float = DEFAULTS.top_p,
                 top_k: int = DEFAULTS.top_k, lookback: int | None = None, seed: int | None = None,
                 progress: Progress | None = None) -> Forecast:
        """Sample `samples` paths of `horizon` future candles after the last `lookback` rows of `history`.

        `history` has `timestamps` and open/high/low/close (volume, amount optional); `lookback` defaults
        to every row up to the context. The same seed gives the same paths; without one a seed is drawn
        and recorded. `progress(step, total)` is called after every generated step.
        """
        return self.forecast_many([history], horizon=horizon, samples=samples, temperature=temperature, top_p=top_p,
                                  top_k=top_k, lookback=lookback, seeds=[seed], progress=progress)[0]

    def forecast_many(self, histories: Sequence[pd.DataFrame], *, horizon: int = DEFAULTS.horizon,
                      samples: int | Sequence[int] = DEFAULTS.samples, temperature: float = DEFAULTS.temperature,
                      top_p: float = DEFAULTS.top_p, top_k: int = DEFAULTS.top_k, lookback: int | None = None,
                      seeds: Sequence[int | None] | None = None, progress: Progress | None = None) -> list[Forecast]:
        """`forecast` of several histories with the same settings, one seed (and optionally a sample count) each.

        They share generation loops where they can: the same history given several times runs once with the
        union of their paths; different histories of the same length and path count run HISTORIES_PER_BATCH at
        a time. Every forecast equals the one `forecast` gives for its history, sample count and seed.
        """
        counts = [samples] * len(histories) if isinstance(samples, int) else list(samples)
        seeds = list(seeds) if seeds is not None else [None] * len(histories)
        if not len(seeds) == len(counts) == len(histories):
            raise InvalidInputError(f"give one seed and one sample count per history: {len(histories)} histories, "
                                    f"{len(seeds)} seeds, {len(counts)} sample counts")
        prepared = [self.prepare(h, horizon, lookback) for h in histories]  # raises for bad input first
        for count in sorted(set(counts)):
            self.check_arguments(horizon, count, temperature, top_p, top_k, seeds)
        seeds = [draw_seed() if s is None else int(s) for s in seeds]
        sampling = (temperature, top_k, top_p)
        loops = _loops(prepared, counts)
        total = horizon * sum(len(_turns(paths, len(groups))) for groups, paths in loops)
        ticks = iter(range(1, total + 1))

        def tick() -> None:
            done = next(ticks)
            if progress is not None:
                progress(done, total)

        results: list[Forecast | None] = [None] * len(histories)
        with torch.inference_mode():
            for groups, paths in loops:  # groups: the members sharing each history; paths per history
                shared = self._histories_of([prepared[members[0]] for members in groups])
                uniforms = torch.stack([torch.cat([draw_uniforms(self._generator(seeds[m]), counts[m], horizon)
                                                   for m in members], 2) for members in groups], 2)  # (H, 2, G, P)
                rows, tokens = [], []
                for turn, first in _turns(paths, len(groups)):
                    u = uniforms[..., first:first + turn].flatten(2)  # (H, 2, G * turn)
                    r, t = self._generate(shared, turn, u, sampling, tick)
                    rows.append(r.view(len(groups), turn, horizon, -1))
                    tokens.append(t.view(len(groups), turn, horizon, 2))
                rows, tokens = torch.cat(rows, 1).cpu().numpy(), torch.cat(tokens, 1).cpu().numpy()
                for g, members in enumerate(groups):
                    bounds = np.cumsum([0] + [counts[m] for m in members])
                    for m, start, end in zip(members, bounds[:-1], bounds[1:]):
                        settings = dict(horizon=horizon, samples=counts[m], temperature=temperature, top_p=top_p,
                                        top_k=top_k, lookback=len(prepared[m].frame), max_context=self.max_context)
                        results[m] = Forecast(prepared[m].denormalise(rows[g, start:end]), prepared[m].future,
                                              prepared[m].frame, seeds[m], self.name, settings, tokens[g, start:end])
        return results

    def prepare(self, history: pd.DataFrame, horizon: int, lookback: int | None = None) -> Prepared:
        """Check a history, keep its last `lookback` rows (default: up to the context), normalise them, and
        stamp the horizon's candles one median step apart."""
        frame = check_history(history)
        if lookback is not None and not 1 <= lookback <= len(frame):
            raise InvalidInputError(f"lookback must be between 1 and the number of history rows ({len(frame)}), "
                                    f"got {lookback}")
        frame = frame.iloc[-(lookback or min(len(frame), self.max_context)):].reset_index(drop=True)
        stamps = pd.DatetimeIndex(frame["timestamps"])
        step = median_step(stamps)
        future = pd.DatetimeIndex([stamps[-1] + step * (i + 1) for i in range(max(horizon, 0))])
        x, mean, std = normalise(frame[list(FEATURE_COLUMNS)].to_numpy())
        return Prepared(frame, x, mean, std, time_features(stamps), future, time_features(future))

    def check_arguments(self, horizon: int, samples: int, temperature: float, top_p: float, top_k: int,
                        seeds: Sequence[int | None] = ()) -> None:
        """Raise InvalidInputError naming each bad sampling argument and its allowed range."""
        problems = []
        if not 1 <= horizon < self.max_context:
            problems.append(f"horizon must be between 1 and {self.max_context - 1} (the context less one), got {horizon}")
        if not 1 <= samples <= MAX_ENGINE_SAMPLES:
            problems.append(f"samples must be between 1 and {MAX_ENGINE_SAMPLES}, got {samples}")
        if not temperature > 0:
            problems.append(f"temperature must be greater than 0, got {temperature}")
        if not 0 < top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {top_p}")
        if top_k < 0:
            problems.append(f"top_k must be 0 (off) or a positive count, got {top_k}")
        low, high = SEED_RANGE
        problems += [f"seed must be between {low} and {high}, got {s}" for s in seeds if s is not None
                     and not low <= s <= high]
        if problems:
            raise InvalidInputError(problems)

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def _histories_of(self, prepared: list[Prepared]) -> list["_History"]:
        """Each lookback's ids (and pre-filled caches once made), kept while the same history comes back; the new
        ones (of equal length) are encoded together."""
        keys = [hashlib.sha1(p.x.tobytes() + p.features.tobytes()).hexdigest() for p in prepared]
        with self._lock:
            found = {key: self._histories.pop(key) for key in keys if key in self._histories}
        new = [i for i, key in enumerate(keys) if key not in found]
        if new:
            x = torch.from_numpy(np.stack([prepared[i].x for i in new])).to(self.device)  # (M, L, 6)
            s1, s2 = self.tokenizer.encode(x)  # (M, L) each
            for j, i in enumerate(new):
                found[keys[i]] = _History(s1[j], s2[j], torch.from_numpy(prepared[i].features).to(self.device))
        shared = [found[key].with_future(torch.from_numpy(p.future_features).to(self.device))
                  for key, p in zip(keys, prepared)]
        with self._lock:
            for key, history in zip(keys, shared):
                self._histories[key] = history
            while len(self._histories) > HISTORIES_KEPT:
                self._histories.popitem(last=False)
        return shared

    def _generate(self, histories: list["_History"], paths: int, uniforms: torch.Tensor,
                  sampling: tuple[float, int, float], tick: Callable[[], None]) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate `paths` paths for each of G histories of equal length, with the draws `uniforms` (H, 2, G*paths).

        Returns normalised rows (G*paths, H, 6) and the (coarse, fine) ids (G*paths, H, 2), history by history.
        """
        n, length, horizon = len(histories) * paths, len(histories[0].s1), uniforms.shape[0]
        times = self.model.time_emb(torch.stack([h.features for h in histories]))  # (G, L + horizon, D), once
        gen1 = histories[0].s1.new_zeros(n, horizon)
        gen2 = histories[0].s2.new_zeros(n, horizon)
        cache = h_last = None
        for i in range(horizon):
            start = max(0, length + i - self.max_context)  # first token of the predictor's window
            if cache is None or start > 0:  # first step, or the window slid: recompute it
                prefix, h_last = self._predictor_prefix(histories, start, keep=i == 0)
                cache = prefix.fork(n, horizon)
                if i:
                    h_last = self.model.step(gen1[:, :i], gen2[:, :i], times[:, length:length + i],
                                             length - start, cache)
            else:
                h_last = self.model.step(gen1[:, i - 1:i], gen2[:, i - 1:i], times[:, length + i - 1:length + i],
                                         length + i - 1 - start, cache)
            coarse = _per_path(self.model.coarse_logits(h_last), n)  # once per history before the first step
            gen1[:, i] = sample_ids(coarse, *sampling, uniforms[i, 0])
            fine = self.model.fine_logits(_per_path(h_last, n), gen1[:, i], cache)
            gen2[:, i] = sample_ids(fine, *sampling, uniforms[i, 1])
            tick()
        return self._decode(histories, gen1, gen2), torch.stack((gen1, gen2), dim=-1)

    def _predictor_prefix(self, histories: list["_History"], start: int,
                          keep: bool) -> tuple[PredictorCache, torch.Tensor]:
        """Each history's window from `start` on, pre-filled (the ones not kept yet together): the caches and the
        last hidden states (G, D), history by history.

        With `keep`, each is kept on its history for later forecasts (only windows that do not depend on
        the step, so the kept ones stay few).
        """
        missing = [g for g, history in enumerate(histories) if start not in history.predictor]
        made: dict[int, tuple[PredictorCache, torch.Tensor]] = {}
        if missing:
            stamps = torch.stack([histories[g].features[start:len(histories[g].s1)] for g in missing])  # (M, P, 5)
            cache = self.model.new_cache(0, 0, stamps.float())
            h_last = self.model.prefill(torch.stack([histories[g].s1[start:] for g in missing]),
                                        torch.stack([histories[g].s2[start:] for g in missing]), stamps, cache)
            made = {g: (cache.history(j), h_last[j:j + 1]) for j, g in enumerate(missing)}
            if keep:
                for g, part in made.items():
                    histories[g].predictor[start] = part
            if len(missing) == len(histories):  # all new: used as made, without stacking them again
                return cache, h_last
        parts = [made.get(g) or history.predictor[start] for g, history in enumerate(histories)]
        if len(parts) == 1:
            return parts[0]
        caches, h_last = zip(*parts)
        layers = [stack_prefixes(list(c)) for c in zip(*(cache.layers for cache in caches))]
        return PredictorCache(layers, stack_prefixes([c.context for c in caches])), torch.cat(h_last)

    def _decoder_prefix(self, histories: list["_History"], start: int) -> list[KVCache]:
        """Each history's ids from `start` on, run through the tokenizer decoder (the ones not kept yet together).

        Kept on the history when `start` is 0 (the usual case: history + horizon within the context).
        """
        missing = [g for g, history in enumerate(histories) if start not in history.decoder]
        made: dict[int, list[KVCache]] = {}
        if missing:
            caches = self.tokenizer.new_decoder_cache(0, 0, histories[0].features.float())
            self.tokenizer.decode_prefill(torch.stack([histories[g].s1[start:] for g in missing]),
                                          torch.stack([histories[g].s2[start:] for g in missing]), caches)
            made = {g: [c.history(j) for c in caches] for j, g in enumerate(missing)}
            if start == 0:
                for g, part in made.items():
                    histories[g].decoder[start] = part
            if len(missing) == len(histories):
                return caches
        parts = [made.get(g) or history.decoder[start] for g, history in enumerate(histories)]
        return parts[0] if len(parts) == 1 else [stack_prefixes(list(c)) for c in zip(*parts)]

    def _decode(self, histories: list["_History"], gen1: torch.Tensor, gen2: torch.Tensor) -> torch.Tensor:
        """Decode the last `context` tokens of history + generated; keep the generated rows: (n, horizon, 6)."""
        length, (n, horizon) = len(histories[0].s1), gen1.shape
        start = max(0, length + horizon - self.max_context)
        caches = [c.fork(n, horizon) for c in self._decoder_prefix(histories, start)]
        return self.tokenizer.decode_step(gen1, gen2, length - start, caches)


class _History:
    """One lookback's token ids and time features, with its pre-filled caches once they are made.

    Shared by every path and by later forecasts of the same history; the caches are read-only.
    """

    def __init__(self, s1: torch.Tensor, s2: torch.Tensor, features: torch.Tensor):
        self.s1, self.s2, self.features = s1, s2, features  # (L,), (L,), (L [+ horizon], 5)
        self.predictor: dict[int, tuple[PredictorCache, torch.Tensor]] = {}  # window start -> caches, last hidden
        self.decoder: dict[int, list[KVCache]] = {}

    def with_future(self, future: torch.Tensor) -> "_History":
        """This history, sharing ids and kept caches, with the horizon's time features (H, 5) appended."""
        extended = _History(self.s1, self.s2, torch.cat((self.features[:len(self.s1)], future)))
        extended.predictor, extended.decoder = self.predictor, self.decoder
        return extended


def _per_path(h: torch.Tensor, n: int) -> torch.Tensor:
    """One row per history (G, D) -> one per path (n, D), each history's rows repeated for its paths."""
    if h.shape[0] == n:
        return h
    return h.expand(n, -1) if h.shape[0] == 1 else h.repeat_interleave(n // h.shape[0], dim=0)


def _turns(paths: int, histories: int) -> list[tuple[int, int]]:
    """A loop's turns: (paths per history, first path); one history's paths go PATH_CHUNK at a time."""
    if histories > 1:
        return [(paths, 0)]
    return [(min(PATH_CHUNK, paths - first), first) for first in range(0, paths, PATH_CHUNK)]


def _loops(prepared: list[Prepared], counts: list[int]) -> list[tuple[list[list[int]], int]]:
    """Group forecasts into generation loops: ([members of each history], paths per history) per loop.

    Forecasts of the same history share its paths (one group); different histories of the same length and
    path count, up to PATH_CHUNK paths each, run HISTORIES_PER_BATCH at a time; any other runs alone.
    """
    groups: dict[bytes, list[int]] = {}
    for i, p in enumerate(prepared):
        groups.setdefault(p.x.tobytes() + p.features.tobytes(), []).append(i)
    by_shape: dict[tuple[int, int], list[list[int]]] = {}
    loops = []
    for members in groups.values():
        paths = sum(counts[m] for m in members)
        if paths > PATH_CHUNK:
            loops.append(([members], paths))
        else:
            by_shape.setdefault((len(prepared[members[0]].frame), paths), []).append(members)
    for (_, paths), shaped in by_shape.items():
        loops += [(shaped[k:k + HISTORIES_PER_BATCH], paths) for k in range(0, len(shaped), HISTORIES_PER_BATCH)]
    return loops
