"""Property-based fuzzing of the API's OpenAPI schema (schemathesis, in process): no request gets a 5xx.

Offline: the exchanges fail at once (their test double lists BTC/USDT 1h only) and the candles come
from a temporary store filled with the parity input. The engine checks every input and predicts one
step on the parity checkpoint; the remaining steps are drawn at random, since 48 model steps per
example would make fuzzing take minutes on two shared cores (the engine's own tests cover those).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from test_api import PARITY, filled_store, offline_exchange

from kronos import market
from kronos.api import create_app
from kronos.engine import Forecaster
from kronos.forecast import Forecast

EXAMPLES = 25  # per operation
# The coverage phase would add a few hundred boundary requests (minutes here); random fuzzing covers the ranges.
CONFIG = schemathesis.config.SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}})


class OneStepForecaster:
    """The parity forecaster for one step (all input checks included), then a random walk to the horizon."""

    def __init__(self, engine: Forecaster):
        self.engine, self.name, self.max_context = engine, engine.name, engine.max_context

    def forecast(self, history: pd.DataFrame, *, horizon: int, samples: int, seed: int, **sampling) -> Forecast:
        first = self.engine.forecast(history, horizon=1, samples=samples, seed=seed, **sampling)
        steps = np.random.default_rng(seed).normal(0.0, 0.01, (samples, horizon - 1, first.paths.shape[2]))
        paths = np.concatenate([first.paths, first.paths * np.exp(steps.cumsum(axis=1))], axis=1)
        step = first.timestamps[0] - first.last_timestamp
        stamps = pd.DatetimeIndex([first.timestamps[0] + step * i for i in range(horizon)])
        return Forecast(paths, stamps, first.history, seed, first.model, {**first.settings, "horizon": horizon})


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setattr(market, "make_exchange", offline_exchange)
    store = filled_store(tmp_path_factory.mktemp("store") / "candles.sqlite",
                         pd.read_csv(PARITY / "input.csv", parse_dates=["timestamps"]))
    engine = Forecaster.from_pretrained(str(PARITY / "model"), str(PARITY / "tokenizer"), max_context=256)
    yield create_app(forecaster=OneStepForecaster(engine), store=store)
    patch.undo()


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case):
    case.call_and_validate(checks=[not_a_server_error])
