"""The generation loop of a Forecaster: prefill each history's window once, decode one step at a time for every
path, then decode the tokens back to candles. Shapes: G histories of L candles, P paths each, horizon H, width D."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from kronos.engine.histories import History, HistoryCache
from kronos.engine.planning import Loop, turns
from kronos.engine.preprocess import Prepared
from kronos.engine.sampling import sample_ids
from kronos.model import Kronos, KronosTokenizer, PredictorCache

Sampling = tuple[float, int, float]  # temperature, top_k, top_p


class Generator:
    """The loop that samples paths from a tokenizer + predictor, with the histories it keeps between forecasts."""

    def __init__(self, tokenizer: KronosTokenizer, model: Kronos, max_context: int, device: torch.device):
        self.tokenizer, self.model, self.max_context = tokenizer, model, max_context
        self.cache = HistoryCache(tokenizer, model, device)

    def run(self, loop: Loop, prepared: list[Prepared], uniforms: torch.Tensor, sampling: Sampling,
             tick: Callable[[], None]) -> tuple[np.ndarray, np.ndarray]:
        """One generation loop, its paths in turns: normalised rows (G, P, H, 6) and ids (G, P, H, 2)."""
        histories = self.cache.histories([prepared[members[0]] for members in loop.groups])
        g, horizon = len(histories), uniforms.shape[0]
        rows, ids = [], []
        for paths, first in turns(loop):
            u = uniforms[..., first:first + paths].flatten(2)  # (H, 2, G * paths)
            r, t = self._generate(histories, paths, u, sampling, tick)  # (G * paths, H, 6), (G * paths, H, 2)
            rows.append(r.view(g, paths, horizon, -1))
            ids.append(t.view(g, paths, horizon, 2))
        return torch.cat(rows, 1).cpu().numpy(), torch.cat(ids, 1).cpu().numpy()

    def _generate(self, histories: list[History], paths: int, uniforms: torch.Tensor, sampling: Sampling,
                  tick: Callable[[], None]) -> tuple[torch.Tensor, torch.Tensor]:
        """`paths` paths for each of G histories of equal length L, with the draws `uniforms` (H, 2, G * paths):
        normalised rows (G * paths, H, 6) and (coarse, fine) ids (G * paths, H, 2), history by history."""
        n, length, horizon = len(histories) * paths, len(histories[0].s1), uniforms.shape[0]
        times = self.model.time_emb(torch.stack([h.features for h in histories]))  # (G, L + H, D), once
        gen1 = histories[0].s1.new_zeros(n, horizon)  # (n, H) coarse ids
        gen2 = histories[0].s2.new_zeros(n, horizon)  # (n, H) fine ids
        cache = None
        for i in range(horizon):
            start = max(0, length + i - self.max_context)  # the window's first token
            if cache is None or start > 0:  # first step, or the window slid: pre-fill it again
                cache, h_last = self._prefill(histories, start, n, horizon, keep=i == 0)  # h_last (G, D)
                first = 0  # the window lacks every generated token
            else:
                first = i - 1  # it lacks the last one
            if first < i:  # run the generated tokens first..i-1 at their window positions: h_last (n, D)
                h_last = self.model.step(gen1[:, first:i], gen2[:, first:i], times[:, length + first:length + i],
                                         length + first - start, cache)
            gen1[:, i], gen2[:, i] = self._sample(h_last, cache, n, sampling, uniforms[i])
            tick()
        return self._decode(histories, gen1, gen2), torch.stack((gen1, gen2), dim=-1)

    def _prefill(self, histories: list[History], start: int, n: int, horizon: int,
                 keep: bool) -> tuple[PredictorCache, torch.Tensor]:
        """The predictor's caches of the window from `start` on, forked for n paths, and its last hidden (G, D)."""
        prefix = self.cache.prefix(histories, "predictor", start, keep)
        return prefix.predictor_cache(n, horizon), prefix.last

    def _sample(self, h_last: torch.Tensor, cache: PredictorCache, n: int, sampling: Sampling,
                u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each path's next (coarse, fine) ids (n,), from the last hidden states (G or n, D) and its draws u (2, n)."""
        coarse = sample_ids(_per_path(self.model.coarse_logits(h_last), n), *sampling, u[0])  # once per history first
        fine = self.model.fine_logits(_per_path(h_last, n), coarse, cache)
        return coarse, sample_ids(fine, *sampling, u[1])

    def _decode(self, histories: list[History], gen1: torch.Tensor, gen2: torch.Tensor) -> torch.Tensor:
        """Decode the last `context` tokens of history + generated; keep the generated rows: (n, H, 6)."""
        length, (n, horizon) = len(histories[0].s1), gen1.shape
        start = max(0, length + horizon - self.max_context)
        caches = self.cache.prefix(histories, "decoder", start, keep=start == 0).fork(n, horizon)
        return self.tokenizer.decode_step(gen1, gen2, length - start, caches)


def _per_path(h: torch.Tensor, n: int) -> torch.Tensor:
    """One row per history (G, D) -> one per path (n, D), each history's rows repeated for its paths."""
    if h.shape[0] == n:
        return h
    return h.expand(n, -1) if h.shape[0] == 1 else h.repeat_interleave(n // h.shape[0], dim=0)
