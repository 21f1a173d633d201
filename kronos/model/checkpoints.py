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
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kronos.errors import InvalidInputError, WeightsUnavailableError
from kronos.model import Kronos, KronosTokenizer, PredictorConfig, TokenizerConfig
from kronos.schemas.training import TrainingRecord, read
from kronos.settings import Environment, ModelChoice

FILES = ("config.json", "model.safetensors")
RECORD = "record.json"  # written beside model/ and tokenizer/ by `python -m kronos train`
HUB_TIMEOUT_S = 3.0  # seconds to reach the hub before saying it cannot be reached
DEFAULT_CONTEXT = 512


def model_label(name: str) -> str:
    """How answers name a model: a hub id as it is; a local checkpoint by its run's folder name (the folder that
    holds `model/`, else the checkpoint's own), never its path, which a remote client must not learn."""
    path = Path(name).expanduser()
    if name.count("/") == 1 and not name.startswith((".", "/", "~")) and not path.is_dir():
        return name
    path = path.resolve()
    return (path.parent if path.name == "model" else path).name


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
    if not record.is_file():
        return None
    try:
        return read(TrainingRecord, record).max_context
    except ValueError:
        return None


@dataclass(frozen=True)
class Trained:
    """A checkpoint made by `python -m kronos train`: its folder's model/ and tokenizer/, and what record.json says."""

    name: str
    model: Path
    tokenizer: Path
    record: TrainingRecord

    def summary(self) -> str:
        """Its data, split, best validation loss and backtest skill, in one line."""
        data, record = self.record.data, self.record
        parts = [f"validation from {record.split.val_from:%Y-%m-%d}"]
        if data:
            name = Path(data[0].name).name if data[0].source == "csv" else data[0].name  # no server path
            parts.insert(0, f"{name} {data[0].first:%Y-%m-%d} to {data[-1].last:%Y-%m-%d}")
        predictor = record.stages.get("predictor")
        if predictor is not None and predictor.best is not None:
            parts.append(f"validation {predictor.best.metric} {predictor.best.value:.3f}")
        series = record.evaluation.series if record.evaluation is not None else []
        if series and series[0].trained_skill.crps and series[0].trained_skill.crps[-1] is not None:
            parts.append(f"CRPS skill vs random walk at hour {len(series[0].trained_skill.crps)}: "
                         f"{series[0].trained_skill.crps[-1]:+.1%}")
        return "; ".join(parts)


@dataclass(frozen=True)
class TrainedRuns:
    """The finished training runs of a models folder, and a one-line note per folder whose record.json was skipped."""

    runs: tuple[Trained, ...]
    skipped: tuple[str, ...]


def trained_checkpoints(folder: str | os.PathLike | None = None) -> TrainedRuns:
    """The finished training runs in `folder` (default: KRONOS_MODELS, else `models/` beside the candle store); a
    record.json that is broken or from elsewhere is skipped with a note naming its folder (not the server path)."""
    from kronos.data.store import default_path

    root = Path(folder) if folder is not None else Environment.read().models or default_path().parent / "models"
    found, skipped = [], []
    for path in sorted(root.glob(f"*/{RECORD}")):
        run = path.parent
        try:
            record = read(TrainingRecord, path)
        except ValueError as error:
            skipped.append(f"{run.name}: its {RECORD} {error}")
            continue
        if record.status == "finished" and all((run / part / FILES[1]).is_file() for part in ("model", "tokenizer")):
            found.append(Trained(run.name, run / "model", run / "tokenizer", record))
    return TrainedRuns(tuple(found), tuple(skipped))


# The one answer to a model that may not be loaded here, whether or not it exists: it reveals nothing of the server.
NOT_ALLOWED = ("this server loads only its presets, the training runs of its models folder and the model its operator "
               "configured; its operator can allow other directories and hub ids with KRONOS_ALLOW_ANY_MODEL=1")


def allowed(choice: ModelChoice, env: Environment, runs: TrainedRuns | None = None) -> bool:
    """Whether a visitor may load `choice`: a preset with its own tokenizer, a training run of the models folder
    (`runs`, default: scanned now) or the operator's KRONOS_MODEL/KRONOS_TOKENIZER; anything with
    KRONOS_ALLOW_ANY_MODEL=1."""
    if env.allow_any_model or choice == env.model:
        return True
    preset = PRESETS.get(choice.model) or next((p for p in PRESETS.values() if p.model == choice.model), None)
    if preset is not None:
        return choice.tokenizer in (None, preset.tokenizer)
    runs = trained_checkpoints() if runs is None else runs
    return any(choice.model == str(run.model) and choice.tokenizer in (None, str(run.tokenizer)) for run in runs.runs)


def check_allowed(choice: ModelChoice, env: Environment) -> None:
    """WeightsUnavailableError(NOT_ALLOWED) unless `allowed(choice, env)`: the same words for every refused choice."""
    if not allowed(choice, env):
        raise WeightsUnavailableError(NOT_ALLOWED)


# How links name the operator's models without their paths: `trained:<run>` a run of the models folder, `server:<label>`
# the configured KRONOS_MODEL where its bare label names something else.
TRAINED, CONFIGURED = "trained:", "server:"


def link_name(choice: ModelChoice, env: Environment, runs: TrainedRuns) -> str | None:
    """How a link names `choice`: a preset's name, `trained:<run>`, or the label of the operator's KRONOS_MODEL (as
    answers name it); None for any other choice, which a link can only carry as given."""
    if choice.model in PRESETS and choice.tokenizer in (None, PRESETS[choice.model].tokenizer):
        return choice.model
    run = next((r for r in runs.runs if choice.model == str(r.model) and choice.tokenizer in (None, str(r.tokenizer))),
               None)
    if run is not None:
        return TRAINED + run.name
    if choice != env.model:
        return None
    label = model_label(choice.model)
    return label if resolve(label, None, env, runs) == choice else CONFIGURED + label


def resolve(name: str, tokenizer: str | None, env: Environment, runs: TrainedRuns) -> ModelChoice:
    """The model a link names (see `link_name`; a run also by its bare name); anything else, a directory or a hub id,
    as given, for `allowed` to judge."""
    if tokenizer is not None or name in PRESETS:
        return ModelChoice(name, tokenizer)
    by_name = {TRAINED + run.name: run for run in runs.runs}
    run = by_name.get(name) or by_name.get(TRAINED + name)
    if run is not None:
        return ModelChoice(str(run.model), str(run.tokenizer))
    if name in (label := model_label(env.model.model), CONFIGURED + label):
        return env.model
    return ModelChoice(name)


def _sibling_tokenizer(model: str) -> str:
    """For a local model directory without a named tokenizer: `<dir>/tokenizer` or `<dir>/../tokenizer`."""
    path = Path(model).expanduser()
    for candidate in (path / "tokenizer", path.parent / "tokenizer"):
        if (candidate / "config.json").is_file():
            return str(candidate)
    raise WeightsUnavailableError(
        f"no tokenizer given for model {model!r}: name one (a preset's hub id such as "
        "NeoQuasar/Kronos-Tokenizer-base, or a directory with config.json and model.safetensors)", model, shown(path))


def shown(path: Path) -> str:
    """How a visitor sees a checkpoint directory: by its run's name and part ("btcrun/model"), never its path."""
    return "/".join(path.resolve().parts[-2:]) if path.name in ("model", "tokenizer") else path.name


def locate(source: str, revision: str | None = None) -> Path:
    """Return a local directory holding config.json and model.safetensors for a directory or hub id."""
    path = Path(source).expanduser()
    if path.is_dir():
        absent = [f for f in FILES if not (path / f).is_file()]
        if absent:
            raise WeightsUnavailableError(
                f"directory {path} lacks {', '.join(absent)}; a checkpoint directory needs config.json "
                "and model.safetensors (pickled .bin/.pt weights are not loaded)", str(path), shown(path))
        return path
    if source.count("/") != 1 or source.startswith((".", "/", "~")):
        raise WeightsUnavailableError(f"{source!r} is neither a checkpoint directory nor a hub id like "
                                      "'NeoQuasar/Kronos-mini'", source, shown(path))
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
        where = ("the local Hugging Face cache (offline mode is on)" if offline
                 else "the Hugging Face hub and its local cache")
        raise WeightsUnavailableError(
            f"could not get {source}@{revision or 'main'} from {where}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0].rstrip('.') if str(exc) else ''}. Download it where the hub is reachable "
            f"(`hf download {source}`), or point at a local directory with config.json and "
            "model.safetensors (--model/--tokenizer DIR, or KRONOS_MODEL/KRONOS_TOKENIZER)") from exc
    return Path(files[0]).parent


def _load(module_cls, config_cls, source: str, revision: str | None, device: str) -> torch.nn.Module:
    directory = locate(source, revision)
    local = Path(source).expanduser().is_dir()  # else a hub id, whose files lie in the hub's cache
    try:
        config = config_cls.from_dict(json.loads((directory / "config.json").read_text()))
        module = module_cls(config)
        module.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
    except (ValueError, TypeError, RuntimeError, OSError, SafetensorError) as exc:
        raise WeightsUnavailableError(
            f"{directory} does not hold a {module_cls.__name__} checkpoint of the published layout: "
            f"{' '.join(str(exc).split()[:40])}", str(directory), shown(directory) if local else source) from exc
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
