"""Legal holds, disposal requests (with their visa) and tombstones."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.orm import Session

from archive_service.db import tables as t
from archive_service.ports import (
    OPEN_REQUEST_STATUSES,
    DisposalRequestRecord,
    HoldRecord,
    RequestStatus,
    TombstoneRecord,
)


def _hold(row: t.LegalHold) -> HoldRecord:
    return HoldRecord(**{name: getattr(row, name) for name in HoldRecord.__slots__})


def _tombstone(row: t.Tombstone) -> TombstoneRecord:
    return TombstoneRecord(
        unit_id=row.unit_id,
        tenant_id=row.tenant_id,
        root_id=row.root_id,
        request_id=row.request_id,
        outcome=row.outcome,
        record=dict(row.record),
        at=row.at,
    )


def _request(row: t.DisposalRequest) -> DisposalRequestRecord:
    return DisposalRequestRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        kind=row.kind,
        status=RequestStatus(row.status),
        message_identifier=row.message_identifier,
        unit_ids=tuple(row.unit_ids),
        proposed_by=row.proposed_by,
        proposed_at=row.proposed_at,
        visa=dict(row.visa) if row.visa is not None else None,
        executed_by=row.executed_by,
        executed_at=row.executed_at,
        documents=dict(row.documents or {}),
        details=dict(row.details or {}),
    )


class SqlDisposalRepository:
    def __init__(self, session: Session) -> None:
        self._s = session

    # -- holds ---------------------------------------------------------------------------

    def add_hold(self, hold: HoldRecord) -> None:
        self._s.add(t.LegalHold(**{name: getattr(hold, name) for name in HoldRecord.__slots__}))
        self._s.flush()

    def get_hold(self, tenant_id: str, hold_id: str) -> HoldRecord | None:
        row = self._s.scalar(
            select(t.LegalHold).where(t.LegalHold.id == hold_id, t.LegalHold.tenant_id == tenant_id)
        )
        return None if row is None else _hold(row)

    def holds_of_unit(self, tenant_id: str, unit_id: str) -> list[HoldRecord]:
        rows = self._s.scalars(
            select(t.LegalHold)
            .where(t.LegalHold.tenant_id == tenant_id, t.LegalHold.unit_id == unit_id)
            .order_by(t.LegalHold.placed_at, t.LegalHold.id)
        ).all()
        return [_hold(r) for r in rows]

    def lift_hold(self, hold_id: str, *, by: str, at: datetime, reason: str) -> bool:
        result = self._s.execute(
            update(t.LegalHold)
            .where(t.LegalHold.id == hold_id, t.LegalHold.lifted_at.is_(None))
            .values(lifted_by=by, lifted_at=at, lift_reason=reason)
        )
        self._s.flush()
        return bool(getattr(result, "rowcount", 0))

    def active_holds(
        self, tenant_id: str, *, root_id: str | None = None, unit_id: str | None = None
    ) -> list[HoldRecord]:
        query = select(t.LegalHold).where(
            t.LegalHold.tenant_id == tenant_id, t.LegalHold.lifted_at.is_(None)
        )
        if root_id is not None:
            query = query.where(t.LegalHold.root_id == root_id)
        if unit_id is not None:
            query = query.where(t.LegalHold.unit_id == unit_id)
        rows = self._s.scalars(query.order_by(t.LegalHold.placed_at, t.LegalHold.id)).all()
        return [_hold(r) for r in rows]

    # -- requests ------------------------------------------------------------------------

    def lock_proposals(self, tenant_id: str) -> None:
        """Hold the tenant's row until the transaction ends, so that two proposals of one
        tenant take their units one after the other. A no-op UPDATE (as
        ``SqlArchiveRepository.lock_dossier`` does for a dossier): on PostgreSQL it locks the
        row; on SQLite it takes the database's write lock before the reads that follow, which
        then see the other proposal's commit."""
        self._s.execute(update(t.Tenant).where(t.Tenant.id == tenant_id).values(name=t.Tenant.name))

    def add_request(self, request: DisposalRequestRecord) -> None:
        self._s.add(
            t.DisposalRequest(
                id=request.id,
                tenant_id=request.tenant_id,
                kind=request.kind,
                status=request.status.value,
                message_identifier=request.message_identifier,
                unit_ids=list(request.unit_ids),
                proposed_by=request.proposed_by,
                proposed_at=request.proposed_at,
                visa=request.visa,
                executed_by=request.executed_by,
                executed_at=request.executed_at,
                documents=request.documents,
                details=request.details,
            )
        )
        self._s.flush()

    def get_request(self, tenant_id: str, request_id: str) -> DisposalRequestRecord | None:
        row = self._s.scalar(
            select(t.DisposalRequest).where(
                t.DisposalRequest.id == request_id, t.DisposalRequest.tenant_id == tenant_id
            )
        )
        return None if row is None else _request(row)

    def requests(self, tenant_id: str, *, status: str | None = None) -> list[DisposalRequestRecord]:
        query = select(t.DisposalRequest).where(t.DisposalRequest.tenant_id == tenant_id)
        if status is not None:
            query = query.where(t.DisposalRequest.status == status)
        rows = self._s.scalars(
            query.order_by(t.DisposalRequest.proposed_at.desc(), t.DisposalRequest.id.desc())
        ).all()
        return [_request(r) for r in rows]

    def units_in_open_requests(self, tenant_id: str) -> dict[str, str]:
        rows = self._s.execute(
            select(t.DisposalRequest.id, t.DisposalRequest.unit_ids).where(
                t.DisposalRequest.tenant_id == tenant_id,
                t.DisposalRequest.status.in_([s.value for s in OPEN_REQUEST_STATUSES]),
            )
        ).all()
        return {unit_id: request_id for request_id, unit_ids in rows for unit_id in unit_ids}

    def update_request(
        self,
        request_id: str,
        *,
        expected_status: RequestStatus,
        status: RequestStatus | None = None,
        visa: dict[str, Any] | None = None,
        documents: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
        executed_by: str | None = None,
        executed_at: datetime | None = None,
    ) -> bool:
        values: dict[str, Any] = {}
        if status is not None:
            values["status"] = status.value
        for name, value in (
            ("visa", visa),
            ("documents", documents),
            ("details", details),
            ("executed_by", executed_by),
            ("executed_at", executed_at),
        ):
            if value is not None:
                values[name] = value
        if not values:
            return True
        result = self._s.execute(
            update(t.DisposalRequest)
            .where(
                t.DisposalRequest.id == request_id,
                t.DisposalRequest.status == expected_status.value,
            )
            .values(**values)
        )
        self._s.flush()
        return bool(getattr(result, "rowcount", 0))

    # -- units, copies, tombstones -------------------------------------------------------

    def due_roots(self, tenant_id: str, *, on: date) -> list[str]:
        rows = self._s.scalars(
            select(t.ArchiveUnit.root_id)
            .where(
                t.ArchiveUnit.tenant_id == tenant_id,
                t.ArchiveUnit.status == "active",
                t.ArchiveUnit.appraisal_end.is_not(None),
                t.ArchiveUnit.appraisal_end <= on,
            )
            .distinct()
            .order_by(t.ArchiveUnit.root_id)
        ).all()
        return list(rows)

    def set_unit_status(self, tenant_id: str, unit_ids: Sequence[str], status: str) -> None:
        if not unit_ids:
            return
        self._s.execute(
            update(t.ArchiveUnit)
            .where(t.ArchiveUnit.tenant_id == tenant_id, t.ArchiveUnit.id.in_(list(unit_ids)))
            .values(status=status)
        )
        self._s.flush()

    def remove_copies(self, tenant_id: str, keys: Sequence[tuple[str, str]]) -> int:
        if not keys:
            return 0
        removed = 0
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            result = self._s.execute(
                delete(t.StoredCopy).where(
                    t.StoredCopy.tenant_id == tenant_id,
                    tuple_(t.StoredCopy.offer, t.StoredCopy.key).in_(chunk),
                )
            )
            removed += int(getattr(result, "rowcount", 0) or 0)
        self._s.flush()
        return removed

    def add_tombstones(self, tombstones: Sequence[TombstoneRecord]) -> None:
        self._s.add_all(
            [
                t.Tombstone(
                    unit_id=ts.unit_id,
                    tenant_id=ts.tenant_id,
                    root_id=ts.root_id,
                    request_id=ts.request_id,
                    outcome=ts.outcome,
                    record=ts.record,
                    at=ts.at,
                )
                for ts in tombstones
            ]
        )
        self._s.flush()

    def tombstone(self, tenant_id: str, unit_id: str) -> TombstoneRecord | None:
        row = self._s.scalar(
            select(t.Tombstone).where(
                t.Tombstone.unit_id == unit_id, t.Tombstone.tenant_id == tenant_id
            )
        )
        return None if row is None else _tombstone(row)

    def tombstones_of_request(self, tenant_id: str, request_id: str) -> list[TombstoneRecord]:
        rows = self._s.scalars(
            select(t.Tombstone)
            .where(t.Tombstone.tenant_id == tenant_id, t.Tombstone.request_id == request_id)
            .order_by(t.Tombstone.unit_id)
        ).all()
        return [_tombstone(r) for r in rows]
