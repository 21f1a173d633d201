"""GET /scan: a watchlist (given symbols, or an exchange's top markets) forecast in shared generation loops, ranked."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kronos.api.deps import ForecasterDep, RuntimeDep
from kronos.api.errors import responses
from kronos.errors import InvalidInputError
from kronos.markets import scan_answer
from kronos.schemas.markets import Scan, ScanQuery
from kronos.settings import SCAN_MAX_MARKETS, SCAN_MAX_PATHS

router = APIRouter()


@router.get("/scan", summary="Markets ranked by their forecasts: upside probability, expected return, risk",
            description=f"The budget of one request: at most {SCAN_MAX_MARKETS} markets and {SCAN_MAX_PATHS} paths "
                        "(markets x samples), refused with 422 before any work. A market that cannot be fetched comes "
                        "from the store or is listed as unavailable with the reason; the scan itself does not fail.",
            responses=responses(404, 422, 429, 503))
def get_scan(query: Annotated[ScanQuery, Query()], runtime: RuntimeDep, forecaster: ForecasterDep) -> Scan:
    if problems := query.over_budget():  # checked before the work is queued
        raise InvalidInputError(problems)
    key = ("scan", query.model_dump_json())
    return runtime.service.run(key, lambda: scan_answer(query, forecaster, runtime.market.store))
