"""Dérogations (Code du patrimoine L213-3): who may read a unit's subtree before its délai."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from archive_service.db import tables as t
from archive_service.ports import DerogationRecord

_FIELDS = DerogationRecord.__slots__


def _record(row: t.AccessDerogation) -> DerogationRecord:
    return DerogationRecord(**{name: getattr(row, name) for name in _FIELDS})


class SqlDerogationRepository:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, derogation: DerogationRecord) -> None:
        self._s.add(t.AccessDerogation(**{name: getattr(derogation, name) for name in _FIELDS}))
        self._s.flush()

    def get(self, tenant_id: str, derogation_id: str) -> DerogationRecord | None:
        row = self._s.scalar(
            select(t.AccessDerogation).where(
                t.AccessDerogation.id == derogation_id, t.AccessDerogation.tenant_id == tenant_id
            )
        )
        return None if row is None else _record(row)

    def of_unit(self, tenant_id: str, unit_id: str) -> list[DerogationRecord]:
        rows = self._s.scalars(
            select(t.AccessDerogation)
            .where(t.AccessDerogation.tenant_id == tenant_id, t.AccessDerogation.unit_id == unit_id)
            .order_by(t.AccessDerogation.granted_at, t.AccessDerogation.id)
        ).all()
        return [_record(r) for r in rows]

    def unrevoked_for(
        self, tenant_id: str, client_id: str, unit_ids: Sequence[str]
    ) -> list[DerogationRecord]:
        if not unit_ids:
            return []
        rows = self._s.scalars(
            select(t.AccessDerogation)
            .where(
                t.AccessDerogation.tenant_id == tenant_id,
                t.AccessDerogation.client_id == client_id,
                t.AccessDerogation.unit_id.in_(list(unit_ids)),
                t.AccessDerogation.revoked_at.is_(None),
            )
            .order_by(t.AccessDerogation.granted_at, t.AccessDerogation.id)
        ).all()
        return [_record(r) for r in rows]

    def revoke(self, derogation_id: str, *, by: str, at: datetime, reason: str) -> bool:
        result = self._s.execute(
            update(t.AccessDerogation)
            .where(t.AccessDerogation.id == derogation_id, t.AccessDerogation.revoked_at.is_(None))
            .values(revoked_by=by, revoked_at=at, revoke_reason=reason)
        )
        self._s.flush()
        return bool(getattr(result, "rowcount", 0))
