"""A dossier's version history over HTTP (growing dossiers, ``services/dossiers.py``).

* ``GET /v1/archive-units/{id}/versions``: every package of the dossier holding the unit, by
  sequence: package, transfer, message identifier, date, manifest digest, token time, and the
  units and documents it added;
* ``GET /v1/archive-units/{id}/versions/{n}/manifest`` and ``…/timestamp``: that package's
  SEDA manifest and RFC 3161 token, read from the recorded copies (logged as any read).

Visibility is that of ``GET /v1/archive-units/{id}``: another tenant's id, or another
organization's dossier for a platform, is 404.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from archive_service.api.deps import CallerDep, ServicesDep
from archive_service.services.dossiers import DossierHistory, DossierVersion

router = APIRouter()

Sequence = Annotated[int, Path(ge=1, description="the dossier version (package sequence)")]


def _version_json(version: DossierVersion) -> dict[str, Any]:
    p, transfer = version.package, version.transfer
    return {
        "sequence": p.sequence,
        "package_id": p.id,
        "transfer_id": p.transfer_id,
        "message_identifier": transfer.message_identifier if transfer is not None else None,
        "created_at": p.created_at.isoformat(),
        "seda_version": p.seda_version,
        "manifest_sha256": p.manifest_sha256,
        "manifest_size": p.manifest_size,
        "timestamp_gen_time": p.timestamp_gen_time.isoformat(),
        "units": [
            {
                "id": u.id,
                "parent_id": u.parent_id,
                "level": u.level,
                "title": u.title,
                "category": u.category,
                "status": u.status,
            }
            for u in version.units
        ],
        "objects": [
            {
                "id": o.id,
                "archive_unit_id": o.archive_unit_id,
                "path": o.path,
                "size": o.size,
                "sha256": o.sha256,
            }
            for o in version.objects
        ],
    }


def history_json(history: DossierHistory) -> dict[str, Any]:
    return {
        "dossier_id": history.root.id,
        "title": history.root.title,
        "status": history.root.status,
        "versions": [_version_json(v) for v in history.versions],
    }


def _digest_header(sha256_hex: str) -> str:
    return "sha-256=:" + base64.b64encode(bytes.fromhex(sha256_hex)).decode() + ":"


@router.get("/v1/archive-units/{unit_id}/versions")
def versions(unit_id: str, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    """The dossier's packages, first transfer first."""
    return history_json(services.dossiers.versions(caller, unit_id))


@router.get("/v1/archive-units/{unit_id}/versions/{sequence}/manifest")
def version_manifest(
    unit_id: str, sequence: Sequence, caller: CallerDep, services: ServicesDep
) -> Response:
    package, xml = services.dossiers.manifest(caller, unit_id, sequence)
    return Response(
        xml,
        media_type="application/xml",
        headers={
            "ETag": f'"sha256:{package.manifest_sha256}"',
            "Repr-Digest": _digest_header(package.manifest_sha256),
        },
    )


@router.get("/v1/archive-units/{unit_id}/versions/{sequence}/timestamp")
def version_timestamp(
    unit_id: str, sequence: Sequence, caller: CallerDep, services: ServicesDep
) -> Response:
    _package, token = services.dossiers.timestamp(caller, unit_id, sequence)
    return Response(token, media_type="application/timestamp-reply")
