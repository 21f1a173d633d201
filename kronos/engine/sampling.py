"""Temperature, top-k and nucleus (top-p) sampling of token ids, drawing from the same set as the reference."""

from __future__ import annotations

import numpy as np
import torch


def candidates(logits: torch.Tensor, temperature: float, top_k: int,
               top_p: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The ids a row of logits (S, V) may draw, with weights proportional to their probabilities: both (S, K);
    ids None when they are the positions (K = V).

    Logits are divided by temperature; top_k > 0 keeps the k largest (top_p is then ignored); else
    top_p < 1 keeps the smallest set of most likely ids whose probability reaches top_p, counting the
    id that crosses it. Dropped ids get weight 0.
    """
    logits = logits.float() / temperature
    if top_k > 0:
        values, ids = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1)
        return torch.softmax(values, dim=-1), ids
    probs = torch.softmax(logits, dim=-1)
    if top_p >= 1.0:
        return probs, None
    ordered = _descending(probs)
    before = torch.nn.functional.pad(ordered.cumsum(dim=-1)[..., :-1], (1, 0))  # mass of the more likely ids
    kept = (before <= top_p).sum(dim=-1, keepdim=True)  # the nucleus is this many most likely ids
    return probs.masked_fill(probs < ordered.gather(-1, kept - 1), 0.0), None


def _descending(values: torch.Tensor) -> torch.Tensor:
    """Each row's values sorted from largest to smallest (NumPy's sort is several times faster on the CPU)."""
    if values.device.type == "cpu":
        return torch.from_numpy(np.ascontiguousarray(np.sort(values.numpy(), axis=-1)[..., ::-1]))
    return torch.sort(values, descending=True, dim=-1).values


def filtered_probs(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Probabilities (S, V) the sampler draws each id with; 0 for filtered-out ids."""
    weights, ids = candidates(logits, temperature, top_k, top_p)
    weights = weights / weights.sum(-1, keepdim=True)
    return weights if ids is None else torch.zeros_like(logits, dtype=weights.dtype).scatter(-1, ids, weights)


def sample_ids(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, u: torch.Tensor) -> torch.Tensor:
    """Draw one id per row of logits (S, V) by inverse transform sampling over the candidates, with one uniform
    draw per row u (S,) in [0, 1): (S,) int64."""
    weights, ids = candidates(logits, temperature, top_k, top_p)
    cumulative = weights.cumsum(dim=-1)
    pick = torch.searchsorted(cumulative, u[:, None] * cumulative[:, -1:], right=True)
    pick = pick.clamp_(max=weights.shape[-1] - 1)[:, 0]
    return pick if ids is None else ids.gather(-1, pick[:, None])[:, 0]
