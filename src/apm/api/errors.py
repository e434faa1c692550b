"""The one place where errors become HTTP answers (spec conventions)."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from apm.api.metrics import record_ingest
from apm.domain.errors import (
    DomainError,
    InvalidPage,
    NotFound,
    PayloadTooLarge,
    StorageUnavailable,
    ValidationFailed,
)
from apm.domain.ingest import EventsRejected

log = structlog.get_logger("apm.api")

_STATUS: dict[type[DomainError], int] = {
    ValidationFailed: 400,
    NotFound: 404,
    InvalidPage: 404,
    PayloadTooLarge: 413,
    StorageUnavailable: 503,
}


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    if status == 413:
        # The rest of an oversized body is never read, so the connection cannot carry another
        # request: say so, or a keep-alive client sends its next request into a closed socket.
        headers = {**(headers or {}), "Connection": "close"}
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


def domain_error(_: Request, error: DomainError) -> Response:
    status = next((code for kind, code in _STATUS.items() if isinstance(error, kind)), 400)
    body: dict[str, Any] = {"detail": error.detail}
    if isinstance(error, ValidationFailed):
        body["errors"] = error.errors
    if isinstance(error, StorageUnavailable):
        log.warning("storage.unavailable", reason=error.reason)
    if isinstance(error, EventsRejected):
        # Strict mode refused the whole request: its events count as rejected all the same.
        record_ingest(inserted=0, rejected=int(error.extra.get("rejected", 0)))
    body.update(error.extra)
    return _json(status, body)


def http_error(_: Request, error: HTTPException) -> Response:
    body: dict[str, Any] = {"detail": str(error.detail)}
    if isinstance(error, ValidationException):
        errors: dict[str, list[str]] = {}
        for item in error.extra if isinstance(error.extra, list) else []:
            if isinstance(item, dict):
                errors.setdefault(str(item.get("key") or "body"), []).append(
                    str(item.get("message") or "Invalid value.")
                )
        body = {"detail": "Invalid request.", "errors": errors}
    return _json(error.status_code, body, headers=error.headers)


def unexpected_error(_: Request, error: Exception) -> Response:
    log.error("http.unhandled_error", exc_info=error)
    return _json(HTTP_500_INTERNAL_SERVER_ERROR, {"detail": "Internal server error."})


EXCEPTION_HANDLERS = {
    DomainError: domain_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
