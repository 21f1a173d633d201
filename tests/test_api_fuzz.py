"""Property-based tests of the API against its own OpenAPI document (schemathesis, in process, every check).

Conformance, not only "no 5xx": documented status codes and error bodies, schema-valid requests accepted,
invalid ones rejected, 405 with Allow for methods the API does not serve (schemathesis.toml says the one
stated exception). Offline: the exchanges fail at once (their test double lists BTC/USDT 1h only) and the
candles come from a temporary store filled with the parity input. The engine checks every input and
predicts one step on the parity checkpoint; the remaining steps are drawn at random, since 48 model steps
per example would make fuzzing take minutes on two shared cores (the engine's own tests cover those). The same
app wanting a token is fuzzed too, with its Authorization header (schemathesis also checks that requests without
it are refused with 401).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from test_api import PARITY, filled_store, offline_exchange

from kronos.api import create_app
from kronos.data import market
from kronos.engine import Forecaster
from kronos.engine.forecast import Forecast

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = 20  # per operation, in the fuzzing phase
TOKEN_EXAMPLES = 5  # the same app wanting a token: the 401s, the security scheme and that it is not ignored


class OneStepForecaster(Forecaster):
    """The parity forecaster for one step (all input checks included), then a random walk to the horizon."""

    def forecast_many(self, histories, *, horizon: int = 24, samples: int = 30, **sampling) -> list[Forecast]:
        self.check_arguments(horizon, samples, sampling.get("temperature", 1.0), sampling.get("top_p", 1.0),
                             sampling.get("top_k", 0))
        return [_extend(first, horizon) for first in super().forecast_many(histories, horizon=1, samples=samples,
                                                                            **sampling)]


def _extend(first: Forecast, horizon: int) -> Forecast:
    """A one-step forecast continued to the horizon by a random walk."""
    steps = np.random.default_rng(first.seed).normal(0.0, 0.01, (first.samples, horizon - 1, first.paths.shape[2]))
    paths = np.concatenate([first.paths, first.paths[:, -1:] * np.exp(steps.cumsum(axis=1))], axis=1)
    step = first.timestamps[0] - first.last_timestamp
    stamps = pd.DatetimeIndex([first.timestamps[0] + step * i for i in range(horizon)])
    return Forecast(paths, stamps, first.history, first.seed, first.model, {**first.settings, "horizon": horizon})


STORE = filled_store(Path(tempfile.mkdtemp()) / "candles.sqlite", pd.read_csv(PARITY / "input.csv",
                                                                               parse_dates=["timestamps"]))
ENGINE = Forecaster.from_pretrained(str(PARITY / "model"), str(PARITY / "tokenizer"), max_context=256)
ONE_STEP = OneStepForecaster(ENGINE.tokenizer, ENGINE.model, max_context=256)
CONFIG = schemathesis.Config.from_path(ROOT / "schemathesis.toml")
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(forecaster=ONE_STEP, store=STORE), config=CONFIG)
guarded = schemathesis.openapi.from_asgi("/openapi.json", create_app(forecaster=ONE_STEP, store=STORE, token="t0k"),
                                         config=CONFIG)


@pytest.fixture(scope="module", autouse=True)
def offline():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(market, "make_exchange", offline_exchange)
        yield


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_check_passes(case):
    case.call_and_validate()


@guarded.parametrize()
@settings(max_examples=TOKEN_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_check_passes_with_a_token(case):
    header = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    if header is not None and header.mode == GenerationMode.NEGATIVE:
        case.call_and_validate()  # headers made invalid (the token left out, say): adding it would make them valid
    else:
        case.call_and_validate(headers={"Authorization": "Bearer t0k"})
