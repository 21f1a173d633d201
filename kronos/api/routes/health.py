"""GET /health: whether the model is loaded and how busy the pool is (open even when a token is set)."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from kronos.api.deps import ForecasterDep, RuntimeDep
from kronos.api.errors import responses
from kronos.schemas.service import Health

router = APIRouter()
log = logging.getLogger("kronos.api")


@router.get("/health", summary="Whether the model is loaded and how busy the pool is", responses=responses(503))
def health(runtime: RuntimeDep, forecaster: ForecasterDep) -> Health:
    fault = runtime.market.store.health()
    if fault is not None:
        log.warning("%s", fault)  # the operator's message names the path; the answer does not
    return Health(status="ok", model=runtime.model_name, max_context=forecaster.max_context,
                  workers=runtime.service.workers, capacity=runtime.service.capacity,
                  pending=runtime.service.pending, store="ok" if fault is None else fault.public())
