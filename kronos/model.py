"""The Kronos tokenizer and predictor, weight-compatible with the published `NeoQuasar/` checkpoints."""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from kronos.layers import Attention, Block, Dropouts, KVCache, RMSNorm, new_caches, run_blocks


def _from_config(cls, config: dict):
    """Build a config dataclass from a checkpoint's config.json, warning about keys it does not know."""
    names = {f.name for f in dataclasses.fields(cls)}
    missing = sorted(n for n in names if n not in config and not _has_default(cls, n))
    if missing:
        raise ValueError(f"{cls.__name__}: config.json lacks {', '.join(missing)}")
    unknown = sorted(set(config) - names)
    if unknown:
        warnings.warn(f"{cls.__name__}: ignoring unknown config key(s) {', '.join(unknown)}", stacklevel=3)
    return cls(**{k: v for k, v in config.items() if k in names})


def _has_default(cls, name: str) -> bool:
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field.default is not dataclasses.MISSING


@dataclass(frozen=True)
class TokenizerConfig:
    """config.json of a Kronos tokenizer; the dropouts and the quantiser's loss weights act in training only."""

    d_in: int
    d_model: int
    n_heads: int
    ff_dim: int
    n_enc_layers: int
    n_dec_layers: int
    s1_bits: int
    s2_bits: int
    group_size: int
    ffn_dropout_p: float = 0.0
    attn_dropout_p: float = 0.0
    resid_dropout_p: float = 0.0
    beta: float = 0.05
    gamma0: float = 1.0
    gamma: float = 1.1
    zeta: float = 0.05

    @classmethod
    def from_dict(cls, config: dict) -> TokenizerConfig:
        return _from_config(cls, config)


@dataclass(frozen=True)
class PredictorConfig:
    """config.json of a Kronos predictor."""

    s1_bits: int
    s2_bits: int
    n_layers: int
    d_model: int
    n_heads: int
    ff_dim: int
    learn_te: bool = True
    ffn_dropout_p: float = 0.0
    attn_dropout_p: float = 0.0
    resid_dropout_p: float = 0.0
    token_dropout_p: float = 0.0

    @classmethod
    def from_dict(cls, config: dict) -> PredictorConfig:
        return _from_config(cls, config)


def _dropouts(config: TokenizerConfig | PredictorConfig) -> Dropouts:
    return Dropouts(config.attn_dropout_p, config.resid_dropout_p, config.ffn_dropout_p)


def quantiser_loss_and_codes(z: torch.Tensor, config: TokenizerConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary spherical quantisation as the reference trains it, for the encoder's output z (B, T, K).

    Returns the codes (B, T, K): sign(z / |z|) / sqrt(K), whose gradient passes straight through to z / |z|
    scaled by 1 / sqrt(K); and the quantiser's loss: beta * commitment + zeta * (gamma0 * per-sample entropy
    - gamma * codebook entropy). The reference's default (analytical) entropies are per bit: a bit's
    probability of -1 is sigmoid(-4 z_i / sqrt(K)); the per-sample entropy sums the bits' entropies and
    averages over tokens, the codebook entropy sums the entropies of the bits' batch-averaged
    probabilities. (The reference's group codebook, `group_size`, does not enter this default.)
    """
    k = z.shape[-1]
    z = F.normalize(z, dim=-1)
    scale = 1.0 / math.sqrt(k)
    signs = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
    codes = (z + (signs - z).detach()) * scale  # (B, T, K): forward value signs * scale
    commitment = ((codes.detach() - z) ** 2).sum(-1).mean()
    p = torch.sigmoid(-4 * z * scale)
    probs = torch.stack((p, 1 - p), dim=-1)  # (B, T, K, 2)

    def entropy(q: torch.Tensor) -> torch.Tensor:
        return -(q * torch.log(q + 1e-8)).sum(-1)

    per_sample = entropy(probs).sum(-1).mean()
    codebook = entropy(probs.flatten(0, -3).mean(0)).sum()  # mean over tokens: (K, 2)
    loss = config.beta * commitment + config.zeta * (config.gamma0 * per_sample - config.gamma * codebook)
    return loss, codes


def _bits(ids: torch.Tensor, n: int) -> torch.Tensor:
    """Unpack ids (...) into n signs +-1, least significant bit first: (..., n)."""
    mask = 2 ** torch.arange(n, device=ids.device)
    return ((ids.unsqueeze(-1) & mask) != 0).float() * 2 - 1


class _QuantiserBuffers(nn.Module):
    """The quantiser's bit weights as the published state dict stores them; unused at inference."""

    def __init__(self, bits: int, group_size: int):
        super().__init__()
        self.register_buffer("basis", 2 ** torch.arange(bits, dtype=torch.int64))
        self.register_buffer("group_basis", 2 ** torch.arange(group_size, dtype=torch.int64))


class KronosTokenizer(nn.Module):
    """Causal encoder -> binary spherical quantisation into (coarse, fine) ids -> causal decoder."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        c = self.config = config
        self.embed = nn.Linear(c.d_in, c.d_model)
        self.encoder = nn.ModuleList(Block(c.d_model, c.n_heads, c.ff_dim, _dropouts(c))
                                     for _ in range(c.n_enc_layers - 1))
        self.quant_embed = nn.Linear(c.d_model, c.s1_bits + c.s2_bits)
        self.post_quant_embed_pre = nn.Linear(c.s1_bits, c.d_model)  # training only; kept for the layout
        self.post_quant_embed = nn.Linear(c.s1_bits + c.s2_bits, c.d_model)
        self.decoder = nn.ModuleList(Block(c.d_model, c.n_heads, c.ff_dim, _dropouts(c))
                                     for _ in range(c.n_dec_layers - 1))
        self.head = nn.Linear(c.d_model, c.d_in)
        self.tokenizer = nn.ModuleDict({"bsq": _QuantiserBuffers(c.s1_bits + c.s2_bits, c.group_size)})

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised rows (B, T, d_in) -> coarse and fine ids, each (B, T) int64."""
        z = run_blocks(self.encoder, self.embed(x))
        positive = (self.quant_embed(z) > 0).long()  # (B, T, s1+s2); the L2 normalisation keeps signs
        s1, s2 = self.config.s1_bits, self.config.s2_bits
        weights = 2 ** torch.arange(max(s1, s2), device=x.device)
        return (positive[..., :s1] * weights[:s1]).sum(-1), (positive[..., s1:] * weights[:s2]).sum(-1)

    def decode(self, s1_ids: torch.Tensor, s2_ids: torch.Tensor) -> torch.Tensor:
        """Ids (B, T) of a whole sequence -> normalised rows (B, T, d_in)."""
        return self.head(run_blocks(self.decoder, self._codes(s1_ids, s2_ids)))

    def new_decoder_cache(self, paths: int, capacity: int, like: torch.Tensor) -> list[KVCache]:
        """Empty key/value caches of the decoder for `paths` paths and `capacity` appended positions."""
        return new_caches(self.decoder, paths, capacity, like)

    def decode_prefill(self, s1_ids: torch.Tensor, s2_ids: torch.Tensor, caches: list[KVCache]) -> None:
        """Run the histories' ids (G, P) through the decoder into the caches' shared prefixes."""
        run_blocks(self.decoder, self._codes(s1_ids, s2_ids), 0, caches, prefill=True)

    def decode_step(self, s1_ids: torch.Tensor, s2_ids: torch.Tensor, start: int,
                    caches: list[KVCache]) -> torch.Tensor:
        """Append ids (G*S, T) at positions start.. after the prefilled histories -> their rows (G*S, T, d_in)."""
        return self.head(run_blocks(self.decoder, self._codes(s1_ids, s2_ids), start, caches))

    def training_losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The reference's tokenizer losses for normalised rows x (B, T, d_in): the mean squared error of the
        reconstruction from the coarse bits alone (through post_quant_embed_pre) and from all bits, the
        quantiser's loss, and `loss` = (both reconstructions + quantiser) / 2."""
        c = self.config
        z = self.quant_embed(run_blocks(self.encoder, self.embed(x)))  # (B, T, s1+s2)
        quantiser, codes = quantiser_loss_and_codes(z, c)
        coarse = self.head(run_blocks(self.decoder, self.post_quant_embed_pre(codes[..., :c.s1_bits])))  # (B, T, d_in)
        full = self.head(run_blocks(self.decoder, self.post_quant_embed(codes)))
        recon_coarse, recon_full = F.mse_loss(coarse, x), F.mse_loss(full, x)
        return {"loss": (recon_coarse + recon_full + quantiser) / 2, "recon_coarse": recon_coarse,
                "recon_full": recon_full, "quantiser": quantiser}

    def _codes(self, s1_ids: torch.Tensor, s2_ids: torch.Tensor) -> torch.Tensor:
        """Ids (B, T) -> the decoder's input (B, T, D): their +-1 bits, scaled, through post_quant_embed."""
        c = self.config
        codes = torch.cat((_bits(s1_ids, c.s1_bits), _bits(s2_ids, c.s2_bits)), dim=-1)
        return self.post_quant_embed(codes / math.sqrt(c.s1_bits + c.s2_bits))


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
        self.transformer = nn.ModuleList(Block(c.d_model, c.n_heads, c.ff_dim, _dropouts(c)) for _ in range(c.n_layers))
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
