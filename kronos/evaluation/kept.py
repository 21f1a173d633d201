"""What calibration records keep in the store (its fitted_records and garch_fits tables), written and read back here
only: a final record's per-origin terms and scores, keyed by everything they depend on, and GARCH(1,1) fits, keyed
by the returns they were fitted on, so that a restarted server refits nothing. An entry that does not read back
whole (damaged, foreign, of another format) is a miss, never an error; a store that cannot take an entry leaves
the calibration as it is (what is kept is a cache)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, fields

import numpy as np

from kronos.data.store import CandleStore
from kronos.errors import StoreUnavailableError
from kronos.evaluation.baselines import GarchFit, fit_garch
from kronos.evaluation.issuing import Issue, Terms
from kronos.evaluation.registry import components, forecasters
from kronos.evaluation.scores import brier, crps

FORMAT = 1  # what a kept entry means; entries of another format are misses (raise it when the evaluation changes)
RECORDS_BYTES = 100 * 10**6  # the fitted records' table at most (a 224-origin record of 30 paths x 24 h: ~3 MB)
GARCH_ROWS = 200_000  # GARCH fits kept at most (one per refit row of every market: 8 MB)
TERMS = tuple(f.name for f in fields(Terms))


@dataclass(frozen=True, eq=False)
class Scored:
    """Per-origin scores that a record's figures average: every forecaster's CRPS, the combined upside Brier score."""

    crps: np.ndarray  # (P, F, H), forecasters in the registry's order (registry.forecasters)
    brier: np.ndarray  # (P, H)

    def then(self, later: Scored) -> Scored:
        """These origins' scores followed by those of later origins."""
        return Scored(np.concatenate([self.crps, later.crps]), np.concatenate([self.brier, later.brier]))


def scored(issue: Issue, observed: np.ndarray) -> Scored:
    """The scores of the first N runs of `issue`, the origins with outcomes `observed` (N, H)."""
    n = len(observed)
    found = issue.forecasters
    return Scored(np.stack([crps(found[name].samples[:n], observed) for name in forecasters()], 1),
                  brier(found["combined"].upside[:n], observed > 0))


@dataclass(frozen=True, eq=False)
class KeptRecord:
    """A final record's terms and scores as kept under `key`."""

    key: str
    terms: Terms
    scored: Scored


def record_key(described: dict, rows: np.ndarray) -> str:
    """The key of a record: what it depends on (`described`, JSON-ready) and the per-row hashes of the rows it read."""
    text = json.dumps({"format": FORMAT, **described}, sort_keys=True).encode()
    return hashlib.sha256(text + np.ascontiguousarray(rows).tobytes()).hexdigest()


def kept_record(store: CandleStore, keys: list[str]) -> KeptRecord | None:
    """The record kept under the first of `keys` that reads back whole, or None."""
    found = store.fitted_records(keys)
    for key in keys:
        record = _read(key, found[key]) if key in found else None
        if record is not None:
            return record
    return None


def keep_record(store: CandleStore, record: KeptRecord, replaces: str | None = None) -> None:
    """Keep a final record (in place of the record it grew from)."""
    arrays = {f"terms.{name}": getattr(record.terms, name) for name in TERMS}
    blob = io.BytesIO()
    np.savez(blob, key=np.array(record.key), format=np.array(FORMAT), crps=record.scored.crps,
             brier=record.scored.brier, **arrays)
    try:
        store.put_fitted_record(record.key, blob.getvalue(), limit_bytes=RECORDS_BYTES, replaces=replaces)
    except StoreUnavailableError:  # e.g. read-only: the record stands, it is only not kept
        pass


def _read(key: str, blob: bytes) -> KeptRecord | None:
    """The record in `blob` when it is one of this format, kept under `key`, and whole."""
    expected = {"key", "format", "crps", "brier", *(f"terms.{name}" for name in TERMS)}
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            if set(data.files) != expected or str(data["key"]) != key or int(data["format"]) != FORMAT:
                return None
            terms = Terms(**{name: data[f"terms.{name}"] for name in TERMS})
            record = KeptRecord(key, terms, Scored(data["crps"], data["brier"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return record if _whole(record) else None


def _whole(record: KeptRecord) -> bool:
    """Whether a record read back has the shapes its terms and scores share: P origins, H hours, L levels, K parts;
    and as many forecasters and pool components as the registry has (a record of another registry is a miss)."""
    terms, found = record.terms, record.scored
    if terms.up.ndim != 2 or terms.pool_a.ndim != 3 or found.crps.ndim != 3:
        return False
    (p, horizon), k = terms.up.shape, terms.pool_a.shape[2]
    per_origin = {terms.rows.shape, terms.combined_vol.shape, terms.vol_outcome.shape}
    hourly = {terms.model_up.shape, terms.combined_up.shape, found.brier.shape, terms.pool_a.shape[:2],
              terms.model_errors.shape[:2], terms.combined_errors.shape[:2], terms.pool_b.shape[:2]}
    return (p > 0 and per_origin == {(p,)} and hourly == {(p, horizon)} and bool(np.all(np.diff(terms.rows) > 0))
            and terms.model_errors.shape == terms.combined_errors.shape and terms.pool_b.shape[2:] == (k, k)
            and k == len(components()) and found.crps.shape == (p, len(forecasters()), horizon))


class KeptGarch:
    """GARCH(1,1) fits through the store (baselines.garch_state's `fits`): those kept are read, the others fitted
    (baselines.fit_garch, kept in memory too) and kept."""

    def __init__(self, store: CandleStore):
        self.store = store

    def __call__(self, windows: list[np.ndarray]) -> list[GarchFit]:
        keys = [_garch_key(window) for window in windows]
        found = {key: GarchFit(*params) for key, params in self.store.garch_fits(sorted(set(keys))).items()}
        new = {key: fit_garch(window) for key, window in zip(keys, windows) if key not in found}
        if new:
            try:
                self.store.put_garch_fits({key: (f.omega, f.alpha, f.beta) for key, f in new.items()},
                                          limit_rows=GARCH_ROWS)
            except StoreUnavailableError:  # not kept: fitted again next time
                pass
        return [found.get(key) or new[key] for key in keys]


def _garch_key(returns: np.ndarray) -> str:
    return hashlib.sha256(f"garch {FORMAT} ".encode() + np.ascontiguousarray(returns, float).tobytes()).hexdigest()
