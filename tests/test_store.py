"""The local candle store: upserts without duplicates, concurrent writers, file import, the real history."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
from data_frames import REAL_DATA, candle_frame, csv_bytes, json_text, needs_real_data

from kronos.cli import main
from kronos.data.store import CandleStore, default_path
from kronos.errors import InvalidInputError
from kronos.timeframes import format_duration, median_step, timeframe_delta

KEY = ("binance", "BTC/USDT", "1h")


@pytest.fixture
def store(tmp_path) -> CandleStore:
    return CandleStore(tmp_path / "candles.sqlite")


def test_merge_counts_new_rows_and_never_duplicates(store):
    frame = candle_frame(40)
    assert store.merge(frame.head(30), *KEY) == 30
    assert store.merge(frame, *KEY) == 10
    pd.testing.assert_frame_equal(store.load(*KEY), frame)
    pd.testing.assert_frame_equal(store.load(*KEY, limit=5), frame.tail(5).reset_index(drop=True))
    assert store.span(*KEY) == (frame["timestamps"].iloc[0], frame["timestamps"].iloc[-1])
    assert store.latest_timestamp(*KEY) == frame["timestamps"].iloc[-1]


def test_newer_values_win_and_markets_are_kept_apart(store):
    frame = candle_frame(40)
    store.merge(frame, *KEY)
    store.merge(frame.assign(close=1.0).tail(1), *KEY, amount_estimated=True)
    store.merge(frame, "okx", "BTC/USDT", "1h")
    assert store.load(*KEY)["close"].iloc[-1] == 1.0 and store.amount_is_estimated(*KEY, limit=1)
    assert not store.amount_is_estimated("okx", "BTC/USDT", "1h")
    assert store.contents()[["exchange", "rows"]].values.tolist() == [["binance", 40], ["okx", 40]]
    assert store.load("kraken", "BTC/USDT", "1h").empty and store.span("kraken", "BTC/USDT", "1h") is None


def test_several_threads_and_store_objects_write_at_once(tmp_path):
    path = tmp_path / "shared.sqlite"
    frame = candle_frame(400)
    chunks = [frame.iloc[i:i + 120] for i in range(0, 400, 70)]  # overlapping pieces
    added = []
    threads = [threading.Thread(target=lambda c=c: added.append(CandleStore(path).merge(c, *KEY))) for c in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(added) == 400
    pd.testing.assert_frame_equal(CandleStore(path).load(*KEY), frame)


def test_default_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KRONOS_STORE", str(tmp_path / "x.sqlite"))
    assert default_path() == tmp_path / "x.sqlite"
    monkeypatch.delenv("KRONOS_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_path() == tmp_path / "kronos" / "candles.sqlite"


def test_import_validates_and_merges_without_duplicates(store, tmp_path):
    path = tmp_path / "my.csv"
    path.write_bytes(csv_bytes(candle_frame(50)))
    assert store.import_file(path, *KEY).rows_added == 50
    report = store.import_file(path, *KEY)
    assert (report.rows_read, report.rows_added) == (50, 0)


@pytest.mark.parametrize("content, timeframe, message", [
    (csv_bytes(candle_frame(50)).replace(b"2024-01-01 05", b"nonsense"), "1h", "my.csv: timestamps: row 6 (line 7"),
    (csv_bytes(candle_frame(50, step="1D")), "1h", "my.csv: its rows are 1d apart but --timeframe is 1h"),
    (csv_bytes(candle_frame(50)), "7x", "timeframe '7x' is not understood"),
])
def test_import_refuses_bad_files(store, tmp_path, content, timeframe, message):
    path = tmp_path / "my.csv"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(")):
        store.import_file(path, "binance", "BTC/USDT", timeframe)
    assert store.load("binance", "BTC/USDT", timeframe).empty


def test_import_reads_the_custom_json_and_reports_missing_files(store, tmp_path):
    frame = candle_frame(40)
    path = tmp_path / "seed.json"
    path.write_text(json_text(frame))
    assert store.import_file(path, *KEY).rows_added == 40
    with pytest.raises(InvalidInputError, match="cannot read .*absent.csv"):
        store.import_file(tmp_path / "absent.csv", *KEY)


def test_import_command(tmp_path, capsys):
    path = tmp_path / "my.csv"
    path.write_bytes(csv_bytes(candle_frame(40).drop(columns="amount")))
    assert main(["import", str(path), "--exchange", "okx", "--store", str(tmp_path / "s.sqlite")]) == 0
    out, err = capsys.readouterr()
    assert "40 new of 40 candles merged" in out and "amount is estimated" in err
    assert CandleStore(tmp_path / "s.sqlite").amount_is_estimated("okx", "BTC/USDT", "1h")


def test_timeframes_and_durations():
    assert timeframe_delta("5m") == pd.Timedelta(minutes=5) and timeframe_delta("1d") == pd.Timedelta(days=1)
    assert timeframe_delta("1w") == pd.Timedelta(days=7)
    for bad in ("", "h", "0h", "1x", "¶P", "-1h", "1.5h"):
        with pytest.raises(InvalidInputError, match="is not understood"):
            timeframe_delta(bad)
    assert [format_duration(pd.Timedelta(s)) for s in ("5min", "1h", "2D", "90s")] == ["5min", "1h", "2d", "90s"]
    assert median_step(pd.date_range("2024-01-01", periods=5, freq="h")) == pd.Timedelta(hours=1)
    assert median_step(pd.DatetimeIndex(["2024-01-01"])) is None


@needs_real_data
def test_real_history_imports_and_its_halt_does_no_harm(store):
    report = store.import_file(REAL_DATA, *KEY)
    assert (report.rows_read, report.rows_added) == (27_082, 27_082)
    assert "2023-03-24 12:00:00, is 2h" in report.warnings[0]
    assert store.import_file(REAL_DATA, *KEY).rows_added == 0
    loaded = store.load(*KEY)
    assert len(loaded) == 27_082 and loaded["timestamps"].is_monotonic_increasing
    assert loaded.set_index("timestamps").loc["2023-01-01 00:00", "open"] == pytest.approx(16541.77)
    assert store.latest_timestamp(*KEY) == pd.Timestamp("2026-02-02 10:00")
