"""The sampling engine: reproducibility, filtering, cache agreement, threads, argument checks."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from conftest import PARITY

from kronos import Forecaster, InvalidInputError
from kronos.engine.reference import recompute_forecast
from kronos.engine.sampling import filtered_probs, sample_ids


def test_same_seed_same_paths_other_seed_other_paths(forecaster, parity_input):
    a = forecaster.forecast(parity_input, horizon=6, samples=8, seed=7)
    b = forecaster.forecast(parity_input, horizon=6, samples=8, seed=7)
    c = forecaster.forecast(parity_input, horizon=6, samples=8, seed=8)
    np.testing.assert_array_equal(a.paths, b.paths)
    assert not np.array_equal(a.paths, c.paths)
    assert a.seed == 7


def test_a_seed_is_drawn_and_recorded_when_none_is_given(forecaster, parity_input):
    a = forecaster.forecast(parity_input, horizon=3, samples=4)
    b = forecaster.forecast(parity_input, horizon=3, samples=4, seed=a.seed)
    np.testing.assert_array_equal(a.paths, b.paths)


def test_paths_are_kept_with_shape_and_timestamps(forecaster, parity_input):
    result = forecaster.forecast(parity_input, horizon=5, samples=9, seed=1)
    assert result.paths.shape == (9, 5, 6)
    assert np.isfinite(result.paths).all()
    step = parity_input["timestamps"].iloc[-1] - parity_input["timestamps"].iloc[-2]
    assert result.timestamps[0] == parity_input["timestamps"].iloc[-1] + step
    assert len(set(map(tuple, result.tokens[:, :, 0]))) > 1, "paths should differ"


@pytest.mark.parametrize("settings", [dict(top_k=1), dict(top_k=3), dict(top_p=0.3), dict(top_p=0.9, temperature=0.5)])
def test_no_token_outside_the_allowed_set(settings):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 50, generator=generator) * 3
    full = dict(temperature=1.0, top_k=0, top_p=1.0) | settings
    allowed = filtered_probs(logits, **full) > 0
    for _ in range(50):
        ids = sample_ids(logits, **full, u=torch.rand(64, generator=generator))
        assert allowed[torch.arange(64), ids].all()
    assert (allowed.sum(-1) < 50).all(), "the filter should have dropped something"


def test_sampling_frequencies_follow_the_filtered_distribution():
    generator = torch.Generator().manual_seed(1)
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]]).repeat(20000, 1)
    ids = sample_ids(logits, 1.0, 0, 0.8, torch.rand(len(logits), generator=generator))
    expected = filtered_probs(logits[:1], 1.0, 0, 0.8)[0].numpy()
    observed = np.bincount(ids.numpy(), minlength=5) / len(ids)
    np.testing.assert_allclose(observed, expected, atol=0.01)


@pytest.mark.parametrize("rows,horizon,context", [(100, 8, 128), (60, 12, 64), (100, 6, 64)],
                         ids=["fits", "slides", "longer-than-context"])
def test_cached_engine_and_reference_recompute_agree(parity_input, rows, horizon, context):
    f = Forecaster.from_pretrained(str(PARITY / "model"), str(PARITY / "tokenizer"), max_context=context)
    kwargs = dict(horizon=horizon, samples=12, seed=3, lookback=rows, top_p=0.9, temperature=1.0, top_k=0)
    cached = f.forecast(parity_input.iloc[:rows], **kwargs)
    full = recompute_forecast(f, parity_input.iloc[:rows], **kwargs)
    np.testing.assert_array_equal(cached.tokens, full.tokens)
    np.testing.assert_allclose(cached.paths, full.paths, rtol=1e-4)


def test_paths_generated_in_turns_are_the_paths_generated_at_once(forecaster, parity_input, monkeypatch):
    import kronos.engine.planning

    at_once = forecaster.forecast(parity_input, horizon=3, samples=10, seed=5)
    monkeypatch.setattr(kronos.engine.planning, "PATH_CHUNK", 4)
    calls = []
    in_turns = forecaster.forecast(parity_input, horizon=3, samples=10, seed=5,
                                   progress=lambda s, t: calls.append((s, t)))
    assert calls == [(i, 9) for i in range(1, 10)]  # 3 turns x 3 steps
    np.testing.assert_array_equal(in_turns.tokens, at_once.tokens)  # each path's draws do not depend on the turns
    np.testing.assert_allclose(in_turns.paths, at_once.paths, rtol=1e-5)


def test_progress_is_called_once_per_step(forecaster, parity_input):
    calls = []
    forecaster.forecast(parity_input, horizon=4, samples=2, seed=1, progress=lambda s, t: calls.append((s, t)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_concurrent_callers_get_the_same_paths_as_alone(forecaster, parity_input):
    alone = {seed: forecaster.forecast(parity_input, horizon=6, samples=6, seed=seed).paths for seed in range(4)}
    results, errors = {}, []

    def work(seed):
        try:
            for _ in range(3):
                results[seed] = forecaster.forecast(parity_input, horizon=6, samples=6, seed=seed).paths
                torch.rand(10)  # other threads using the global generator must not matter
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for seed, paths in alone.items():
        np.testing.assert_array_equal(results[seed], paths)


BAD_ARGUMENTS = [
    (dict(horizon=0), "horizon must be between 1"),
    (dict(horizon=128), "horizon must be between 1"),
    (dict(samples=0), "samples must be between 1 and 1000"),
    (dict(samples=1001), "samples must be between 1 and 1000"),
    (dict(temperature=0), "temperature must be greater than 0"),
    (dict(temperature=-1), "temperature must be greater than 0"),
    (dict(top_p=0), "top_p must be in (0, 1]"),
    (dict(top_p=1.5), "top_p must be in (0, 1]"),
    (dict(top_k=-1), "top_k must be 0"),
    (dict(lookback=201), "lookback must be between 1 and the number of history rows (200)"),
]


@pytest.mark.parametrize("kwargs,message", BAD_ARGUMENTS)
def test_bad_arguments_name_the_argument_and_range(forecaster, parity_input, kwargs, message):
    with pytest.raises(InvalidInputError) as info:
        forecaster.forecast(parity_input, **kwargs)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def _broken(frame, how):
    frame = frame.copy()
    if how == "empty":
        return frame.iloc[:0]
    if how == "short":
        return frame.iloc[:10]
    if how == "nan":
        frame.loc[5, "close"] = np.nan
        return frame
    if how == "unsorted":
        return frame.iloc[::-1].reset_index(drop=True)
    if how == "duplicate":
        frame.loc[6, "timestamps"] = frame.loc[5, "timestamps"]
        return frame
    if how == "no-close":
        return frame.drop(columns=["close"])
    raise AssertionError(how)


@pytest.mark.parametrize("how,message", [("empty", "at least 32"), ("short", "at least 32"), ("nan", "close"),
                                         ("unsorted", "timestamps"), ("duplicate", "timestamps"),
                                         ("no-close", "close")])
def test_bad_history_is_a_value_error_naming_the_problem(forecaster, parity_input, how, message):
    with pytest.raises(InvalidInputError) as info:
        forecaster.forecast(_broken(parity_input, how), horizon=2, samples=2)
    assert message in str(info.value)


def test_missing_volume_and_amount_are_filled_as_the_reference_does(forecaster, parity_input):
    no_volume = forecaster.forecast(parity_input.drop(columns=["volume", "amount"]), horizon=2, samples=2, seed=1)
    assert (no_volume.history[["volume", "amount"]] == 0).all().all()
    no_amount = forecaster.forecast(parity_input.drop(columns=["amount"]), horizon=2, samples=2, seed=1)
    expected = parity_input["volume"] * parity_input[["open", "high", "low", "close"]].mean(axis=1)
    np.testing.assert_allclose(no_amount.history["amount"], expected.iloc[-len(no_amount.history):])


def test_reused_history_caches_give_the_same_paths_as_a_fresh_engine(parity_input):
    def fresh():
        return Forecaster.from_pretrained(str(PARITY / "model"), str(PARITY / "tokenizer"), max_context=128)

    engine = fresh()
    kwargs = dict(horizon=5, samples=6, seed=9)
    first = engine.forecast(parity_input.iloc[:100], **kwargs)
    other = engine.forecast(parity_input.iloc[50:150], **kwargs)  # another history in between
    again = engine.forecast(parity_input.iloc[:100], **kwargs | {"horizon": 7})
    longer = fresh().forecast(parity_input.iloc[:100], **kwargs | {"horizon": 7})
    np.testing.assert_array_equal(again.paths[:, :5], longer.paths[:, :5])
    np.testing.assert_array_equal(first.paths, fresh().forecast(parity_input.iloc[:100], **kwargs).paths)
    assert not np.array_equal(first.paths, other.paths)


@pytest.mark.parametrize("context", [128, 64], ids=["fits", "slides"])
def test_batched_histories_give_each_the_paths_it_gets_alone(parity_input, context):
    f = Forecaster.from_pretrained(str(PARITY / "model"), str(PARITY / "tokenizer"), max_context=context)
    histories = [parity_input.iloc[i:i + 60] for i in (0, 30, 70, 100)] + [parity_input.iloc[:50]]
    kwargs = dict(horizon=8, samples=6, top_p=0.9, lookback=None)
    seeds = [11, 12, 13, 14, 15]
    batched = f.forecast_many(histories, seeds=seeds, **kwargs)
    for history, seed, together in zip(histories, seeds, batched):
        alone = f.forecast(history, seed=seed, **kwargs)
        np.testing.assert_array_equal(together.tokens, alone.tokens)
        np.testing.assert_allclose(together.paths, alone.paths, rtol=1e-5)
        assert together.seed == seed and together.timestamps.equals(alone.timestamps)
    assert len({b.paths.tobytes() for b in batched}) == len(histories)


def test_requests_on_one_history_run_as_the_union_of_their_paths(forecaster, parity_input, monkeypatch):
    import kronos.engine.planning

    monkeypatch.setattr(kronos.engine.planning, "PATH_CHUNK", 8)  # the union (5 + 9 + 3 paths) goes in turns
    calls = []
    together = forecaster.forecast_many([parity_input] * 3 + [parity_input.iloc[:150]], horizon=5,
                                        samples=[5, 9, 3, 4], seeds=[1, 2, 3, 4], progress=lambda s, t: calls.append(t))
    for forecast, samples, seed in zip(together, (5, 9, 3), (1, 2, 3)):
        alone = forecaster.forecast(parity_input, horizon=5, samples=samples, seed=seed)
        np.testing.assert_array_equal(forecast.tokens, alone.tokens)
        np.testing.assert_allclose(forecast.paths, alone.paths, rtol=1e-5)
    assert calls[-1] == 5 * 4  # the union in three turns of at most 8 paths, the other history in one


def test_forecast_many_checks_its_seeds(forecaster, parity_input):
    with pytest.raises(InvalidInputError, match="one seed and one sample count per history"):
        forecaster.forecast_many([parity_input], seeds=[1, 2])
    with pytest.raises(InvalidInputError, match="seed must be between 0 and 2147483647"):
        forecaster.forecast(parity_input, seed=2**31)
    assert 0 <= forecaster.forecast(parity_input, horizon=1, samples=1).seed < 2**31


def test_without_a_c_compiler_the_step_stays_uncompiled(forecaster, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    step = forecaster.model.step
    with pytest.warns(UserWarning, match="no C compiler found"):
        assert forecaster.compile_step() is None
    assert forecaster.model.step == step
