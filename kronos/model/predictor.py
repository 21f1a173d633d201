"""The Kronos predictor: an autoregressive transformer over (coarse, fine) token pairs with time features, and its
key/value caches (prefill the histories once, then one step per generated token)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from kronos.model.config import PredictorConfig, dropouts
from kronos.model.layers import Attention, Block, KVCache, RMSNorm, new_caches, run_blocks


class TemporalEmbedding(nn.Module):
    """Sum of learned minute, hour, weekday, day-of-month and month embeddings."""

    def __init__(self, dim: int):
        super().__init__()
        self.minute_embed = nn.Embedding(60, dim)
        self.hour_embed = nn.Embedding(24, dim)
        self.weekday_embed = nn.Embedding(7, dim)
        self.day_embed = nn.Embedding(32, dim)
        self.month_embed = nn.Embedding(13, dim)

    def forward(self, stamp: torch.Tensor) -> torch.Tensor:
        # stamp: (B, T, 5) int64 minute, hour, weekday, day, month -> (B, T, D)
        tables = (self.minute_embed, self.hour_embed, self.weekday_embed, self.day_embed, self.month_embed)
        return sum(table(stamp[..., i]) for i, table in enumerate(tables))


class HierarchicalEmbedding(nn.Module):
    """fusion_proj(cat(emb_s1[s1] * sqrt(d), emb_s2[s2] * sqrt(d)))."""

    def __init__(self, s1_bits: int, s2_bits: int, dim: int):
        super().__init__()
        self.scale = math.sqrt(dim)
        self.emb_s1 = nn.Embedding(2 ** s1_bits, dim)
        self.emb_s2 = nn.Embedding(2 ** s2_bits, dim)
        self.fusion_proj = nn.Linear(2 * dim, dim)

    def forward(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        return self.fusion_proj(torch.cat((self.emb_s1(s1) * self.scale, self.emb_s2(s2) * self.scale), dim=-1))


class DualHead(nn.Module):
    """Coarse logits from h; fine logits from the dependency layer's output."""

    def __init__(self, s1_bits: int, s2_bits: int, dim: int):
        super().__init__()
        self.proj_s1 = nn.Linear(dim, 2 ** s1_bits)
        self.proj_s2 = nn.Linear(dim, 2 ** s2_bits)


class DependencyLayer(nn.Module):
    """Fine-token conditioning: norm(h_last + cross_attn(emb_s1[coarse], h over the window))."""

    def __init__(self, dim: int):
        super().__init__()
        self.cross_attn = Attention(dim, heads=4)
        self.norm = RMSNorm(dim)


class Kronos(nn.Module):
    """The autoregressive predictor over (coarse, fine) token pairs with time features."""

    def __init__(self, config: PredictorConfig):
        super().__init__()
        c = self.config = config
        self.embedding = HierarchicalEmbedding(c.s1_bits, c.s2_bits, c.d_model)
        self.time_emb = TemporalEmbedding(c.d_model)
        self.transformer = nn.ModuleList(Block(c.d_model, c.n_heads, c.ff_dim, dropouts(c)) for _ in range(c.n_layers))
        self.norm = RMSNorm(c.d_model)
        self.head = DualHead(c.s1_bits, c.s2_bits, c.d_model)
        self.dep_layer = DependencyLayer(c.d_model)
        self.token_drop = nn.Dropout(c.token_dropout_p)  # training mode only; no parameters

    def forward(self, s1: torch.Tensor, s2: torch.Tensor, stamp: torch.Tensor) -> torch.Tensor:
        """Token pairs (B, T) of a whole window with stamps (B or 1, T, 5) -> final-norm hidden states (B, T, D)."""
        return self.norm(run_blocks(self.transformer, self.token_drop(self._inputs(s1, s2, self.time_emb(stamp)))))

    def training_logits(self, s1: torch.Tensor, s2: torch.Tensor, stamp: torch.Tensor,
                        s1_targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits of windows of ids (B, T) stamped (B, T, 5): coarse (B, T, 2^s1) at every
        position, and fine (B, T, 2^s2) conditioned on the true next coarse ids `s1_targets` (B, T) through
        the dependency layer's cross-attention in its training form (causal, rotary; Attention.causal_cross)."""
        h = self(s1, s2, stamp)  # (B, T, D)
        cross = self.dep_layer.cross_attn
        attn = cross.causal_cross(self.embedding.emb_s1(s1_targets), h, cross.rotary.table(0, h.shape[1]))
        return self.head.proj_s1(h), self.head.proj_s2(self.dep_layer.norm(h + attn))

    def training_losses(self, s1: torch.Tensor, s2: torch.Tensor, stamp: torch.Tensor) -> dict[str, torch.Tensor]:
        """The reference's next-token cross-entropies over windows of ids (B, T + 1) stamped (B, T + 1, 5): each
        position predicts the next coarse and fine id; `loss` = (coarse + fine) / 2."""
        s1_logits, s2_logits = self.training_logits(s1[:, :-1], s2[:, :-1], stamp[:, :-1], s1[:, 1:])
        coarse = F.cross_entropy(s1_logits.flatten(0, 1), s1[:, 1:].flatten())
        fine = F.cross_entropy(s2_logits.flatten(0, 1), s2[:, 1:].flatten())
        return {"loss": (coarse + fine) / 2, "coarse": coarse, "fine": fine}

    def new_cache(self, paths: int, capacity: int, like: torch.Tensor) -> PredictorCache:
        """Empty caches (every layer's keys/values and the dependency layer's) for `paths` paths, `capacity` steps."""
        attn = self.dep_layer.cross_attn
        return PredictorCache(new_caches(self.transformer, paths, capacity, like),
                              KVCache(paths, attn.heads, attn.head_dim, capacity, like))

    def prefill(self, s1: torch.Tensor, s2: torch.Tensor, stamp: torch.Tensor, cache: PredictorCache) -> torch.Tensor:
        """Run the histories' windows (G, P) from position 0 into the cache's shared prefixes -> last hidden (G, D)."""
        h = self.norm(run_blocks(self.transformer, self._inputs(s1, s2, self.time_emb(stamp)), 0, cache.layers,
                                 prefill=True))
        self.dep_layer.cross_attn.remember(h, cache.context, prefill=True)
        return h[:, -1]

    def step(self, s1: torch.Tensor, s2: torch.Tensor, time: torch.Tensor, start: int,
             cache: PredictorCache) -> torch.Tensor:
        """Append every path's new token pairs (G*S, T), with their time embeddings (G, T, D) (`time_emb` of their
        stamps, made once per forecast), at window positions start.. -> the last hidden state of each path (G*S, D)."""
        h = self.norm(run_blocks(self.transformer, self._inputs(s1, s2, time), start, cache.layers))
        self.dep_layer.cross_attn.remember(h, cache.context, prefill=False)
        return h[:, -1]

    def coarse_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., D) -> coarse logits (..., 2^s1)."""
        return self.head.proj_s1(h)

    def fine_logits(self, h_last: torch.Tensor, s1: torch.Tensor, cache: PredictorCache) -> torch.Tensor:
        """Fine logits (G*S, 2^s2) given the last hidden states (G*S or 1, D), the chosen coarse ids (G*S,) and the
        window's context in the cache."""
        attn = self.dep_layer.cross_attn.cross(self.embedding.emb_s1(s1)[:, None, :], cache.context)  # (G*S, 1, D)
        return self.head.proj_s2(self.dep_layer.norm(h_last + attn[:, 0]))

    def _inputs(self, s1: torch.Tensor, s2: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Token embeddings (B, T, D) plus time embeddings t (G, T, D), shared by each history's B/G paths."""
        x = self.embedding(s1, s2)
        if t.shape[0] in (1, x.shape[0]):
            return x + t
        return (x.view(t.shape[0], -1, *x.shape[1:]) + t[:, None]).view(x.shape)


class PredictorCache(NamedTuple):
    """The predictor's keys/values over its window: one cache per layer, and the dependency layer's context."""

    layers: list[KVCache]
    context: KVCache

    def fork(self, paths: int, capacity: int) -> PredictorCache:
        """Caches sharing this one's prefixes, with empty suffixes for `paths` paths and `capacity` steps."""
        return PredictorCache([c.fork(paths, capacity) for c in self.layers], self.context.fork(paths, capacity))

    def history(self, g: int) -> PredictorCache:
        """The caches of history g alone (views of these)."""
        return PredictorCache([c.history(g) for c in self.layers], self.context.history(g))
