"""Ray scale-out on a local Ray of 2 CPUs: forecasts, a scan and a backtest on Ray actors equal local ones, to the
bit."""

from __future__ import annotations

import sqlite3
import sys

import numpy as np
import pytest
from conftest import PARITY
from markets_recorded import RecordedBinance

from kronos.cli import main
from kronos.data.store import CandleStore
from kronos.errors import InvalidInputError
from kronos.evaluation.backtest import BacktestSettings, run_backtest
from kronos.scan.ranking import scan
from kronos.scan.watchlist import given
from kronos.schemas.markets import Scan
from kronos.serving.cluster import RayForecaster, connect
from kronos.settings import ForecastSettings, ModelChoice

SETTINGS = ForecastSettings(horizon=6, samples=5, lookback=48, seed=3)
MARKETS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
NO_RAY = "ray is not installed (pip install -r requirements-ray.txt): the Ray scale-out is not tested"


def test_without_ray_the_command_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails
    assert main(["scan", "--ray", "auto", "--model", f"{PARITY}/model", "--tokenizer", f"{PARITY}/tokenizer"]) == 2
    assert capsys.readouterr().err == ("error: scanning on Ray needs the optional ray package: "
                                       "pip install -r requirements-ray.txt\n")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray of 2 CPUs."""
    ray = pytest.importorskip("ray", reason=NO_RAY)
    connect("local", num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def remote(cluster):
    """Two actors, one CPU each, with the parity checkpoint."""
    forecaster = RayForecaster(ModelChoice(f"{PARITY}/model", f"{PARITY}/tokenizer"), max_context=128, workers=2)
    yield forecaster
    forecaster.close()


@pytest.fixture
def stored(tmp_path) -> CandleStore:
    """A store holding three recorded markets."""
    store, recorded = CandleStore(tmp_path / "candles.sqlite"), RecordedBinance()
    for symbol in MARKETS:
        store.merge(recorded.frame(symbol.replace("/", "")), "binance", symbol, "1h")
    return store


def test_the_command_on_ray_prints_the_local_ranking(cluster, stored, capsys):  # first: the CPUs are free
    common = ["scan", "--symbols", *MARKETS, "--source", "store", "--store", str(stored.path), "--json", "--model",
              f"{PARITY}/model", "--tokenizer", f"{PARITY}/tokenizer", "--max-context", "128", "--horizon", "6",
              "--samples", "5", "--lookback", "48", "--seed", "3"]
    assert main(common + ["--ray", "local"]) == 0  # joins the test's Ray: one actor per CPU, closed when done
    far = Scan.model_validate_json(capsys.readouterr().out)
    assert main(common) == 0
    near = Scan.model_validate_json(capsys.readouterr().out)
    assert [r.model_dump(exclude={"age_s"}) for r in far.rows] == [r.model_dump(exclude={"age_s"}) for r in near.rows]


def test_forecasts_on_ray_equal_local_ones_to_the_bit(remote, forecaster, parity_input):
    histories = [parity_input.iloc[start:start + 90] for start in (0, 30, 60)] + [parity_input.iloc[:70]]
    arguments = dict(horizon=6, samples=[4, 6, 4, 5], seeds=[1, 2, 3, 4])
    steps = []
    far = remote.forecast_many(histories, progress=lambda done, total: steps.append((done, total)), **arguments)
    near = forecaster.forecast_many(histories, **arguments)
    for a, b in zip(far, near, strict=True):
        assert np.array_equal(a.paths, b.paths) and np.array_equal(a.tokens, b.tokens)
        assert (a.seed, list(a.timestamps), a.settings) == (b.seed, list(b.timestamps), b.settings)
    assert (remote.name, remote.fingerprint, remote.workers) == (forecaster.name, forecaster.fingerprint, 2)
    assert sorted(steps)[-1] == (4, 4)
    with pytest.raises(InvalidInputError, match="lookback must be between 1 and the number of history rows"):
        remote.forecast_many(histories[:1], lookback=500, seeds=[1])


def test_an_actor_that_finishes_takes_the_next_piece(remote, parity_input):
    # 7 histories on 2 actors: pieces of 2, 2, 2 and 1; the first is slow (1000 paths), the others take one path each
    histories = [parity_input.iloc[start:start + 90] for start in range(0, 70, 10)]
    samples, seeds, steps = [1000] + [1] * 6, list(range(7)), []
    made = remote.forecast_many(histories, horizon=24, samples=samples, seeds=seeds,
                                progress=lambda done, total: steps.append((done, total)))
    assert [(f.seed, len(f.paths)) for f in made] == list(zip(seeds, samples, strict=True))  # in the callers' order
    assert steps == [(2, 7), (4, 7), (5, 7), (7, 7)]  # the other actor did every other piece while the slow one ran


def test_workers_that_cannot_start_are_reported(remote, monkeypatch):
    monkeypatch.setattr("kronos.serving.cluster.START_TIMEOUT_S", 2.0)
    with pytest.raises(InvalidInputError, match="Ray did not start 1 workers of 1 CPU.* 0 CPUs free"):
        RayForecaster(ModelChoice(f"{PARITY}/model", f"{PARITY}/tokenizer"), workers=1)  # both CPUs are held


def test_a_scan_on_ray_equals_the_local_scan(remote, forecaster, stored):
    watchlist = given(MARKETS, "binance", "1h")
    far = scan(remote, watchlist, SETTINGS, stored, live=False)
    near = scan(forecaster, watchlist, SETTINGS, stored, live=False)
    assert [r.model_dump(exclude={"age_s"}) for r in far.rows] == [r.model_dump(exclude={"age_s"}) for r in near.rows]
    assert all(r.available for r in far.rows) and far.fingerprint == near.fingerprint


def test_a_backtest_on_ray_equals_the_local_one(remote, forecaster, parity_input, tmp_path):
    settings = BacktestSettings(ForecastSettings(horizon=4, samples=4, lookback=40), origins=6, every=8, min_count=2)
    far = run_backtest(remote, parity_input, settings, store=CandleStore(tmp_path / "far.sqlite")).to_dict()
    near = run_backtest(forecaster, parity_input, settings, store=CandleStore(tmp_path / "near.sqlite")).to_dict()
    assert far == near and far["origins"] == 6


def test_first_sight_backtests_on_ray_equal_local_ones(remote, forecaster, tmp_path):
    """Two markets' first sights on Ray (origins on the actors, paths written to the caller's store) against the
    same on this machine: the same rows and the same stored paths, to the bit."""
    from kronos.engine.synthetic import random_walk
    from kronos.scan.combining import ScanCalibration
    from kronos.scan.ranking import scan_answer
    from kronos.schemas.markets import ScanQuery

    stores = {name: CandleStore(tmp_path / f"{name}.sqlite") for name in ("far", "near")}
    symbols = ["AAA/USDT", "BBB/USDT"]
    for store in stores.values():
        for i, symbol in enumerate(symbols):
            store.merge(random_walk(300, seed=i), "binance", symbol, "1h")
    query = ScanQuery(symbols=symbols, source="store", horizon=6, samples=5, lookback=48, seed=3, calibrate=True)
    made = {}
    for name, source in (("far", remote), ("near", forecaster)):
        calibration = ScanCalibration(source, stores[name], run=True, origins=40)
        made[name] = scan_answer(query, source, stores[name], remote=False, calibration=calibration)
    far, near = made["far"], made["near"]
    assert [r.basis for r in far.rows] == ["combined"] * 2
    assert [r.model_dump(exclude={"age_s"}) for r in far.rows] == [r.model_dump(exclude={"age_s"}) for r in near.rows]
    paths = "SELECT key, closes, samples, vol_prob FROM backtest_paths ORDER BY key"
    far_paths, near_paths = (sqlite3.connect(stores[name].path).execute(paths).fetchall() for name in ("far", "near"))
    assert far_paths == near_paths and len(far_paths) == sum(r.record_origins for r in far.rows)
    assert all(31 <= r.record_origins <= 40 for r in far.rows)  # anchored records of at most 40 origins
