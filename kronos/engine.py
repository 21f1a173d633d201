"""The sampling engine: one loaded tokenizer + predictor that turns a candle history into Monte Carlo paths.

The history is normalised, encoded and pre-filled once at batch 1 and shared by every path; each path
then adds one position per step to a key/value cache. Once the predictor's window slides (history +
generated tokens longer than the context), positions shift and every step recomputes the window:
still exactly, because both models are causal, the history part at batch 1 and only the generated
part per path. `cache=False` runs the reference's method instead (whole window, every path, every step).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import OrderedDict
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
import torch

from kronos import checkpoints
from kronos.errors import InvalidInputError
from kronos.forecast import Forecast
from kronos.layers import KVCache, new_caches
from kronos.model import Kronos, KronosTokenizer
from kronos.sampling import sample_ids
from kronos.validation import FEATURE_COLUMNS, check_history

CLIP = 5.0
MAX_SAMPLES = 1000
PATH_CHUNK = 128  # paths generated together; more are done in turns to bound memory
HISTORIES_KEPT = 4  # recent histories whose ids and caches are kept for the next forecast


def time_features(stamps: pd.DatetimeIndex) -> np.ndarray:
    """Minute, hour, weekday (Monday=0), day of month and month of each timestamp: (T, 5) int64."""
    return np.stack([stamps.minute, stamps.hour, stamps.day_of_week, stamps.day, stamps.month], axis=1).astype(np.int64)


def normalise(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column (x - mean) / (std + 1e-5) clipped to +-5, in float32 as the reference: (normalised, mean, std)."""
    x = values.astype(np.float32)
    mean, std = x.mean(axis=0), x.std(axis=0)
    return np.clip((x - mean) / (std + 1e-5), -CLIP, CLIP), mean, std


class Forecaster:
    """A Kronos tokenizer + predictor ready to forecast; safe to share between threads."""

    def __init__(self, tokenizer: KronosTokenizer, model: Kronos, *, max_context: int, device: str = "cpu",
                 name: str = "kronos"):
        self.tokenizer, self.model = tokenizer.eval(), model.eval()
        self.max_context, self.device, self.name = max_context, torch.device(device), name
        self._histories: OrderedDict[str, _History] = OrderedDict()  # most recently used last
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, model: str = "NeoQuasar/Kronos-mini", tokenizer: str | None = None, *,
                        revision: str | None = None, max_context: int | None = None,
                        device: str = "cpu") -> "Forecaster":
        """Load a preset (`mini`, `small`, `base`), hub id or checkpoint directory; see kronos.checkpoints."""
        dev = checkpoints.check_device(device)
        chosen = checkpoints.select(model, tokenizer, max_context)
        return cls(checkpoints.load_tokenizer(chosen.tokenizer, device=str(dev)),
                   checkpoints.load_predictor(chosen.model, revision, device=str(dev)),
                   max_context=chosen.max_context, device=str(dev), name=chosen.model)

    def forecast(self, history: pd.DataFrame, *, horizon: int = 24, samples: int = 30, temperature: float = 1.0,
                 top_p: float = 0.9, top_k: int = 0, lookback: int | None = None, seed: int | None = None,
                 progress: Callable[[int, int], None] | None = None, cache: bool = True) -> Forecast:
        """Sample `samples` paths of `horizon` future candles after the last `lookback` rows of `history`.

        `history` has `timestamps` and open/high/low/close (volume, amount optional). The same seed gives
        the same paths. `progress(step, total)` is called after every generated step.
        """
        frame = check_history(history)
        lookback = self._check_arguments(len(frame), horizon, samples, temperature, top_p, top_k, lookback)
        frame = frame.iloc[-lookback:].reset_index(drop=True)
        seed = secrets.randbits(63) if seed is None else int(seed)
        stamps = pd.DatetimeIndex(frame["timestamps"])
        step = stamps.to_series().diff().median()
        future = pd.DatetimeIndex([stamps[-1] + step * (i + 1) for i in range(horizon)])
        x, mean, std = normalise(frame[list(FEATURE_COLUMNS)].to_numpy())

        generator = torch.Generator(device=self.device).manual_seed(seed)
        chunks = [min(PATH_CHUNK, samples - start) for start in range(0, samples, PATH_CHUNK)]
        steps = iter(range(1, horizon * len(chunks) + 1))

        def tick() -> None:
            done = next(steps)
            if progress is not None:
                progress(done, horizon * len(chunks))

        with torch.inference_mode():
            shared = self._shared(x, time_features(stamps))
            future_features = torch.from_numpy(time_features(future)).to(self.device)
            run = _Run(self, shared, future_features, (temperature, top_k, top_p), generator, tick)
            rows, tokens = zip(*(run.paths(n, cache) for n in chunks))
        paths = torch.cat(rows).double().cpu().numpy() * (std.astype(np.float64) + 1e-5) + mean
        settings = dict(horizon=horizon, samples=samples, temperature=temperature, top_p=top_p, top_k=top_k,
                        lookback=lookback, max_context=self.max_context)
        return Forecast(paths, future, frame, seed, self.name, settings, torch.cat(tokens).cpu().numpy())

    def _shared(self, x: np.ndarray, features: np.ndarray) -> "_History":
        """The lookback's ids and pre-filled caches: reused while the same normalised history comes back."""
        key = hashlib.sha1(x.tobytes() + features.tobytes()).hexdigest()
        with self._lock:
            shared = self._histories.pop(key, None)
        if shared is None:
            s1, s2 = self.tokenizer.encode(torch.from_numpy(x)[None].to(self.device))
            shared = _History(s1[0], s2[0], torch.from_numpy(features).to(self.device))
        with self._lock:
            self._histories[key] = shared
            while len(self._histories) > HISTORIES_KEPT:
                self._histories.popitem(last=False)
        return shared

    def _check_arguments(self, rows: int, horizon: int, samples: int, temperature: float, top_p: float,
                         top_k: int, lookback: int | None) -> int:
        """Raise InvalidInputError naming each bad argument; return the lookback to use."""
        problems = []
        if not 1 <= horizon < self.max_context:
            problems.append(f"horizon must be between 1 and {self.max_context - 1} (the context less one), got {horizon}")
        if not 1 <= samples <= MAX_SAMPLES:
            problems.append(f"samples must be between 1 and {MAX_SAMPLES}, got {samples}")
        if not temperature > 0:
            problems.append(f"temperature must be greater than 0, got {temperature}")
        if not 0 < top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {top_p}")
        if top_k < 0:
            problems.append(f"top_k must be 0 (off) or a positive count, got {top_k}")
        if lookback is not None and not 1 <= lookback <= rows:
            problems.append(f"lookback must be between 1 and the number of history rows ({rows}), got {lookback}")
        if problems:
            raise InvalidInputError(problems)
        return lookback or min(rows, self.max_context)


class _Prefix(NamedTuple):
    """A window's history part run once at batch 1: per-layer caches, dependency-layer context, last hidden state."""

    layers: list[KVCache]
    context: KVCache | None
    h_last: torch.Tensor | None


class _History:
    """One lookback's token ids and time features, with its pre-filled caches once they are made.

    Shared by every path and by later forecasts of the same history; the caches are read-only.
    """

    def __init__(self, s1: torch.Tensor, s2: torch.Tensor, features: torch.Tensor):
        self.s1, self.s2, self.features = s1, s2, features  # (L,), (L,), (L, 5)
        self.prefixes: dict[tuple[str, int], _Prefix] = {}


class _Run:
    """One forecast: the shared history, the future's time features and the sampling settings."""

    def __init__(self, engine: Forecaster, history: _History, future: torch.Tensor,
                 sampling: tuple[float, int, float], generator: torch.Generator, on_step: Callable[[], None]):
        self.model, self.tokenizer, self.context = engine.model, engine.tokenizer, engine.max_context
        self.history, self.s1, self.s2 = history, history.s1, history.s2
        self.features = torch.cat((history.features, future))  # (L + horizon, 5)
        self.horizon, self.sampling, self.generator, self.on_step = len(future), sampling, generator, on_step

    def paths(self, n: int, cache: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate n paths: normalised rows (n, horizon, 6) and the (coarse, fine) ids (n, horizon, 2)."""
        history = len(self.s1)
        gen1 = self.s1.new_zeros(n, self.horizon)
        gen2 = self.s2.new_zeros(n, self.horizon)
        caches = None
        for i in range(self.horizon):
            start = max(0, history + i - self.context)  # first token of the predictor's window
            if not cache:
                h_last, ctx = self._recompute(gen1[:, :i], gen2[:, :i], start)
            elif caches is None or start > 0:
                prefix = self._prefix("predictor", start, keep=i == 0)
                caches = [c.fork(n, self.horizon) for c in prefix.layers]
                h_last, ctx = prefix.h_last, prefix.context.fork(n, self.horizon)
                if i:
                    h_last = self._extend(gen1[:, :i], gen2[:, :i], 0, start, caches, ctx)
            else:
                h_last = self._extend(gen1[:, i - 1:i], gen2[:, i - 1:i], i - 1, start, caches, ctx)
            logits = self.model.coarse_logits(h_last).expand(n, -1)
            gen1[:, i] = sample_ids(logits, *self.sampling, self.generator)
            gen2[:, i] = sample_ids(self.model.fine_logits(h_last, gen1[:, i], ctx), *self.sampling, self.generator)
            self.on_step()
        return self._decode(gen1, gen2, cache), torch.stack((gen1, gen2), dim=-1)

    def _prefix(self, kind: str, start: int, keep: bool) -> _Prefix:
        """The history from `start` on, run at batch 1 through the predictor or the tokenizer decoder.

        With `keep` it is kept on the shared history for later forecasts (only for windows that do not
        depend on the horizon or the step, so the kept ones stay few).
        """
        found = self.history.prefixes.get((kind, start))
        if found is not None:
            return found
        s1, s2, features = self.s1[None, start:], self.s2[None, start:], self.history.features[None, start:]
        if kind == "decoder":
            layers = new_caches(self.tokenizer.decoder, 0, 0, features.float())
            self.tokenizer.decode(s1, s2, 0, layers)
            prefix = _Prefix(layers, None, None)
        else:
            layers = new_caches(self.model.transformer, 0, 0, features.float())
            context = self.model.new_context(0, 0, features.float())
            h = self.model.hidden(s1, s2, features, 0, layers)  # (1, P, D)
            self.model.dep_layer.cross_attn.remember(h, context)
            prefix = _Prefix(layers, context, h[:, -1])
        if keep:
            self.history.prefixes[(kind, start)] = prefix
        return prefix

    def _extend(self, g1: torch.Tensor, g2: torch.Tensor, first: int, start: int, caches: list[KVCache],
                ctx: KVCache) -> torch.Tensor:
        """Run generated ids (n, k), the first being generated step `first`, through the cached predictor.

        Adds their hidden states to the dependency layer's context and returns the last one (n, D).
        """
        at = len(self.s1) + first  # index in history + generated
        features = self.features[None, at:at + g1.shape[1]]  # (1, k, 5): the same for every path
        h = self.model.hidden(g1, g2, features, at - start, caches)  # (n, k, D)
        self.model.dep_layer.cross_attn.remember(h, ctx)
        return h[:, -1]

    def _recompute(self, gen1: torch.Tensor, gen2: torch.Tensor, start: int) -> tuple[torch.Tensor, KVCache]:
        """The reference's step: the whole window for every path, no cache."""
        n, end = len(gen1), len(self.s1) + gen1.shape[1]
        s1 = torch.cat((self.s1[None, start:].expand(n, -1), gen1), dim=1)
        s2 = torch.cat((self.s2[None, start:].expand(n, -1), gen2), dim=1)
        h = self.model.hidden(s1, s2, self.features[None, start:end])  # (n, W, D)
        ctx = self.model.new_context(n, h.shape[1], h)
        self.model.dep_layer.cross_attn.remember(h, ctx)
        return h[:, -1], ctx

    def _decode(self, gen1: torch.Tensor, gen2: torch.Tensor, cache: bool) -> torch.Tensor:
        """Decode the last `context` tokens of history + generated; keep the generated rows: (n, horizon, 6)."""
        history, n = len(self.s1), len(gen1)
        start = max(0, history + self.horizon - self.context)
        if not cache:
            s1 = torch.cat((self.s1[None, start:].expand(n, -1), gen1), dim=1)
            s2 = torch.cat((self.s2[None, start:].expand(n, -1), gen2), dim=1)
            return self.tokenizer.decode(s1, s2)[:, -self.horizon:]
        caches = [c.fork(n, self.horizon) for c in self._prefix("decoder", start, keep=start == 0).layers]
        return self.tokenizer.decode(gen1, gen2, history - start, caches)
