"""The backtest's answer: settings, origins, per forecaster the scores per hour ahead, skills, the pool's weights.

Built by `kronos.evaluation.backtest.Backtest.to_schema()`; the CLI prints it and the API returns it as a
BacktestAnswer (plus its data block: `kronos.flows.backtest_answer`), the Track record page offers it as a download.
Per-hour lists have H entries (hour h at index h - 1); band fields map a level key ("50", "80", "95") to such a
list. Scores are on the close's log return from the last close before the origin; NaN and infinities are null.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, RootModel, model_validator

from kronos.schemas.forecast import DataBlock

Hourly = list[float | None]
# The names of the forecasters that are not baselines (the baselines': kronos.evaluation.registry)
MODEL, CALIBRATED, COMBINED = "model", "model_calibrated", "combined"
TRAILING = "trailing_frequency"  # scored beside them: an upside probability alone
REFERENCE = "random_walk"  # the baseline skill is measured against


class UpsideScores(BaseModel):
    """The scores of an upside probability alone (the "trailing_frequency" baseline has only these)."""

    model_config = ConfigDict(extra="forbid")

    brier_upside: Hourly
    log_loss_upside: Hourly
    hit_rate: Hourly


class ForecasterScores(UpsideScores):
    """Every score of one forecaster over the same origins (kronos.evaluation.scores.Scores)."""

    n_origins: int
    n_samples: int
    crps: Hourly
    coverage: dict[str, Hourly]
    coverage_low: dict[str, Hourly]  # 95% Wilson interval of the coverage
    coverage_high: dict[str, Hourly]
    band_width: dict[str, Hourly]  # mean width, log-return units
    brier_decomposition: dict[str, Hourly]  # reliability, resolution, uncertainty
    reliability: dict[str, list[float | int | None]]  # per probability bin: mean_forecast, observed_frequency, count
    reliability_by_hour: list[dict[str, list[float | int | None]]]
    pit: list[Hourly]  # per origin, per hour
    brier_vol_amp: float | None


class BacktestScores(RootModel[dict[str, ForecasterScores | UpsideScores]]):
    """Each forecaster's scores over the same origins: the model raw and calibrated, the baselines, the combined
    forecast (the pool of the calibrated model and the baselines), and the trailing frequency of up moves."""

    # by name: MODEL, CALIBRATED, each registered baseline, COMBINED (ForecasterScores), TRAILING (UpsideScores)

    @model_validator(mode="after")
    def _every_kind(self) -> BacktestScores:
        """The forecasters that are not baselines, the reference and the trailing frequency are there; every
        forecaster has every score, the trailing frequency its upside scores only."""
        missing = [name for name in (MODEL, CALIBRATED, REFERENCE, COMBINED, TRAILING) if name not in self.root]
        if missing:
            raise ValueError(f"the scores lack {', '.join(missing)}")
        if any(type(scores) is not ForecasterScores for name, scores in self.root.items() if name != TRAILING):
            raise ValueError(f"every forecaster but {TRAILING} needs every score")
        if type(self.root[TRAILING]) is not UpsideScores:
            raise ValueError(f"{TRAILING} has upside scores only")
        return self


class Latest(BaseModel):
    """The forecast after the last row: per hour its raw, calibrated and combined upside probability and bands
    (log returns from `last_close`), and the pool's weights."""

    after: str
    last_close: float
    timestamps: list[str]
    calibrated: list[bool]  # per hour: the model's calibration had min_count known outcomes
    pooled: list[bool]  # per hour: the pool's weights were learnt (else the default baseline alone)
    upside_raw: Hourly
    upside_calibrated: Hourly
    bands_calibrated: dict[str, list[Hourly]]  # level key -> [lower, upper]
    upside_combined: Hourly
    bands_combined: dict[str, list[Hourly]]
    median_combined: Hourly
    volatility_amplification_combined: float | None
    weights: dict[str, Hourly]  # component -> per hour


class BacktestResult(BaseModel):
    """A walk-forward backtest: the scores of every forecaster of kronos.evaluation.registry.forecasters (the model
    raw and calibrated, each registered baseline, the combined forecast: ForecasterScores) and "trailing_frequency"
    (UpsideScores); CRPS and Brier skill per hour against the random walk (`skill`) and against the best baseline
    (`skill_best`, `best_baseline`)."""

    settings: dict[str, int | float]
    model: str
    origins: int
    origin_times: list[str]
    reused: int  # origins whose paths came from the store
    baseline_window: int  # one-step returns each baseline sees before its origin (GARCH: docs/track-record.md)
    calibrated_origins: list[int]  # per hour: origins the model's calibration reached
    pooled_origins: list[int]  # per hour: origins whose pool weights were learnt
    best_baseline: str  # the baseline of lowest mean CRPS over the hours
    scores: BacktestScores
    skill: dict[str, dict[str, Hourly]]  # forecaster -> crps / brier_upside -> per hour, against the random walk
    skill_best: dict[str, dict[str, Hourly]]  # the same against the best baseline
    weights: dict[str, Hourly]  # the pool's mean weight per component and hour over the pooled origins
    latest: Latest | None = None


class BacktestAnswer(BacktestResult):
    """What the CLI prints and POST /backtest returns: the backtest (BacktestResult) and `data`, where its candles
    came from."""

    data: DataBlock
