"""Each sampling setting defined once (ForecastSettings' fields), and the KRONOS_* environment read and checked."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError
from streamlit.testing.v1 import AppTest

from kronos.api import create_app
from kronos.api.requests import SamplingQuery
from kronos.cli import main
from kronos.data.store import CandleStore
from kronos.errors import ConfigurationError, InvalidInputError, KronosError
from kronos.schemas.forecast import DataBlock, UsedSettings
from kronos.schemas.markets import ScanQuery
from kronos.settings import FORECAST_DEFAULTS, RANGES, SETTING_NAMES, Environment, ForecastSettings, ModelChoice

ROOT = Path(__file__).resolve().parents[1]


def _schema_bounds(schema: dict) -> tuple:
    return schema["default"], schema["minimum"], schema["maximum"], schema["description"]


@pytest.mark.parametrize("query", [SamplingQuery, ScanQuery])
def test_the_queries_have_the_bounds_defaults_and_help_of_the_settings(query):
    """The API's queries inherit the fields, so their schemas cannot drift from ForecastSettings'."""
    mine, theirs = ForecastSettings.model_json_schema()["properties"], query.model_json_schema()["properties"]
    assert set(SETTING_NAMES) <= set(theirs)
    for name in RANGES:
        assert _schema_bounds(theirs[name]) == _schema_bounds(mine[name])
        assert (mine[name]["default"], mine[name]["minimum"], mine[name]["maximum"]) == \
            (getattr(FORECAST_DEFAULTS, name), *RANGES[name])


def test_the_api_query_parameters_show_the_settings_ranges(tmp_path):
    document = create_app(store=CandleStore(tmp_path / "store.sqlite")).openapi()
    parameters = {p["name"]: p["schema"] for p in document["paths"]["/predict_api"]["get"]["parameters"]}
    for name, (low, high) in RANGES.items():
        assert (parameters[name]["minimum"], parameters[name]["maximum"]) == (low, high)
        assert parameters[name]["title"] == ForecastSettings.model_fields[name].title


def test_a_setting_out_of_range_is_refused_by_name_in_the_old_words():
    with pytest.raises(InvalidInputError) as refused:
        ForecastSettings(horizon=0, samples=101, top_p=0.05)
    assert refused.value.problems == ["horizon must be between 1 and 48, got 0",
                                      "samples must be between 1 and 100, got 101",
                                      "top_p must be between 0.1 and 1.0, got 0.05"]
    with pytest.raises(InvalidInputError, match=r"^hour_idx must be between 1 and the horizon \(4\), got 5$"):
        ForecastSettings(horizon=4, hour_idx=5)
    with pytest.raises(InvalidInputError, match=r"^hour_idx must be between 1 and the horizon \(4\), got 0$"):
        ForecastSettings(horizon=4, hour_idx=0)
    with pytest.raises(InvalidInputError, match="^temperature must be a number, got 'warm'$"):
        ForecastSettings.from_query({"temperature": "warm"})
    with pytest.raises(InvalidInputError, match="^lookbak: Extra inputs are not permitted$"):
        ForecastSettings(lookbak=64)  # a misspelt setting is no silent default


def test_settings_are_frozen_and_copied_with_changes():
    settings = ForecastSettings(samples=5)
    with pytest.raises(ValidationError):
        settings.samples = 6
    assert settings.model_copy(update={"hour_idx": 3}) == ForecastSettings(samples=5, hour_idx=3)
    assert ForecastSettings.from_query(settings.to_query()) == settings
    assert hash(settings) == hash(ForecastSettings(samples=5))  # a key of the pages' caches


def test_the_api_query_caps_the_hour_and_reports_pydantic_errors():
    assert SamplingQuery(horizon=4, hour_idx=9).forecast_settings().hour_idx == 4  # beyond the horizon: its last
    with pytest.raises(ValidationError):  # FastAPI words these per parameter (422)
        SamplingQuery(horizon=0)
    with pytest.raises(InvalidInputError, match=r"^horizon must be between 1 and 48, got 49$"):
        ScanQuery.checked(horizon=49)


def test_a_forecast_reports_its_settings_typed(forecaster, parity_input):
    forecast = forecaster.forecast(parity_input, horizon=3, samples=2, seed=7, lookback=64, top_k=5)
    assert isinstance(forecast.settings, UsedSettings) and isinstance(forecast.settings, ForecastSettings)
    assert (forecast.settings.horizon, forecast.settings.samples, forecast.settings.lookback,
            forecast.settings.top_k, forecast.settings.seed, forecast.settings.max_context) == (3, 2, 64, 5, 7, 128)
    assert forecast.settings.model_dump() == dict(horizon=3, samples=2, temperature=1.0, top_p=0.95, top_k=5,
                                                  lookback=64, max_context=128)  # answers, logs and keys as before
    answered = UsedSettings.model_json_schema(mode="serialization")["properties"]
    assert set(answered) == {*forecast.settings.model_dump(), "first_path"}  # the answers' schema says what they hold


def test_the_engine_may_report_more_than_the_front_ends_allow(forecaster, parity_input):
    forecast = forecaster.forecast(parity_input, horizon=2, samples=120, seed=1)  # samples > RANGES' 100
    assert forecast.settings.samples == 120
    data = DataBlock(source="csv", exchange=None, symbol="X/Y", timeframe="1h", rows=len(parity_input),
                     as_of=pd.Timestamp("2024-01-01").isoformat(), is_stale=False, amount_is_estimated=False, notes=[])
    assert forecast.answer(data).settings.samples == 120  # its answer is not checked against them again


def test_the_environment_is_read_with_its_defaults():
    env = Environment.read({"KRONOS_MODEL": "small", "KRONOS_TOKENIZER": "tok", "KRONOS_STORE": "~/c.sqlite",
                            "KRONOS_TORCH_THREADS": "3", "KRONOS_COMPILE": "true", "KRONOS_API_TOKEN": "",
                            "UNRELATED": "x"})
    assert (env.model, env.store, env.torch_threads, env.compile, env.api_token) == \
        (ModelChoice("small", "tok"), Path("~/c.sqlite").expanduser(), 3, True, None)
    empty = Environment.read({})
    assert (empty.model, empty.torch_threads, empty.store_paths_mb, empty.allow_any_model) == \
        (ModelChoice(), None, 300, False)


@pytest.mark.parametrize(("name", "value"), [("KRONOS_TORCH_THREADS", "abc"), ("KRONOS_TORCH_THREADS", "0"),
                                             ("KRONOS_STORE_PATHS_MB", "lots"), ("KRONOS_COMPILE", "maybe")])
def test_a_bad_variable_is_an_error_naming_it_and_what_it_takes(name, value):
    with pytest.raises(ConfigurationError) as refused:
        Environment.read({name: value})
    assert isinstance(refused.value, KronosError)
    assert str(refused.value).startswith(f"{name}='{value}' is not allowed")
    assert "it takes" in str(refused.value)


def test_the_cli_refuses_a_bad_variable_with_one_line(monkeypatch, capsys):
    monkeypatch.setenv("KRONOS_TORCH_THREADS", "abc")
    assert main(["import", "no-such-file.csv"]) == 2  # refused before the file is looked at
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "KRONOS_TORCH_THREADS='abc'" in err


def test_the_api_is_not_made_with_a_bad_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KRONOS_STORE_PATHS_MB", "-5")
    with pytest.raises(ConfigurationError, match="KRONOS_STORE_PATHS_MB='-5'"):
        create_app(store=CandleStore(tmp_path / "store.sqlite"))


def test_the_dashboard_shows_a_bad_variable_and_stops(monkeypatch):
    monkeypatch.setenv("KRONOS_TORCH_THREADS", "abc")
    app = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    (error,) = app.error
    assert error.value.startswith("The server's configuration is unusable: KRONOS_TORCH_THREADS='abc' is not allowed")
    assert not app.sidebar.slider  # no page, no controls
