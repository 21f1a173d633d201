"""A training run's resumable state without pickle: tensors in a safetensors file, everything else in JSON.

The tensors are the module's weights, the optimizer's per-parameter state and the torch random
generators' states (uint8 tensors); the JSON holds the optimizer's hyper-parameters, counters, loss
history and settings. Both files are written under temporary names and then renamed, the JSON last; its
`step` must equal the one stored in the safetensors metadata, so a torn save is detected on load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from kronos.errors import InvalidInputError

TENSORS, META = "state.safetensors", "state.json"


def save_state(directory: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer, meta: dict) -> None:
    """Write the module, the optimizer, the random generators and `meta` (JSON-ready, with a `step`) to directory."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"module.{k}": v.detach().contiguous() for k, v in module.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    for index, values in optimizer_state["state"].items():
        tensors.update({f"optimizer.{index}.{name}": torch.as_tensor(v).contiguous() for name, v in values.items()})
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    meta = {**meta, "optimizer_groups": optimizer_state["param_groups"]}
    save_file({k: v.cpu() for k, v in tensors.items()}, str(directory / (TENSORS + ".tmp")),
              metadata={"step": str(meta["step"])})
    (directory / (META + ".tmp")).write_text(json.dumps(meta, indent=1))
    os.replace(directory / (TENSORS + ".tmp"), directory / TENSORS)
    os.replace(directory / (META + ".tmp"), directory / META)


def read_meta(directory: Path) -> dict | None:
    """The saved JSON part, or None when the directory holds no state."""
    path = directory / META
    return json.loads(path.read_text()) if path.is_file() else None


def load_state(directory: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore the module, the optimizer and the random generators saved by `save_state`; return the JSON part."""
    meta = read_meta(directory)
    if meta is None:
        raise InvalidInputError(f"{directory} holds no training state to resume; start the run without --resume")
    with safe_open(str(directory / TENSORS), "pt") as stored:
        if (stored.metadata() or {}).get("step") != str(meta["step"]):
            raise InvalidInputError(f"the training state in {directory} is torn (its two files disagree); start "
                                    "the run again without --resume, into an empty --out folder")
        tensors = {key: stored.get_tensor(key) for key in stored.keys()}
    device = next(module.parameters()).device
    module.load_state_dict({k[len("module."):]: v for k, v in tensors.items() if k.startswith("module.")}, strict=True)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value if name == "step" else value.to(device)
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_groups"]})
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(sum(k.startswith("rng.cuda.") for k in tensors))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    return meta
