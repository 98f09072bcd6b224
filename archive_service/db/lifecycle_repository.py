"""Dossier events, versioned retention référentiels and rule updates of archive units."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from archive_service.db import tables as t
from archive_service.db.repositories import _fields, _from_row, _unit
from archive_service.ports import (
    DossierEventRecord,
    DossierTransferRecord,
    ReferentialVersionRecord,
    UnitRecord,
)


def _event(row: t.DossierEvent) -> DossierEventRecord:
    return _from_row(DossierEventRecord, row)


def _referential(row: t.RetentionReferential) -> ReferentialVersionRecord:
    return _from_row(ReferentialVersionRecord, row)


class SqlLifecycleRepository:
    def __init__(self, session: Session) -> None:
        self._s = session

    def dossier_transfers(self, tenant_id: str, root_id: str) -> list[DossierTransferRecord]:
        rows = self._s.execute(
            select(
                t.Transfer.id,
                t.Package.id,
                t.Package.sequence,
                t.Transfer.metadata_json,
                t.Package.created_at,
            )
            .join(t.Package, t.Package.transfer_id == t.Transfer.id)
            .where(t.Package.tenant_id == tenant_id, t.Package.root_unit_id == root_id)
            .order_by(t.Package.sequence, t.Package.created_at, t.Package.id)
        ).all()
        return [
            DossierTransferRecord(
                transfer_id=tid,
                package_id=pid,
                sequence=seq,
                metadata=dict(meta or {}),
                created_at=at,
            )
            for tid, pid, seq, meta, at in rows
        ]

    def events_of(self, tenant_id: str, root_id: str) -> list[DossierEventRecord]:
        rows = self._s.scalars(
            select(t.DossierEvent)
            .where(t.DossierEvent.tenant_id == tenant_id, t.DossierEvent.root_id == root_id)
            .order_by(t.DossierEvent.id)
        ).all()
        return [_event(r) for r in rows]

    def add_event(self, record: DossierEventRecord) -> DossierEventRecord:
        row = t.DossierEvent(**{k: v for k, v in _fields(record).items() if k != "id"})
        self._s.add(row)
        self._s.flush()
        return _event(row)

    def dossier_roots(self, tenant_id: str) -> list[str]:
        first = (
            select(t.Package.root_unit_id, func.min(t.Package.created_at).label("first"))
            .where(t.Package.tenant_id == tenant_id)
            .group_by(t.Package.root_unit_id)
            .subquery()
        )
        rows = self._s.execute(
            select(first.c.root_unit_id).order_by(first.c.first, first.c.root_unit_id)
        ).all()
        return [r[0] for r in rows]

    def active_units(self, tenant_id: str) -> list[UnitRecord]:
        rows = self._s.scalars(
            select(t.ArchiveUnit)
            .where(t.ArchiveUnit.tenant_id == tenant_id, t.ArchiveUnit.status == "active")
            .order_by(t.ArchiveUnit.root_id, t.ArchiveUnit.position)
        ).all()
        return [_unit(r) for r in rows]

    def update_unit_rules(
        self,
        tenant_id: str,
        unit_id: str,
        *,
        appraisal: dict[str, Any] | None,
        access: dict[str, Any] | None,
        appraisal_end: date | None,
        access_end: date | None,
    ) -> None:
        self._s.execute(
            update(t.ArchiveUnit)
            .where(t.ArchiveUnit.tenant_id == tenant_id, t.ArchiveUnit.id == unit_id)
            .values(
                appraisal=appraisal,
                access=access,
                appraisal_end=appraisal_end,
                access_end=access_end,
            )
        )

    def referential_versions(self, tenant_id: str) -> list[ReferentialVersionRecord]:
        rows = self._s.scalars(
            select(t.RetentionReferential)
            .where(t.RetentionReferential.tenant_id == tenant_id)
            .order_by(t.RetentionReferential.version)
        ).all()
        return [_referential(r) for r in rows]

    def referential_version(
        self, tenant_id: str, version: int | None = None
    ) -> ReferentialVersionRecord | None:
        query = select(t.RetentionReferential).where(t.RetentionReferential.tenant_id == tenant_id)
        if version is None:
            query = query.order_by(t.RetentionReferential.version.desc()).limit(1)
        else:
            query = query.where(t.RetentionReferential.version == version)
        row = self._s.scalar(query)
        return None if row is None else _referential(row)

    def add_referential(self, record: ReferentialVersionRecord) -> bool:
        # The tenant's row serializes writers of its versions (PostgreSQL); then the version
        # number is checked free before the insert.
        self._s.execute(
            select(t.Tenant.id).where(t.Tenant.id == record.tenant_id).with_for_update()
        )
        exists = self._s.scalar(
            select(t.RetentionReferential.version).where(
                t.RetentionReferential.tenant_id == record.tenant_id,
                t.RetentionReferential.version == record.version,
            )
        )
        if exists is not None:
            return False
        self._s.add(t.RetentionReferential(**_fields(record)))
        self._s.flush()
        return True
