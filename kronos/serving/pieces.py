"""Background forecasts in pieces: `Yielding` sends a background job's batch to its source (a Batcher) a few
histories at a time, so that the forecasts others ask the same source for meanwhile wait for one piece, not the
whole batch (kronos.serving.batching). Each history has its own seed, so the pieces forecast what the batch would."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from kronos.engine import HISTORIES_PER_BATCH, ForecastSource, Progress
from kronos.engine.forecast import Forecast


class Yielding:
    """A ForecastSource for background work: `forecast_many` runs in pieces of `piece` histories, each asked for on
    its own, so the forecasts others ask the same source for meanwhile (a Batcher serves its callers in turn) wait
    for one piece, not the whole batch. Each history has its own seed, so the pieces forecast what the batch would."""

    def __init__(self, source: ForecastSource, piece: int = HISTORIES_PER_BATCH // 4):
        self.source, self.piece = source, piece

    def __getattr__(self, name: str) -> Any:  # name, max_context, fingerprint, check_arguments, forecast
        return getattr(self.source, name)

    def forecast_many(self, histories: Sequence[pd.DataFrame], *, samples: int | Sequence[int] | None = None,
                      seeds: Sequence[int | None] | None = None, progress: Progress | None = None,
                      **settings: Any) -> list[Forecast]:
        """As the source's forecast_many, a piece at a time; `progress` over the whole batch."""
        starts = range(0, len(histories), self.piece)
        made: list[Forecast] = []
        for number, start in enumerate(starts):
            part = slice(start, start + self.piece)
            arguments = dict(settings, seeds=None if seeds is None else list(seeds)[part],
                             progress=None if progress is None else _within(progress, number, len(starts)))
            if samples is not None:
                arguments["samples"] = samples if isinstance(samples, int) else list(samples)[part]
            made += self.source.forecast_many(list(histories)[part], **arguments)
        return made


def _within(progress: Progress, number: int, pieces: int) -> Progress:
    """Piece `number`'s progress as the batch's, in thousandths of a piece (pieces may count their steps apart)."""
    return lambda step, total: progress(number * 1000 + round(1000 * step / total), pieces * 1000)
