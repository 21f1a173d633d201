"""Finding and loading Kronos checkpoints: presets, hub ids (pinned revisions, offline cache) or local directories.

A checkpoint is a directory or hub repo holding `config.json` and `model.safetensors`. Weights are read
with safetensors only; nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from kronos.errors import InvalidInputError, WeightsUnavailableError
from kronos.model import Kronos, KronosTokenizer, PredictorConfig, TokenizerConfig
from kronos.settings import Environment

FILES = ("config.json", "model.safetensors")
RECORD = "record.json"  # written beside model/ and tokenizer/ by `python -m kronos train`
HUB_TIMEOUT_S = 3.0  # seconds to reach the hub before saying it cannot be reached
DEFAULT_CONTEXT = 512


def _tokenizer_config(group_size: int) -> TokenizerConfig:
    return TokenizerConfig(d_in=6, d_model=256, n_heads=4, ff_dim=512, n_enc_layers=4, n_dec_layers=4,
                           s1_bits=10, s2_bits=10, group_size=group_size)


def _predictor_config(n_layers: int, d_model: int, n_heads: int, ff_dim: int,
                      dropouts: tuple[float, float, float, float]) -> PredictorConfig:
    attn, ffn, resid, token = dropouts
    return PredictorConfig(s1_bits=10, s2_bits=10, n_layers=n_layers, d_model=d_model, n_heads=n_heads, ff_dim=ff_dim,
                           attn_dropout_p=attn, ffn_dropout_p=ffn, resid_dropout_p=resid, token_dropout_p=token)


@dataclass(frozen=True)
class Preset:
    """A published model: hub ids of its weights and tokenizer, its context, and their configs (for random or
    from-scratch weights of the same shapes)."""

    model: str
    tokenizer: str
    max_context: int
    parameters: str  # for people: "4M"
    predictor_config: PredictorConfig
    tokenizer_config: TokenizerConfig

    @property
    def label(self) -> str:
        """How a picker names it: "Kronos-mini (4M, context 2048)"."""
        return f"{self.model.split('/')[-1]} ({self.parameters}, context {self.max_context})"


PRESETS = {
    "mini": Preset("NeoQuasar/Kronos-mini", "NeoQuasar/Kronos-Tokenizer-2k", 2048, "4M",
                   _predictor_config(4, 256, 4, 512, (0, 0.2, 0.2, 0)), _tokenizer_config(group_size=5)),
    "small": Preset("NeoQuasar/Kronos-small", "NeoQuasar/Kronos-Tokenizer-base", 512, "25M",
                    _predictor_config(8, 512, 8, 1024, (0.1, 0.25, 0.25, 0.1)), _tokenizer_config(group_size=4)),
    "base": Preset("NeoQuasar/Kronos-base", "NeoQuasar/Kronos-Tokenizer-base", 512, "102M",
                   _predictor_config(12, 832, 16, 2048, (0, 0.2, 0.2, 0)), _tokenizer_config(group_size=4)),
}

# Default hub revisions, overridable with `revision=` (None = the repo's main branch).
PINNED_REVISIONS = {
    "NeoQuasar/Kronos-mini": "f4e68697d9d5aed55cef5c96aabc3376bcad9f81",
    "NeoQuasar/Kronos-Tokenizer-2k": "26966d0035065a0cae0ebad7af8ece35bc1fb51c",
    "NeoQuasar/Kronos-small": "901c26c1332695a2a8f243eb2f37243a37bea320",
    "NeoQuasar/Kronos-Tokenizer-base": "0e0117387f39004a9016484a186a908917e22426",
}


@dataclass(frozen=True)
class Selection:
    """What to load: model and tokenizer sources (hub id or directory) and the context length."""

    model: str
    tokenizer: str
    max_context: int


def select(model: str, tokenizer: str | None = None, max_context: int | None = None) -> Selection:
    """Resolve a preset name, hub id or directory (and an optional tokenizer) into what to load."""
    preset = PRESETS.get(model) or next((p for p in PRESETS.values() if p.model == model), None)
    source = preset.model if preset else model
    if tokenizer is None:
        tokenizer = preset.tokenizer if preset else _sibling_tokenizer(source)
    context = max_context or (preset.max_context if preset else _trained_context(source) or DEFAULT_CONTEXT)
    if context < 2:
        raise InvalidInputError(f"max_context must be at least 2, got {context}")
    return Selection(source, tokenizer, context)


def _trained_context(model: str) -> int | None:
    """The context a checkpoint made by `python -m kronos train` was trained for (record.json beside model/)."""
    record = Path(model).expanduser().parent / RECORD
    try:
        return int(json.loads(record.read_text())["max_context"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Trained:
    """A checkpoint made by `python -m kronos train`: its folder's model/ and tokenizer/, and what record.json says."""

    name: str
    model: Path
    tokenizer: Path
    record: dict

    def summary(self) -> str:
        """Its data, split, best validation loss and backtest skill, in one line."""
        data, split = self.record.get("data") or [{}], self.record.get("split", {})
        parts = [f"{data[0].get('name', '?')} {str(data[0].get('first', ''))[:10]} to {str(data[-1].get('last', ''))[:10]}",
                 f"validation from {str(split.get('val_from', '?'))[:10]}"]
        best = (self.record.get("stages", {}).get("predictor") or {}).get("best")
        if best is not None:
            parts.append(f"validation loss {best:.3f}")
        series = (self.record.get("evaluation") or {}).get("series") or []
        if series:
            skill = series[0]["trained_skill"]["crps"][-1]
            parts.append(f"CRPS skill vs random walk at hour {len(series[0]['trained']['crps'])}: {skill:+.1%}")
        return "; ".join(parts)


def trained_checkpoints(folder: str | os.PathLike | None = None) -> list[Trained]:
    """The finished training runs in `folder` (default: KRONOS_MODELS, else `models/` beside the candle store)."""
    from kronos.data.store import default_path

    root = Path(folder) if folder is not None else Environment.read().models or default_path().parent / "models"
    found = []
    for record in sorted(root.glob(f"*/{RECORD}")):
        run = record.parent
        try:
            described = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if described.get("status") == "finished" and all((run / part / FILES[1]).is_file() for part in
                                                          ("model", "tokenizer")):
            found.append(Trained(run.name, run / "model", run / "tokenizer", described))
    return found


def _sibling_tokenizer(model: str) -> str:
    """For a local model directory without a named tokenizer: `<dir>/tokenizer` or `<dir>/../tokenizer`."""
    path = Path(model).expanduser()
    for candidate in (path / "tokenizer", path.parent / "tokenizer"):
        if (candidate / "config.json").is_file():
            return str(candidate)
    raise WeightsUnavailableError(
        f"no tokenizer given for model {model!r}: name one (a preset's hub id such as "
        "NeoQuasar/Kronos-Tokenizer-base, or a directory with config.json and model.safetensors)")


def locate(source: str, revision: str | None = None) -> Path:
    """Return a local directory holding config.json and model.safetensors for a directory or hub id."""
    path = Path(source).expanduser()
    if path.is_dir():
        absent = [f for f in FILES if not (path / f).is_file()]
        if absent:
            raise WeightsUnavailableError(
                f"directory {path} lacks {', '.join(absent)}; a checkpoint directory needs config.json "
                "and model.safetensors (pickled .bin/.pt weights are not loaded)")
        return path
    if source.count("/") != 1 or source.startswith((".", "/", "~")):
        raise WeightsUnavailableError(f"{source!r} is neither a checkpoint directory nor a hub id like 'NeoQuasar/Kronos-mini'")
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache

    revision = revision or PINNED_REVISIONS.get(source)
    cached = [try_to_load_from_cache(source, f, revision=revision) for f in FILES]
    if all(isinstance(path, str) for path in cached):  # no network call at all
        return Path(cached[0]).parent
    try:
        # One request without retries first: a hub that cannot be reached answers within HUB_TIMEOUT_S (the
        # client's own back-off would retry for minutes), then the download with the client's usual care.
        get_hf_file_metadata(hf_hub_url(source, FILES[0], revision=revision), timeout=HUB_TIMEOUT_S)
        files = [hf_hub_download(source, f, revision=revision, etag_timeout=HUB_TIMEOUT_S) for f in FILES]
    except Exception as exc:  # the hub raises many kinds: offline, not found, HTTP, connection
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        where = "the local Hugging Face cache (offline mode is on)" if offline else "the Hugging Face hub and its local cache"
        raise WeightsUnavailableError(
            f"could not get {source}@{revision or 'main'} from {where}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0].rstrip('.') if str(exc) else ''}. Download it where the hub is reachable "
            f"(`hf download {source}`), or point at a local directory with config.json and "
            "model.safetensors (--model/--tokenizer DIR, or KRONOS_MODEL/KRONOS_TOKENIZER)") from exc
    return Path(files[0]).parent


def _load(module_cls, config_cls, source: str, revision: str | None, device: str) -> torch.nn.Module:
    directory = locate(source, revision)
    try:
        config = config_cls.from_dict(json.loads((directory / "config.json").read_text()))
        module = module_cls(config)
        module.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        raise WeightsUnavailableError(
            f"{directory} does not hold a {module_cls.__name__} checkpoint of the published layout: "
            f"{' '.join(str(exc).split()[:40])}") from exc
    return module.to(device).eval()


def load_tokenizer(source: str, revision: str | None = None, device: str = "cpu") -> KronosTokenizer:
    """Load a tokenizer strictly from a directory or hub id, in eval mode on `device`."""
    return _load(KronosTokenizer, TokenizerConfig, source, revision, device)


def load_predictor(source: str, revision: str | None = None, device: str = "cpu") -> Kronos:
    """Load a predictor strictly from a directory or hub id, in eval mode on `device`."""
    return _load(Kronos, PredictorConfig, source, revision, device)


def save_checkpoint(module: KronosTokenizer | Kronos, directory: str | os.PathLike) -> Path:
    """Write a tokenizer or predictor in the published layout (config.json + model.safetensors)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(dataclasses.asdict(module.config), indent=2))
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path / "model.safetensors"))
    return path


def check_device(device: str) -> torch.device:
    """Return the torch device, or raise InvalidInputError when it is not available here."""
    dev = torch.device(device)
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if not available.get(dev.type, False):
        raise InvalidInputError(f"device {device!r} is not available here; use one of "
                                f"{', '.join(k for k, ok in available.items() if ok)}")
    return dev
