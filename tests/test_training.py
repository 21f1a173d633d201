"""`python -m kronos train`: losses fall, fine-tuning starts from the given weights, checkpoints forecast, windows stay
on their side of the split and see only their lookback, resume is exact, bad arguments are clear."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import PARITY
from data_frames import REAL_DATA, candle_frame, needs_real_data
from safetensors.torch import load_file

from kronos.cli import main
from kronos.data.store import CandleStore
from kronos.model import checkpoints, quantiser_loss_and_codes
from kronos.model.layers import run_blocks
from kronos.training.data import Series, Windows, choose_split, make_windows, read_csv_series
from kronos.training.evaluate import evaluate_on_validation
from kronos.training.loop import Progress
from kronos.training.models import Init, starting_modules
from kronos.training.run import STAGE_DEFAULTS, EvaluationRequest, TrainSettings, train
from kronos.training.state import read_meta

SMALL = dict(lookback=32, horizon=8, batch_size=4, val_every=3, val_windows=8)


def synthetic(rows: int = 240, name: str = "synthetic.csv", start: str = "2024-01-01", seed: int = 0) -> Series:
    return Series.from_frame(name, "csv", candle_frame(rows, start=start, seed=seed))


def load(folder) -> tuple:
    """The tokenizer and predictor of a folder with tokenizer/ and model/, loaded strictly."""
    return checkpoints.load_tokenizer(str(folder / "tokenizer")), checkpoints.load_predictor(str(folder / "model"))


def weights(folder) -> dict[str, torch.Tensor]:
    return {**{f"model.{k}": v for k, v in load_file(str(folder / "model" / "model.safetensors")).items()},
            **{f"tokenizer.{k}": v for k, v in load_file(str(folder / "tokenizer" / "model.safetensors")).items()}}


@pytest.fixture(scope="module")
def btc_slice() -> list[Series]:
    if not REAL_DATA.exists():
        pytest.skip(f"real Binance history not found at {REAL_DATA}")
    series = read_csv_series([str(REAL_DATA)])[0][0]
    return [Series(series.name, series.source, series.stamps[:1200], series.values[:1200], series.features[:1200])]


@pytest.fixture(scope="module")
def trained(btc_slice, tmp_path_factory):
    """A tiny model trained from scratch for a few steps of each stage on 1200 real hours."""
    out = tmp_path_factory.mktemp("tiny")
    settings = TrainSettings(max_steps=40, lr=3e-3, **SMALL | {"batch_size": 8, "val_every": 20})
    record = train(btc_slice, Init(scratch="tiny"), settings, out)
    return out, settings, record


@needs_real_data
def test_a_few_steps_on_real_candles_lower_both_losses(btc_slice, trained):
    out, settings, record = trained
    assert record.status == "finished" and record.evaluation is None
    fresh = starting_modules(Init(scratch="tiny"), settings.seed, torch.device("cpu"))
    tokenizer, predictor = load(out)
    windows, _ = make_windows(btc_slice, choose_split(btc_slice, None, 0.2), settings.lookback, settings.horizon)
    x, stamp = (torch.from_numpy(a) for a in windows.batch(np.arange(0, len(windows), 25)))
    with torch.no_grad():
        before = fresh.tokenizer.eval().training_losses(x)["recon_full"]
        after = tokenizer.training_losses(x)["recon_full"]
        s1, s2 = tokenizer.encode(x)
        before_ce = fresh.predictor.eval().training_losses(s1, s2, stamp)["loss"]
        after_ce = predictor.training_losses(s1, s2, stamp)["loss"]
    assert after < 0.6 * before and after_ce < 0.8 * before_ce
    for stage in ("tokenizer", "predictor"):
        epochs = record.stages[stage].epochs
        assert epochs and epochs[-1].val and record.windows_per_second[stage] > 0


@needs_real_data
def test_a_trained_checkpoint_forecasts_through_the_cli(trained):
    out = trained[0]
    assert json.loads((out / "record.json").read_text())["data"][0]["rows"] == 1200
    done = subprocess.run([sys.executable, "-m", "kronos", "forecast", "--csv", str(PARITY / "input.csv"),
                           "--model", str(out / "model"), "--tokenizer", str(out / "tokenizer"), "--horizon", "4",
                           "--samples", "3", "--seed", "1", "--lookback", "64"],
                          capture_output=True, text=True, timeout=120,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["upside_probability_all_hours"]) == 4


def test_fine_tuning_starts_from_the_given_weights(parity_input, tmp_path):
    # exactly batch_size training windows before the split, so the first batch is all of them
    split_at = str(parity_input["timestamps"][43])
    settings = TrainSettings(stage="predictor", max_steps=1, val_from=split_at, **SMALL)
    series = [Series.from_frame("input.csv", "csv", parity_input)]
    first: list[Progress] = []
    init = Init(base=str(PARITY / "model"), tokenizer=str(PARITY / "tokenizer"))
    train(series, init, settings, tmp_path, progress=first.append)
    windows, _ = make_windows(series, choose_split(series, settings.val_from, 0.2), 32, 8)
    assert len(windows) == settings.batch_size
    tokenizer, model = load(PARITY)
    x, stamp = (torch.from_numpy(a) for a in windows.batch(np.arange(len(windows))))
    with torch.no_grad():
        expected = model.training_losses(*tokenizer.encode(x), stamp)["loss"].item()
    assert first[0].step == 1 and first[0].loss == pytest.approx(expected, rel=1e-6)
    tuned = load_file(str(tmp_path / "model" / "model.safetensors"))
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in tuned.items()), "one step should change weights"
    assert weights(tmp_path).keys() >= {f"tokenizer.{k}" for k in tokenizer.state_dict()}


def test_windows_stay_inside_their_file_and_side_of_the_split():
    series = [synthetic(240), synthetic(150, "later.csv", start="2024-01-09", seed=1)]
    split = choose_split(series, "2024-01-08 12:00", 0.2)
    train_w, val_w = make_windows(series, split, 32, 8)
    for windows, after in ((train_w, False), (val_w, True)):
        for s, first in windows.starts:
            stamps = series[s].stamps[first:first + 40]
            assert len(stamps) == 40, "a window runs past the end of its file"
            assert (stamps >= split.val_from).all() if after else (stamps < split.val_from).all()
    # the first file has 180 rows before the split and 60 after it; the second lies wholly after it
    assert (len(train_w), len(val_w)) == (180 - 40 + 1, (60 - 40 + 1) + (150 - 40 + 1))


def test_a_window_is_normalised_from_its_lookback_only_exactly_as_a_forecast(forecaster):
    frame = candle_frame(240)
    series = Series.from_frame("synthetic.csv", "csv", frame)
    windows, _ = make_windows([series], choose_split([series], None, 0.3), 32, 8)
    x, _ = windows.batch(np.array([5]))
    first = windows.starts[5, 1]
    prepared = forecaster.prepare(frame.iloc[first:first + 32], horizon=8)  # the engine on the window's lookback
    np.testing.assert_array_equal(x[0, :32], prepared.x)
    changed = np.asfortranarray(series.values * np.where(np.arange(240) >= first + 32, 3.0, 1.0)[:, None])
    other = Windows([Series(series.name, series.source, series.stamps, changed, series.features)], windows.starts,
                    windows.lookback, windows.horizon)
    y, _ = other.batch(np.array([5]))  # every row after the window's lookback has changed
    np.testing.assert_array_equal(x[0, :32], y[0, :32])
    horizon_rows = changed[first + 32:first + 40].astype(np.float32)
    expected = np.clip((horizon_rows - prepared.mean) / (prepared.std + 1e-5), -5, 5)
    np.testing.assert_allclose(y[0, 32:], expected, rtol=1e-6)
    assert not np.allclose(x[0, 32:], y[0, 32:])


def test_resume_continues_where_it_stopped_and_ends_with_the_same_weights(tmp_path):
    series = [synthetic(240)]
    settings = TrainSettings(max_steps=6, **SMALL)
    whole = train(series, Init(scratch="tiny"), settings, tmp_path / "whole")

    def stop_at(stage: str, step: int):
        seen: list[Progress] = []
        return dict(progress=seen.append,
                    should_stop=lambda: bool(seen) and (seen[-1].stage, seen[-1].step) == (stage, step))

    parts = tmp_path / "parts"
    first = train(series, Init(scratch="tiny"), settings, parts, **stop_at("tokenizer", 4))
    assert first.status == "interrupted" and first.stages["tokenizer"].step == 4
    second = train(series, Init(scratch="tiny"), settings, parts, resume=True, **stop_at("predictor", 2))
    assert second.status == "interrupted" and second.stages["predictor"].step == 2
    last = train(series, Init(scratch="tiny"), settings, parts, resume=True)
    assert last.status == "finished"
    for a, b in ((weights(tmp_path / "whole"), weights(parts)),  # the best checkpoints, and the last state: weights,
                 (load_file(str(tmp_path / "whole/state/state.safetensors")),  # optimizer moments, random generators
                  load_file(str(parts / "state/state.safetensors")))):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for stage in ("tokenizer", "predictor"):
        assert whole.stages[stage].validations == last.stages[stage].validations
        assert whole.stages[stage].epochs == last.stages[stage].epochs
    assert "already holds a training run" in _error(tmp_path, ["--scratch", "tiny", "--out", str(parts)])


def test_training_codes_are_the_ids_inference_makes():
    tokenizer = starting_modules(Init(scratch="tiny"), 3, torch.device("cpu")).tokenizer.eval()
    x = torch.randn(2, 20, 6)
    with torch.no_grad():
        z = tokenizer.quant_embed(run_blocks(tokenizer.encoder, tokenizer.embed(x)))  # (2, 20, 8)
        _, codes = quantiser_loss_and_codes(z, tokenizer.config)
        s1, s2 = tokenizer.encode(x)
    np.testing.assert_allclose(codes.abs().numpy(), 8 ** -0.5, rtol=1e-6)
    bits, powers = (codes > 0).long(), 2 ** torch.arange(4)
    assert torch.equal((bits[..., :4] * powers).sum(-1), s1) and torch.equal((bits[..., 4:] * powers).sum(-1), s2)


def _error(tmp_path, args: list[str], csv: bool = True) -> str:
    """Run `train` in-process (on a small synthetic CSV with `csv`); return its one-line error (and check the exit
    status)."""
    path = tmp_path / "candles.csv"
    if csv and not path.exists():
        candle_frame(240).to_csv(path, index=False)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = main(["train", *(["--csv", str(path)] if csv else []), *args])
    assert status == 2
    lines = [line for line in stderr.getvalue().splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize("args, message", [
    ([], "name what to start from: --from"),
    (["--scratch", "tiny", "--val-fraction", "1.5"], "--val-fraction must be between 0 and 1"),
    (["--scratch", "tiny", "--val-from", "2030-01-01"], "outside the data"),
    (["--scratch", "tiny", "--val-from", "soon"], "must be a date"),
    (["--scratch", "tiny", "--lookback", "500", "--horizon", "24"], "does not fit the model's context of 512"),
    (["--scratch", "tiny", "--lookback", "200", "--horizon", "24"], "no training window of 224 rows"),
    (["--scratch", "tiny", "--stage", "predictor"], "needs a trained tokenizer"),
    (["--scratch", "tiny", "--batch-size", "0", "--max-steps", "0"], "--batch-size must be a positive"),
    (["--scratch", "tiny", "--resume"], "holds no training state to resume"),
    (["--scratch", "tiny", "--max-minutes", "0"], "--max-minutes must be more than 0"),
    (["--from", str(PARITY / "model"), "--tokenizer", str(PARITY / "tokenizer"), "--device", "cuda:7"],
     "is not available here"),
])
def test_bad_arguments_give_one_clear_line(args, message, tmp_path):
    assert message in _error(tmp_path, [*args, "--out", str(tmp_path / "out")])


@pytest.mark.parametrize("window, message", [
    (["--lookback", "16", "--horizon", "8"], "lookback must be between 32 and 2048, got 16"),
    (["--lookback", "64", "--horizon", "60"], "horizon must be between 1 and 48, got 60"),
    (["--lookback", "32", "--horizon", "40"], "horizon (40) must be shorter than its lookback (32)")])
def test_an_evaluation_a_backtest_cannot_take_is_refused_before_training(window, message, tmp_path):
    args = ["--scratch", "tiny", *window, "--batch-size", "4", "--max-steps", "1", "--evaluate"]
    assert message in _error(tmp_path, [*args, "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()  # no training started


def test_a_stored_market_trains_through_the_cli(tmp_path, capsys):
    store = tmp_path / "candles.sqlite"
    CandleStore(store).merge(candle_frame(240), "binance", "BTC/USDT", "1h")
    market = ["--store", str(store), "--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1h"]
    status = main(["train", "--scratch", "tiny", *market, "--lookback", "32", "--horizon", "8", "--batch-size", "4",
                   "--max-steps", "2", "--val-windows", "4", "--out", str(tmp_path / "out")])
    assert status == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "finished" and summary["stages"]["predictor"]["steps"] == 2
    record = json.loads((tmp_path / "out" / "record.json").read_text())
    assert record["data"][0] | {"name": "binance BTC/USDT 1h", "source": "store", "rows": 240} == record["data"][0]
    other = ["--scratch", "tiny", *market[:4], "--symbol", "ETH/USDT", "--out", str(tmp_path / "other")]
    assert "has no ETH/USDT 1h candles from binance" in _error(tmp_path, other, csv=False)


@needs_real_data
def test_evaluate_backtests_the_validation_period_for_the_new_weights_and_their_base(btc_slice, trained):
    out, settings, _ = trained
    split = choose_split(btc_slice, None, 0.2)
    base = checkpoints.select(str(PARITY / "model"), str(PARITY / "tokenizer"), 128)
    request = EvaluationRequest(out / "model", out / "tokenizer", 512, base, tuple(btc_slice), split.val_from,
                                settings.lookback, settings.horizon)
    (series,) = evaluate_on_validation(request)["series"]
    assert series["first_origin"] >= split.val_from.isoformat()  # every forecast row lies after the split
    assert series["origins"] == (1200 - settings.horizon - 960) // 24 + 1
    for name in ("trained", "trained_calibrated", "base", "random_walk"):
        assert len(series[name]["crps"]) == settings.horizon and set(series[name]["coverage"]) == {"50", "80", "95"}
    assert len(series["trained_skill"]["crps"]) == settings.horizon


class Killed(Exception):
    """What a killed process leaves: nothing after the step it died in (no final save, no record)."""


def test_a_run_killed_before_its_first_validation_resumes_from_its_last_periodic_save(tmp_path):
    series = [synthetic(240)]
    settings = TrainSettings(max_steps=6, **SMALL | {"val_every": 100})  # no validation before the stage's end
    whole = train(series, Init(scratch="tiny"), settings, tmp_path / "whole")

    def kill_at(progress: Progress) -> None:
        if (progress.stage, progress.step) == ("tokenizer", 4):
            raise Killed

    with pytest.raises(Killed):  # a save every step here; every 5 minutes by default (--save-minutes)
        train(series, Init(scratch="tiny"), settings, tmp_path / "killed", progress=kill_at, save_minutes=1e-9)
    assert not (tmp_path / "killed" / "record.json").exists()
    assert read_meta(tmp_path / "killed" / "state").loop.step == 4
    resumed = train(series, Init(scratch="tiny"), settings, tmp_path / "killed", resume=True)
    assert resumed.status == "finished"
    assert resumed.stages["tokenizer"].validations == whole.stages["tokenizer"].validations
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "--save-minutes must be more than 0" in _error(tmp_path, ["--scratch", "tiny", "--save-minutes", "0",
                                                                     "--out", str(tmp_path / "other")])


def _finished_run(tmp_path) -> list[str]:
    """The command line of a short finished run (made in tmp_path/run), to run again with --resume."""
    candle_frame(240).to_csv(tmp_path / "candles.csv", index=False)
    args = ["--scratch", "tiny", "--lookback", "32", "--horizon", "8", "--batch-size", "4", "--max-steps", "2",
            "--val-windows", "4", "--out", str(tmp_path / "run")]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["train", "--csv", str(tmp_path / "candles.csv"), *args]) == 0
    return args


@pytest.mark.parametrize("damaged, message", [
    ("state/state.json", "state.json is not what `python -m kronos train` writes"),
    ("state/state.safetensors", "state.safetensors does not hold this run's weights"),
    ("tokenizer/model.safetensors", "cannot continue"),
])
def test_damaged_files_in_a_run_folder_give_one_line_saying_what_to_do(tmp_path, damaged, message):
    args = _finished_run(tmp_path)
    (tmp_path / "run" / damaged).write_bytes(b"\x00garbage{" * 20)
    line = _error(tmp_path, [*args, "--resume"])
    assert message in line and "pass another --out folder" in line and "elete that folder" in line
    if damaged.startswith("state/"):  # a new run there is not blocked for ever: the message says how, and it works
        assert "delete" in _error(tmp_path, args)
        shutil.rmtree(tmp_path / "run" / "state")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(["train", "--csv", str(tmp_path / "candles.csv"), *args]) == 0


def test_an_evaluated_run_writes_a_typed_record_the_picker_reads(tmp_path):
    series = [synthetic(400)]
    train(series, Init(scratch="tiny"), TrainSettings(max_steps=4, **SMALL), tmp_path / "run",
          evaluate=evaluate_on_validation)
    (run,) = checkpoints.trained_checkpoints(tmp_path).runs
    (evaluated,) = run.record.evaluation.series
    assert evaluated.origins >= 1 and len(evaluated.trained_skill.crps) == SMALL["horizon"]
    assert f"CRPS skill vs random walk at hour {SMALL['horizon']}: {evaluated.trained_skill.crps[-1]:+.1%}" in \
        run.summary()


def test_a_stage_validates_reports_and_stops_on_its_schedule(tmp_path):
    # 153 training windows in batches of 32: 4 steps an epoch; 3 epochs planned (12 steps), stopped at 10
    settings = TrainSettings(epochs=3, max_steps=10, patience=100, **SMALL | {"batch_size": 32})
    seen: list[Progress] = []
    record = train([synthetic(240)], Init(scratch="tiny"), settings, tmp_path, progress=seen.append)
    for stage in ("tokenizer", "predictor"):
        history, shown = record.stages[stage], [p for p in seen if p.stage == stage]
        assert [(p.step, p.steps, p.epoch) for p in shown] == [(s, 10, (s - 1) // 4 + 1) for s in range(1, 11)]
        validations = history.validations  # every val_every (3) steps, at each epoch's end, and at the stop
        assert [(v.step, v.epoch) for v in validations] == [(3, 1), (4, 1), (6, 2), (8, 2), (9, 3), (10, 3)]
        assert [(e.epoch, e.steps, e.partial) for e in history.epochs] == [(1, 4, False), (2, 4, False), (3, 2, True)]
        ends = [shown[3], shown[7], shown[9]]  # an epoch's training loss is the running mean shown at its last step
        assert [e.train_loss for e in history.epochs] == [p.loss for p in ends]
        assert [e.val for e in history.epochs] == [validations[i].losses for i in (1, 3, 5)]
        metric = STAGE_DEFAULTS[stage].metric  # a step shows the latest validation made by its end
        latest = [None, None] + [validations[i].losses[metric] for i in (0, 0, 1, 2, 2, 2, 4, 4)]
        assert [p.val_loss for p in shown] == latest
        best = min(validations, key=lambda v: v.losses[metric])
        assert history.best.model_dump() == {"metric": metric, "value": best.losses[metric], "step": best.step}
        assert (history.stopped, history.step, history.steps, history.windows) == ("max_steps", 10, 10, 320)
    loop = read_meta(tmp_path / "state").loop  # the last save: the predictor's stop, inside its third epoch
    assert (loop.stopped, loop.step, loop.epoch, loop.batch, loop.epoch_batches) == ("max_steps", 10, 2, 2, 0)
    assert (loop.validations, loop.epochs, loop.best) == (history.validations, history.epochs, history.best)
