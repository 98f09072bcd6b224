"""JSON shapes of API answers, built from service records."""

from __future__ import annotations

from typing import Any

from archive_service.ports import ObjectRecord, TransferRecord, UnitRecord
from archive_service.services.retrieval import UnitView


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
    }


def unit_json(view: UnitView) -> dict[str, Any]:
    """The unit, its subtree (nested), the objects below it, and where its proof lives."""
    objects_by_unit: dict[str, list[str]] = {}
    for o in view.objects:
        objects_by_unit.setdefault(o.archive_unit_id, []).append(o.id)
    children: dict[str | None, list[UnitRecord]] = {}
    for u in view.units:
        children.setdefault(u.parent_id, []).append(u)

    def node(u: UnitRecord) -> dict[str, Any]:
        return {
            "id": u.id,
            "title": u.title,
            "level": u.level,
            "category": u.category,
            "rules": _rules(u),
            "objects": objects_by_unit.get(u.id, []),
            "children": [node(c) for c in children.get(u.id, [])],
        }

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
