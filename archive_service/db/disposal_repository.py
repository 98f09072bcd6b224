"""Legal holds, disposal requests (with their visa) and tombstones."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from archive_service.db import tables as t
from archive_service.ports import HoldRecord, TombstoneRecord


def _hold(row: t.LegalHold) -> HoldRecord:
    return HoldRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        unit_id=row.unit_id,
        root_id=row.root_id,
        reason=row.reason,
        reference=row.reference,
        placed_by=row.placed_by,
        placed_at=row.placed_at,
        lifted_by=row.lifted_by,
        lifted_at=row.lifted_at,
        lift_reason=row.lift_reason,
    )


class SqlDisposalRepository:
    def __init__(self, session: Session) -> None:
        self._s = session

    def tombstone(self, tenant_id: str, unit_id: str) -> TombstoneRecord | None:
        row = self._s.scalar(
            select(t.Tombstone).where(
                t.Tombstone.unit_id == unit_id, t.Tombstone.tenant_id == tenant_id
            )
        )
        if row is None:
            return None
        return TombstoneRecord(
            unit_id=row.unit_id,
            tenant_id=row.tenant_id,
            root_id=row.root_id,
            request_id=row.request_id,
            outcome=row.outcome,
            record=dict(row.record),
            at=row.at,
        )

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
