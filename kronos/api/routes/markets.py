"""GET /scan: a watchlist (given symbols, or an exchange's top markets) forecast in shared generation loops, ranked."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kronos.api.deps import ForecasterDep, GoneDep, RuntimeDep
from kronos.api.errors import responses
from kronos.errors import InvalidInputError
from kronos.scan.ranking import scan_answer
from kronos.schemas.markets import Scan, ScanQuery
from kronos.settings import MAX_REQUEST_WORK, SCAN_MAX_MARKETS, SCAN_MAX_PATHS

router = APIRouter()


@router.get("/scan", summary="Markets ranked by their forecasts: upside probability, expected return, risk",
            description=f"The budget of one request: at most {SCAN_MAX_MARKETS} markets and {SCAN_MAX_PATHS} paths "
                        "(markets x samples), refused with 422 before any work. A market that cannot be fetched comes "
                        "from the store or is listed as unavailable with the reason; the scan itself does not fail. "
                        "Each row is the market's combined forecast (`basis` combined) when its first-sight backtest "
                        "is stored, else the model's raw figures (`basis` raw, with a note why). With "
                        "`calibrate=true` the missing backtests run within the request, market by market, as long "
                        f"as the request's work stays within {MAX_REQUEST_WORK:,} generated candle steps (the scan's "
                        "forecasts plus, per market backtested, the origins it lacks (at most 200) x samples x "
                        "horizon: one market's first sight at the defaults, tens of seconds); the others stay raw, "
                        "noted, and a later request goes on from the stored origins.",
            responses=responses(404, 422, 429, 503))
def get_scan(query: Annotated[ScanQuery, Query()], runtime: RuntimeDep, forecaster: ForecasterDep,
             gone: GoneDep) -> Scan:
    if problems := query.over_budget():  # checked before the work is queued
        raise InvalidInputError(problems)
    key = ("scan", query.model_dump_json())
    return runtime.service.run(key, lambda: scan_answer(query, forecaster, runtime.market.store), cancel=gone)
