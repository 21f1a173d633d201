"""The configs of a Kronos tokenizer and predictor, read from a checkpoint's config.json."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

from kronos.model.layers import Dropouts


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



def dropouts(config: TokenizerConfig | PredictorConfig) -> Dropouts:
    """The dropout rates a config gives its blocks (they act in training only)."""
    return Dropouts(config.attn_dropout_p, config.resid_dropout_p, config.ffn_dropout_p)
