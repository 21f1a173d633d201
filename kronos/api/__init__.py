"""The HTTP API (FastAPI): `create_app` builds it; `python -m kronos serve` runs it on uvicorn.

Rooms: requests (what routes take), deps (typed dependencies: runtime, model, token), routes/ (forecasts,
backtest and track record, health), errors (one handler, one status table), middleware (body limit), app (the
factory). Answers are the typed models of kronos.schemas.
"""

from kronos.api.app import create_app

__all__ = ["create_app"]
