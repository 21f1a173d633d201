"""What is kept per history between forecasts: its token ids, and its pre-filled keys and values.

A history's prefix (the predictor's window, the tokenizer decoder's ids) is computed at batch 1 and
shared read-only by all of its paths and by later forecasts of the same history (a new seed, another
horizon). Prefixes of several histories of equal length are stacked along a leading history axis G.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from kronos.engine.preprocess import Prepared
from kronos.model import Kronos, KronosTokenizer, PredictorCache
from kronos.model.layers import KVCache, stack_prefixes

HISTORIES_KEPT = 4  # recent histories whose ids and caches are kept for the next forecast
Kind = Literal["predictor", "decoder"]


@dataclass(frozen=True)
class Prefix:
    """The pre-filled keys/values of G histories' windows: one cache per attention layer, prefixes (G, H, P, E);
    for the predictor (its dependency layer's context last) with the last hidden states (G, D)."""

    caches: list[KVCache]
    last: torch.Tensor | None = None

    def of(self, g: int) -> Prefix:
        """History g's prefix alone (views of this one's)."""
        return Prefix([c.history(g) for c in self.caches], None if self.last is None else self.last[g:g + 1])

    @staticmethod
    def stack(parts: Sequence[Prefix]) -> Prefix:
        """One prefix of several histories' (each G = 1), in their order."""
        caches = [stack_prefixes(list(layer)) for layer in zip(*(p.caches for p in parts))]
        return Prefix(caches, None if parts[0].last is None else torch.cat([p.last for p in parts]))

    def fork(self, paths: int, capacity: int) -> list[KVCache]:
        """Caches sharing these prefixes, with empty suffixes for `paths` paths and `capacity` generated tokens."""
        return [c.fork(paths, capacity) for c in self.caches]

    def predictor_cache(self, paths: int, capacity: int) -> PredictorCache:
        """`fork` as the predictor's caches (its layers', then its dependency layer's context)."""
        caches = self.fork(paths, capacity)
        return PredictorCache(caches[:-1], caches[-1])


class History:
    """One lookback's token ids and time features, with the prefixes made of it, by kind and window start."""

    def __init__(self, s1: torch.Tensor, s2: torch.Tensor, features: torch.Tensor,
                 prefixes: dict[tuple[Kind, int], Prefix] | None = None):
        self.s1, self.s2, self.features = s1, s2, features  # (L,), (L,), (L [+ horizon], 5)
        self.prefixes = {} if prefixes is None else prefixes  # shared by this history's copies

    def with_future(self, future: torch.Tensor) -> History:
        """This history, sharing ids and kept prefixes, with the horizon's time features (H, 5) appended."""
        return History(self.s1, self.s2, torch.cat((self.features[:len(self.s1)], future)), self.prefixes)


class HistoryCache:
    """The recent histories' ids and prefixes, kept while the same history comes back; safe to share between
    threads (each forecast works on its own History copies, whose kept prefixes are only ever added)."""

    def __init__(self, tokenizer: KronosTokenizer, model: Kronos, device: torch.device):
        self.tokenizer, self.model, self.device = tokenizer, model, device
        self._histories: OrderedDict[str, History] = OrderedDict()  # most recently used last
        self._lock = threading.Lock()

    def histories(self, prepared: Sequence[Prepared]) -> list[History]:
        """Each lookback's History with the horizon's features; the new ones (of equal length) encoded together."""
        keys = [hashlib.sha1(p.identity).hexdigest() for p in prepared]
        with self._lock:
            found = {key: self._histories.pop(key) for key in keys if key in self._histories}
        new = [i for i, key in enumerate(keys) if key not in found]
        if new:
            x = torch.from_numpy(np.stack([prepared[i].x for i in new])).to(self.device)  # (M, L, 6)
            s1, s2 = self.tokenizer.encode(x)  # (M, L) each
            for j, i in enumerate(new):
                found[keys[i]] = History(s1[j], s2[j], torch.from_numpy(prepared[i].features).to(self.device))
        shared = [found[key].with_future(torch.from_numpy(p.future_features).to(self.device))
                  for key, p in zip(keys, prepared)]
        with self._lock:
            for key, history in zip(keys, shared):
                self._histories[key] = history
            while len(self._histories) > HISTORIES_KEPT:
                self._histories.popitem(last=False)
        return shared

    def prefix(self, histories: Sequence[History], kind: Kind, start: int, keep: bool) -> Prefix:
        """The histories' `kind` prefix of the window from `start` on, stacked; the ones not made yet are made
        together. With `keep`, those made are kept on their histories (only for windows that do not depend on
        the step, so that the kept ones stay few)."""
        missing = [g for g, history in enumerate(histories) if (kind, start) not in history.prefixes]
        made: dict[int, Prefix] = {}
        if missing:
            batch = self._prefill(kind, [histories[g] for g in missing], start)
            made = {g: batch.of(j) for j, g in enumerate(missing)}
            if keep:
                for g, part in made.items():
                    histories[g].prefixes[kind, start] = part
            if len(missing) == len(histories):  # all new: used as made, without stacking them again
                return batch
        parts = [made[g] if g in made else history.prefixes[kind, start] for g, history in enumerate(histories)]
        return parts[0] if len(parts) == 1 else Prefix.stack(parts)

    def _prefill(self, kind: Kind, histories: list[History], start: int) -> Prefix:
        """Run the histories' ids from `start` on through the predictor or the tokenizer decoder: (M, P) -> Prefix."""
        s1 = torch.stack([h.s1[start:] for h in histories])  # (M, P)
        s2 = torch.stack([h.s2[start:] for h in histories])
        if kind == "decoder":
            caches = self.tokenizer.new_decoder_cache(0, 0, histories[0].features.float())
            self.tokenizer.decode_prefill(s1, s2, caches)
            return Prefix(caches)
        stamps = torch.stack([h.features[start:len(h.s1)] for h in histories])  # (M, P, 5)
        cache = self.model.new_cache(0, 0, stamps.float())
        last = self.model.prefill(s1, s2, stamps, cache)  # (M, D)
        return Prefix([*cache.layers, cache.context], last)
