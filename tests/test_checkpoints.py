"""Finding and loading checkpoints: presets, directories, the offline hub, and the errors that say what to do."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import PARITY
from data_frames import candle_frame

from kronos import Forecaster, InvalidInputError, WeightsUnavailableError
from kronos.cli import main
from kronos.model import PredictorConfig, checkpoints
from kronos.settings import Environment, ModelChoice


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


def trained_run(folder, name: str = "run1", *options: str) -> Path:
    """A folder made as a user makes one: a real (tiny) `python -m kronos train` run into `folder/name`."""
    csv = folder / f"{name}.csv"  # beside the runs, as a file: the models folder lists only its sub-folders
    folder.mkdir(parents=True, exist_ok=True)
    candle_frame(400).to_csv(csv, index=False)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = main(["train", "--scratch", "tiny", "--csv", str(csv), "--lookback", "64", "--horizon", "8",
                       "--max-steps", "40", "--out", str(folder / name), *options])
    assert status == 0
    return folder / name


def test_a_real_training_run_is_listed_with_its_record_and_context(tmp_path):
    run_dir = trained_run(tmp_path, "btcrun")
    written = json.loads((run_dir / "record.json").read_text())
    (run,) = checkpoints.trained_checkpoints(tmp_path).runs
    assert run.name == "btcrun" and run.model == run_dir / "model" and run.tokenizer == run_dir / "tokenizer"
    best = written["stages"]["predictor"]["best"]["value"]
    assert run.summary() == (f"btcrun.csv 2024-01-01 to 2024-01-17; validation from "
                             f"{written['split']['val_from'][:10]}; validation loss {best:.3f}")  # no server path
    record = run.record.model_copy(update={"max_context": 128})
    (run_dir / "record.json").write_text(record.model_dump_json())
    assert checkpoints.select(str(run.model), str(run.tokenizer)).max_context == 128  # from record.json
    assert checkpoints.select(str(PARITY / "model"), str(PARITY / "tokenizer")).max_context == 512  # no record


def test_broken_or_foreign_records_are_skipped_with_a_one_line_note(tmp_path):
    trained_run(tmp_path, "good")
    for name, text in (("list", "[]"), ("garbage", "{not json"), ("foreign", '{"status": "finished", "loss": 1}')):
        shutil.copytree(tmp_path / "good", tmp_path / name)
        (tmp_path / name / "record.json").write_text(text)
    shutil.copytree(tmp_path / "good", tmp_path / "unreadable")
    (tmp_path / "unreadable" / "record.json").unlink()
    (tmp_path / "unreadable" / "record.json").mkdir()
    found = checkpoints.trained_checkpoints(tmp_path)
    assert [run.name for run in found.runs] == ["good"]
    notes = dict(note.split(": ", 1) for note in found.skipped)
    assert sorted(notes) == ["foreign", "garbage", "list", "unreadable"]
    assert all("\n" not in note and str(tmp_path) not in note for note in found.skipped)
    assert notes["list"].startswith("its record.json is not what `python -m kronos train` writes")
    assert notes["unreadable"].startswith("its record.json cannot be read")
    assert checkpoints.select(str(tmp_path / "list" / "model")).max_context == checkpoints.DEFAULT_CONTEXT


def test_who_may_choose_which_weights(tmp_path):
    """Presets, the models folder's runs and the operator's model always; any other directory or hub id only with
    KRONOS_ALLOW_ANY_MODEL=1."""
    run_dir = trained_run(tmp_path / "models", "run1")
    runs = checkpoints.trained_checkpoints(tmp_path / "models")
    operator = Environment.read({"KRONOS_MODEL": str(PARITY / "model"), "KRONOS_TOKENIZER": str(PARITY / "tokenizer")})
    choices = {"mini": True, "NeoQuasar/Kronos-small": True, "base": True,
               ("mini", "NeoQuasar/Kronos-Tokenizer-2k"): True, ("mini", "/etc"): False,
               (str(run_dir / "model"), str(run_dir / "tokenizer")): True, str(run_dir / "model"): True,
               (str(run_dir / "model"), "/etc"): False, (str(PARITY / "model"), str(PARITY / "tokenizer")): True,
               str(PARITY / "model"): False, "/etc": False, "/nonexistent": False, "someone/any-repo": False,
               str(tmp_path / "models"): False}
    for choice, expected in choices.items():
        model = ModelChoice(*choice) if isinstance(choice, tuple) else ModelChoice(choice)
        assert checkpoints.allowed(model, operator, runs) is expected, choice
        assert checkpoints.allowed(model, replace(operator, allow_any_model=True), runs)
    assert Environment.read({}).allow_any_model is False
    assert Environment.read({"KRONOS_ALLOW_ANY_MODEL": "1"}).allow_any_model is True
    with pytest.raises(WeightsUnavailableError) as etc:
        checkpoints.check_allowed(ModelChoice("/etc"), operator)
    with pytest.raises(WeightsUnavailableError) as nowhere:
        checkpoints.check_allowed(ModelChoice("/nonexistent", "/etc"), operator)
    assert str(etc.value) == str(nowhere.value) == checkpoints.NOT_ALLOWED


@pytest.mark.parametrize("part", ["model", "tokenizer"])
def test_garbage_weights_are_a_one_line_error_not_a_traceback(tmp_path, part):
    shutil.copytree(PARITY, tmp_path / "ckpt")
    (tmp_path / "ckpt" / part / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(WeightsUnavailableError, match="does not hold a Kronos.* checkpoint of the published layout"):
        Forecaster.from_pretrained(str(tmp_path / "ckpt" / "model"), str(tmp_path / "ckpt" / "tokenizer"))


def test_links_name_the_operators_models_by_their_labels_and_resolve_them_back(tmp_path):
    """A preset by its name, a training run as `trained:<run>` (or its bare name), the configured model by its label
    (`server:<label>` where the bare label names another); anything else has no label and resolves as given."""
    run_dir = trained_run(tmp_path / "models", "btcrun")
    shutil.copytree(PARITY, tmp_path / "served")
    runs = checkpoints.trained_checkpoints(tmp_path / "models")
    served = ModelChoice(str(tmp_path / "served" / "model"), str(tmp_path / "served" / "tokenizer"))
    operator = Environment.read({"KRONOS_MODEL": served.model, "KRONOS_TOKENIZER": served.tokenizer})
    trained = ModelChoice(str(run_dir / "model"), str(run_dir / "tokenizer"))
    named = {ModelChoice("mini"): "mini", ModelChoice("small", "NeoQuasar/Kronos-Tokenizer-base"): "small",
             trained: "trained:btcrun", ModelChoice(trained.model): "trained:btcrun", served: "served"}
    for choice, name in named.items():
        assert checkpoints.link_name(choice, operator, runs) == name
        assert checkpoints.allowed(checkpoints.resolve(name, None, operator, runs), operator, runs)
    assert checkpoints.resolve("trained:btcrun", None, operator, runs) == trained
    assert checkpoints.resolve("btcrun", None, operator, runs) == trained  # the name answers give
    assert checkpoints.resolve("served", None, operator, runs) == served
    for other in (ModelChoice("/etc"), ModelChoice(trained.model, "/etc"), ModelChoice("someone/any-repo")):
        assert checkpoints.link_name(other, operator, runs) is None
        assert checkpoints.resolve(other.model, other.tokenizer, operator, runs) == other
    shutil.copytree(PARITY, tmp_path / "btcrun")  # a configured model whose label is a run's name
    clash = Environment.read({"KRONOS_MODEL": str(tmp_path / "btcrun" / "model"),
                              "KRONOS_TOKENIZER": str(tmp_path / "btcrun" / "tokenizer")})
    assert checkpoints.link_name(clash.model, clash, runs) == "server:btcrun"
    assert checkpoints.resolve("server:btcrun", None, clash, runs) == clash.model
    assert checkpoints.resolve("btcrun", None, clash, runs) == trained


def test_weights_errors_name_the_directory_for_the_operator_and_its_run_for_visitors(tmp_path):
    shutil.copytree(PARITY, tmp_path / "btcrun")
    (tmp_path / "btcrun" / "model" / "model.safetensors").unlink()
    (tmp_path / "btcrun" / "tokenizer" / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    for load, part, said in ((checkpoints.load_predictor, "model", "directory btcrun/model lacks model.safetensors"),
                             (checkpoints.load_tokenizer, "tokenizer", "btcrun/tokenizer does not hold a")):
        with pytest.raises(WeightsUnavailableError) as error:
            load(str(tmp_path / "btcrun" / part))
        assert str(tmp_path / "btcrun" / part) in str(error.value)
        assert error.value.public().startswith(said) and str(tmp_path) not in error.value.public()
    with pytest.raises(WeightsUnavailableError) as error:
        checkpoints.select(str(tmp_path / "nowhere"))
    assert error.value.public().startswith("no tokenizer given for model 'nowhere'")
    with pytest.raises(WeightsUnavailableError) as error:
        checkpoints.load_predictor(str(tmp_path / "nowhere"))
    assert error.value.public().startswith("'nowhere' is neither a checkpoint directory nor a hub id")
