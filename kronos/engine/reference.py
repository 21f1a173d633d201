"""The reference implementation's method, for the tests and the benchmark only: no cache, the whole window for
every path at every step. The product's engine (kronos.engine) must draw the same tokens with the same seed."""

from __future__ import annotations

import pandas as pd
import torch

from kronos.engine import Forecaster, draw_uniforms
from kronos.engine.forecast import Forecast
from kronos.engine.sampling import sample_ids


def recompute_forecast(forecaster: Forecaster, history: pd.DataFrame, *, horizon: int, samples: int,
                       temperature: float, top_p: float, top_k: int, seed: int,
                       lookback: int | None = None) -> Forecast:
    """`Forecaster.forecast`'s paths computed as the reference does (every path, the whole window, every step)."""
    prepared = forecaster.prepare(history, horizon, lookback)
    forecaster.check_arguments(horizon, samples, temperature, top_p, top_k, [seed])
    model, tokenizer, context = forecaster.model, forecaster.tokenizer, forecaster.max_context
    device = forecaster.device
    sampling = (temperature, top_k, top_p)
    with torch.inference_mode():
        uniforms = draw_uniforms(seed, samples, horizon, device=device)
        s1, s2 = tokenizer.encode(torch.from_numpy(prepared.x)[None].to(device))  # (1, L) each
        features = torch.cat([torch.from_numpy(f) for f in (prepared.features, prepared.future_features)]).to(device)
        s1, s2 = s1.expand(samples, -1), s2.expand(samples, -1)
        for i in range(horizon):
            end = s1.shape[1]
            start = max(0, end - context)
            cache = model.new_cache(samples, 0, features.float())
            h_last = model.prefill(s1[:, start:], s2[:, start:], features[None, start:end], cache)  # (S, D)
            coarse = sample_ids(model.coarse_logits(h_last), *sampling, uniforms[i, 0])
            fine = sample_ids(model.fine_logits(h_last, coarse, cache), *sampling, uniforms[i, 1])
            s1, s2 = torch.cat((s1, coarse[:, None]), 1), torch.cat((s2, fine[:, None]), 1)
        start = max(0, s1.shape[1] - context)
        rows = tokenizer.decode(s1[:, start:], s2[:, start:])[:, -horizon:]  # (S, horizon, 6)
        tokens = torch.stack((s1[:, -horizon:], s2[:, -horizon:]), dim=-1)
    settings = dict(horizon=horizon, samples=samples, temperature=temperature, top_p=top_p, top_k=top_k,
                    lookback=len(prepared.frame), max_context=context, method="reference recompute")
    return Forecast(prepared.denormalise(rows.cpu().numpy()), prepared.future, prepared.frame, seed,
                    forecaster.name, settings, tokens.cpu().numpy())
