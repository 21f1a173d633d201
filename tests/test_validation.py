"""The one validator: malformed inputs and their messages, soft problems as warnings, round trips, real data."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from data_frames import REAL_DATA, candle_frame, csv_bytes, json_text, needs_real_data
from hypothesis import given, settings
from hypothesis import strategies as st

from kronos.data.reading import read_csv_bytes, read_json_text
from kronos.data.validation import check_forecast_span, check_history, validate_frame
from kronos.errors import InvalidInputError

BASE = candle_frame()
GOOD = csv_bytes(BASE)


def edit(row: int, column: str, value: str, data: bytes = GOOD) -> bytes:
    """The CSV with one cell replaced (row counted from 1, as in the messages)."""
    lines = data.decode().splitlines()
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    return ("\n".join(lines) + "\n").encode()


LINES = GOOD.decode().splitlines()
MALFORMED_CSV = [
    ("empty", b"", {}, "the file is empty"),
    ("blank", b"\n \n\r\n", {}, "the file is empty"),
    ("too big", GOOD, {"max_bytes": 100}, "the limit is 0.0 MiB"),
    ("too many rows", GOOD, {"max_rows": 35}, "the limit is 35"),
    ("xlsx", b"PK\x03\x04" + b"\x00" * 50, {}, "Excel workbook (.xlsx), not CSV"),
    ("xls", b"\xd0\xcf\x11\xe0" + b"\x00" * 50, {}, "old Excel workbook"),
    ("binary junk", bytes(range(256)) * 4, {}, "the file is not text"),
    ("latin-1", GOOD.replace(b"timestamps", b"timestamps\xe9", 1), {}, "not UTF-8 text (byte 0xe9"),
    ("damaged gzip", gzip.compress(GOOD)[:40], {}, "gzip-compressed but is damaged"),
    ("no delimiter", GOOD.replace(b",", b" "), {}, "has no commas"),
    ("decimal comma", b"\n".join(line.replace(b",", b";").replace(b".", b",") for line in GOOD.splitlines()), {},
     "decimal comma; write numbers with a dot"),
    ("ragged line", GOOD.replace(LINES[4].encode(), LINES[4].encode() + b",7"), {},
     "line 5 has 8 field(s) but the header has 7"),
    ("missing close", csv_bytes(BASE.drop(columns="close")), {}, "missing column(s) close"),
    ("no header", b"\n".join(GOOD.splitlines()[1:]), {}, "the first line looks like data: add a header line"),
    ("two time columns", csv_bytes(BASE.assign(date=BASE["timestamps"])), {},
     "columns 'timestamps' and 'date' both name timestamps"),
    ("bad time", edit(3, "timestamps", "yesterday"), {},
     "timestamps: row 3 (line 4 of the file) 'yesterday': not a date or time"),
    ("empty time", edit(7, "timestamps", ""), {}, "timestamps: row 7 (line 8 of the file) '': not a date or time"),
    ("text price", edit(5, "open", "abc"), {}, "open: row 5 (line 6 of the file) 'abc': not a number"),
    ("empty price", edit(6, "close", ""), {},
     "close: row 6 (line 7 of the file): empty; fill the cell or drop the row"),
    ("nan", edit(8, "high", "NaN"), {}, "high: row 8 (line 9 of the file): NaN or infinite"),
    ("infinity", edit(9, "low", "-inf"), {}, "low: row 9 (line 10 of the file): NaN or infinite"),
    ("negative price", edit(10, "low", "-5"), {}, "low: row 10 (line 11 of the file) (-5.0): negative"),
    ("negative volume", edit(11, "volume", "-1"), {}, "volume: row 11 (line 12 of the file) (-1.0): negative"),
    ("high below low", edit(12, "high", "1"), {}, "high: row 12 (line 13 of the file) (1.0): below low"),
    ("duplicate time", edit(14, "timestamps", LINES[13].split(",")[0]), {},
     "timestamps: row 13 (line 14 of the file) '2024-01-01 12:00:00', row 14 (line 15 of the file) "
     "'2024-01-01 12:00:00': the same time as another row; keep one row per time"),
    ("too few rows", csv_bytes(BASE.head(10)), {}, "the input has 10 data row(s); at least 32 are needed"),
    ("header only", LINES[0].encode(), {}, "the input has 0 data row(s)"),
    ("year 2262", edit(15, "timestamps", "2262-05-01 00:00:00"), {}, "timestamps: row 15 (line 16 of the file) "
     "'2262-05-01 00:00:00': outside the times that can be handled (1677-09-21 to 2262-04-11 23:47); check the year"),
    ("year 1600", edit(2, "timestamps", "1600-01-01"), {},
     "row 2 (line 3 of the file) '1600-01-01': outside the times"),
    ("zero price", edit(16, "close", "0"), {},
     "close: row 16 (line 17 of the file) (0.0): zero; prices must be above 0 and below 1e15, volumes and amounts 0 or "
     "more and below 1e15"),
    ("huge price", edit(17, "high", "1e308"), {}, "high: row 17 (line 18 of the file) (1e+308): too large; prices must "
     "be above 0 and below 1e15, volumes and amounts 0 or more and below 1e15 (rescale the column"),
    ("huge volume", edit(18, "volume", "1e15"), {}, "volume: row 18 (line 19 of the file) (1000000000000000.0): too "
     "large"),
    ("many bad cells", b"\n".join([LINES[0].encode()] + [line.replace(",1", ",x", 1).encode() for line in LINES[1:]]),
     {}, "more row(s): not a number"),
]
MALFORMED_JSON = [
    ("json empty", "  ", "the JSON is empty"),
    ("json syntax", json_text(BASE)[:-5], "the JSON is not valid at line 1"),
    ("json shape", "[1, 2, 3]", "the JSON holds a list"),
    ("json not lists", json.dumps({"timestamps": "2024-01-01", "open": 1}), "'timestamps', 'open' should be a list"),
    ("json lengths", json_text(BASE, open=BASE["open"].tolist()[:-1]),
     "the lists differ in length ('timestamps' has 40"),
    ("json null", json_text(BASE, close=[None] * 4 + BASE["close"].tolist()[4:]),
     "close: row 1 (item 0 of each JSON list), row 2 (item 1 of each JSON list), row 3 (item 2 of each JSON list) "
     "and 1 more row(s): empty"),
    ("json year 9999", json_text(BASE, timestamps=["9999-12-31T00:00:00", *BASE["timestamps"].astype(str)[1:]]),
     "timestamps: row 1 (item 0 of each JSON list) '9999-12-31T00:00:00': outside the times that can be handled"),
    ("json text price", json_text(BASE, open=["x"] + BASE["open"].tolist()[1:]),
     "open: row 1 (item 0 of each JSON list)"),
]


@pytest.mark.parametrize("data, limits, message", [case[1:] for case in MALFORMED_CSV],
                         ids=[case[0] for case in MALFORMED_CSV])
def test_malformed_csv_is_refused_with_its_message(data, limits, message):
    result = read_csv_bytes(data, **limits)
    assert result.frame is None and not result.ok
    assert any(message in error for error in result.errors), result.errors


@pytest.mark.parametrize("text, message", [case[1:] for case in MALFORMED_JSON],
                         ids=[case[0] for case in MALFORMED_JSON])
def test_malformed_json_is_refused_with_its_message(text, message):
    result = read_json_text(text)
    assert result.frame is None
    assert any(message in error for error in result.errors), result.errors


def test_the_table_has_at_least_25_malformed_inputs():
    assert len(MALFORMED_CSV) + len(MALFORMED_JSON) >= 25


SHUFFLED = BASE.sample(frac=1, random_state=1)
UNBOUNDED = BASE.assign(high=BASE["high"].where(BASE.index != 3, BASE["low"].iloc[3]))  # row 4: high = low
GAPPY = BASE.drop(index=[20, 21])
SOFT = [
    ("bom", b"\xef\xbb\xbf" + GOOD, {}, "byte-order mark"),
    ("utf-16", GOOD.decode().encode("utf-16"), {}, "UTF-16 text"),
    ("semicolons", GOOD.replace(b",", b";"), {}, "separated by ';' rather than commas"),
    ("tabs", GOOD.replace(b",", b"\t"), {}, "separated by '\\t' rather than commas"),
    ("unsorted", csv_bytes(SHUFFLED), {}, "earlier than the row before it; the rows were sorted by time"),
    ("unbounded", csv_bytes(UNBOUNDED), {}, "high/low: row 4 (line 5 of the file): high/low do not bound open/close"),
    ("gap", csv_bytes(GAPPY), {}, "the spacing is irregular (1 gap(s) differ from the median 1h; the first, after "
                                  "2024-01-01 19:00:00, is 3h)"),
    ("lookback", GOOD, {"lookback": 32}, "kept the latest 32 of 40 rows"),
    ("no amount", csv_bytes(BASE.drop(columns="amount")), {}, "amount is estimated as volume x mean"),
    ("no volume", csv_bytes(BASE.drop(columns=["volume", "amount"])), {}, "volume and amount are set to 0"),
    ("extra column", csv_bytes(BASE.assign(trades=1)), {}, "ignored column(s) 'trades'"),
    ("excel blank lines", GOOD + b",,,,,,\n,,,,,,\n", {}, "2 line(s) with only empty cells"),
]


@pytest.mark.parametrize("data, options, message", [case[1:] for case in SOFT], ids=[case[0] for case in SOFT])
def test_soft_problems_are_warnings_and_the_frame_is_usable(data, options, message):
    result = read_csv_bytes(data, **options)
    assert result.ok, result.errors
    assert any(message in warning for warning in result.warnings), result.warnings


def test_unsorted_rows_come_back_sorted_and_the_lookback_keeps_the_latest():
    result = read_csv_bytes(csv_bytes(SHUFFLED), lookback=10)
    pd.testing.assert_frame_equal(result.frame, BASE.tail(10).reset_index(drop=True))


@pytest.mark.parametrize("stamps, shift", [
    (BASE["timestamps"].dt.strftime("%Y-%m-%dT%H:%M:%S+02:00"), 2),  # the same wall times, 2 h east of UTC
    ((BASE["timestamps"] + pd.Timedelta(hours=2)).dt.strftime("%d %b %Y %H:%M") + " +0200", 0),
    (BASE["timestamps"].dt.tz_localize("UTC").dt.tz_convert("America/New_York"), 0),
], ids=["iso offset", "text offset", "aware frame"])
def test_time_zones_are_converted_to_naive_utc(stamps, shift):
    result = validate_frame(BASE.assign(timestamps=stamps))
    assert result.ok, result.errors
    pd.testing.assert_series_equal(result.frame["timestamps"], BASE["timestamps"] - pd.Timedelta(hours=shift))


@pytest.mark.parametrize("unit", ["s", "ms"])
def test_epoch_seconds_and_milliseconds(unit):
    epoch = BASE["timestamps"].astype("datetime64[ns]").astype("int64") // {"s": 10**9, "ms": 10**6}[unit]
    result = read_json_text(json_text(BASE, timestamps=epoch.tolist()))
    pd.testing.assert_frame_equal(result.frame, BASE)


def test_aliases_in_any_case_and_dates():
    frame = BASE.rename(columns={"timestamps": "Date", "open": "O", "high": "H", "low": "L", "close": "C",
                                 "volume": "Vol", "amount": "Turnover"})
    frame["Date"] = pd.date_range("2024-01-01", periods=40, freq="D").strftime("%Y-%m-%d")
    result = read_csv_bytes(csv_bytes(frame))
    assert result.ok and result.spacing == pd.Timedelta(days=1) and not result.warnings
    assert list(result.frame.columns) == ["timestamps", "open", "high", "low", "close", "volume", "amount"]


def test_gzip_csv_is_read():
    result = read_csv_bytes(gzip.compress(GOOD))
    pd.testing.assert_frame_equal(result.frame, BASE)


def test_missing_volume_and_amount_follow_the_reference():
    no_amount = validate_frame(BASE.drop(columns="amount"))
    mean_price = BASE[["open", "high", "low", "close"]].mean(axis=1)
    np.testing.assert_allclose(no_amount.frame["amount"], BASE["volume"] * mean_price)
    assert no_amount.amount_is_estimated
    no_volume = validate_frame(BASE.drop(columns=["volume", "amount"]))
    assert (no_volume.frame[["volume", "amount"]] == 0).all().all() and not no_volume.amount_is_estimated


def test_check_history_stays_strict_and_shares_the_checks():
    pd.testing.assert_frame_equal(check_history(BASE), BASE)
    with pytest.raises(InvalidInputError, match="earlier than the row before it; sort the rows by time"):
        check_history(SHUFFLED)
    with pytest.raises(InvalidInputError, match="the same time as another row"):
        check_history(pd.concat([BASE, BASE.tail(1)]))
    with pytest.raises(InvalidInputError, match=r"open: row 3 \(index 2\) 'x': not a number"):
        check_history(BASE.astype({"open": object}).assign(open=lambda f: f["open"].where(f.index != 2, "x")))
    with pytest.raises(InvalidInputError, match="at least 32 are needed"):
        check_history(BASE.head(5))
    with pytest.raises(InvalidInputError, match="must be a pandas DataFrame"):
        check_history([1, 2])


def test_a_frame_with_times_pandas_cannot_hold_is_refused_naming_the_row():
    far = BASE.assign(timestamps=BASE["timestamps"].astype("datetime64[s]").where(BASE.index != 4,
                                                                                  pd.Timestamp("2300-01-01")))
    with pytest.raises(InvalidInputError, match=r"timestamps: row 5 \(index 4\) .*outside the times that can be"):
        check_history(far)


def test_epoch_numbers_past_2262_are_outside_the_times_not_garbage():
    result = validate_frame(BASE.assign(timestamps=np.arange(len(BASE)) * 3.6e12 + 9.3e18))  # nanoseconds
    assert result.errors[0].startswith("timestamps: row 1 (index 0) (9.3e+18)")
    assert "outside the times that can be handled" in result.errors[0]


def test_zero_volume_and_amount_are_allowed_but_an_estimated_amount_past_the_limit_is_not():
    assert validate_frame(BASE.assign(volume=0.0, amount=0.0)).ok
    huge = validate_frame(BASE.drop(columns="amount").assign(volume=1e14))
    assert any(e.startswith("amount (estimated from volume): row 1 (index 0)") and "too large" in e
               for e in huge.errors), huge.errors


DAILY_2262 = candle_frame(64, start="2262-02-01", step="D")  # the last row opens 2262-04-05


def test_a_forecast_whose_steps_would_pass_2262_is_refused_naming_the_last_row():
    check_forecast_span(DAILY_2262["timestamps"], 6)  # up to 2262-04-11 00:00: fine
    last = r"\(2262-04-05 00:00, row 64\)"
    with pytest.raises(InvalidInputError, match=rf"timestamps: 7 forecast steps of 1d after the last row {last} would "
                                                r"pass 2262-04-11, .* at most 6 steps"):
        check_forecast_span(DAILY_2262["timestamps"], 7)
    check_forecast_span(BASE["timestamps"], 10_000)


def test_out_of_range_input_is_a_422_and_every_forecast_answer_is_finite(forecaster, tmp_path):
    from fastapi.testclient import TestClient
    from test_api import custom_body

    from kronos.api import create_app
    from kronos.data.store import CandleStore

    prices = ("open", "high", "low", "close")
    base = candle_frame(64)
    good = {"tiny prices": base.assign(**{c: base[c] * 1e-8 for c in prices}),
            "near the limit": base.assign(**{c: base[c] * 1e12 for c in prices}, volume=base["volume"] * 1e13,
                                          amount=9e14),
            "flat, no volume": base.assign(open=5.0, high=5.0, low=5.0, close=5.0, volume=0.0, amount=0.0)}
    bad = {"zero prices": (base.assign(**{c: 0.0 for c in prices}), "zero"),
           "1e308": (base.assign(**{c: base[c] * 1e306 for c in prices}), "too large"),
           "past 2262": (DAILY_2262, "would pass 2262-04-11")}
    with TestClient(create_app(forecaster=forecaster, store=CandleStore(tmp_path / "s.sqlite"))) as client:
        for name, frame in good.items():
            found = client.post("/predict_custom", json=custom_body(frame, horizon=8, samples=4))
            assert found.status_code == 200, (name, found.text)
            summary = {k: v for k, v in found.json().items() if k not in ("data", "settings", "calibrated")}
            assert all_finite(summary), name
        for name, (frame, problem) in bad.items():
            found = client.post("/predict_custom", json=custom_body(frame, horizon=8, samples=4))
            assert found.status_code == 422 and problem in found.text, (name, found.text)


def all_finite(value: object) -> bool:
    """Every number in a JSON value is finite and none is null."""
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(all_finite(v) for v in value)
    return value is not None and (not isinstance(value, float) or np.isfinite(value))


@st.composite
def frames(draw) -> pd.DataFrame:
    """Any valid candle frame: positive prices, high/low bounding open/close, regular spacing, every value (amount =
    volume x low included) below VALUE_LIMIT."""
    rows = draw(st.integers(32, 60))
    positive = st.floats(1e-6, 1e8, allow_nan=False, allow_infinity=False)
    low = np.array(draw(st.lists(positive, min_size=rows, max_size=rows)))
    spans = np.array(draw(st.lists(st.floats(0, 1e6), min_size=rows, max_size=rows)))
    weights = np.array(draw(st.lists(st.floats(0, 1), min_size=2 * rows, max_size=2 * rows))).reshape(2, rows)
    high = low + spans
    volume = np.array(draw(st.lists(st.floats(0, 1e6), min_size=rows, max_size=rows)))
    step = draw(st.sampled_from(["1min", "5min", "1h", "4h", "1D"]))
    start = draw(st.datetimes(pd.Timestamp("2000-01-01").to_pydatetime(), pd.Timestamp("2030-01-01").to_pydatetime()))
    frame = pd.DataFrame({"timestamps": pd.date_range(pd.Timestamp(start).floor("s"), periods=rows, freq=step),
                          "open": np.clip(low + spans * weights[0], low, high),
                          "high": high, "low": low,
                          "close": np.clip(low + spans * weights[1], low, high),
                          "volume": volume, "amount": volume * low})
    return frame.astype({"timestamps": "datetime64[ns]"})


@settings(max_examples=40, deadline=None)
@given(frame=frames(), as_json=st.booleans())
def test_any_valid_frame_round_trips_through_csv_or_json(frame, as_json):
    result = read_json_text(json_text(frame)) if as_json else read_csv_bytes(csv_bytes(frame))
    assert result.ok, result.errors
    assert not [w for w in result.warnings if "bound" in w or "spacing" in w]
    pd.testing.assert_frame_equal(result.frame, frame)


@needs_real_data
def test_real_binance_history_validates_with_the_missing_hour_as_a_warning():
    result = read_csv_bytes(REAL_DATA.read_bytes())
    assert result.ok, result.errors
    assert len(result.frame) == 27_082 and not result.amount_is_estimated
    assert result.warnings == ["timestamps: the spacing is irregular (1 gap(s) differ from the median 1h; the first, "
                               "after 2023-03-24 12:00:00, is 2h); the forecast steps use the median spacing"]
    halt = result.frame.set_index("timestamps").loc["2023-03-24 12:00"]
    assert halt["volume"] == 0 and halt["open"] == halt["close"]
    window = result.frame[result.frame["timestamps"].between("2023-03-20", "2023-03-28")]
    assert np.isfinite(check_history(window)[["volume", "amount"]].to_numpy()).all()
