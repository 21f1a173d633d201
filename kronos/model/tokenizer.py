"""The Kronos tokenizer: causal encoder -> binary spherical quantisation into (coarse, fine) ids -> causal decoder."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kronos.model.config import TokenizerConfig, dropouts
from kronos.model.layers import Block, KVCache, new_caches, run_blocks


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
        self.encoder = nn.ModuleList(Block(c.d_model, c.n_heads, c.ff_dim, dropouts(c))
                                     for _ in range(c.n_enc_layers - 1))
        self.quant_embed = nn.Linear(c.d_model, c.s1_bits + c.s2_bits)
        self.post_quant_embed_pre = nn.Linear(c.s1_bits, c.d_model)  # training only; kept for the layout
        self.post_quant_embed = nn.Linear(c.s1_bits + c.s2_bits, c.d_model)
        self.decoder = nn.ModuleList(Block(c.d_model, c.n_heads, c.ff_dim, dropouts(c))
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
