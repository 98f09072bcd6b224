"""Exports over HTTP: ``GET /v1/archive-units/{id}/export?seda=2.3|2.2``, the unit's DIP (a
zip: SEDA ``ArchiveDeliveryRequestReply`` manifest + the objects the caller may read; see
``services/export.py``). Visibility as ``GET /v1/archive-units/{id}``; checked, built and logged
before the first byte; problem+json errors otherwise. The temporary zip is removed once sent."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from archive_service.api.deps import CallerDep, ServicesDep

router = APIRouter()


@router.get("/v1/archive-units/{unit_id}/export")
def export_unit(
    unit_id: str,
    caller: CallerDep,
    services: ServicesDep,
    seda: str = Query("2.3", description="SEDA version of the manifest: 2.3 or 2.2"),
) -> FileResponse:
    """The unit's DIP as a zip (``manifest.xml`` + ``content/<object id>``)."""
    export = services.export.delivery(caller, unit_id, version=seda)
    return FileResponse(
        export.path,
        media_type="application/zip",
        filename=export.filename,
        headers={"X-Message-Identifier": export.message_identifier},
        background=BackgroundTask(export.path.unlink, missing_ok=True),
    )
