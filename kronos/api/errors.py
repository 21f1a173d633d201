"""Every error as JSON `{"error", "problems"}` (kronos.schemas.service.ErrorBody), its status from one table.

Domain errors (kronos.errors) map through STATUS and speak to the client in their `public()` words, which name no
server paths (the full message goes to the server log); request validation is 422, or 400 when the body could not
be read as JSON at all; anything unexpected is a 500 naming only its type. Never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from kronos.errors import (
    DataUnavailableError,
    InvalidInputError,
    KronosError,
    ServiceBusyError,
    ServiceTimeoutError,
    UnknownMarketError,
    WeightsUnavailableError,
)
from kronos.schemas.service import CalibrationPending, ErrorBody

MAX_BODY_BYTES = 4 * 2**20
STATUS = ((ServiceBusyError, 429), (ServiceTimeoutError, 503), (InvalidInputError, 422), (UnknownMarketError, 404),
          (WeightsUnavailableError, 503), (DataUnavailableError, 503), (KronosError, 400))
MEANING = {202: "calibrate=true: the calibration is still running; ask again, the same request, after Retry-After "
                "seconds (Location names it; the body is a CalibrationPending)",
           400: "the body could not be read as JSON (send a JSON object with content-type application/json)",
           401: "this server wants its token: `Authorization: Bearer <KRONOS_API_TOKEN>`",
           404: "unknown exchange, symbol or timeframe",
           405: "method not allowed (the Allow header lists them)",
           413: f"request body over {MAX_BODY_BYTES // 2**20} MiB",
           422: "invalid parameters or candles, or more work than the request budget; `problems` says what to fix",
           429: "busy: every worker and queue place is taken; retry after Retry-After seconds",
           503: "model or market data unavailable, or the forecast took too long; retry later"}
PENDING_HEADERS = {"Retry-After": {"description": "seconds to wait before asking again", "schema": {"type": "integer"}},
                   "Location": {"description": "the request to send again (path and query)",
                                "schema": {"type": "string"}}}
log = logging.getLogger("kronos.api")


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route: each status it can return besides 200, with the error body's schema."""
    return {code: {"model": CalibrationPending, "description": MEANING[code], "headers": PENDING_HEADERS}
            if code == 202 else {"model": ErrorBody, "description": MEANING[code]} for code in codes}


def error_body(status: int, message: str, problems: list[str] | None = None,
               headers: dict[str, str] | None = None) -> JSONResponse:
    """An ErrorBody answer."""
    body = ErrorBody(error=message, problems=[message] if problems is None else problems)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers or None)


def error_response(request: Request, error: Exception) -> JSONResponse:
    """Any error as an ErrorBody with its status and headers (Retry-After, Allow, WWW-Authenticate); server paths
    the app knows of (the store, the model's folders) are replaced in the text, whatever raised it."""
    headers: dict[str, str] = {}
    problems = None
    if isinstance(error, RequestValidationError):
        status, message, problems = _invalid_request(list(error.errors()))
    elif isinstance(error, HTTPException):
        status, message = error.status_code, str(error.detail)
        headers = dict(error.headers or {})
    elif isinstance(error, KronosError):
        status = next(code for kind, code in STATUS if isinstance(error, kind))
        message = error.public()
        problems = error.problems if isinstance(error, InvalidInputError) else None
        if message != str(error):
            log.warning("%s %s: %s", status, request.url.path, error)
    else:
        log.exception("unexpected error on %s", request.url.path, exc_info=error)
        status, message = 500, f"internal error ({type(error).__name__}); the server log has the details"
    retry = getattr(error, "retry_after", None)
    if retry:
        headers["Retry-After"] = str(retry)
    private = getattr(request.app.state, "private_paths", ())
    problems = [_redact(p, private) for p in (problems or [message])]
    return error_body(status, _redact(message, private), problems, headers)


def _invalid_request(errors: list[dict]) -> tuple[int, str, list[str]]:
    """400 for a body that is not JSON (invalid JSON, another content type, none), else 422 naming each field."""
    for item in errors:
        whole_body = tuple(item.get("loc", ())) == ("body",)
        if item.get("type") == "json_invalid":
            return 400, f"the body is not valid JSON ({item.get('ctx', {}).get('error', 'decode error')})", []
        if whole_body and isinstance(item.get("input"), (bytes, bytearray)):
            return 400, "the body is not JSON: send a JSON object with content-type application/json", []
        if whole_body and item.get("type") == "missing":
            return 400, "the request has no body: send a JSON object with content-type application/json", []
    problems = [_describe(item) for item in errors]
    return 422, "; ".join(problems), problems


def _describe(item: dict) -> str:
    """One request-validation problem as `where: what (got value)`."""
    loc = tuple(item.get("loc", ())) or ("request",)
    where = ".".join(str(part) for part in loc[1:]) or str(loc[0])
    got = f" (got {item['input']!r:.60})" if "input" in item and not isinstance(item["input"], (dict, list)) else ""
    return f"{where}: {item.get('msg', 'invalid')}{got}"


def _redact(text: str, private: tuple[str, ...]) -> str:
    """`text` with each private path (longest first) replaced by "<server path>"."""
    for path in private:
        text = text.replace(path, "<server path>")
    return text
