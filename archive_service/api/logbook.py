"""The logbook over HTTP: entries, a unit's lifecycle, checkpoints, inclusion and consistency
proofs (RFC 9162). Readable by archivists, auditors and admins of the tenant; a checkpoint on
demand is for admins."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from archive_service.api.deps import CallerDep, ServicesDep
from archive_service.errors import BadRequest, Forbidden
from archive_service.ports import CheckpointRecord, LogEntryRecord, Role
from archive_service.services.logbook import LogbookService

router = APIRouter()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def entry_json(e: LogEntryRecord) -> dict[str, Any]:
    """An entry as it was hashed: its canonical bytes (base64, exactly the leaf data) and
    their JSON, with its place in the tree once integrated."""
    return {
        "id": e.id,
        "leaf_index": e.leaf_index,
        "leaf_hash": None if e.leaf_hash is None else e.leaf_hash.hex(),
        "canonical": _b64(e.canonical),
        "entry": json.loads(e.canonical),
    }


def checkpoint_json(cp: CheckpointRecord, logbook: LogbookService) -> dict[str, Any]:
    return {
        "origin": logbook.origin(cp.tenant_id),
        "size": cp.size,
        "root": cp.root.hex(),
        "note": cp.note.decode("utf-8"),
        "token": _b64(cp.token),
        "key_name": cp.key_name,
        "public_key": logbook.public_key_pem().decode("ascii"),
        "created_at": cp.created_at.isoformat(),
        "copies": list(cp.copies),
    }


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit():
        raise BadRequest(f"cursor {cursor!r} is not one this API gave")
    return int(cursor)


def _page(entries: list[LogEntryRecord], limit: int) -> dict[str, Any]:
    return {
        "items": [entry_json(e) for e in entries],
        "next_cursor": str(entries[-1].id) if len(entries) == limit else None,
    }


@router.get("/v1/logbook/entries")
def list_entries(
    caller: CallerDep,
    services: ServicesDep,
    unit: str | None = None,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Entries about an archive unit (``unit``: its lifecycle), or dated ``from`` <= at <
    ``to``, oldest first; ``next_cursor`` gives the next page."""
    after = _cursor(cursor)
    if unit is not None:
        if start is not None or end is not None:
            raise BadRequest("give unit, or from/to, not both")
        found = services.logbook.read_lifecycle(caller, unit, after_id=after, limit=limit)
    else:
        found = services.logbook.read_entries(
            caller,
            start=_utc(start),
            end=_utc(end),
            after_id=after,
            limit=limit,
        )
    return _page(found, limit)


@router.get("/v1/archive-units/{unit_id}/lifecycle")
def unit_lifecycle(unit_id: str, caller: CallerDep, services: ServicesDep) -> Any:
    """Every entry about the unit, the units and objects below it, its package and the
    transfer that brought it."""
    return {
        "unit_id": unit_id,
        "entries": [entry_json(e) for e in services.logbook.read_lifecycle(caller, unit_id)],
    }


@router.get("/v1/logbook/checkpoints/latest")
def latest_checkpoint(caller: CallerDep, services: ServicesDep) -> Any:
    """The latest signed note, its RFC 3161 token (base64 DER) and the public key."""
    return checkpoint_json(services.logbook.latest_checkpoint(caller), services.logbook)


@router.post("/v1/logbook/checkpoints")
def make_checkpoint(caller: CallerDep, services: ServicesDep) -> JSONResponse:
    """Integrate and checkpoint the caller's tenant's log now (admin): 201 with the new
    checkpoint, 200 when nothing changed since the latest."""
    if caller.role is not Role.ADMIN:
        raise Forbidden("only an admin may make a checkpoint")
    outcome = services.logbook.checkpoint(caller.tenant_id)
    body = {
        "status": outcome.status,
        "checkpoint": None
        if outcome.checkpoint is None
        else checkpoint_json(outcome.checkpoint, services.logbook),
    }
    return JSONResponse(body, status_code=201 if outcome.status == "created" else 200)


@router.get("/v1/logbook/proofs/inclusion")
def inclusion_proof(
    caller: CallerDep,
    services: ServicesDep,
    entry: int,
    tree_size: Annotated[int | None, Query()] = None,
) -> Any:
    """RFC 9162 §2.1.3 inclusion proof of ``entry`` in the tree of ``tree_size`` leaves
    (default: the latest checkpoint's)."""
    proof = services.logbook.read_inclusion(caller, entry, tree_size)
    return {
        "entry_id": proof.entry.id,
        "leaf_index": proof.entry.leaf_index,
        "tree_size": proof.tree_size,
        "leaf_hash": (proof.entry.leaf_hash or b"").hex(),
        "root": proof.root.hex(),
        "canonical": _b64(proof.entry.canonical),
        "entry": json.loads(proof.entry.canonical),
        "proof": [h.hex() for h in proof.proof],
    }


@router.get("/v1/logbook/proofs/consistency")
def consistency_proof(
    caller: CallerDep,
    services: ServicesDep,
    size1: Annotated[int, Query(alias="from")],
    size2: Annotated[int | None, Query(alias="to")] = None,
) -> Any:
    """RFC 9162 §2.1.4 consistency proof from the tree of ``from`` leaves to ``to``
    (default: the latest checkpoint's)."""
    proof = services.logbook.consistency(caller, size1, size2)
    return {
        "from": proof.size1,
        "to": proof.size2,
        "root_from": proof.root1.hex(),
        "root_to": proof.root2.hex(),
        "proof": [h.hex() for h in proof.proof],
    }
