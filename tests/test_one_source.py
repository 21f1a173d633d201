"""One source of truth: the CLI's, the API's and the sidebar's defaults, ranges and help texts are kronos.settings'."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kronos.api import create_app
from kronos.api.requests import BacktestBody
from kronos.cli import backtest, build_parser, main, serve
from kronos.data.store import CandleStore
from kronos.errors import InvalidInputError
from kronos.evaluation.backtest import BACKTEST_DEFAULTS, BacktestSettings
from kronos.serving.service import ForecastService, MarketData
from kronos.settings import (
    FORECAST_DEFAULTS,
    ORIGIN_LIMITS,
    RANGES,
    SERVER_DEFAULTS,
    ForecastSettings,
    MarketChoice,
    OriginLimits,
    ServerSettings,
    help_texts,
)
from kronos.training.evaluate import evaluation_settings

SETTING_HELP, MARKET_HELP, SERVER_HELP = (help_texts(ForecastSettings), help_texts(MarketChoice),
                                          help_texts(ServerSettings))
BACKTEST_HELP = help_texts(BacktestSettings)
ORIGIN_FIELDS = ("origins", "every", "min_count")  # a backtest's own fields; its sampling ones are ForecastSettings'
ROOT = Path(__file__).resolve().parents[1]


def options(command: str) -> dict[str, argparse.Action]:
    """The options of one sub-command of `python -m kronos`, by destination."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {action.dest: action for action in commands.choices[command]._actions}


def cli_help(text: str, default) -> str:
    return text if default is None else f"{text} (default {default})"


@pytest.fixture
def document(tmp_path) -> dict:
    """The API's OpenAPI document (nothing loaded: the lifespan does not run)."""
    return create_app(store=CandleStore(tmp_path / "store.sqlite")).openapi()


def test_every_settings_field_has_a_help_text():
    for settings in (ForecastSettings, MarketChoice, ServerSettings, OriginLimits):
        assert set(help_texts(settings)) == {field.name for field in dataclasses.fields(settings)}
    assert set(BACKTEST_HELP) == set(ORIGIN_FIELDS)
    assert [field.type for field in dataclasses.fields(BacktestSettings) if field.name not in ORIGIN_FIELDS] == \
        ["ForecastSettings"]  # the sampling settings are held, not listed again


def test_no_caller_may_ask_for_more_origins_than_the_engine_holds():
    assert max(ORIGIN_LIMITS.api, ORIGIN_LIMITS.page, ORIGIN_LIMITS.training) <= ORIGIN_LIMITS.engine
    with pytest.raises(InvalidInputError, match=f"between 1 and {ORIGIN_LIMITS.engine}"):
        BacktestSettings(origins=ORIGIN_LIMITS.engine + 1)
    assert evaluation_settings(383, 24, 10 * ORIGIN_LIMITS.training).origins == ORIGIN_LIMITS.training


def test_the_cli_backtest_options_are_the_backtest_settings():
    found = options("backtest")
    for name in ORIGIN_FIELDS:
        default = getattr(BACKTEST_DEFAULTS, name)
        assert found[name].default == default and found[name].help == cli_help(BACKTEST_HELP[name], default)
    assert "hour_idx" not in found  # a backtest scores every hour
    args = build_parser().parse_args(["backtest", "--origins", "7", "--every", "3", "--min-count", "2",
                                      "--samples", "5"])
    assert backtest.backtest_settings_from(args) == BacktestSettings(ForecastSettings(samples=5), origins=7, every=3,
                                                           min_count=2)


@pytest.mark.parametrize("command", ["forecast", "backtest"])
def test_the_cli_sampling_options_are_the_settings(command):
    found = options(command)
    names = [name for name in SETTING_HELP if name in found]
    assert len(names) >= 7
    for name in names:
        default = getattr(FORECAST_DEFAULTS, name)
        assert found[name].default == default
        assert found[name].help == cli_help(SETTING_HELP[name], default)


@pytest.mark.parametrize("command", ["forecast", "fetch", "train"])
def test_the_cli_market_options_are_the_settings(command):
    found = options(command)
    for name in ("exchange", "symbol", "timeframe", "mode"):
        if name in found:
            assert found[name].default == getattr(MarketChoice, name)
            assert found[name].help == cli_help(MARKET_HELP[name], getattr(MarketChoice, name))


def test_the_api_query_parameters_are_the_settings(document):
    parameters = {p["name"]: p for p in document["paths"]["/predict_api"]["get"]["parameters"]}
    for name, text in SETTING_HELP.items():
        parameter = parameters[name]
        assert parameter["description"].startswith(text)  # hour_idx adds what the API does beyond the horizon
        assert parameter["description"] == text or name == "hour_idx"
        schema = parameter["schema"]
        if name in RANGES:
            assert (schema["default"], schema["minimum"], schema["maximum"]) == \
                (getattr(FORECAST_DEFAULTS, name), *RANGES[name])
    for name in ("exchange", "symbol", "timeframe"):
        assert parameters[name]["description"] == MARKET_HELP[name]
        assert parameters[name]["schema"]["default"] == getattr(MarketChoice, name)


def test_the_api_body_fields_are_the_settings(document):
    fields = document["components"]["schemas"]["CustomBody"]["properties"]
    for name in RANGES:
        assert fields[name]["description"] == SETTING_HELP[name]
        assert (fields[name]["default"], fields[name]["minimum"], fields[name]["maximum"]) == \
            (getattr(FORECAST_DEFAULTS, name), *RANGES[name])


def test_the_api_backtest_fields_are_the_backtest_settings(document):
    fields = document["components"]["schemas"]["BacktestBody"]["properties"]
    for name in ORIGIN_FIELDS:
        assert fields[name]["default"] == getattr(BACKTEST_DEFAULTS, name)
        assert fields[name]["description"].startswith(BACKTEST_HELP[name])
    assert fields["origins"]["maximum"] == ORIGIN_LIMITS.api
    assert fields["horizon"]["description"] == SETTING_HELP["horizon"]


def test_the_api_backtest_body_becomes_the_backtest_settings():
    body = BacktestBody.model_construct(origins=9, every=4, min_count=2, samples=5, hour_idx=3)  # candles unread
    assert body.backtest_settings() == BacktestSettings(ForecastSettings(samples=5), origins=9, every=4, min_count=2)


def test_the_track_record_origins_are_the_backtest_settings(filled):
    app = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    app.run()
    app.switch_page("pages/track_record.py")
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    origins, every = app.number_input(key="track.origins"), app.number_input(key="track.every")
    assert (origins.value, origins.max, every.value) == (BACKTEST_DEFAULTS.origins, ORIGIN_LIMITS.page,
                                                         BACKTEST_DEFAULTS.every)
    assert origins.help == BACKTEST_HELP["origins"][0].upper() + BACKTEST_HELP["origins"][1:]
    assert every.help == BACKTEST_HELP["every"][0].upper() + BACKTEST_HELP["every"][1:]


def test_a_help_text_reads_the_same_in_the_cli_and_the_api(document):
    parameters = {p["name"]: p for p in document["paths"]["/predict_api"]["get"]["parameters"]}
    assert options("forecast")["top_p"].help == f"{parameters['top_p']['description']} (default 0.95)"
    assert parameters["top_p"]["description"] == SETTING_HELP["top_p"]


def test_serve_options_are_the_server_settings():
    found = options("serve")
    for field in dataclasses.fields(ServerSettings):
        assert found[field.name].default == getattr(SERVER_DEFAULTS, field.name)
        assert found[field.name].help == cli_help(SERVER_HELP[field.name], field.default)
    assert serve.server_from(build_parser().parse_args(["serve"])) == SERVER_DEFAULTS


def test_the_pool_and_the_deadlines_default_to_the_server_settings(tmp_path):
    service, market = ForecastService(), MarketData(CandleStore(tmp_path / "store.sqlite"))
    assert (service.workers, service.capacity, service.timeout, market.deadline) == \
        (SERVER_DEFAULTS.workers, SERVER_DEFAULTS.workers + SERVER_DEFAULTS.queue_size, SERVER_DEFAULTS.timeout,
         SERVER_DEFAULTS.exchange_timeout)
    runtime = create_app(store=CandleStore(tmp_path / "store.sqlite")).state.runtime
    assert (runtime.service.workers, runtime.service.capacity, runtime.service.timeout, runtime.market.deadline) == \
        (service.workers, service.capacity, service.timeout, market.deadline)


def test_serve_runs_the_app_as_its_arguments_say(monkeypatch):
    started = {}
    monkeypatch.setattr("uvicorn.run", lambda app, host, port: started.update(app=app, host=host, port=port))
    arguments = ["--host", "0.0.0.0", "--port", "9001", "--workers", "3", "--queue-size", "5", "--timeout", "7.5",
                 "--exchange-timeout", "0.5"]
    assert main(["serve", *arguments]) == 0
    runtime = started["app"].state.runtime
    assert (started["host"], started["port"]) == ("0.0.0.0", 9001)
    assert (runtime.service.workers, runtime.service.capacity, runtime.service.timeout, runtime.market.deadline) == \
        (3, 8, 7.5, 0.5)


def test_out_of_range_server_settings_are_refused_each_by_name(capsys):
    with pytest.raises(InvalidInputError) as refused:
        ServerSettings(port=70000, workers=0, queue_size=-1, timeout=0, exchange_timeout=-1)
    assert [problem.split()[0] for problem in refused.value.problems] == \
        ["port", "workers", "queue_size", "timeout", "exchange_timeout"]
    with pytest.raises(InvalidInputError, match="workers"):
        ForecastService(workers=0)
    assert main(["serve", "--workers", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_sidebar_tooltips_are_the_help_texts(filled):
    app = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    tip = {name: text[0].upper() + text[1:] for name, text in (SETTING_HELP | MARKET_HELP).items()}
    for name in ("horizon", "samples", "temperature", "top_p", "hour_idx"):
        assert app.slider(key=f"ctl.{name}").help == tip[name]
    assert app.slider(key="ctl.lookback").help.startswith(tip["lookback"])
    assert app.number_input(key="ctl.seed").help == tip["seed"]
    assert app.text_input(key="ctl.symbol").help == tip["symbol"]
