"""A store that cannot be used (read-only, not creatable, a folder or device, not SQLite, damaged) through the store,
the CLI, the forecast flow, the exchange path, the API and the dashboard: a StoreUnavailableError, never sqlite3's."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from data_frames import candle_frame
from fastapi.testclient import TestClient
from test_api import custom_body, offline_exchange
from test_market import NOW, Venue, fake_exchange

from kronos.api import create_app
from kronos.cli import main
from kronos.data import market, storefile
from kronos.data.candles import Candles
from kronos.data.store import CandleStore
from kronos.engine import Forecaster
from kronos.errors import StoreUnavailableError
from kronos.flows import forecast_candles
from kronos.settings import ForecastSettings, MarketChoice
from ui import widgets

KEY = ("binance", "BTC/USDT", "1h")
PARITY = Path(__file__).parent / "fixtures" / "kronos_parity"
MODEL = ["--model", str(PARITY / "model"), "--tokenizer", str(PARITY / "tokenizer"), "--max-context", "128"]
SMALL = ForecastSettings(horizon=4, samples=2, lookback=64, seed=3)
FAULTS = ("not SQLite", "truncated", "damaged inside", "a folder", "a device", "under a file", "folder uncreatable")


def good_store(path: Path, rows: int = 200) -> Path:
    """A store file at `path` holding `rows` hourly candles as Binance BTC/USDT."""
    CandleStore(path).merge(candle_frame(rows), *KEY)
    return path


def faulty(kind: str, folder: Path) -> Path:
    """A store path with the fault `kind`."""
    if kind == "not SQLite":
        (folder / "garbage.sqlite").write_bytes(b"these are not the candles you are looking for\n" * 100)
        return folder / "garbage.sqlite"
    if kind in ("truncated", "damaged inside"):
        data = bytearray(good_store(folder / "good.sqlite", 20_000).read_bytes())
        if kind == "truncated":
            data = data[:len(data) // 2]
        else:  # scribble over pages in the middle of the candles' b-tree
            data[len(data) // 2:len(data) // 2 + 4096] = bytes(range(256)) * 16
        (folder / "bad.sqlite").write_bytes(bytes(data))
        return folder / "bad.sqlite"
    if kind == "a folder":
        (folder / "store").mkdir()
        return folder / "store"
    if kind == "a device":
        return Path("/dev/null")
    if kind == "under a file":
        (folder / "file").write_text("a file, not a folder")
        return folder / "file" / "candles.sqlite"
    return Path("/dev/null/kronos/candles.sqlite")


@pytest.fixture(params=FAULTS)
def fault(request, tmp_path) -> Path:
    return faulty(request.param, tmp_path)


@pytest.fixture(params=["file system", "SQLite read-only mode"])
def read_only(request, tmp_path, monkeypatch) -> Path:
    """A store with 200 candles that can be read, not written: made read-only on disk (chmod, or chattr +i for
    root, whom chmod does not stop; skipped where chattr is refused), or opened in SQLite's read-only mode."""
    path = good_store(tmp_path / "candles.sqlite")
    if request.param == "SQLite read-only mode":
        connect = sqlite3.connect
        monkeypatch.setattr(sqlite3, "connect", lambda file, **kw: connect(f"file:{file}?mode=ro", uri=True, **kw))
        yield path
        return
    if os.geteuid() != 0:
        path.chmod(0o444)
        tmp_path.chmod(0o555)
        yield path
        tmp_path.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is refused here (root ignores chmod): no read-only file to test")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def store_calls(store: CandleStore) -> dict:
    """One call of each kind the store offers, reading and writing."""
    frame = candle_frame(40)
    return {"load": lambda: store.load(*KEY), "span": lambda: store.span(*KEY), "contents": store.contents,
            "merge": lambda: store.merge(frame, *KEY), "backtest_paths": lambda: store.backtest_paths(["a"]),
            "log_forecast": lambda: store.log_forecast(*KEY, "m", NOW, {}),
            "logged_forecasts": lambda: store.logged_forecasts(*KEY, "m")}


def test_every_fault_is_a_store_error_naming_the_file_and_what_to_do(fault):
    store = CandleStore(fault)  # cheap: nothing is opened yet
    for name, call in store_calls(store).items():
        with pytest.raises(StoreUnavailableError) as caught:
            call()
        error = caught.value
        assert str(fault) in str(error) and "KRONOS_STORE" in str(error), name
        assert str(fault) not in error.public() and "operator" in error.public(), name
    assert isinstance(store.health(), StoreUnavailableError)
    with pytest.raises(StoreUnavailableError):
        store.check()


def test_a_damaged_store_is_named_damaged_by_its_integrity_check(tmp_path):
    error = CandleStore(faulty("damaged inside", tmp_path)).health()
    assert "is damaged (its integrity check says:" in str(error)


def test_a_healthy_store_reports_no_fault(tmp_path):
    assert CandleStore(good_store(tmp_path / "candles.sqlite")).health() is None


def damage_in_place(path: Path) -> None:
    """Scribble over the middle of the file, keeping the file (its inode) as it is."""
    with path.open("r+b") as file:
        file.seek(path.stat().st_size // 2)
        file.write(bytes(range(256)) * 16)


def test_damage_found_after_the_check_is_reported_by_health(tmp_path):
    store = CandleStore(good_store(tmp_path / "candles.sqlite", 20_000))
    assert store.health() is None
    damage_in_place(store.path)
    with pytest.raises(StoreUnavailableError, match="is damaged"):
        store.load(*KEY)  # reads the damaged pages
    assert "is damaged" in str(store.health())  # checked again after the damage was seen


def test_health_checks_the_file_again_once_its_check_is_old(tmp_path, monkeypatch):
    store = CandleStore(good_store(tmp_path / "candles.sqlite", 20_000))
    assert store.health() is None
    damage_in_place(store.path)
    assert store.health() is None  # checked moments ago
    monkeypatch.setattr(storefile, "HEALTH_CHECK_S", 0.0)
    assert "is damaged (its integrity check says:" in str(store.health())


def test_a_read_only_store_reads_and_says_why_it_cannot_write(read_only):
    store = CandleStore(read_only)
    assert len(store.load(*KEY)) == 200
    error = store.health()
    assert isinstance(error, StoreUnavailableError) and "is read-only" in str(error)
    for name in ("merge", "log_forecast"):
        with pytest.raises(StoreUnavailableError, match="is read-only"):
            store_calls(store)[name]()


def test_import_never_writes_into_a_store_that_fails_the_check(tmp_path):
    path = faulty("damaged inside", tmp_path)
    before = path.read_bytes()
    (tmp_path / "new.csv").write_text(candle_frame(50, start="2030-01-01").to_csv(index=False))
    with pytest.raises(StoreUnavailableError, match="is damaged"):
        CandleStore(path).import_file(tmp_path / "new.csv", *KEY)
    assert path.read_bytes() == before


@pytest.mark.parametrize("command", [
    ["forecast", "--source", "store", *MODEL],
    ["backtest", "--source", "store", "--origins", "2", *MODEL],
    ["import", str(PARITY / "input.csv")],
])
def test_cli_commands_on_a_faulty_store_exit_2_with_one_line(fault, command, capsys):
    assert main([*command, "--store", str(fault)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: the local store {fault} ") and "Traceback" not in err


@pytest.mark.parametrize("command", [
    ["backtest", "--csv", str(PARITY / "input.csv"), "--origins", "2", *MODEL],
    ["forecast", "--csv", str(PARITY / "input.csv"), "--calibrate", *MODEL],
    ["scan", "--symbols", "BTC/USDT", "--source", "store", "--calibrate", *MODEL],
])
def test_commands_that_keep_their_results_refuse_a_read_only_store_before_the_work(read_only, command, monkeypatch,
                                                                                   capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded: the work began before the store was checked")

    monkeypatch.setattr(Forecaster, "from_pretrained", no_work)
    started = time.perf_counter()
    assert main([*command, "--store", str(read_only)]) == 2
    assert time.perf_counter() - started < 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: the local store {read_only} is read-only; ")


def test_fetch_refuses_a_store_it_cannot_fill(read_only, venues, capsys):
    assert main(["fetch", "--store", str(read_only)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: the local store {read_only} is read-only; ")
    assert not any(venue.requests for venue in venues.values())


def stored_candles(store: CandleStore) -> Candles:
    frame = store.load(*KEY)
    return Candles(frame, "store", *KEY, frame["timestamps"].iloc[-1], False, False)


def test_a_forecast_stands_when_its_log_cannot_be_written(read_only, forecaster, caplog):
    store = CandleStore(read_only)
    with caplog.at_level(logging.WARNING, "kronos.flows"):
        forecast = forecast_candles(forecaster, stored_candles(store), SMALL, log=store)
    assert forecast.paths.shape == (2, 4, 6)
    assert "the forecast was not logged" in caplog.text and "is read-only" in caplog.text


@pytest.fixture
def venues(monkeypatch) -> dict[str, Venue]:
    found = {name: Venue() for name in market.EXCHANGES}
    monkeypatch.setattr(market, "make_exchange", lambda name, timeout: fake_exchange(name, found[name], timeout))
    monkeypatch.setattr(market, "utc_now", lambda: NOW)
    return found


def test_exchange_candles_answer_when_the_store_cannot_keep_them(fault, venues):
    candles = market.fetch_candles(MarketChoice(), 100, store=CandleStore(fault))
    assert candles.source == "exchange" and len(candles.frame) == 100
    assert candles.frame["timestamps"].iloc[-1] == NOW.floor("h") - pd.Timedelta("1h")
    assert any(note.startswith("the candles were not kept: the local store ") for note in candles.notes)
    assert not any(str(fault) in note for note in candles.notes)  # notes reach API clients


def test_a_read_only_store_adds_what_it_holds_to_the_fetched_candles(read_only, venues):
    candles = market.fetch_candles(MarketChoice(), 100, store=CandleStore(read_only))
    assert len(candles.frame) == 100 and candles.frame["timestamps"].is_monotonic_increasing
    assert "is read-only" in " ".join(candles.notes)


def test_api_starts_on_a_faulty_store_forecasts_custom_data_and_answers_503_for_the_store(
        fault, forecaster, parity_input, monkeypatch):
    monkeypatch.setattr(market, "make_exchange", offline_exchange)
    with TestClient(create_app(forecaster=forecaster, store=CandleStore(fault))) as client:
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["store"].startswith("the server's local store ")
        assert str(fault) not in health.text
        custom = client.post("/predict_custom", json=custom_body(parity_input.tail(64), horizon=4, samples=2))
        assert custom.status_code == 200, custom.text
        stored = client.get("/predict_api", params={"horizon": 4, "samples": 2, "lookback": 64})
    assert stored.status_code == 503 and "local store" in stored.json()["error"]
    assert stored.headers["Retry-After"] == "60"  # every 503 says when to retry, a store fault's too
    assert str(fault.parent) not in stored.text


def test_health_sees_a_store_truncated_under_the_running_server_and_says_when_it_last_checked(forecaster, tmp_path):
    store = CandleStore(good_store(tmp_path / "candles.sqlite", 20_000))
    with TestClient(create_app(forecaster=forecaster, store=store)) as client:
        first = client.get("/health").json()
        assert first["store"] == "ok" and pd.Timestamp(first["store_checked"]) <= pd.Timestamp.now(tz="UTC")
        os.truncate(store.path, store.path.stat().st_size // 2)  # the same file, half of it gone
        after = client.get("/health").json()
    assert after["store"].startswith("the server's local store is damaged"), after  # was "ok" for up to 60 s
    assert pd.Timestamp(after["store_checked"]) >= pd.Timestamp(first["store_checked"])


def test_the_dashboard_shows_a_store_fault_and_still_forecasts_live_candles(store, monkeypatch, tmp_path):
    from app_server import RecordedBinance
    from test_app import calibrated, run

    monkeypatch.setenv("KRONOS_STORE", str(faulty("not SQLite", tmp_path)))
    monkeypatch.setattr(market, "make_exchange", RecordedBinance().exchange)
    # Without kept origins the calibration outlasts a session's lease, which a browser renews by polling and
    # AppTest does not: held for the test's wait, else it is cancelled as abandoned and started again.
    monkeypatch.setattr(widgets, "LEASE_S", 300.0)
    app = run()
    assert app.success[0].value.startswith("Live data from binance: ") and "BTC/USDT 1h candles" in app.success[0].value
    assert app.metric  # the forecast's headline figures
    assert app.warning[0].value.startswith("Live forecasts are not logged: the server's local store ")
    assert "is not an SQLite database" in app.warning[0].value
    app = calibrated(app)  # its calibration runs without keeping the origins
    said = re.match(r"Over the last (\d+) forecasts of BTC/USDT 1h", app.success[1].value)
    assert said and 177 <= int(said[1]) <= 200  # the full anchored record: its first origin moves by blocks of 24


def test_the_dashboard_says_what_is_wrong_with_the_store_when_no_exchange_answers(store, monkeypatch, tmp_path):
    from test_app import run

    monkeypatch.setenv("KRONOS_STORE", str(faulty("truncated", tmp_path)))
    app = run()  # the store fixture's exchanges are offline
    assert app.error[0].value.startswith("The server's local store ") and "is damaged" in app.error[0].value
    assert "no exchange answered either" in app.error[0].value and not app.metric


def test_custom_data_is_backtested_on_the_dashboard_when_the_store_cannot_keep_paths(store, monkeypatch, tmp_path):
    from test_app import run
    from test_track_record import PAGE, PARITY_CSV, SMALL, press

    monkeypatch.setenv("KRONOS_STORE", str(faulty("not SQLite", tmp_path)))
    app = run("pages/custom_data.py", SMALL)
    app.file_uploader(key="custom.file").set_value(("input.csv", PARITY_CSV.read_bytes(), "text/csv"))
    run(app=app)
    run(PAGE, app=app)
    app.radio(key="track.source").set_value("custom")
    press(app, 3, 7)
    assert not app.error and app.metric[0].value == "3"
