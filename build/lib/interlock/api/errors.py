"""The intake's one error shape, `{"error": ..., "details": [...]}`, and its handlers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """Why a request was refused; `details` has one 'field: reason' line per problem."""

    error: str = Field(examples=["the proposal is invalid"])
    details: list[str] = Field(default_factory=list, examples=[["confidence: must be <= 1"]])


class ApiError(Exception):
    def __init__(
        self,
        status_code: int,
        error: str,
        details: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(error)
        self.status_code = status_code
        self.error = error
        self.details = details or []
        self.headers = headers or {}


def error_response(
    status_code: int,
    error: str,
    details: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=error, details=details or [])
    return JSONResponse(body.model_dump(), status_code=status_code, headers=headers)


def unauthorized(error: str) -> ApiError:
    return ApiError(401, error, headers={"WWW-Authenticate": 'Bearer realm="interlock"'})


def _format_request_error(err: dict[str, Any]) -> str:
    # FastAPI prefixes locations with where they came from ("query", "path"); keep the name.
    loc = ".".join(str(p) for p in err.get("loc", ())[1:]) or "request"
    return f"{loc}: {err.get('msg', 'invalid')}"


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status_code, exc.error, exc.details, exc.headers)

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(exc.status_code, str(exc.detail), [], dict(exc.headers or {}))

    async def request_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [_format_request_error(e) for e in exc.errors()]
        return error_response(422, "the request is invalid", details)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, request_error)
    app.add_exception_handler(Exception, unexpected)
