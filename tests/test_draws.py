"""Per-path draws: a forecast's paths are a prefix of a larger forecast's (paths and horizon), the saved cases."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import PARITY

from kronos import Forecaster, InvalidInputError
from kronos.engine import draw_uniforms

CASES = PARITY.parent / "engine_cases"
sys.path.insert(0, str(CASES))
from make_cases import make  # noqa: E402

KWARGS = dict(top_p=0.9, temperature=1.0, top_k=0)


def test_a_path_draws_the_same_whatever_the_sample_count_horizon_and_first_path():
    whole = draw_uniforms(5, 40, 30)  # (H, 2, S)
    np.testing.assert_array_equal(draw_uniforms(5, 7, 12), whole[:12, :, :7])
    np.testing.assert_array_equal(draw_uniforms(5, 9, 30, first_path=31), whole[:, :, 31:])
    assert not np.array_equal(draw_uniforms(6, 7, 12), whole[:12, :, :7])
    assert 0 <= whole.min() and whole.max() < 1 and abs(float(whole.mean()) - 0.5) < 0.02


def test_the_first_paths_of_a_larger_forecast_are_the_smaller_forecast(forecaster, parity_input):
    large = forecaster.forecast(parity_input, horizon=6, samples=14, seed=4, **KWARGS)
    small = forecaster.forecast(parity_input, horizon=6, samples=5, seed=4, **KWARGS)
    np.testing.assert_array_equal(large.tokens[:5], small.tokens)
    np.testing.assert_array_equal(large.paths[:5], small.paths)
    batched = forecaster.forecast_many([parity_input.iloc[:150], parity_input.iloc[50:]], horizon=6,
                                       samples=[9, 3], seeds=[4, 4], **KWARGS)  # shorter, next to another history
    alone = forecaster.forecast(parity_input.iloc[:150], horizon=6, samples=3, seed=4, **KWARGS)
    np.testing.assert_array_equal(batched[0].tokens[:3], alone.tokens)
    np.testing.assert_array_equal(batched[0].paths[:3], alone.paths)


def test_paths_from_a_first_path_on_are_the_rest_of_the_larger_forecast(forecaster, parity_input):
    large = forecaster.forecast(parity_input, horizon=6, samples=14, seed=4, **KWARGS)
    rest = forecaster.forecast_many([parity_input, parity_input.iloc[20:]], horizon=6, samples=[9, 9], seeds=[4, 4],
                                    first_path=5, **KWARGS)
    np.testing.assert_array_equal(rest[0].tokens, large.tokens[5:])
    np.testing.assert_array_equal(rest[0].paths, large.paths[5:])
    assert rest[0].settings.first_path == 5 and large.settings.first_path == 0
    assert "first_path" not in large.settings.model_dump()  # answers name it only when it is not 0
    with pytest.raises(InvalidInputError, match="first_path must be 0 or more"):
        forecaster.forecast_many([parity_input], horizon=2, samples=2, first_path=-1)


def test_the_first_steps_of_a_longer_horizon_are_the_shorter_forecast_where_the_window_fits(forecaster,
                                                                                              parity_input):
    history = parity_input.iloc[:100]  # 100 + 20 candles fit the context of 128
    longer = forecaster.forecast(history, horizon=20, samples=8, seed=9, **KWARGS)
    shorter = forecaster.forecast(history, horizon=7, samples=8, seed=9, **KWARGS)
    np.testing.assert_array_equal(longer.tokens[:, :7], shorter.tokens)
    np.testing.assert_allclose(longer.paths[:, :7], shorter.paths, rtol=1e-6)  # decoded at another length
    many = forecaster.forecast_many([history, parity_input.iloc[60:160]], horizon=7, samples=8, seeds=[9, 1], **KWARGS)
    np.testing.assert_array_equal(many[0].tokens, shorter.tokens)


def test_where_the_window_slides_the_tokens_are_a_prefix_but_the_decoded_rows_are_not(parity_input):
    f = Forecaster.from_pretrained(str(PARITY / "model"), str(PARITY / "tokenizer"), max_context=64)
    history = parity_input.iloc[:60]  # 60 + 6 and 60 + 12 candles both exceed the context of 64
    longer = f.forecast(history, horizon=12, samples=6, seed=3, **KWARGS)
    shorter = f.forecast(history, horizon=6, samples=6, seed=3, **KWARGS)
    np.testing.assert_array_equal(longer.tokens[:, :6], shorter.tokens)  # the predictor's window ends at each step
    # the decoder sees the last 64 tokens of history + horizon: its window starts later for the longer horizon
    assert not np.allclose(longer.paths[:, :6], shorter.paths, rtol=1e-3)
    np.testing.assert_array_equal(f.forecast(history, horizon=12, samples=2, seed=3, **KWARGS).paths, longer.paths[:2])


@pytest.mark.parametrize("name", list(json.loads((CASES / "cases.json").read_text())["cases"]))
def test_the_engine_makes_the_saved_cases_to_the_bit(name):
    paths, tokens = make(json.loads((CASES / "cases.json").read_text())["cases"][name])
    np.testing.assert_array_equal(tokens, np.load(CASES / f"{name}_tokens.npy"))
    np.testing.assert_array_equal(paths, np.load(CASES / f"{name}_paths.npy"))
