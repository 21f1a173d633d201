"""Transformer building blocks shared by the Kronos tokenizer and predictor, with a two-part key/value cache.

State-dict names follow the published checkpoints (see docs: `norm1`, `self_attn.q_proj`, `ffn.w1`, ...).
Shapes: B batch, T new positions, D model width, H heads, E head width, P prefix length, N suffix length,
G histories, S paths per history (the batch of a cached run is G * S paths, history by history).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class Fused:
    """Several Linear layers that read the same input, as one product at inference: their weights concatenated,
    made again whenever one of them changes (training, loading, a move to another device). Not a Module: the state
    dict keeps the published names."""

    def __init__(self, *linears: nn.Linear):
        self.linears, self.sizes = linears, [layer.out_features for layer in linears]
        self._key: tuple | None = None

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each layer's output for x (..., in) -> (..., out_i)."""
        key = tuple((layer.weight._version, layer.weight.data_ptr()) for layer in self.linears)
        if key != self._key:
            with torch.no_grad():
                self.weight = torch.cat([layer.weight for layer in self.linears])  # (sum out_i, in)
                biases = [layer.bias for layer in self.linears]
                self.bias = None if biases[0] is None else torch.cat(biases)
            self._key = key
        return F.linear(x, self.weight, self.bias).split(self.sizes, dim=-1)


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * weight (the published weights are float32)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


class FeedForward(nn.Module):
    """SwiGLU without biases: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w13 = Fused(self.w1, self.w3)  # the two input projections in one product at inference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = (self.w1(x), self.w3(x)) if self.training else self.w13(x)
        return self.w2(F.silu(gate) * up)


class Rotary(nn.Module):
    """Rotary position embedding, "rotate half" layout, base 10000; `inv_freq` is a persistent buffer.

    Every layer stores the same table; a model builds the rotation once per forward from its first layer's.
    """

    def __init__(self, head_dim: int):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)))

    def table(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin (T, E) of positions start..start+length-1, for `rotate`.

        At inference the table of positions 0.. is made once (grown when a longer one is asked for) and sliced:
        the same values, without recomputing them at every step.
        """
        if not torch.is_inference_mode_enabled():
            return self._table(start, length)
        made = getattr(self, "_made", None)
        if made is None or made[0].shape[0] < start + length or made[0].device != self.inv_freq.device:
            made = self._made = self._table(0, max(start + length, 2 * (made[0].shape[0] if made else 256)))
        return made[0][start:start + length], made[1][start:start + length]

    def _table(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.arange(start, start + length, device=self.inv_freq.device, dtype=self.inv_freq.dtype)
        angles = torch.outer(t, self.inv_freq)  # (T, E/2)
        sin = angles.sin()
        return torch.cat((angles, angles), dim=-1).cos(), torch.cat((-sin, sin), dim=-1)


def rotate(x: torch.Tensor, table: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin for x (B, H, T, E), with rotate_half(x) = cat(-x2, x1)."""
    cos, signed_sin = table
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


class KVCache:
    """Keys and values of one attention layer in two parts.

    The prefix (histories) is computed once, one row per history, and shared by that history's paths;
    the suffix (generated tokens) is per path, preallocated to `capacity` positions and filled in order.
    """

    def __init__(self, paths: int, heads: int, head_dim: int, capacity: int, like: torch.Tensor):
        # keys are kept transposed, as the products read them
        self.prefix_kt: torch.Tensor | None = None  # (G, H, E, P)
        self.prefix_v: torch.Tensor | None = None  # (G, H, P, E)
        self.suffix_kt = like.new_empty(paths, heads, head_dim, capacity)  # (G*S, H, E, capacity); read up to length
        self.suffix_v = like.new_empty(paths, heads, capacity, head_dim)
        self.length = 0

    def fork(self, paths: int, capacity: int) -> KVCache:
        """A cache sharing this one's prefix (read-only) with an empty suffix for `paths` paths."""
        heads, dim = self.suffix_v.shape[1], self.suffix_v.shape[3]
        forked = KVCache(paths, heads, dim, capacity, self.suffix_v)
        forked.prefix_kt, forked.prefix_v = self.prefix_kt, self.prefix_v
        return forked

    def history(self, g: int) -> KVCache:
        """A cache holding only history g's prefix (a view of this one's), with no suffix."""
        single = self.fork(0, 0)
        single.prefix_kt, single.prefix_v = self.prefix_kt[g:g + 1], self.prefix_v[g:g + 1]
        return single

    def set_prefix(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store the histories' keys/values (G, H, P, E), contiguous so that every later product reads them in place."""
        if self.prefix_kt is not None or self.length:
            raise ValueError("a cache's prefix is set once, before anything is appended")
        self.prefix_kt, self.prefix_v = k.transpose(2, 3).contiguous(), v.contiguous()

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write per-path keys/values (G*S, H, T, E) at the next T suffix positions."""
        end = self.length + k.shape[2]
        if end > self.suffix_v.shape[2]:
            raise ValueError(f"key/value cache overflow: {end} positions for a capacity of {self.suffix_v.shape[2]}")
        self.suffix_kt[..., self.length:end] = k.transpose(2, 3)
        self.suffix_v[:, :, self.length:end] = v
        self.length = end

    def attend(self, q: torch.Tensor, causal: bool) -> torch.Tensor:
        """Softmax attention of q (G*S, H, T, E) over prefix + filled suffix; with `causal`, q holds the last T
        suffix positions.

        The scores stay laid out by history, (G, H, S*T, P + N), as the prefix products make them: only the
        small parts (queries, suffix scores, outputs) are moved between the path and the history layouts.
        """
        if self.prefix_kt is None:
            raise ValueError("a cache is read after its prefix is set (pre-fill the history first)")
        paths, heads, t, dim = q.shape
        q = q * (1.0 / math.sqrt(dim))
        groups, p, n = self.prefix_kt.shape[0], self.prefix_kt.shape[3], self.length
        # each history's paths' queries against its one prefix: a (G, H, S*T, E) x (G, H, E, P) product
        scores = [_by_history(q, groups) @ self.prefix_kt]
        if n:
            suffix = q @ self.suffix_kt[..., :n]  # (G*S, H, T, N)
            if causal and t > 1:
                mask = torch.ones(t, n, dtype=torch.bool, device=q.device).tril(n - t)
                suffix = suffix.masked_fill(~mask, float("-inf"))
            scores.append(_by_history(suffix, groups))
        weights = torch.softmax(torch.cat(scores, dim=-1), dim=-1)  # (G, H, S*T, P + N)
        out = _by_path(weights[..., :p] @ self.prefix_v, groups, t)
        if n:
            out = out + _by_path(weights[..., p:], groups, t) @ self.suffix_v[:, :, :n]
        return out  # (G*S, H, T, E)


def stack_prefixes(caches: list[KVCache]) -> KVCache:
    """One cache whose prefix stacks the prefixes (1, H, P, E) of several histories of equal length: (G, H, P, E)."""
    stacked = caches[0].fork(0, 0)
    stacked.prefix_kt = torch.cat([c.prefix_kt for c in caches])
    stacked.prefix_v = torch.cat([c.prefix_v for c in caches])
    return stacked


def _by_history(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(G*S, H, T, X) -> (G, H, S*T, X): each history's paths side by side, for one product with its prefix."""
    paths, heads, t, width = x.shape
    return x.view(groups, paths // groups, heads, t, width).transpose(1, 2).reshape(groups, heads, -1, width)


def _by_path(x: torch.Tensor, groups: int, t: int) -> torch.Tensor:
    """(G, H, S*T, X) -> (G*S, H, T, X), the inverse of `_by_history`."""
    heads, width = x.shape[1], x.shape[3]
    return x.view(groups, heads, -1, t, width).transpose(1, 2).reshape(-1, heads, t, width)


@dataclass(frozen=True)
class Dropouts:
    """A block's dropout probabilities, applied in training mode only (as the reference): on the attention
    weights, on the attention output before the residual sum, and on the feed-forward output."""

    attn: float = 0.0
    resid: float = 0.0
    ffn: float = 0.0


class Attention(nn.Module):
    """Multi-head attention with biased projections and rotary positions on q and k."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        assert dim % heads == 0
        self.heads, self.head_dim = heads, dim // heads
        self.dropout = dropout  # on the attention weights, in training mode only
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.rotary = Rotary(self.head_dim)
        self.qkv, self.kv = Fused(self.q_proj, self.k_proj, self.v_proj), Fused(self.k_proj, self.v_proj)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, D) -> (B, H, T, E)
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        # (B, H, T, E) -> (B, T, D)
        return self.out_proj(x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1))

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cache: KVCache | None = None,
                prefill: bool = False) -> torch.Tensor:
        """Causal self-attention of x (B, T, D) at the positions of the rotation table `rope` (Rotary.table).

        Without a cache: plain causal attention over x. With `prefill`: x (one row per history) also becomes
        the cache's prefix. Otherwise x (one row per path) is appended to the cache's suffix and attends to all.
        """
        q, k, v = (self.q_proj(x), self.k_proj(x), self.v_proj(x)) if self.training else self.qkv(x)
        q, k, v = rotate(self.split(q), rope), rotate(self.split(k), rope), self.split(v)
        if cache is None or prefill:
            if cache is not None:
                cache.set_prefix(k, v)
            return self.merge(F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self._dropout_p()))
        cache.append(k, v)
        return self.merge(cache.attend(q, causal=True))

    def remember(self, h: torch.Tensor, cache: KVCache, prefill: bool) -> None:
        """Cross-attention: project h (B, T, D) to keys/values and add them to the cache (as its prefix with
        `prefill`)."""
        k, v = (self.k_proj(h), self.v_proj(h)) if self.training else self.kv(h)
        k, v = self.split(k), self.split(v)
        if prefill:
            cache.set_prefix(k, v)
        else:
            cache.append(k, v)

    def cross(self, query: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Cross-attention of query (G*S, 1, D) over every remembered position, no mask.

        Rotary is left out: with one query the reference rotates q and k by position 0, the identity.
        """
        return self.merge(cache.attend(self.split(self.q_proj(query)), causal=False))

    def causal_cross(self, query: torch.Tensor, h: torch.Tensor,
                     rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Cross-attention as the reference trains it: query (B, T, D) at position t attends to h (B, T, D) at
        positions <= t, with rotary positions on both (at inference one query sees every position, unrotated)."""
        q, k = rotate(self.split(self.q_proj(query)), rope), rotate(self.split(self.k_proj(h)), rope)
        out = F.scaled_dot_product_attention(q, k, self.split(self.v_proj(h)), is_causal=True,
                                             dropout_p=self._dropout_p())
        return self.merge(out)

    def _dropout_p(self) -> float:
        return self.dropout if self.training else 0.0


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1 x), then + ffn(norm2 x)."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropouts: Dropouts = Dropouts()):
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.self_attn = Attention(dim, heads, dropouts.attn)
        self.norm2 = RMSNorm(dim)
        self.ffn = FeedForward(dim, ff_dim)
        self.resid_dropout, self.ffn_dropout = nn.Dropout(dropouts.resid), nn.Dropout(dropouts.ffn)  # no parameters

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cache: KVCache | None = None,
                prefill: bool = False) -> torch.Tensor:
        if not self.training:  # inference: the same sums without the dropout layers' calls
            x = x + self.self_attn(self.norm1(x), rope, cache, prefill)
            return x + self.ffn(self.norm2(x))
        x = x + self.resid_dropout(self.self_attn(self.norm1(x), rope, cache, prefill))
        return x + self.ffn_dropout(self.ffn(self.norm2(x)))


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, start: int = 0, caches: list[KVCache] | None = None,
               prefill: bool = False) -> torch.Tensor:
    """x (B, T, D) at positions start.. through the blocks, with one cache per block if given (see Attention)."""
    rope = blocks[0].self_attn.rotary.table(start, x.shape[1])
    for i, block in enumerate(blocks):
        x = block(x, rope, caches[i] if caches else None, prefill)
    return x


def new_caches(blocks: nn.ModuleList, paths: int, capacity: int, like: torch.Tensor) -> list[KVCache]:
    """One empty cache per block, sized for `paths` paths and `capacity` generated positions."""
    return [KVCache(paths, b.self_attn.heads, b.self_attn.head_dim, capacity, like) for b in blocks]
