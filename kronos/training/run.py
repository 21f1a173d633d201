"""A training run: the stages in turn (tokenizer, then predictor), the output folder and its record.json.

The output folder gets `tokenizer/` and `model/` in the published layout (kronos.model.checkpoints.save_checkpoint,
the best validation weights of each trained stage), `state/` (kronos.training.state, to resume) and
`record.json` (kronos.schemas.training.TrainingRecord: data, split, settings, starting weights, losses per epoch,
device, time, evaluation).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from kronos.errors import InvalidInputError, WeightsUnavailableError
from kronos.model import checkpoints
from kronos.schemas.training import Evaluation, RunDescription, SavedState, StageHistory, TrainingRecord
from kronos.settings import FORECAST_DEFAULTS
from kronos.training.data import Series, Split, Windows, choose_split, make_windows
from kronos.training.loop import LoopSettings, Progress, Stage, train_stage
from kronos.training.models import Init, Start, starting_modules
from kronos.training.state import read_meta

STAGES = {"both": ("tokenizer", "predictor"), "tokenizer": ("tokenizer",), "predictor": ("predictor",)}


@dataclass(frozen=True)
class StageDefaults:
    """A stage's optimiser settings: the reference's fine-tuning ones (finetune/config.py, train_*.py); the
    from-scratch learning rates are ours."""

    lr_finetune: float
    lr_scratch: float
    betas: tuple[float, float]
    clip_norm: float
    metric: str  # the validation loss early stopping watches: the reference's


STAGE_DEFAULTS = {"tokenizer": StageDefaults(2e-4, 1e-3, (0.9, 0.999), 2.0, "recon_full"),
                  "predictor": StageDefaults(4e-5, 4e-4, (0.9, 0.95), 3.0, "loss")}
WEIGHT_DECAY = 0.1
SAVE_MINUTES = 5.0  # the state is saved at least this often (minutes of training): what a killed run can lose


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides a run's numbers besides its data and starting weights (lr None: the stage's default)."""

    stage: str = "both"
    lookback: int = FORECAST_DEFAULTS.lookback
    horizon: int = FORECAST_DEFAULTS.horizon
    batch_size: int = 16
    epochs: int = 1
    max_steps: int | None = None
    lr: float | None = None
    val_from: str | None = None
    val_fraction: float = 0.2
    val_every: int = 200
    val_windows: int = 256
    patience: int = 3
    seed: int = 0

    def __post_init__(self):
        positive = ("lookback", "horizon", "batch_size", "epochs", "val_every", "val_windows", "patience")
        problems = [f"--{name.replace('_', '-')} must be a positive whole number, got {getattr(self, name)}"
                    for name in positive if not getattr(self, name) >= 1]
        if self.stage not in STAGES:
            problems.append(f"--stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"--max-steps must be at least 1, got {self.max_steps}")
        if self.lr is not None and not 0 < self.lr < 1:
            problems.append(f"--lr must be between 0 and 1, got {self.lr}")
        if self.seed < 0:
            problems.append(f"--seed must be 0 or more, got {self.seed}")
        if problems:
            raise InvalidInputError(problems)


@dataclass(frozen=True)
class EvaluationRequest:
    """What `--evaluate` backtests on the validation period: the trained checkpoint, its base (None from scratch)."""

    model: Path
    tokenizer: Path
    max_context: int
    base: checkpoints.Selection | None
    series: tuple[Series, ...]
    val_from: pd.Timestamp
    lookback: int
    horizon: int


Evaluate = Callable[[EvaluationRequest], Evaluation | dict]  # the dict: Evaluation's fields, as JSON has them


def train(series: list[Series], init: Init, settings: TrainSettings, out: str | Path, *, resume: bool = False,
          device: str = "cpu", max_minutes: float | None = None, progress: Callable[[Progress], None] | None = None,
          should_stop: Callable[[], bool] | None = None, evaluate: Evaluate | None = None,
          save_minutes: float = SAVE_MINUTES) -> TrainingRecord:
    """Train the settings' stages on `series` from `init` into folder `out`, and return (and write) its record.

    `max_minutes` bounds each stage of this invocation; `should_stop()` stops after the current step with the
    state saved, and `resume` continues the run saved in `out` (its data and settings must be the same); the state
    is also saved every `save_minutes` of training, so a killed run resumes from there. Without `evaluate` the
    record's `evaluation` is null.
    """
    out = Path(out)
    state_dir, began = out / "state", time.monotonic()
    saved = _saved_state(out, state_dir, resume, max_minutes, save_minutes)
    dev = checkpoints.check_device(device)
    start = starting_modules(init, settings.seed, dev)
    _check_start(start, init, settings)
    split = choose_split(series, settings.val_from, settings.val_fraction)
    train_windows, val_windows, run = _windows(series, split, settings, start)
    if saved is not None and saved.run.model_dump(mode="json") != run.model_dump(mode="json"):
        raise InvalidInputError(f"the run saved in {out} had other data, settings or starting weights; resume it "
                                "with the same command line, or start a new run in another --out folder")
    completed = saved.completed if saved is not None else {}
    with _deterministic():
        for name in STAGES[settings.stage]:
            if name == "predictor" and "tokenizer" in completed:
                start.tokenizer = _trained_tokenizer(out, dev)
            if name in completed:
                continue
            loop = _loop_settings(name, init, settings, max_minutes, save_minutes)
            history = train_stage(_stage(name, start, out), train_windows, val_windows, loop, dev, state_dir,
                                  run, completed,
                                  resume=saved is not None and saved.stage == name and name not in completed,
                                  progress=progress, should_stop=should_stop)
            if history.stopped == "interrupted":
                return _write_record(out, run, completed | {name: history}, "interrupted", dev, max_minutes, began)
            completed = completed | {name: history}
            saved = None
    outputs = _complete_outputs(out, start, init, settings)
    evaluation = None
    if evaluate is not None and (out / "model").is_dir():
        base = checkpoints.select(init.base, init.tokenizer) if init.base is not None else None
        evaluation = evaluate(EvaluationRequest(out / "model", out / "tokenizer", start.max_context, base,
                                                tuple(series), split.val_from, settings.lookback, settings.horizon))
    return _write_record(out, run, completed, "finished", dev, max_minutes, began, outputs, evaluation)


def _saved_state(out: Path, state_dir: Path, resume: bool, max_minutes: float | None,
                 save_minutes: float) -> SavedState | None:
    """The state saved in run folder `out` (None: none); refused when it would be overwritten, is missing for
    `resume`, or the time limits are not positive."""
    saved = read_meta(state_dir)
    if saved is not None and not resume:
        raise InvalidInputError(f"{out} already holds a training run; pass --resume to continue it, delete its "
                                f"folder {state_dir} to start again there, or choose another --out folder")
    if saved is None and resume:
        raise InvalidInputError(f"{out} holds no training state to resume; run without --resume to start one")
    if max_minutes is not None and not max_minutes > 0:
        raise InvalidInputError(f"--max-minutes must be more than 0, got {max_minutes}")
    if not save_minutes > 0:
        raise InvalidInputError(f"--save-minutes must be more than 0, got {save_minutes}")
    return saved


def _check_start(start: Start, init: Init, settings: TrainSettings) -> None:
    """Refuse windows longer than the model's context, and a predictor from scratch without a trained tokenizer."""
    if settings.lookback + settings.horizon > start.max_context:
        raise InvalidInputError(f"a window of --lookback {settings.lookback} + --horizon {settings.horizon} rows does "
                                f"not fit the model's context of {start.max_context}; shorten one of them")
    if init.scratch is not None and settings.stage == "predictor" and init.tokenizer is None:
        raise InvalidInputError("a predictor trained from scratch needs a trained tokenizer: pass --tokenizer "
                                "(hub id or directory), or --stage both")


def _windows(series: list[Series], split: Split, settings: TrainSettings,
             start: Start) -> tuple[Windows, Windows, RunDescription]:
    """The training and validation windows, and the run they make; refused when a batch finds too few windows."""
    train_windows, val_available = make_windows(series, split, settings.lookback, settings.horizon)
    val_windows = val_available.subset(settings.val_windows)
    if len(train_windows) < settings.batch_size:
        raise InvalidInputError(f"there are {len(train_windows)} training windows, fewer than --batch-size "
                                f"{settings.batch_size}; lower it, or use more data before the split")
    run = RunDescription.model_validate(
        {"data": [s.describe() for s in series],
         "split": {**split.describe(), "train_windows": len(train_windows), "val_windows": len(val_windows),
                   "val_windows_available": len(val_available)},
         "settings": dataclasses.asdict(settings), "init": start.described, "max_context": start.max_context})
    return train_windows, val_windows, run


def _trained_tokenizer(out: Path, device: torch.device) -> torch.nn.Module:
    """The tokenizer stage's result, for the predictor stage of a resumed run; one line saying what to do if broken."""
    try:
        return checkpoints.load_tokenizer(str(out / "tokenizer"), device=str(device))
    except WeightsUnavailableError as error:
        raise WeightsUnavailableError(f"the run in {out} cannot continue: {error}. Delete that folder to start the "
                                      "run again there, or pass another --out folder") from None


def _loop_settings(name: str, init: Init, settings: TrainSettings, max_minutes: float | None,
                   save_minutes: float) -> LoopSettings:
    defaults = STAGE_DEFAULTS[name]
    lr = settings.lr or (defaults.lr_scratch if init.scratch is not None else defaults.lr_finetune)
    return LoopSettings(settings.batch_size, settings.epochs, settings.max_steps, max_minutes, lr, defaults.betas,
                        WEIGHT_DECAY, defaults.clip_norm, settings.val_every, settings.patience, settings.seed,
                        save_minutes)


def _stage(name: str, start: Start, out: Path) -> Stage:
    """The stage's module, its batch losses and where its best weights go."""
    if name == "tokenizer":
        return Stage(name, start.tokenizer, lambda x, stamp: start.tokenizer.training_losses(x),
                     STAGE_DEFAULTS[name].metric,
                     lambda: checkpoints.save_checkpoint(start.tokenizer, out / "tokenizer"))
    tokenizer = start.tokenizer.eval().requires_grad_(False)  # frozen: ids as inference makes them

    def losses(x: torch.Tensor, stamp: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            s1, s2 = tokenizer.encode(x)  # (B, W) each
        return start.predictor.training_losses(s1, s2, stamp)

    return Stage(name, start.predictor, losses, STAGE_DEFAULTS[name].metric,
                 lambda: checkpoints.save_checkpoint(start.predictor, out / "model"))


def _complete_outputs(out: Path, start: Start, init: Init, settings: TrainSettings) -> dict:
    """Save the untrained half where that makes a loadable pair; say where each half of the folder came from."""
    trained = STAGES[settings.stage]
    outputs = {name: "trained" for name in trained}
    if "tokenizer" not in trained:
        checkpoints.save_checkpoint(start.tokenizer, out / "tokenizer")
        outputs["tokenizer"] = "copied from the starting tokenizer"
    if "predictor" not in trained:
        if init.scratch is None:
            checkpoints.save_checkpoint(start.predictor, out / "model")
            outputs["predictor"] = "copied from the base model (not trained on the new tokenizer's ids)"
        else:
            outputs["predictor"] = "none: a predictor from scratch was not trained"
    return outputs


def _write_record(out: Path, run: RunDescription, stages: dict[str, StageHistory], status: str, device: torch.device,
                  max_minutes: float | None, began: float, outputs: dict[str, str] | None = None,
                  evaluation: Evaluation | dict | None = None) -> TrainingRecord:
    """Write record.json: the run, each stage's history, where the outputs came from, speed, time, device."""
    record = TrainingRecord(
        **dict(run), status=status, stages=stages, outputs=outputs,
        windows_per_second={name: s.windows_per_second for name, s in stages.items()},
        seconds=sum(s.seconds for s in stages.values()), seconds_this_invocation=time.monotonic() - began,
        max_minutes=max_minutes, device=str(device), torch=torch.__version__, threads=torch.get_num_threads(),
        evaluation=None if evaluation is None else Evaluation.model_validate(evaluation))
    out.mkdir(parents=True, exist_ok=True)
    (out / checkpoints.RECORD).write_text(record.model_dump_json(indent=1))
    return record


@contextmanager
def _deterministic() -> Iterator[None]:
    """torch's deterministic algorithms for the run (warnings, not errors, where an op has none), then as before."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
