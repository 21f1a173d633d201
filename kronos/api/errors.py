"""Every error as JSON `{"error", "problems"}` (kronos.schemas.service.ErrorBody), its status from one table.

Domain errors (kronos.errors) map through STATUS and speak to the client in their `public()` words, which name no
server paths (the full message goes to the server log); request validation is 422, or 400 when the body could not
be read as JSON at all; anything unexpected is a 500 naming only its type. Never a traceback. Every answer is
bounded, whatever the request held: at most MAX_PROBLEMS problems (then a count of the rest), input quoted in short
excerpts, under MAX_ERROR_BYTES in all. Every 503 carries Retry-After.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from kronos.data.validation import EXAMPLES
from kronos.errors import (
    DataUnavailableError,
    InvalidInputError,
    KronosError,
    ServiceBusyError,
    ServiceTimeoutError,
    UnknownMarketError,
    WeightsUnavailableError,
    excerpt,
    listed,
)
from kronos.schemas.service import CalibrationPending, ErrorBody

MAX_BODY_BYTES = 4 * 2**20
MAX_ERROR_BYTES = 64 * 2**10  # an error answer's most bytes, however much was wrong with the request
PROBLEM_CHARS = 1_000  # the most characters of an error's sentence and of each problem it lists
ROWS = "rows"  # the type of a list's request-validation problems already grouped by row (kronos.api.requests)
RETRY_AFTER_S = 60  # Retry-After of a 503 that does not say better (a store fault, missing weights)
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
           408: "the request body did not arrive within the body timeout (`serve --body-timeout`)",
           503: f"model or market data unavailable, or the forecast took too long; retry after Retry-After seconds "
                f"({RETRY_AFTER_S} unless the answer knows better)"}
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
    """An ErrorBody answer within MAX_ERROR_BYTES: each text cut at PROBLEM_CHARS, the problems cut (and counted)
    until the encoded answer fits."""
    problems = [_cut(p) for p in ([message] if problems is None else problems)]
    while True:
        body = ErrorBody(error=_cut(message), problems=problems)
        response = JSONResponse(body.model_dump(), status_code=status, headers=headers or None)
        if len(response.body) <= MAX_ERROR_BYTES or len(problems) <= 1:
            return response
        problems = listed(problems, len(problems) // 2)


def error_response(request: Request, error: Exception) -> JSONResponse:
    """Any error as an ErrorBody with its status and headers (Retry-After, Allow, WWW-Authenticate); server paths
    the app knows of (the store, the model's folders) are replaced in the text, whatever raised it."""
    headers: dict[str, str] = {}
    problems = None
    if isinstance(error, RequestValidationError):
        status, message, problems = _invalid_request(error.errors())
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
    retry = getattr(error, "retry_after", None) or (RETRY_AFTER_S if status == 503 else None)
    if retry:
        headers["Retry-After"] = str(retry)
    private = getattr(request.app.state, "private_paths", ())
    problems = [_redact(p, private) for p in (problems or [message])]
    return error_body(status, _redact(message, private), problems, headers)


def _invalid_request(errors: Sequence[dict]) -> tuple[int, str, list[str]]:
    """400 for a body that is not JSON (invalid JSON, another content type, none), else 422 naming each field."""
    for item in errors:
        whole_body = tuple(item.get("loc", ())) == ("body",)
        if item.get("type") == "json_invalid":
            return 400, f"the body is not valid JSON ({item.get('ctx', {}).get('error', 'decode error')})", []
        if whole_body and isinstance(item.get("input"), (bytes, bytearray)):
            return 400, "the body is not JSON: send a JSON object with content-type application/json", []
        if whole_body and item.get("type") == "missing":
            return 400, "the request has no body: send a JSON object with content-type application/json", []
    problems = listed(grouped(errors))
    return 422, "; ".join(problems), problems


def grouped(errors: Iterable[dict]) -> list[str]:
    """Request-validation problems as the validator words them: one line per field and kind of fault, its first
    EXAMPLES rows named (`row N (item N-1 of each JSON list)`) with an excerpt of each value, the rest counted;
    problems already so worded (ROWS, kronos.api.requests) as they are."""
    by_item: dict[tuple[str, int | None], tuple[list[str], object]] = {}
    worded: list[str] = []
    for item in errors:  # a union's members fail one by one: one entry per value, their messages together
        if item.get("type") == ROWS:
            worded += item["ctx"]["problems"]
            continue
        where, row = _where(tuple(item.get("loc", ())) or ("request",))
        messages, _ = by_item.setdefault((where, row), ([], item.get("input")))
        if item.get("msg", "invalid") not in messages:
            messages.append(item.get("msg", "invalid"))
    groups: dict[tuple[str, str], list[tuple[int | None, object]]] = {}
    for (where, row), (messages, value) in by_item.items():
        groups.setdefault((where, "; or ".join(messages)), []).append((row, value))
    return worded + [_problem(where, message, found) for (where, message), found in groups.items()]


def _where(loc: tuple) -> tuple[str, int | None]:
    """A field's name (its path inside the body or query, past a list's index) and the row an index names."""
    parts = list(loc[1:]) or [loc[0]]
    if len(parts) > 1 and isinstance(parts[1], int):
        return str(parts[0]), parts[1]
    return ".".join(str(part) for part in parts), None


def _problem(where: str, message: str, found: list[tuple[int | None, object]]) -> str:
    """`where: what (got value)`, or for list items `where: row N (item N-1 of each JSON list) value, ... and N more
    row(s): what`."""
    row, value = found[0]
    if row is None:
        got = "" if isinstance(value, (dict, list)) else f" (got {excerpt(value)})"
        return f"{where}: {message}{got}"
    quoted = [f"row {row + 1} (item {row} of each JSON list) {excerpt(value)}" for row, value in found[:EXAMPLES]]
    more = f" and {len(found) - EXAMPLES:,} more row(s)" if len(found) > EXAMPLES else ""
    return f"{where}: {', '.join(quoted)}{more}: {message}"


def _cut(text: str) -> str:
    """`text` cut at PROBLEM_CHARS characters, saying so."""
    return text if len(text) <= PROBLEM_CHARS else f"{text[:PROBLEM_CHARS]}... (cut: {len(text):,} characters)"


def _redact(text: str, private: tuple[str, ...]) -> str:
    """`text` with each private path (longest first) replaced by "<server path>"."""
    for path in private:
        text = text.replace(path, "<server path>")
    return text
