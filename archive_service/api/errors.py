"""ArchiveError → RFC 9457 problem+json. The only place that knows HTTP status codes."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from archive_service import errors as e

PROBLEM = "application/problem+json"

_STATUS: tuple[tuple[type[e.ArchiveError], int], ...] = (
    (e.BadRequest, 400),
    (e.PayloadTooLarge, 413),
    (e.UnsupportedMediaType, 415),
    (e.InvalidInput, 422),
    (e.SedaInvalid, 422),
    (e.NotAuthenticated, 401),
    (e.Forbidden, 403),
    (e.Gone, 410),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.Unavailable, 503),
    (e.InsufficientStorage, 507),
    (e.IntegrityFailure, 500),
    (e.ConfigurationError, 500),
)


def status_of(exc: e.ArchiveError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str,
    issues: list[dict[str, str]] | None = None,
    extra: dict[str, object] | None = None,
) -> JSONResponse:
    body: dict[str, object] = {
        **(extra or {}),
        "type": f"urn:archive-service:problem:{type_}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if issues:
        body["issues"] = issues
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


async def archive_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.ArchiveError)
    return problem(
        status_of(exc),
        exc.title,
        exc.message,
        type_=exc.code,
        issues=[i.as_dict() for i in exc.issues],
        extra=exc.extra,
    )


async def validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    issues = [
        {
            "code": "invalid-parameter",
            "message": str(err.get("msg", "")),
            "location": ".".join(str(p) for p in err.get("loc", ())),
        }
        for err in exc.errors()
    ]
    return problem(
        422, "Invalid input", "request parameters are invalid", type_="invalid-input", issues=issues
    )
