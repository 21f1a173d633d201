"""One training stage: AdamW with linear warm-up then cosine decay, gradient clipping, validation, early stopping.

The loop is deterministic for a seed: each epoch's window order comes from a numpy Generator seeded
with (seed, epoch), dropout from torch's generator seeded at the stage's start. Its state (weights,
optimizer, generators, counters, history) is saved at every validation, every `save_minutes` of training in
between, and when it stops, so a stopped run resumes exactly where it was (the resumed weights equal those of an
uninterrupted run) and a killed one loses at most those minutes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from kronos.schemas.training import (
    Best,
    EpochResult,
    LoopState,
    RunDescription,
    SavedState,
    StageHistory,
    Stopped,
    ValidationResult,
)
from kronos.training.data import Windows
from kronos.training.state import load_state, save_state

Losses = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class LoopSettings:
    """How one stage trains; `lr` is the peak learning rate, reached after the warm-up."""

    batch_size: int
    epochs: int
    max_steps: int | None
    max_minutes: float | None
    lr: float
    betas: tuple[float, float]
    weight_decay: float
    clip_norm: float
    val_every: int
    patience: int
    seed: int
    save_minutes: float  # the longest wall time between two saves of the state
    warmup_fraction: float = 0.03  # of the planned steps, as the reference's one-cycle schedule


@dataclass(frozen=True)
class Stage:
    """What a stage trains: the module, its losses for a batch (rows (B, W, 6), stamps (B, W, 5)) with `loss` the
    one minimised, the validation loss early stopping watches, and what to do with a new best."""

    name: str
    module: torch.nn.Module
    losses: Losses
    metric: str
    save_best: Callable[[], None]


@dataclass(frozen=True)
class Progress:
    """Where a stage is, after each optimiser step: for a progress bar."""

    stage: str
    step: int
    steps: int
    epoch: int
    loss: float  # mean training loss of the epoch so far
    val_loss: float | None  # the latest validation value of the stage's metric
    windows_per_second: float


def learning_rate(step: int, steps: int, settings: LoopSettings) -> float:
    """Linear warm-up from lr/10 to lr over the first warmup_fraction of `steps`, then cosine decay towards 0."""
    warmup = max(1, round(settings.warmup_fraction * steps))
    if step < warmup:
        return settings.lr * (0.1 + 0.9 * (step + 1) / warmup)
    return settings.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def validate(stage: Stage, windows: Windows, batch_size: int, device: torch.device) -> dict[str, float]:
    """Every loss of the stage averaged over `windows` (weighted by windows), in eval mode without gradients."""
    stage.module.eval()
    sums: dict[str, float] = {}
    with torch.no_grad():
        for first in range(0, len(windows), batch_size):
            indices = np.arange(first, min(first + batch_size, len(windows)))
            losses = stage.losses(*_tensors(windows.batch(indices), device))
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value.item() * len(indices)
    return {name: total / len(windows) for name, total in sums.items()}


def train_stage(stage: Stage, train: Windows, val: Windows, settings: LoopSettings, device: torch.device,
                state_dir: Path, run: RunDescription, completed: dict[str, StageHistory], *, resume: bool = False,
                progress: Callable[[Progress], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> StageHistory:
    """Train one stage until its epochs, max_steps, max_minutes, early stopping or `should_stop()` (then it can resume).

    Returns the stage's history: epochs (train and validation losses), validations, best, why it stopped, time.
    """
    saved = partial(SavedState, run=run, completed=completed, stage=stage.name)
    return _Loop(stage, train, val, settings, device, state_dir, saved, resume, progress, should_stop).run()


class _Loop:
    """A stage under way: its module, its optimiser and its typed state (`LoopState`, the shape its saves keep)."""

    def __init__(self, stage: Stage, train: Windows, val: Windows, settings: LoopSettings, device: torch.device,
                 state_dir: Path, saved: Callable[..., SavedState], resume: bool,
                 progress: Callable[[Progress], None] | None, should_stop: Callable[[], bool] | None):
        self.stage, self.train, self.val, self.settings, self.device = stage, train, val, settings, device
        self.state_dir, self.saved, self.progress, self.should_stop = state_dir, saved, progress, should_stop
        self.per_epoch = len(train) // settings.batch_size
        planned = self.per_epoch * settings.epochs
        self.steps = planned if settings.max_steps is None else min(settings.max_steps, planned)
        self.parameters = [p for p in stage.module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.parameters, lr=settings.lr, betas=settings.betas,
                                           weight_decay=settings.weight_decay)
        if resume:
            self.state = load_state(state_dir, stage.module, self.optimizer).loop
        else:
            torch.manual_seed(settings.seed)
            self.state = LoopState(step=0, epoch=0, batch=0, steps=self.steps, epoch_loss=0.0, epoch_batches=0,
                                   epochs=[], validations=[], best=None, bad_validations=0, train_seconds=0.0,
                                   seconds=0.0, windows=0, stopped=None)
        self.started = self.saved_at = time.monotonic()
        self.seconds_before = self.state.seconds
        self.budget = None if settings.max_minutes is None else settings.max_minutes * 60

    def run(self) -> StageHistory:
        """Epochs until a reason to stop; a last validation unless interrupted; the state saved; the history."""
        state = self.state
        stopped = None if state.stopped in (None, "interrupted", "max_minutes") else state.stopped  # else it is done
        while stopped is None and state.epoch < self.settings.epochs:
            stopped = self._epoch()
            if stopped is None:
                if not self._validated_now():
                    stopped = "early_stopping" if self._validate() else None
                self._end_epoch(partial=False)
                state.epoch, state.batch = state.epoch + 1, 0
                self._save()
        if stopped != "interrupted":
            if not self._validated_now():  # a final validation (already there when the stage had finished before)
                self._validate()
            self._end_epoch(partial=True)
        state.stopped = stopped or "epochs"
        self._save()
        shared = StageHistory.model_fields.keys() & LoopState.model_fields.keys()
        return StageHistory(**{key: getattr(state, key) for key in shared}, windows_per_second=self._speed())

    def _epoch(self) -> Stopped | None:
        """The current epoch's remaining batches, each reported; why the stage stops inside them, else None."""
        order = np.random.default_rng([self.settings.seed, self.state.epoch]).permutation(len(self.train))
        while self.state.batch < self.per_epoch:
            stopped = self._why_stop()
            if stopped is not None:
                return stopped
            stopped = self._train_batch(order)
            if self.progress is not None:
                self.progress(self._progress())
            if stopped is not None:
                return stopped
        return None

    def _why_stop(self) -> Stopped | None:
        """Why the stage stops before its next step (steps done, asked to, out of time), or None."""
        if self.state.step >= self.steps:
            return "max_steps"
        if self.should_stop is not None and self.should_stop():
            return "interrupted"
        if self.budget is not None and time.monotonic() - self.started >= self.budget:
            return "max_minutes"
        return None

    def _train_batch(self, order: np.ndarray) -> Stopped | None:
        """One step on the epoch's next batch, then a validation (and save) or a periodic save when due."""
        state, settings = self.state, self.settings
        tick = time.perf_counter()
        chosen = order[state.batch * settings.batch_size:(state.batch + 1) * settings.batch_size]
        loss = _step(self.stage, self.optimizer, self.parameters, _tensors(self.train.batch(chosen), self.device),
                     learning_rate(state.step, self.steps, settings), settings.clip_norm)
        state.train_seconds += time.perf_counter() - tick
        state.windows += len(chosen)
        state.step, state.batch = state.step + 1, state.batch + 1
        state.epoch_loss, state.epoch_batches = state.epoch_loss + loss, state.epoch_batches + 1
        stopped = None
        if state.step % settings.val_every == 0:
            stopped = "early_stopping" if self._validate() else None
            self._save()
        elif time.monotonic() - self.saved_at >= settings.save_minutes * 60:
            self._save()
        return stopped

    def _validate(self) -> bool:
        """Validate now; keep a new best; True when early stopping says stop."""
        state, metric = self.state, self.stage.metric
        losses = validate(self.stage, self.val, self.settings.batch_size, self.device)
        state.validations.append(ValidationResult(step=state.step, epoch=state.epoch + 1, losses=losses))
        if state.best is None or losses[metric] < state.best.value:
            state.best = Best(metric=metric, value=losses[metric], step=state.step)
            state.bad_validations = 0
            self.stage.save_best()
        else:
            state.bad_validations += 1
        return state.bad_validations >= self.settings.patience

    def _validated_now(self) -> bool:
        return bool(self.state.validations) and self.state.validations[-1].step == self.state.step

    def _end_epoch(self, partial: bool) -> None:
        """Record the epoch's mean training loss (when it had a step) and start the next epoch's sums."""
        state = self.state
        if state.epoch_batches:
            state.epochs.append(EpochResult(epoch=state.epoch + 1, steps=state.epoch_batches, partial=partial,
                                            train_loss=state.epoch_loss / state.epoch_batches,
                                            val=state.validations[-1].losses))
        state.epoch_loss, state.epoch_batches = 0.0, 0

    def _save(self) -> None:
        self.saved_at = time.monotonic()
        self.state.seconds = self.seconds_before + self.saved_at - self.started
        save_state(self.state_dir, self.stage.module, self.optimizer, self.saved(
            step=self.state.step, loop=self.state, optimizer_groups=self.optimizer.state_dict()["param_groups"]))

    def _progress(self) -> Progress:
        state = self.state
        last = state.validations[-1].losses[self.stage.metric] if state.validations else None
        return Progress(self.stage.name, state.step, self.steps, state.epoch + 1,
                        state.epoch_loss / state.epoch_batches, last, self._speed())

    def _speed(self) -> float:
        return self.state.windows / max(self.state.train_seconds, 1e-9)


def _tensors(batch: tuple[np.ndarray, np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x, stamp = batch
    return torch.from_numpy(x).to(device), torch.from_numpy(stamp).to(device)


def _step(stage: Stage, optimizer: torch.optim.Optimizer, parameters: list[torch.nn.Parameter],
          batch: tuple[torch.Tensor, torch.Tensor], lr: float, clip_norm: float) -> float:
    """One optimiser step on a batch at learning rate `lr`; returns the batch's loss."""
    stage.module.train()
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = stage.losses(*batch)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
    optimizer.step()
    return loss.item()
