"""Dérogations (Code du patrimoine L213-3) over HTTP.

``POST /v1/archive-units/{id}/derogations`` (JSON: ``client_id``, ``reference``,
``decision_date``, ``reason``, optional ``until``; 201), ``GET /v1/archive-units/{id}/
derogations``, ``GET /v1/derogations/{id}``, ``POST /v1/derogations/{id}/revoke`` (JSON:
``reason``). Archivists and admins grant and revoke; auditors read too.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from archive_service.api.deps import CallerDep, ServicesDep
from archive_service.api.disposal import _json, _text
from archive_service.errors import BadRequest
from archive_service.services.derogations import derogation_json

router = APIRouter()


def _date(body: dict[str, Any], name: str) -> date | None:
    value = _text(body, name)
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be a date (YYYY-MM-DD), not {value!r}") from None


@router.post("/v1/archive-units/{unit_id}/derogations", status_code=201)
async def grant(
    unit_id: str, request: Request, caller: CallerDep, services: ServicesDep
) -> JSONResponse:
    body = await _json(request)
    client_id = _text(body, "client_id", required=True) or ""
    reference = _text(body, "reference", required=True)
    decision_date = _date(body, "decision_date")
    reason = _text(body, "reason", required=True)
    until = _date(body, "until")
    service = services.derogations
    found = await anyio.to_thread.run_sync(
        lambda: service.grant(
            caller,
            unit_id,
            client_id=client_id,
            reference=reference,
            decision_date=decision_date,
            reason=reason,
            until=until,
        )
    )
    return JSONResponse(derogation_json(found, today=service.today()), status_code=201)


@router.get("/v1/archive-units/{unit_id}/derogations")
def unit_derogations(unit_id: str, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    return services.derogations.view(caller, unit_id).json()


@router.get("/v1/derogations/{derogation_id}")
def get_derogation(derogation_id: str, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    service = services.derogations
    return derogation_json(service.get(caller, derogation_id), today=service.today())


@router.post("/v1/derogations/{derogation_id}/revoke")
async def revoke(
    derogation_id: str, request: Request, caller: CallerDep, services: ServicesDep
) -> dict[str, Any]:
    body = await _json(request)
    reason = _text(body, "reason", required=True)
    service = services.derogations
    found = await anyio.to_thread.run_sync(
        lambda: service.revoke(caller, derogation_id, reason=reason)
    )
    return derogation_json(found, today=service.today())
