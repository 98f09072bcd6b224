"""Dossier events and the retention they drive; the tenant's retention référentiel.

- ``POST /v1/archive-units/{id}/events`` — record an event of the unit's dossier
  (``{"event", "date", "reference"?, "note"?, "correction"?, "reason"?}``): 201 with the
  recomputed rules and the lock extension; 200 if it was already recorded with that date.
- ``GET /v1/archive-units/{id}/events`` — the dossier's event history.
- ``GET /v1/archive-units/{id}/retention`` — every unit's rules and ends, the due summary.
- ``GET /v1/referentials/retention`` (``/versions``, ``/versions/{n}``) — read it.
- ``PUT /v1/referentials/retention`` — replace it (admin; body: the référentiel JSON, comment
  in ``X-Comment`` or ``?comment=``).
- ``POST /v1/referentials/retention/impact`` — what a candidate would change, nothing written.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from archive_service.api.deps import CallerDep, ServicesDep
from archive_service.errors import BadRequest, InvalidInput, Issue, PayloadTooLarge
from archive_service.ports import ReferentialVersionRecord
from archive_service.services.lifecycle import EventOutcome, facts_json
from archive_service.services.lifecycle import event_json as event_record_json
from archive_service.services.referentials import ReferentialVersion

router = APIRouter()

MAX_BODY = 2 * 1024 * 1024


async def _text(request: Request) -> str:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise PayloadTooLarge(f"the body is larger than {MAX_BODY} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8") from None


def _event_body(text: str) -> dict[str, Any]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BadRequest("the body must be a JSON object")
    issues: list[Issue] = []
    known = {"event", "date", "reference", "note", "correction", "reason"}
    for key in sorted(set(raw) - known):
        issues.append(Issue("unknown-field", f"unknown field {key!r}", key))
    event = raw.get("event")
    if not isinstance(event, str) or not event:
        issues.append(Issue("missing-field", "event is required (a string)", "event"))
    when: date | None = None
    value = raw.get("date")
    if not isinstance(value, str):
        issues.append(Issue("missing-field", "date is required (YYYY-MM-DD)", "date"))
    else:
        try:
            when = date.fromisoformat(value)
        except ValueError:
            issues.append(Issue("invalid-date", f"not an ISO date: {value!r}", "date"))
        if len(value) != 10:
            issues.append(Issue("invalid-date", "expected YYYY-MM-DD", "date"))
    for name in ("reference", "note", "reason"):
        if raw.get(name) is not None and not isinstance(raw[name], str):
            issues.append(Issue("invalid-field", f"{name} must be a string", name))
    correction = raw.get("correction", False)
    if not isinstance(correction, bool):
        issues.append(Issue("invalid-field", "correction must be true or false", "correction"))
    if issues:
        raise InvalidInput("invalid event", issues=issues)
    return {
        "event": event,
        "when": when,
        "reference": raw.get("reference"),
        "note": raw.get("note"),
        "correction": correction,
        "reason": raw.get("reason"),
    }


def event_json(outcome: EventOutcome) -> dict[str, Any]:
    e = outcome.event
    result = outcome.result
    return {
        "dossier_id": outcome.root_id,
        "recorded": outcome.recorded,
        "event": event_record_json(e, previous_date=outcome.previous_date),
        "referential_version": result.referential_version if result else None,
        "changes": [c.as_dict() for c in result.changes] if result else [],
        "locks": result.locks.as_dict() if result else {"status": "unchanged"},
    }


@router.post("/v1/archive-units/{unit_id}/events")
async def post_event(
    unit_id: str, request: Request, caller: CallerDep, services: ServicesDep
) -> JSONResponse:
    body = _event_body(await _text(request))
    outcome = await run_in_threadpool(
        lambda: services.lifecycle.record_event(
            caller,
            unit_id,
            event=body["event"],
            when=body["when"],
            reference=body["reference"],
            note=body["note"],
            correction=body["correction"],
            reason=body["reason"],
        )
    )
    return JSONResponse(event_json(outcome), status_code=201 if outcome.recorded else 200)


@router.get("/v1/archive-units/{unit_id}/events")
def get_events(unit_id: str, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    dossier, history = services.lifecycle.events(caller, unit_id)
    return {"dossier_id": dossier.root_id, "events": history, "facts": facts_json(dossier)}


@router.get("/v1/archive-units/{unit_id}/retention")
def get_retention(unit_id: str, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    return services.lifecycle.retention(caller, unit_id)


def version_json(record: ReferentialVersionRecord, *, in_force: int) -> dict[str, Any]:
    return {
        "version": record.version,
        "label": record.label,
        "sha256": record.sha256,
        "comment": record.comment,
        "created_by": record.created_by,
        "created_at": record.created_at.isoformat(),
        "in_force": record.version == in_force,
    }


def full_json(v: ReferentialVersion, *, in_force: int) -> dict[str, Any]:
    return {
        **version_json(v.record, in_force=in_force),
        "referential": json.loads(v.record.text),
    }


@router.get("/v1/referentials/retention")
def get_referential(caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    current = services.referentials.current(caller)
    return full_json(current, in_force=current.record.version)


@router.get("/v1/referentials/retention/versions")
def get_referential_versions(caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    versions = services.referentials.versions(caller)
    latest = versions[-1].version
    return {"in_force": latest, "versions": [version_json(v, in_force=latest) for v in versions]}


@router.get("/v1/referentials/retention/versions/{version}")
def get_referential_version(
    version: int, caller: CallerDep, services: ServicesDep
) -> dict[str, Any]:
    found = services.referentials.version(caller, version)
    # The caller was checked (and the read logged) by version(): the version in force is
    # looked up without a second entry.
    latest = services.referentials.in_force(caller.tenant_id).record.version
    return full_json(found, in_force=latest)


@router.put("/v1/referentials/retention")
async def put_referential(
    request: Request, caller: CallerDep, services: ServicesDep, comment: str | None = None
) -> JSONResponse:
    text = await _text(request)
    why = comment or request.headers.get("x-comment")
    replaced = await run_in_threadpool(
        lambda: services.referentials.replace(caller, text, comment=why)
    )
    body = version_json(replaced.record, in_force=replaced.record.version)
    body["applies_to"] = (
        "new computations: units keep their rules until an event of their dossier, a new "
        "package or `archive-service retention recompute` recomputes them"
    )
    return JSONResponse(body, status_code=201)


@router.post("/v1/referentials/retention/impact")
async def post_impact(request: Request, caller: CallerDep, services: ServicesDep) -> Any:
    text = await _text(request)
    return await run_in_threadpool(lambda: services.lifecycle.impact(caller, text))
