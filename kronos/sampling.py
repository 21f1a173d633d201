"""Temperature, top-k and nucleus (top-p) sampling of token ids, drawing from the same set as the reference."""

from __future__ import annotations

import numpy as np
import torch


def candidates(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The ids a row of logits (S, V) may draw and their probabilities, most likely first: both (S, K).

    Logits are divided by temperature; top_k > 0 keeps the k largest (top_p is then ignored); else
    top_p < 1 keeps the smallest set of most likely ids whose probability reaches top_p, counting the
    id that crosses it. Dropped ids keep probability 0.
    """
    logits = logits.float() / temperature
    if top_k > 0:
        values, ids = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1)
        return torch.softmax(values, dim=-1), ids
    if top_p >= 1.0:
        return torch.softmax(logits, dim=-1), torch.arange(logits.shape[-1], device=logits.device).expand_as(logits)
    ordered = _descending(logits)
    sorted_probs = torch.softmax(ordered, dim=-1)
    before = torch.nn.functional.pad(sorted_probs.cumsum(dim=-1)[..., :-1], (1, 0))  # mass of the more likely ids
    kept = (before <= top_p).sum(dim=-1, keepdim=True)  # the nucleus is this many most likely ids
    threshold = ordered.gather(-1, kept - 1)
    probs = torch.softmax(logits, dim=-1).masked_fill(logits < threshold, 0.0)
    return probs / probs.sum(dim=-1, keepdim=True), torch.arange(logits.shape[-1], device=logits.device).expand_as(logits)


def _descending(logits: torch.Tensor) -> torch.Tensor:
    """Each row's values sorted from largest to smallest (NumPy's sort is several times faster on the CPU)."""
    if logits.device.type == "cpu":
        return torch.from_numpy(np.ascontiguousarray(np.sort(logits.numpy(), axis=-1)[..., ::-1]))
    return torch.sort(logits, descending=True, dim=-1).values


def filtered_probs(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Probabilities (S, V) the sampler draws each id with; 0 for filtered-out ids."""
    probs, ids = candidates(logits, temperature, top_k, top_p)
    return torch.zeros_like(logits, dtype=probs.dtype).scatter(-1, ids, probs)


def sample_ids(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
               generator: torch.Generator) -> torch.Tensor:
    """Draw one id per row of logits (S, V) by inverse transform sampling over the candidates: (S,) int64."""
    probs, ids = candidates(logits, temperature, top_k, top_p)
    cumulative = probs.cumsum(dim=-1)
    u = torch.rand(len(probs), 1, generator=generator, device=probs.device) * cumulative[:, -1:]
    pick = torch.searchsorted(cumulative, u, right=True).clamp_(max=probs.shape[-1] - 1)
    return ids.gather(-1, pick)[:, 0]
