"""A training run's resumable state without pickle: tensors in a safetensors file, everything else in JSON.

The tensors are the module's weights, the optimizer's per-parameter state and the torch random
generators' states (uint8 tensors); the JSON holds the optimizer's hyper-parameters, counters, loss
history and settings (kronos.schemas.training.SavedState). Both files are written under temporary names and
then renamed, the JSON last; its `step` must equal the one stored in the safetensors metadata, so a torn save is
detected on load. Files that cannot be read back are reported in one line that says what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from kronos.errors import InvalidInputError
from kronos.schemas.training import SavedState, read

TENSORS, META = "state.safetensors", "state.json"


def save_state(directory: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer, saved: SavedState) -> None:
    """Write the module, the optimizer, the random generators and `saved` (the JSON part) to directory."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"module.{k}": v.detach().contiguous() for k, v in module.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    for index, values in optimizer_state["state"].items():
        tensors.update({f"optimizer.{index}.{name}": torch.as_tensor(v).contiguous() for name, v in values.items()})
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file({k: v.cpu() for k, v in tensors.items()}, str(directory / (TENSORS + ".tmp")),
              metadata={"step": str(saved.step)})
    (directory / (META + ".tmp")).write_text(saved.model_dump_json(indent=1))
    os.replace(directory / (TENSORS + ".tmp"), directory / TENSORS)
    os.replace(directory / (META + ".tmp"), directory / META)


def unusable(directory: Path, why: str) -> InvalidInputError:
    """The one-line error for a state folder that cannot be resumed, saying how to start again."""
    return InvalidInputError(f"the training state in {directory} cannot be used: {why}; delete that folder to start "
                             f"the run again there (or pass another --out folder)")


def read_meta(directory: Path) -> SavedState | None:
    """The saved JSON part, or None when the directory holds no state; InvalidInputError when it is unreadable."""
    path = directory / META
    if not path.exists():
        return None
    try:
        return read(SavedState, path)
    except ValueError as error:
        raise unusable(directory, f"{META} {error}") from None


def load_state(directory: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> SavedState:
    """Restore the module, the optimizer and the random generators saved by `save_state`; return the JSON part."""
    saved = read_meta(directory)
    if saved is None:
        raise InvalidInputError(f"{directory} holds no training state to resume; start the run without --resume")
    try:
        with safe_open(str(directory / TENSORS), "pt") as stored:
            if (stored.metadata() or {}).get("step") != str(saved.step):
                raise unusable(directory, "it is torn (its two files disagree)")
            tensors = {key: stored.get_tensor(key) for key in stored.keys()}
        _restore(tensors, module, optimizer, saved)
    except (SafetensorError, OSError, RuntimeError, KeyError, ValueError) as error:
        if isinstance(error, InvalidInputError):
            raise
        raise unusable(directory, f"{TENSORS} does not hold this run's weights ({type(error).__name__}: "
                                  f"{' '.join(str(error).split()[:20])})") from None
    return saved


def _restore(tensors: dict[str, torch.Tensor], module: torch.nn.Module, optimizer: torch.optim.Optimizer,
             saved: SavedState) -> None:
    """Put the saved tensors back: the module's weights, the optimizer's state and groups, the random generators."""
    device = next(module.parameters()).device
    module.load_state_dict({k[len("module."):]: v for k, v in tensors.items() if k.startswith("module.")}, strict=True)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value if name == "step" else value.to(device)
    optimizer.load_state_dict({"state": state, "param_groups": saved.optimizer_groups})
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(sum(k.startswith("rng.cuda.") for k in tensors))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
