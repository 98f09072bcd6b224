"""JSON shapes of API answers, built from service records."""

from __future__ import annotations

from typing import Any

from archive_service.core.communicability import AccessDecision
from archive_service.ports import ObjectRecord, TransferRecord, UnitRecord
from archive_service.services.retrieval import SearchHit, UnitView


def transfer_json(t: TransferRecord) -> dict[str, Any]:
    return {
        "id": t.id,
        "status": t.status.value,
        "message_identifier": t.message_identifier,
        "reasons": list(t.reasons),
        "archive_unit_id": t.archive_unit_id,
        "package_id": t.package_id if t.archive_unit_id else None,
        "created_at": t.created_at.isoformat(),
        "updated_at": t.updated_at.isoformat(),
        "files": len(t.files),
    }


def object_json(o: ObjectRecord) -> dict[str, Any]:
    return {
        "id": o.id,
        "archive_unit_id": o.archive_unit_id,
        "path": o.path,
        "filename": o.path.rsplit("/", 1)[-1],
        "uri": o.uri,
        "size": o.size,
        "sha256": o.sha256,
        "sha512": o.sha512,
        "mime_type": o.mime_type,
        "puid": o.puid,
        "format_name": o.format_name,
        "format_version": o.format_version,
        "declared_mime": o.declared_mime,
        "content_url": f"/v1/objects/{o.id}/content",
    }


def _rules(u: UnitRecord) -> dict[str, Any]:
    return {"appraisal": u.appraisal, "access": u.access}


def unit_summary_json(u: UnitRecord) -> dict[str, Any]:
    return {
        "id": u.id,
        "title": u.title,
        "level": u.level,
        "category": u.category,
        "organization_siret": u.organization_siret,
        "cpv": u.cpv,
        "notification_date": u.notification_date.isoformat() if u.notification_date else None,
        "created_at": u.created_at.isoformat(),
        "status": u.status,
    }


def access_json(
    decision: AccessDecision, *, producer: bool = False, mine: AccessDecision | None = None
) -> dict[str, Any]:
    """The ``access`` block: communicable now (for anyone but the producer) or until when.

    ``you_may_read``: the caller may read the content today. ``mine`` is the decision for the
    caller itself (``RetrievalService.view``: the producer's platform reads its own records
    whatever the delay, a dérogation's grantee reads what it opens, nobody reads a destroyed
    unit); a dérogation that opens the unit to the caller is named in ``your_derogation``.
    Without it (search results), the producer rule alone decides."""
    out = {
        **decision.members(),
        "explanation": decision.explanation,
        "you_may_read": decision.communicable or producer,
    }
    if mine is not None:
        out["you_may_read"] = mine.communicable
        opened_by = mine.members().get("derogation")
        if opened_by is not None:
            out["your_derogation"] = opened_by
    return out


def search_hit_json(hit: SearchHit, *, producer: bool = False) -> dict[str, Any]:
    """A dossier in search results: its summary, and whether all its documents are
    communicable now (``restricted_documents``, ``pending_documents``, ``restricted_until``)."""
    return {
        **unit_summary_json(hit.unit),
        "access": {
            **access_json(hit.access, producer=producer),
            "communicable": hit.communicable,
            "restricted_documents": hit.restricted_units,
            "pending_documents": hit.pending_units,
            "restricted_until": hit.restricted_until,
        },
    }


def unit_json(view: UnitView) -> dict[str, Any]:
    """The unit, its subtree (nested), the objects below it, and where its proof lives."""
    objects_by_unit: dict[str, list[str]] = {}
    for o in view.objects:
        objects_by_unit.setdefault(o.archive_unit_id, []).append(o.id)
    children: dict[str | None, list[UnitRecord]] = {}
    for u in view.units:
        children.setdefault(u.parent_id, []).append(u)

    def access(u: UnitRecord) -> dict[str, Any] | None:
        decision = view.access.get(u.id)
        if decision is None:
            return None
        return access_json(decision, producer=view.producer, mine=view.readable.get(u.id))

    def node(u: UnitRecord) -> dict[str, Any]:
        out = {
            "id": u.id,
            "title": u.title,
            "level": u.level,
            "category": u.category,
            "status": u.status,
            "rules": _rules(u),
            "access": access(u),
            "objects": objects_by_unit.get(u.id, []),
            "children": [node(c) for c in children.get(u.id, [])],
        }
        if u.id in view.gone:
            out["tombstone"] = view.gone[u.id]["tombstone"]
        return out

    u = view.unit
    pending = [
        {"unit_id": x.id, "rule": kind, "start_event": (rule or {}).get("start_event")}
        for x in view.units
        for kind, rule in (("appraisal", x.appraisal), ("access", x.access))
        if rule and rule.get("pending")
    ]
    return {
        **unit_summary_json(u),
        "root_id": u.root_id,
        "parent_id": u.parent_id,
        "package_id": view.package.id,
        "content": u.content,
        "rules": _rules(u),
        "access": access(u),
        "tombstone": view.gone[u.id]["tombstone"] if u.id in view.gone else None,
        "pending_rules": pending,
        "tree": node(u),
        "objects": [object_json(o) for o in view.objects],
        "manifest": {
            "url": f"/v1/archive-units/{u.id}/manifest",
            "sha256": view.package.manifest_sha256,
            "size": view.package.manifest_size,
            "seda_version": view.package.seda_version,
        },
        "timestamp": {
            "url": f"/v1/archive-units/{u.id}/timestamp",
            "gen_time": view.package.timestamp_gen_time.isoformat(),
        },
    }
