"""Evidence bundles over HTTP: ``GET /v1/archive-units/{id}/evidence[?with_objects=true]``, a
zip streamed as it is written (``services/evidence.py`` says what it holds and who may have
it). Checked and logged before the first byte; problem+json errors otherwise."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from archive_service.api.deps import CallerDep, ServicesDep

router = APIRouter()


@router.get("/v1/archive-units/{unit_id}/evidence")
def evidence(
    unit_id: str, caller: CallerDep, services: ServicesDep, with_objects: bool = False
) -> StreamingResponse:
    """The unit's evidence bundle (archivists, admins; auditors without objects unless the
    service allows them)."""
    bundle = services.evidence.bundle(caller, unit_id, with_objects=with_objects)
    return StreamingResponse(
        bundle.chunks(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{bundle.filename}"'},
    )
