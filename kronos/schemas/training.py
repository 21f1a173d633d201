"""What `python -m kronos train` writes into its output folder's record.json, typed once.

kronos.training builds these (the run, each stage's history, the evaluation) and writes the record with
`model_dump_json`; kronos.model.checkpoints reads record.json back through `TrainingRecord.read`, so that the model
picker and the trained context can never disagree with the writer. The run's settings and starting weights
(`settings`, `init`) are kept as written: the resume check compares them whole, nothing reads them by key.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from kronos.schemas.backtest import REFERENCE

Stopped = Literal["max_steps", "max_minutes", "interrupted", "early_stopping", "epochs"]


class Shape(BaseModel):
    """Every model here: unknown keys are refused, so a record from elsewhere is not mistaken for ours."""

    model_config = ConfigDict(extra="forbid")


class SeriesSummary(Shape):
    """One candle series trained on: its name, where it came from, its rows and first and last timestamps."""

    name: str
    source: str
    rows: int
    first: datetime
    last: datetime


class SplitSummary(Shape):
    """Where validation begins, how that was chosen, and the windows on each side."""

    val_from: datetime
    how: str
    train_windows: int
    val_windows: int
    val_windows_available: int


class RunDescription(Shape):
    """What decides a run's numbers besides its seed-driven randomness: data, split, settings, starting weights."""

    data: list[SeriesSummary]
    split: SplitSummary
    settings: dict[str, Any]  # kronos.training.run.TrainSettings, as dataclasses.asdict writes it
    init: dict[str, Any]  # kronos.training.models.Start.described
    max_context: int


class Best(Shape):
    """The best validation value of a stage's early-stopping metric, and the step it was reached at."""

    metric: str
    value: float
    step: int


class ValidationResult(Shape):
    """Every loss of a stage averaged over the validation windows, at a step."""

    step: int
    epoch: int
    losses: dict[str, float]


class EpochResult(Shape):
    """An epoch's mean training loss and the validation losses at its end (partial: stopped inside it)."""

    epoch: int
    steps: int
    partial: bool
    train_loss: float
    val: dict[str, float]


class StageHistory(Shape):
    """One stage's history: planned and done steps, epochs, validations, best, why it stopped, time, speed."""

    steps: int
    step: int
    epochs: list[EpochResult]
    validations: list[ValidationResult]
    best: Best | None
    stopped: Stopped
    seconds: float
    train_seconds: float
    windows: int
    windows_per_second: float


class HourlyScores(Shape):
    """Scores per hour ahead of one forecaster over the validation origins (None where undefined)."""

    crps: list[float | None]
    brier_upside: list[float | None]
    coverage: dict[str, list[float | None]]


class Skill(Shape):
    """Skill per hour ahead against the random walk (1 - score / the random walk's score)."""

    crps: list[float | None]
    brier_upside: list[float | None]


class SeriesEvaluation(Shape):
    """The validation backtest of one series: the trained weights, their base when fine-tuned, and each baseline
    (kronos.evaluation.registry) under its name: the random walk always, the others absent from older records (any
    key but the fields is a baseline's HourlyScores)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, HourlyScores | None]  # the baselines'

    name: str
    origins: int
    first_origin: datetime
    last_origin: datetime
    baseline_window: int
    trained: HourlyScores
    trained_calibrated: HourlyScores
    trained_skill: Skill
    trained_calibrated_skill: Skill
    base: HourlyScores | None = None
    base_calibrated: HourlyScores | None = None
    base_skill: Skill | None = None
    base_calibrated_skill: Skill | None = None
    # the combined forecast (kronos.evaluation.issuing); absent in older records
    best_baseline: str | None = None
    trained_combined: HourlyScores | None = None
    trained_combined_skill: Skill | None = None
    trained_combined_weights: dict[str, list[float | None]] | None = None
    base_combined: HourlyScores | None = None
    base_combined_skill: Skill | None = None
    base_combined_weights: dict[str, list[float | None]] | None = None

    @model_validator(mode="after")
    def _reference(self) -> SeriesEvaluation:
        """The baseline skill is measured against is there."""
        if self.__pydantic_extra__.get(REFERENCE) is None:
            raise ValueError(f"the {REFERENCE} baseline's scores are missing")
        return self


class Evaluation(Shape):
    """`--evaluate`: origins every `every` rows of the validation period, `samples` paths each, per series."""

    every: int
    samples: int
    series: list[SeriesEvaluation]


class TrainingRecord(RunDescription):
    """record.json: the run, each stage's history, where the outputs came from, speed, time, device, evaluation."""

    status: Literal["finished", "interrupted"]
    stages: dict[str, StageHistory]
    outputs: dict[str, str] | None
    windows_per_second: dict[str, float]
    seconds: float
    seconds_this_invocation: float
    max_minutes: float | None
    device: str
    torch: str
    threads: int
    evaluation: Evaluation | None



class LoopState(Shape):
    """Where a stage's loop is, as its resumable state keeps it (stopped None: it was saved while running)."""

    step: int
    epoch: int
    batch: int
    steps: int
    epoch_loss: float
    epoch_batches: int
    epochs: list[EpochResult]
    validations: list[ValidationResult]
    best: Best | None
    bad_validations: int
    train_seconds: float
    seconds: float
    windows: int
    stopped: Stopped | None


class SavedState(Shape):
    """state/state.json: the run, the stages done, the stage under way and its loop, the optimiser's groups."""

    run: RunDescription
    completed: dict[str, StageHistory]
    stage: str
    step: int
    loop: LoopState
    optimizer_groups: list[dict[str, Any]]


Read = TypeVar("Read", bound=Shape)


def read(kind: type[Read], path: Path) -> Read:
    """The file at `path` parsed as `kind`; ValueError saying in a few words why it is not one (unreadable, not
    JSON, another shape)."""
    try:
        return kind.model_validate_json(path.read_bytes())
    except OSError as error:
        raise ValueError(f"cannot be read ({error.strerror or error})") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValueError(f"is not what `python -m kronos train` writes ({where + ': ' if where else ''}"
                         f"{first['msg']})") from None
