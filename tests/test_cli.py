"""`python -m kronos forecast`: JSON on stdout, one line on stderr and exit status 2 for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import PARITY

MODEL = ["--model", str(PARITY / "model"), "--tokenizer", str(PARITY / "tokenizer")]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kronos", *args], capture_output=True, text=True, timeout=120,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def test_forecast_from_csv_prints_the_api_json():
    out = run("forecast", "--csv", str(PARITY / "input.csv"), *MODEL, "--horizon", "4", "--samples", "5",
              "--seed", "11", "--hour-idx", "2", "--all-samples", "--top-p", "0.8", "--temperature", "0.9")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["hour_idx"] == 2 and d["seed"] == 11 and len(d["upside_probability_all_hours"]) == 4
    assert len(d["all_samples"]["close"]) == 5 and len(d["all_samples"]["close"]["pred-5"]) == 4
    assert d["settings"]["top_p"] == 0.8 and d["settings"]["temperature"] == 0.9


def test_json_input_in_the_seed_format_gives_the_same_answer_as_csv(tmp_path):
    frame = pd.read_csv(PARITY / "input.csv")
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(frame.to_dict(orient="list")))
    common = [*MODEL, "--horizon", "3", "--samples", "3", "--seed", "2"]
    from_json = run("forecast", "--json", str(path), *common)
    from_csv = run("forecast", "--csv", str(PARITY / "input.csv"), *common)
    assert from_json.returncode == 0, from_json.stderr
    assert json.loads(from_json.stdout)["predictions"] == json.loads(from_csv.stdout)["predictions"]


@pytest.mark.parametrize("args,message", [
    (["--csv", "/no/such.csv", *MODEL], "no/such.csv"),
    (["--csv", str(PARITY / "input.csv"), *MODEL, "--horizon", "0"], "horizon must be between 1"),
    (["--csv", str(PARITY / "input.csv"), "--model", "mini"], "Kronos"),
    (["--csv", str(PARITY / "input.csv"), "--model", "/no/such/dir"], "/no/such/dir"),
    (["--csv", str(PARITY / "input.csv"), *MODEL, "--samples", "x"], "invalid int value"),
    (["--csv", str(PARITY / "meta.json"), *MODEL], "timestamps"),
    (["--source", "store", "--store", "{tmp}/empty.sqlite", *MODEL], "python -m kronos import"),
])
def test_bad_input_is_one_line_on_stderr_with_status_2(args, message, tmp_path):
    out = run("forecast", *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert out.returncode == 2
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_import_then_forecast_from_the_store(tmp_path):
    store = str(tmp_path / "candles.sqlite")
    imported = run("import", str(PARITY / "input.csv"), "--store", store, "--symbol", "SYN/USD")
    assert imported.returncode == 0, imported.stderr
    assert "200 new of 200" in imported.stdout
    again = run("import", str(PARITY / "input.csv"), "--store", store, "--symbol", "SYN/USD")
    assert "0 new of 200" in again.stdout
    out = run("forecast", "--source", "store", "--store", store, "--symbol", "SYN/USD", *MODEL,
              "--horizon", "2", "--samples", "2", "--seed", "1")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)["data"]
    assert data["source"] == "store" and data["symbol"] == "SYN/USD" and data["rows"] == 200


def test_a_calibrated_backtest_whose_last_forecast_would_pass_2262_exits_2_in_one_line(tmp_path):
    from data_frames import candle_frame

    csv = tmp_path / "daily.csv"
    candle_frame(90, start="2262-01-01", step="D").to_csv(csv, index=False)  # the last row opens 2262-03-31
    out = run("backtest", "--csv", str(csv), *MODEL, "--store", str(tmp_path / "s.sqlite"), "--origins", "2",
              "--every", "5", "--lookback", "40", "--horizon", "20", "--samples", "2", "--calibrate")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "would pass 2262-04-11" in out.stderr.strip().splitlines()[-1]


def test_a_forecast_where_no_step_fits_before_2262_says_none_fit(tmp_path):
    from data_frames import candle_frame

    csv = tmp_path / "daily.csv"
    candle_frame(64, start="2262-02-07", step="D").to_csv(csv, index=False)  # the last row opens 2262-04-11
    out = run("forecast", "--csv", str(csv), *MODEL, "--horizon", "1", "--samples", "2", "--lookback", "40")
    error = out.stderr.splitlines()[-1]
    assert out.returncode == 2 and error.startswith("error: ") and out.stderr.count("error") == 1
    assert error.endswith("none fit: give earlier times") and "at most 0 steps" not in error
