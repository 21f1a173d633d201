"""GET /health: whether the model is loaded and how busy the pool is (open even when a token is set)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter

from kronos.api.deps import ForecasterDep, RuntimeDep
from kronos.api.errors import responses
from kronos.schemas.service import Health

router = APIRouter()
log = logging.getLogger("kronos.api")


@router.get("/health", summary="Whether the model is loaded, how busy the pool is, the store's state",
            description="`store` is as of the request (the file's header read and a write tried and rolled back); "
                        "the store's full integrity check runs at most once a minute and `store_checked` says when "
                        "it last ran (UTC), whatever it found.", responses=responses(503))
def health(runtime: RuntimeDep, forecaster: ForecasterDep) -> Health:
    store = runtime.market.store
    fault = store.health()
    if fault is not None:
        log.warning("%s", fault)  # the operator's message names the path; the answer does not
    checked = store.checked_at()
    return Health(status="ok", model=runtime.model_name, max_context=forecaster.max_context,
                  workers=runtime.service.workers, capacity=runtime.service.capacity,
                  pending=runtime.service.pending, store="ok" if fault is None else fault.public(),
                  store_checked=None if checked is None else datetime.fromtimestamp(checked, UTC))
