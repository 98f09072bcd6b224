"""The integrity audit's persistence: what each copy's last verification found, the versions a
repair superseded, and the audit runs (``AuditRepository`` in ports.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.orm import Session

from archive_service.db import tables as t
from archive_service.ports import (
    AuditCopyRecord,
    AuditRunRecord,
    OfferAuditStatus,
    SupersededRecord,
)

_COPY_FIELDS = AuditCopyRecord.__slots__
_SUPERSEDED_FIELDS = SupersededRecord.__slots__
_RUN_FIELDS = AuditRunRecord.__slots__


class SqlAuditRepository:
    def __init__(self, session: Session) -> None:
        self._s = session

    def copies_to_audit(
        self, *, offers: Sequence[str], package_ids: Sequence[str] | None = None
    ) -> list[AuditCopyRecord]:
        query = select(t.StoredCopy).where(t.StoredCopy.offer.in_(list(offers)))
        if package_ids is not None:
            query = query.where(t.StoredCopy.package_id.in_(list(package_ids)))
        never = case((t.StoredCopy.verified_at.is_(None), 0), else_=1)
        query = query.order_by(never, t.StoredCopy.verified_at, t.StoredCopy.id)
        return [
            AuditCopyRecord(**{name: getattr(row, name) for name in _COPY_FIELDS})
            for row in self._s.scalars(query)
        ]

    def record_verification(self, copy_ids: Sequence[int], *, at: datetime, outcome: str) -> None:
        if not copy_ids:
            return
        self._s.execute(
            update(t.StoredCopy)
            .where(t.StoredCopy.id.in_(list(copy_ids)))
            .values(verified_at=at, verified_outcome=outcome)
        )

    def add_superseded(self, record: SupersededRecord) -> None:
        fields = {name: getattr(record, name) for name in _SUPERSEDED_FIELDS}
        self._s.add(t.SupersededCopy(**fields))
        self._s.flush()

    def superseded(self, tenant_id: str, package_id: str) -> list[SupersededRecord]:
        rows = self._s.scalars(
            select(t.SupersededCopy)
            .where(
                t.SupersededCopy.tenant_id == tenant_id,
                t.SupersededCopy.package_id == package_id,
            )
            .order_by(t.SupersededCopy.id)
        )
        return [
            SupersededRecord(**{name: getattr(row, name) for name in _SUPERSEDED_FIELDS})
            for row in rows
        ]

    def add_run(self, run: AuditRunRecord) -> None:
        self._s.add(t.AuditRun(**{name: getattr(run, name) for name in _RUN_FIELDS}))
        self._s.flush()

    def last_run(self, tenant_id: str) -> AuditRunRecord | None:
        row = self._s.scalar(
            select(t.AuditRun)
            .where(t.AuditRun.tenant_id == tenant_id)
            .order_by(t.AuditRun.finished_at.desc(), t.AuditRun.id.desc())
            .limit(1)
        )
        if row is None:
            return None
        return AuditRunRecord(**{name: getattr(row, name) for name in _RUN_FIELDS})

    def status(self, *, since: datetime, tenant_id: str | None = None) -> list[OfferAuditStatus]:
        c = t.StoredCopy
        verified = and_(c.verified_at >= since, c.verified_outcome == "ok")
        problem = and_(c.verified_outcome.is_not(None), c.verified_outcome != "ok")
        query = select(
            c.offer,
            func.count(),
            func.coalesce(func.sum(case((verified, 1), else_=0)), 0),
            func.coalesce(func.sum(case((problem, 1), else_=0)), 0),
            func.max(c.verified_at),
        ).group_by(c.offer)
        if tenant_id is not None:
            query = query.where(c.tenant_id == tenant_id)
        return [
            OfferAuditStatus(
                offer=offer,
                copies=int(copies),
                verified=int(ok),
                problems_open=int(open_),
                last_verified_at=last,
            )
            for offer, copies, ok, open_, last in self._s.execute(query.order_by(c.offer)).all()
        ]
