"""Legal holds and disposal / transfer requests over HTTP (issue 5, items 5-7).

Holds: ``POST /v1/archive-units/{id}/holds``, ``GET /v1/archive-units/{id}/holds``,
``GET /v1/holds/{id}``, ``POST /v1/holds/{id}/lift``. Requests: ``GET /v1/disposal-requests/
due``, ``POST``/``GET /v1/disposal-requests``, ``GET …/{id}``, ``GET …/{id}/documents/{name}``,
``POST …/{id}/visa`` (JSON, or the authority's XML reply), ``POST …/{id}/execute``,
``GET …/{id}/transfer.zip``, ``POST …/{id}/reply`` (the definitive archives' XML reply),
``POST …/{id}/confirm``. Archivists and admins act; auditors read.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.background import BackgroundTask

from archive_service.api.deps import CallerDep, ServicesDep
from archive_service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from archive_service.services.disposal import candidate_json, request_json
from archive_service.services.holds import hold_json, hold_view_json

router = APIRouter()

#: Largest XML reply or JSON body accepted (a reply is a few kilobytes).
MAX_BODY = 5 * 1024 * 1024


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        raise PayloadTooLarge(f"the body is limited to {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise PayloadTooLarge(f"the body is limited to {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _media(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _json(request: Request) -> dict[str, Any]:
    if _media(request) not in ("application/json", ""):
        raise UnsupportedMediaType(f"send application/json, not {_media(request)}")
    data = await _body(request)
    try:
        body = json.loads(data or b"{}")
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


# -- legal holds -----------------------------------------------------------------------------


@router.post("/v1/archive-units/{unit_id}/holds", status_code=201)
async def place_hold(
    unit_id: str, request: Request, caller: CallerDep, services: ServicesDep
) -> JSONResponse:
    body = await _json(request)
    reason = _text(body, "reason", required=True) or ""
    reference = _text(body, "reference")
    hold = await anyio.to_thread.run_sync(
        lambda: services.holds.place(caller, unit_id, reason=reason, reference=reference)
    )
    return JSONResponse(hold_json(hold), status_code=201)


@router.get("/v1/archive-units/{unit_id}/holds")
def unit_holds(unit_id: str, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    return hold_view_json(services.holds.view(caller, unit_id))


@router.get("/v1/holds/{hold_id}")
def get_hold(hold_id: str, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    return hold_json(services.holds.get(caller, hold_id))


@router.post("/v1/holds/{hold_id}/lift")
async def lift_hold(
    hold_id: str, request: Request, caller: CallerDep, services: ServicesDep
) -> dict[str, Any]:
    body = await _json(request)
    reason = _text(body, "reason", required=True) or ""
    hold = await anyio.to_thread.run_sync(
        lambda: services.holds.lift(caller, hold_id, reason=reason)
    )
    return hold_json(hold)


# -- disposal and transfer requests ----------------------------------------------------------


@router.get("/v1/disposal-requests/due")
def due(caller: CallerDep, services: ServicesDep, kind: str = "destroy") -> dict[str, Any]:
    """What a request of ``kind`` would propose now (nothing is recorded)."""
    found = services.disposal.read_due(caller, kind)
    return {"kind": kind, "units": [candidate_json(c) for c in found]}


@router.post("/v1/disposal-requests", status_code=201)
async def propose(request: Request, caller: CallerDep, services: ServicesDep) -> JSONResponse:
    body = await _json(request)
    kind = _text(body, "kind") or "destroy"
    unit_ids = body.get("unit_ids")
    if unit_ids is not None and (
        not isinstance(unit_ids, list) or not all(isinstance(u, str) for u in unit_ids)
    ):
        raise BadRequest("unit_ids must be a list of unit ids")
    comment = _text(body, "comment")
    authority = _text(body, "control_authority")
    record = await anyio.to_thread.run_sync(
        lambda: services.disposal.propose(
            caller, kind, unit_ids=unit_ids, comment=comment, control_authority=authority
        )
    )
    return JSONResponse(request_json(record), status_code=201)


@router.get("/v1/disposal-requests")
def list_requests(
    caller: CallerDep, services: ServicesDep, status: str | None = None
) -> dict[str, Any]:
    return {
        "requests": [
            request_json(r) for r in services.disposal.read_requests(caller, status=status)
        ]
    }


@router.get("/v1/disposal-requests/{request_id}")
def get_request(request_id: str, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    return request_json(services.disposal.read_request(caller, request_id))


@router.get("/v1/disposal-requests/{request_id}/documents/{name}")
def get_document(request_id: str, name: str, caller: CallerDep, services: ServicesDep) -> Response:
    data, media_type = services.disposal.read_document(caller, request_id, name)
    return Response(
        data,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{request_id}-{name}"'},
    )


@router.post("/v1/disposal-requests/{request_id}/visa")
async def visa(
    request_id: str, request: Request, caller: CallerDep, services: ServicesDep
) -> dict[str, Any]:
    """The visa: JSON ``{decision, reference, comment}`` entered by an archivist, or the
    authority's ``AuthorizationControlAuthorityRequestReply`` as ``application/xml``."""
    if _media(request) in ("application/xml", "text/xml"):
        xml = await _body(request)
        record = await anyio.to_thread.run_sync(
            lambda: services.disposal.record_visa_reply(caller, request_id, xml)
        )
        return request_json(record)
    body = await _json(request)
    decision = _text(body, "decision", required=True) or ""
    reference = _text(body, "reference", required=True) or ""
    comment = _text(body, "comment")
    record = await anyio.to_thread.run_sync(
        lambda: services.disposal.record_visa(
            caller, request_id, decision=decision, reference=reference, comment=comment
        )
    )
    return request_json(record)


@router.post("/v1/disposal-requests/{request_id}/execute")
def execute(request_id: str, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    return request_json(services.disposal.execute(caller, request_id))


@router.get("/v1/disposal-requests/{request_id}/transfer.zip")
def transfer_zip(request_id: str, caller: CallerDep, services: ServicesDep) -> FileResponse:
    path = services.disposal.transfer_zip(caller, request_id)
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"{request_id}-transfer.zip",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


@router.post("/v1/disposal-requests/{request_id}/reply")
async def transfer_reply(
    request_id: str, request: Request, caller: CallerDep, services: ServicesDep
) -> dict[str, Any]:
    """The definitive archives' ``ArchiveTransferReply`` (``application/xml``)."""
    if _media(request) not in ("application/xml", "text/xml"):
        raise UnsupportedMediaType("send the ArchiveTransferReply as application/xml")
    xml = await _body(request)
    record = await anyio.to_thread.run_sync(
        lambda: services.disposal.record_transfer_reply(caller, request_id, xml)
    )
    return request_json(record)


@router.post("/v1/disposal-requests/{request_id}/confirm")
def confirm(request_id: str, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    return request_json(services.disposal.confirm(caller, request_id))
