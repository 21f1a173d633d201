"""Finding and loading checkpoints: presets, directories, the offline hub, and the errors that say what to do."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys

import pytest
import torch

from kronos import Forecaster, InvalidInputError, WeightsUnavailableError
from kronos import checkpoints
from kronos.model import PredictorConfig

from conftest import PARITY


@pytest.mark.parametrize("name,model,tokenizer,context", [
    ("mini", "NeoQuasar/Kronos-mini", "NeoQuasar/Kronos-Tokenizer-2k", 2048),
    ("small", "NeoQuasar/Kronos-small", "NeoQuasar/Kronos-Tokenizer-base", 512),
    ("base", "NeoQuasar/Kronos-base", "NeoQuasar/Kronos-Tokenizer-base", 512),
    ("NeoQuasar/Kronos-small", "NeoQuasar/Kronos-small", "NeoQuasar/Kronos-Tokenizer-base", 512),
])
def test_presets_know_their_tokenizer_and_context(name, model, tokenizer, context):
    assert checkpoints.select(name) == checkpoints.Selection(model, tokenizer, context)
    assert checkpoints.select(name, max_context=64).max_context == 64


def test_a_model_directory_finds_its_sibling_tokenizer():
    chosen = checkpoints.select(str(PARITY / "model"))
    assert chosen.tokenizer == str(PARITY / "tokenizer") and chosen.max_context == checkpoints.DEFAULT_CONTEXT


def test_offline_hub_miss_names_what_was_tried_and_the_way_out(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError) as info:
        Forecaster.from_pretrained("mini")
    message = str(info.value)
    assert "NeoQuasar/Kronos-Tokenizer-2k@26966d0" in message and "offline" in message
    assert "local directory" in message and "KRONOS_MODEL" in message


def test_missing_files_are_named(tmp_path):
    shutil.copytree(PARITY / "model", tmp_path / "model")
    (tmp_path / "model" / "model.safetensors").unlink()
    with pytest.raises(WeightsUnavailableError, match="lacks model.safetensors"):
        checkpoints.load_predictor(str(tmp_path / "model"))


def test_wrong_checkpoint_is_refused_by_strict_loading():
    with pytest.raises(WeightsUnavailableError, match="does not hold a Kronos checkpoint"):
        checkpoints.load_predictor(str(PARITY / "tokenizer"))


def test_shape_mismatch_is_refused(tmp_path):
    shutil.copytree(PARITY / "model", tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    (tmp_path / "model" / "config.json").write_text(json.dumps(config | {"d_model": 64}))
    with pytest.raises(WeightsUnavailableError, match="size mismatch"):
        checkpoints.load_predictor(str(tmp_path / "model"))


def test_unknown_config_keys_warn_and_missing_ones_fail():
    base = json.loads((PARITY / "model" / "config.json").read_text())
    with pytest.warns(UserWarning, match="ignoring unknown config key"):
        PredictorConfig.from_dict(base | {"future_option": 1})
    with pytest.raises(ValueError, match="lacks n_layers"):
        PredictorConfig.from_dict({k: v for k, v in base.items() if k != "n_layers"})


def test_pickled_weights_are_never_read(tmp_path):
    shutil.copytree(PARITY / "model", tmp_path / "model")
    (tmp_path / "model" / "model.safetensors").rename(tmp_path / "model" / "pytorch_model.bin")
    with pytest.raises(WeightsUnavailableError, match="pickled .bin/.pt weights are not loaded"):
        checkpoints.load_predictor(str(tmp_path / "model"))


def test_saved_checkpoint_loads_back_identically(tmp_path):
    model = checkpoints.load_predictor(str(PARITY / "model"))
    checkpoints.save_checkpoint(model, tmp_path / "copy")
    again = checkpoints.load_predictor(str(tmp_path / "copy"))
    for name, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[name])


def test_unavailable_device_is_a_value_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(InvalidInputError, match="device 'cuda' is not available"):
        Forecaster.from_pretrained(str(PARITY / "model"), device="cuda")


@pytest.mark.parametrize("answers", [False, True], ids=["refused", "silent"])
def test_an_unreachable_hub_is_reported_without_retrying_for_minutes(tmp_path, answers):
    """A hub that refuses or never answers (a firewall): the command says so, with what to do, and exits 2."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        if answers:
            listener.listen()  # connections are accepted by the kernel and then never answered
        port = listener.getsockname()[1]
        env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"),
               "HF_ENDPOINT": f"http://127.0.0.1:{port}"}
        out = subprocess.run([sys.executable, "-m", "kronos", "forecast", "--csv", str(PARITY / "input.csv"),
                              "--model", "mini"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2
    assert "could not get NeoQuasar/Kronos-Tokenizer-2k@" in out.stderr  # the tokenizer is asked for first
    assert "hf download NeoQuasar/Kronos-Tokenizer-2k" in out.stderr and "--model/--tokenizer DIR" in out.stderr


def trained_run(folder, name: str = "run1", status: str = "finished", max_context: int = 128):
    """A folder as `python -m kronos train` leaves it: model/, tokenizer/ (the parity checkpoint) and record.json."""
    run = folder / name
    shutil.copytree(PARITY / "model", run / "model")
    shutil.copytree(PARITY / "tokenizer", run / "tokenizer")
    record = {"status": status, "max_context": max_context,
              "data": [{"name": "btc.csv", "first": "2023-01-01T00:00:00", "last": "2025-06-01T00:00:00"}],
              "split": {"val_from": "2025-01-01T00:00:00"}, "stages": {"predictor": {"best": 4.25}},
              "evaluation": {"series": [{"trained": {"crps": [0.01, 0.02]},
                                         "trained_skill": {"crps": [0.1, -0.05]}}]}}
    (run / "record.json").write_text(json.dumps(record))
    return run


def test_training_runs_are_listed_with_their_record_and_context(tmp_path):
    trained_run(tmp_path, "run1")
    trained_run(tmp_path, "half", status="interrupted")
    (run,) = checkpoints.trained_checkpoints(tmp_path)
    assert run.name == "run1" and run.model == tmp_path / "run1" / "model"
    assert run.summary() == ("btc.csv 2023-01-01 to 2025-06-01; validation from 2025-01-01; validation loss 4.250; "
                             "CRPS skill vs random walk at hour 2: -5.0%")
    assert checkpoints.select(str(run.model), str(run.tokenizer)).max_context == 128  # from record.json
    assert checkpoints.select(str(PARITY / "model"), str(PARITY / "tokenizer")).max_context == 512  # no record
