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
from pathlib import Path

import numpy as np
import torch

from kronos.schemas.training import LoopState, RunDescription, SavedState, StageHistory
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
    per_epoch = len(train) // settings.batch_size
    planned = per_epoch * settings.epochs
    steps = planned if settings.max_steps is None else min(settings.max_steps, planned)
    parameters = [p for p in stage.module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay)
    if resume:
        meta = load_state(state_dir, stage.module, optimizer).loop.model_dump()
    else:
        torch.manual_seed(settings.seed)
        meta = {"step": 0, "epoch": 0, "batch": 0, "steps": steps, "epoch_loss": 0.0, "epoch_batches": 0,
                "epochs": [], "validations": [], "best": None, "bad_validations": 0, "train_seconds": 0.0,
                "seconds": 0.0, "windows": 0, "stopped": None}
    started, budget = time.monotonic(), None if settings.max_minutes is None else settings.max_minutes * 60
    seconds_before, saved_at = meta["seconds"], started

    def save() -> None:
        nonlocal saved_at
        saved_at = time.monotonic()
        meta["seconds"] = seconds_before + saved_at - started
        save_state(state_dir, stage.module, optimizer, SavedState(
            run=run, completed=completed, stage=stage.name, step=meta["step"], loop=LoopState(**meta),
            optimizer_groups=optimizer.state_dict()["param_groups"]))

    def check() -> bool:
        """Validate now; keep a new best; True when early stopping says stop."""
        losses = validate(stage, val, settings.batch_size, device)
        meta["validations"].append({"step": meta["step"], "epoch": meta["epoch"] + 1, "losses": losses})
        value = losses[stage.metric]
        if meta["best"] is None or value < meta["best"]["value"]:
            meta["best"] = {"metric": stage.metric, "value": value, "step": meta["step"]}
            meta["bad_validations"] = 0
            stage.save_best()
        else:
            meta["bad_validations"] += 1
        return meta["bad_validations"] >= settings.patience

    def end_epoch(partial: bool) -> None:
        if meta["epoch_batches"]:
            meta["epochs"].append({"epoch": meta["epoch"] + 1, "steps": meta["epoch_batches"], "partial": partial,
                                   "train_loss": meta["epoch_loss"] / meta["epoch_batches"],
                                   "val": meta["validations"][-1]["losses"]})
        meta["epoch_loss"], meta["epoch_batches"] = 0.0, 0

    def validated_now() -> bool:
        return bool(meta["validations"]) and meta["validations"][-1]["step"] == meta["step"]

    stopped = None if meta["stopped"] in (None, "interrupted", "max_minutes") else meta["stopped"]  # else it is done
    while stopped is None and meta["epoch"] < settings.epochs:
        order = np.random.default_rng([settings.seed, meta["epoch"]]).permutation(len(train))
        while stopped is None and meta["batch"] < per_epoch:
            if meta["step"] >= steps:
                stopped = "max_steps"
            elif should_stop is not None and should_stop():
                stopped = "interrupted"
            elif budget is not None and time.monotonic() - started >= budget:
                stopped = "max_minutes"
            else:
                tick = time.perf_counter()
                chosen = order[meta["batch"] * settings.batch_size:(meta["batch"] + 1) * settings.batch_size]
                loss = _step(stage, optimizer, parameters, _tensors(train.batch(chosen), device),
                             learning_rate(meta["step"], steps, settings), settings.clip_norm)
                meta["train_seconds"] += time.perf_counter() - tick
                meta["windows"] += len(chosen)
                meta["step"], meta["batch"] = meta["step"] + 1, meta["batch"] + 1
                meta["epoch_loss"], meta["epoch_batches"] = meta["epoch_loss"] + loss, meta["epoch_batches"] + 1
                if meta["step"] % settings.val_every == 0:
                    stopped = "early_stopping" if check() else None
                    save()
                elif time.monotonic() - saved_at >= settings.save_minutes * 60:
                    save()
                if progress is not None:
                    last = meta["validations"][-1]["losses"][stage.metric] if meta["validations"] else None
                    progress(Progress(stage.name, meta["step"], steps, meta["epoch"] + 1,
                                      meta["epoch_loss"] / meta["epoch_batches"], last,
                                      meta["windows"] / max(meta["train_seconds"], 1e-9)))
        if stopped is None:
            if not validated_now():
                stopped = "early_stopping" if check() else None
            end_epoch(partial=False)
            meta["epoch"], meta["batch"] = meta["epoch"] + 1, 0
            save()
    if stopped != "interrupted":
        if not validated_now():  # a final validation (already there when the stage had finished before)
            check()
        end_epoch(partial=True)
    meta["stopped"] = stopped or "epochs"
    save()
    return StageHistory.model_validate({key: meta[key] for key in StageHistory.model_fields if key in meta} | {
        "windows_per_second": meta["windows"] / max(meta["train_seconds"], 1e-9)})


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
