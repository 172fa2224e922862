"""Domain exceptions and their one mapping to HTTP. Messages tell the caller what to fix."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    status_code = 500
    code = "internal"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidHistory(ServiceError):
    """Empty, too long, unknown ids, or inconsistent timestamps."""

    status_code = 422
    code = "invalid_history"


class UnknownItems(InvalidHistory):
    code = "unknown_items"


class SessionNotFound(ServiceError):
    status_code = 404
    code = "session_not_found"


class ItemNotFound(ServiceError):
    status_code = 404
    code = "item_not_found"


class BodyTooLarge(ServiceError):
    status_code = 413
    code = "body_too_large"


class StoreUnavailable(ServiceError):
    """The session store (Redis) cannot be reached; the request cannot be served without it."""

    status_code = 503
    code = "session_store_unavailable"


class NotReady(ServiceError):
    status_code = 503
    code = "not_ready"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    problems: list[dict[str, Any]] = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err.get("loc", ()) if part != "body") or "body"
        if err.get("type") == "json_invalid":
            msg = "request body is not valid JSON: " + str(err.get("ctx", {}).get("error", "parse error"))
            loc = "body"
        else:
            msg = str(err.get("msg", "invalid value"))
        problems.append({"field": loc, "message": msg})
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    return f"invalid request: {summary}", problems


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status_code)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, problems = _validation_message(exc)
    return JSONResponse(error_body("invalid_request", message, problems), status_code=422)


async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=exc)
    return JSONResponse(error_body("internal", "internal error; see the service log"), status_code=500)


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unhandled)
