"""What calibration records keep in the store (kronos.evaluation.kept): a record reads back as it was written, a
damaged or foreign entry is a miss, the tables stay within their caps (least recently used out first), GARCH fits
survive a restart, and a store that cannot keep leaves the calibration standing."""

from __future__ import annotations

import io
from dataclasses import fields

import numpy as np

from kronos.data.store import CandleStore
from kronos.errors import StoreUnavailableError
from kronos.evaluation import baselines, kept
from kronos.evaluation.issuing import Terms
from kronos.evaluation.kept import KeptGarch, KeptRecord, Scored, keep_record, kept_record
from kronos.evaluation.registry import components, forecasters

P, H, L, K = 5, 4, 6, len(components())


def record(key: str, seed: int = 0, origins: int = P) -> KeptRecord:
    """A record of random terms and scores with the shapes of `origins` origins."""
    rng = np.random.default_rng(seed)
    shapes = {"rows": (origins,), "up": (origins, H), "model_errors": (origins, H, L), "model_up": (origins, H),
              "pool_a": (origins, H, K), "pool_b": (origins, H, K, K), "combined_errors": (origins, H, L),
              "combined_up": (origins, H), "combined_vol": (origins,), "vol_outcome": (origins,)}
    values = {name: rng.normal(size=shape) for name, shape in shapes.items()}
    values |= {"rows": 100 + 6 * np.arange(origins), "up": values["up"] > 0, "vol_outcome": values["vol_outcome"] > 0}
    return KeptRecord(key, Terms(**values), Scored(rng.normal(size=(origins, len(forecasters()), H)),
                                                   rng.normal(size=(origins, H))))


def same(a: KeptRecord, b: KeptRecord) -> bool:
    return a.key == b.key and all(np.array_equal(getattr(a.terms, f.name), getattr(b.terms, f.name))
                                  for f in fields(Terms)) and np.array_equal(a.scored.crps, b.scored.crps) and \
        np.array_equal(a.scored.brier, b.scored.brier)


def blob(store: CandleStore, key: str) -> bytes:
    return store.fitted_records([key])[key]


def test_a_kept_record_reads_back_as_written_under_its_key_only(tmp_path):
    store = CandleStore(tmp_path / "s.sqlite")
    keep_record(store, record("a"))
    found = kept_record(store, ["missing", "a"])
    assert found is not None and same(found, record("a")) and found.terms.up.dtype == bool
    assert kept_record(store, ["b"]) is None
    keep_record(store, record("a2", origins=P + 1), replaces="a")  # a record grown by an origin replaces its own
    assert store.fitted_records(["a", "a2"]).keys() == {"a2"}


def test_a_damaged_or_foreign_entry_is_a_miss(tmp_path):
    store = CandleStore(tmp_path / "s.sqlite")
    keep_record(store, record("good"))
    whole = blob(store, "good")
    wrong_shapes = io.BytesIO()
    with np.load(io.BytesIO(whole)) as data:
        arrays = {name: data[name] for name in data.files}
    np.savez(wrong_shapes, **{**arrays, "key": np.array("shapes"), "terms.pool_b": arrays["terms.pool_b"][:-1]})
    for key, state in {"garbage": b"not a record", "cut": whole[:len(whole) // 2], "foreign": whole,
                       "shapes": wrong_shapes.getvalue()}.items():
        store.put_fitted_record(key, state, limit_bytes=10**8)
        assert kept_record(store, [key]) is None, key  # "foreign": another key's record
    assert same(kept_record(store, ["garbage", "cut", "foreign", "shapes", "good"]), record("good"))


def test_kept_records_stay_within_their_cap_least_recently_used_out_first(tmp_path, monkeypatch):
    store = CandleStore(tmp_path / "s.sqlite")
    keep_record(store, record("first"))
    monkeypatch.setattr(kept, "RECORDS_BYTES", int(2.5 * len(blob(store, "first"))))
    keep_record(store, record("second", 1))
    assert kept_record(store, ["first"]) is not None  # read: now more recently used than "second"
    keep_record(store, record("third", 2))
    assert store.fitted_records(["first", "second", "third"]).keys() == {"first", "third"}


def test_garch_fits_are_kept_so_a_restarted_process_refits_nothing(tmp_path, monkeypatch):
    close = 100 * np.exp(np.random.default_rng(0).normal(0, 0.01, 1500).cumsum())
    store, fitted = CandleStore(tmp_path / "s.sqlite"), []
    fit = kept.fit_garch
    monkeypatch.setattr(kept, "fit_garch", lambda returns: fitted.append(len(returns)) or fit(returns))
    origins = np.arange(1100, 1400, 6)
    first = baselines.garch_state(close, origins, fits=KeptGarch(store))
    assert len(fitted) == len(np.unique(origins - origins % baselines.REFIT_ROWS))
    baselines._fit.cache_clear()  # a new process: nothing in memory
    fitted.clear()
    np.testing.assert_array_equal(baselines.garch_state(close, origins, fits=KeptGarch(store)), first)
    assert fitted == []
    np.testing.assert_array_equal(baselines.garch_state(close, origins), first)  # the same fits as unkept ones
    monkeypatch.setattr(kept, "GARCH_ROWS", 3)
    baselines.garch_state(close, origins - 600, fits=KeptGarch(store))
    with store._connect() as db:
        assert db.execute("SELECT COUNT(*) FROM garch_fits").fetchone()[0] == 3


def test_a_store_that_cannot_keep_leaves_the_record_standing(tmp_path, monkeypatch):
    store = CandleStore(tmp_path / "s.sqlite")

    def refused(*args, **kwargs):
        raise StoreUnavailableError("is read-only", str(store.path), "make it writable")

    monkeypatch.setattr(CandleStore, "put_fitted_record", refused)
    monkeypatch.setattr(CandleStore, "put_garch_fits", refused)
    keep_record(store, record("a"))
    close = 100 * np.exp(np.random.default_rng(0).normal(0, 0.01, 300).cumsum())
    assert baselines.garch_state(close, np.array([250]), fits=KeptGarch(store)).shape == (1, 4)
    assert kept_record(store, ["a"]) is None


def test_an_empty_record_is_no_record(tmp_path):
    store = CandleStore(tmp_path / "s.sqlite")
    keep_record(store, record("empty", origins=0))
    assert kept_record(store, ["empty"]) is None
