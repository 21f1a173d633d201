"""The modules a training run starts from: a checkpoint to fine-tune, or fresh weights of a published or tiny shape."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from kronos.errors import InvalidInputError
from kronos.model import Kronos, KronosTokenizer, PredictorConfig, TokenizerConfig, checkpoints
from kronos.model.layers import RMSNorm


@dataclass(frozen=True)
class Shape:
    """The configs of a model trained from scratch, and the context its windows must fit."""

    predictor: PredictorConfig
    tokenizer: TokenizerConfig
    max_context: int


SHAPES = {name: Shape(p.predictor_config, p.tokenizer_config, p.max_context) for name, p in checkpoints.PRESETS.items()}
# A very small shape for tests and smoke runs, with every dropout on so that training exercises them.
SHAPES["tiny"] = Shape(
    PredictorConfig(s1_bits=4, s2_bits=4, n_layers=2, d_model=32, n_heads=4, ff_dim=64, attn_dropout_p=0.1,
                    ffn_dropout_p=0.1, resid_dropout_p=0.1, token_dropout_p=0.1),
    TokenizerConfig(d_in=6, d_model=32, n_heads=4, ff_dim=64, n_enc_layers=3, n_dec_layers=3, s1_bits=4, s2_bits=4,
                    group_size=4, attn_dropout_p=0.1, ffn_dropout_p=0.1, resid_dropout_p=0.1),
    512)


@dataclass(frozen=True)
class Init:
    """Where the weights come from: `base` (preset, hub id or directory) to fine-tune, or a `scratch` shape name;
    `tokenizer` (hub id or directory) replaces the base's or the fresh tokenizer."""

    base: str | None = None
    scratch: str | None = None
    tokenizer: str | None = None

    def __post_init__(self):
        if (self.base is None) == (self.scratch is None):
            raise InvalidInputError("name what to start from: --from a preset (mini, small, base), hub id or "
                                    f"checkpoint directory, or --scratch {'|'.join(SHAPES)} (one of the two)")
        if self.scratch is not None and self.scratch not in SHAPES:
            raise InvalidInputError(f"--scratch must be one of {', '.join(SHAPES)}, got {self.scratch!r}")


@dataclass
class Start:
    """The tokenizer and predictor a run starts from, the context their windows must fit, and how to describe them."""

    tokenizer: KronosTokenizer
    predictor: Kronos
    max_context: int
    described: dict


def reference_init(model: Kronos) -> Kronos:
    """Initialise a fresh predictor as the reference does: Xavier-normal linear weights, zero biases, embeddings
    N(0, 1/d_model), RMSNorm weights 1."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=model.config.d_model ** -0.5)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
    return model


def starting_modules(init: Init, seed: int, device: torch.device) -> Start:
    """Load (or, from scratch, build with torch seeded by `seed`) the tokenizer and the predictor on `device`."""
    if init.scratch is not None:
        shape = SHAPES[init.scratch]
        torch.manual_seed(seed)
        tokenizer = (checkpoints.load_tokenizer(init.tokenizer) if init.tokenizer
                     else KronosTokenizer(shape.tokenizer))
        predictor = reference_init(Kronos(shape.predictor))
        context = shape.max_context
        described = {"scratch": init.scratch, "predictor_config": asdict(shape.predictor),
                     "tokenizer": init.tokenizer or {"scratch": init.scratch, "config": asdict(shape.tokenizer)}}
    else:
        chosen = checkpoints.select(init.base, init.tokenizer)
        tokenizer, predictor = checkpoints.load_tokenizer(chosen.tokenizer), checkpoints.load_predictor(chosen.model)
        context = chosen.max_context
        described = {"from": chosen.model, "tokenizer": chosen.tokenizer}
    t, p = tokenizer.config, predictor.config
    if (t.s1_bits, t.s2_bits) != (p.s1_bits, p.s2_bits):
        raise InvalidInputError(f"the tokenizer makes {t.s1_bits}+{t.s2_bits}-bit ids but the predictor reads "
                                f"{p.s1_bits}+{p.s2_bits}-bit ids; pass a matching --tokenizer")
    return Start(tokenizer.to(device), predictor.to(device), context, described)
