"""SQLAlchemy repositories: they implement the persistence ports and map rows to records.

Every read that takes a ``tenant_id`` filters on it, so an id from another tenant is simply
not found.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from archive_service.db import tables as t
from archive_service.ports import (
    ClientRecord,
    CopyRecord,
    ObjectRecord,
    OrganizationRecord,
    PackageRecord,
    Role,
    TenantRecord,
    TransferFileRecord,
    TransferRecord,
    TransferStatus,
    UnitRecord,
)


class SqlTenancyRepository:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add_tenant(self, tenant: TenantRecord, *, at: datetime) -> None:
        self._s.add(
            t.Tenant(
                id=tenant.id,
                name=tenant.name,
                archival_agency_identifier=tenant.archival_agency_identifier,
                created_at=at,
            )
        )
        self._s.flush()

    def _tenant(self, row: t.Tenant | None) -> TenantRecord | None:
        if row is None:
            return None
        return TenantRecord(
            id=row.id, name=row.name, archival_agency_identifier=row.archival_agency_identifier
        )

    def tenant_by_name(self, name: str) -> TenantRecord | None:
        return self._tenant(self._s.scalar(select(t.Tenant).where(t.Tenant.name == name)))

    def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        return self._tenant(self._s.get(t.Tenant, tenant_id))

    def add_organization(self, org: OrganizationRecord, *, at: datetime) -> None:
        self._s.add(
            t.Organization(
                id=org.id, tenant_id=org.tenant_id, siret=org.siret, name=org.name, created_at=at
            )
        )
        self._s.flush()

    def organization_by_siret(self, tenant_id: str, siret: str) -> OrganizationRecord | None:
        row = self._s.scalar(
            select(t.Organization).where(
                t.Organization.tenant_id == tenant_id, t.Organization.siret == siret
            )
        )
        if row is None:
            return None
        return OrganizationRecord(
            id=row.id, tenant_id=row.tenant_id, siret=row.siret, name=row.name
        )

    def add_client(self, client: ClientRecord, *, at: datetime) -> None:
        self._s.add(
            t.Client(
                id=client.id,
                tenant_id=client.tenant_id,
                name=client.name,
                role=client.role.value,
                key_id=client.key_id,
                key_hash=client.key_hash,
                created_at=at,
            )
        )
        self._s.flush()
        for org_id in sorted(client.organization_ids):
            self._s.add(t.ClientOrganization(client_id=client.id, organization_id=org_id))
        self._s.flush()

    def client_by_key_id(self, key_id: str) -> ClientRecord | None:
        return self._client(self._s.scalar(select(t.Client).where(t.Client.key_id == key_id)))

    def client_by_id(self, client_id: str) -> ClientRecord | None:
        return self._client(self._s.get(t.Client, client_id))

    def revoke_client(self, client_id: str, *, at: datetime) -> bool:
        result = self._s.execute(
            update(t.Client)
            .where(t.Client.id == client_id, t.Client.revoked_at.is_(None))
            .values(revoked_at=at)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    def _client(self, row: t.Client | None) -> ClientRecord | None:
        if row is None:
            return None
        orgs = self._s.scalars(
            select(t.ClientOrganization.organization_id).where(
                t.ClientOrganization.client_id == row.id
            )
        ).all()
        return ClientRecord(
            id=row.id,
            tenant_id=row.tenant_id,
            name=row.name,
            role=Role(row.role),
            key_id=row.key_id,
            key_hash=row.key_hash,
            organization_ids=frozenset(orgs),
            revoked=row.revoked_at is not None,
        )


_UNFINISHED = t.Transfer.status.in_(
    [TransferStatus.RECEIVED.value, TransferStatus.PROCESSING.value]
)


class SqlTransferRepository:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, transfer: TransferRecord) -> None:
        self._s.add(
            t.Transfer(
                id=transfer.id,
                tenant_id=transfer.tenant_id,
                client_id=transfer.client_id,
                organization_id=transfer.organization_id,
                message_identifier=transfer.message_identifier,
                content_digest=transfer.content_digest,
                status=transfer.status.value,
                reasons=list(transfer.reasons),
                metadata_json=transfer.metadata,
                staging_dir=transfer.staging_dir,
                package_id=transfer.package_id,
                archive_unit_id=transfer.archive_unit_id,
                attempts=transfer.attempts,
                created_at=transfer.created_at,
                updated_at=transfer.updated_at,
            )
        )
        self._s.flush()
        for f in transfer.files:
            self._s.add(t.TransferFile(transfer_id=transfer.id, **_fields(f)))
        self._s.flush()

    def _record(self, row: t.Transfer | None) -> TransferRecord | None:
        if row is None:
            return None
        files = self._s.scalars(
            select(t.TransferFile)
            .where(t.TransferFile.transfer_id == row.id)
            .order_by(t.TransferFile.path)
        ).all()
        return TransferRecord(
            id=row.id,
            tenant_id=row.tenant_id,
            client_id=row.client_id,
            organization_id=row.organization_id,
            message_identifier=row.message_identifier,
            content_digest=row.content_digest,
            status=TransferStatus(row.status),
            metadata=row.metadata_json,
            staging_dir=row.staging_dir,
            package_id=row.package_id or "",
            created_at=row.created_at,
            updated_at=row.updated_at,
            reasons=tuple(row.reasons or ()),
            archive_unit_id=row.archive_unit_id,
            attempts=row.attempts,
            files=tuple(_from_row(TransferFileRecord, f) for f in files),
        )

    def get(self, tenant_id: str, transfer_id: str) -> TransferRecord | None:
        return self._record(
            self._s.scalar(
                select(t.Transfer).where(
                    t.Transfer.id == transfer_id, t.Transfer.tenant_id == tenant_id
                )
            )
        )

    def get_any_tenant(self, transfer_id: str) -> TransferRecord | None:
        return self._record(self._s.get(t.Transfer, transfer_id))

    def by_message(self, client_id: str, message_identifier: str) -> TransferRecord | None:
        return self._record(
            self._s.scalar(
                select(t.Transfer).where(
                    t.Transfer.client_id == client_id,
                    t.Transfer.message_identifier == message_identifier,
                )
            )
        )

    def update_status(
        self,
        transfer_id: str,
        status: TransferStatus,
        *,
        at: datetime,
        reasons: Sequence[dict[str, str]] = (),
        archive_unit_id: str | None = None,
        attempts: int | None = None,
    ) -> None:
        row = self._s.get(t.Transfer, transfer_id)
        if row is None:
            msg = f"transfer {transfer_id} vanished"
            raise LookupError(msg)
        row.status = status.value
        row.reasons = list(reasons)
        row.updated_at = at
        if archive_unit_id is not None:
            row.archive_unit_id = archive_unit_id
        if attempts is not None:
            row.attempts = attempts
        self._s.flush()

    def claim(self, transfer_id: str, *, now: datetime, until: datetime) -> bool:
        result = self._s.execute(
            update(t.Transfer)
            .where(
                t.Transfer.id == transfer_id,
                t.Transfer.status.in_(
                    [TransferStatus.RECEIVED.value, TransferStatus.PROCESSING.value]
                ),
                or_(t.Transfer.lease_until.is_(None), t.Transfer.lease_until < now),
            )
            .values(lease_until=until)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    def renew(self, transfer_id: str, *, until: datetime) -> None:
        self._s.execute(
            update(t.Transfer)
            .where(t.Transfer.id == transfer_id)
            .values(lease_until=until)
            .execution_options(synchronize_session=False)
        )

    def release(self, transfer_id: str) -> None:
        self._s.execute(
            update(t.Transfer)
            .where(t.Transfer.id == transfer_id)
            .values(lease_until=None)
            .execution_options(synchronize_session=False)
        )

    def unfinished(self) -> list[str]:
        return list(
            self._s.scalars(
                select(t.Transfer.id).where(_UNFINISHED).order_by(t.Transfer.created_at)
            ).all()
        )

    def stuck(self, *, untouched_since: datetime, limit: int) -> list[str]:
        return list(
            self._s.scalars(
                select(t.Transfer.id)
                .where(_UNFINISHED, t.Transfer.updated_at < untouched_since)
                .order_by(t.Transfer.updated_at)
                .limit(limit)
            ).all()
        )


R = TypeVar("R")


def _fields(record: Any) -> dict[str, Any]:
    """A record's fields, which are named after the columns of its table."""
    return {name: getattr(record, name) for name in record.__slots__}


def _from_row(record_type: type[R], row: Any) -> R:
    """The record of ``record_type`` read from a row whose columns bear its field names."""
    return record_type(**{name: getattr(row, name) for name in record_type.__slots__})  # type: ignore[attr-defined]


def _unit(row: t.ArchiveUnit) -> UnitRecord:
    return _from_row(UnitRecord, row)


def _object(row: t.DataObject) -> ObjectRecord:
    return _from_row(ObjectRecord, row)


def _package(row: t.Package) -> PackageRecord:
    return _from_row(PackageRecord, row)


class SqlArchiveRepository:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add_package(self, package: PackageRecord) -> None:
        self._s.add(t.Package(**_fields(package)))
        self._s.flush()

    def add_units(self, units: Sequence[UnitRecord]) -> None:
        self._s.add_all([t.ArchiveUnit(**_fields(u)) for u in units])
        self._s.flush()

    def add_objects(self, objects: Sequence[ObjectRecord]) -> None:
        self._s.add_all([t.DataObject(**_fields(o)) for o in objects])
        self._s.flush()

    def add_copies(self, copies: Sequence[CopyRecord]) -> None:
        self._s.add_all([t.StoredCopy(**_fields(c)) for c in copies])
        self._s.flush()

    def get_package(self, tenant_id: str, package_id: str) -> PackageRecord | None:
        row = self._s.scalar(
            select(t.Package).where(t.Package.id == package_id, t.Package.tenant_id == tenant_id)
        )
        return None if row is None else _package(row)

    def get_unit(self, tenant_id: str, unit_id: str) -> UnitRecord | None:
        row = self._s.scalar(
            select(t.ArchiveUnit).where(
                t.ArchiveUnit.id == unit_id, t.ArchiveUnit.tenant_id == tenant_id
            )
        )
        return None if row is None else _unit(row)

    def units_of_root(self, tenant_id: str, root_id: str) -> list[UnitRecord]:
        rows = self._s.scalars(
            select(t.ArchiveUnit)
            .where(t.ArchiveUnit.tenant_id == tenant_id, t.ArchiveUnit.root_id == root_id)
            .order_by(t.ArchiveUnit.position)
        ).all()
        return [_unit(r) for r in rows]

    def objects_of_root(self, tenant_id: str, root_id: str) -> list[ObjectRecord]:
        unit_ids = select(t.ArchiveUnit.id).where(
            t.ArchiveUnit.tenant_id == tenant_id, t.ArchiveUnit.root_id == root_id
        )
        rows = self._s.scalars(
            select(t.DataObject)
            .where(t.DataObject.tenant_id == tenant_id, t.DataObject.archive_unit_id.in_(unit_ids))
            .order_by(t.DataObject.path)
        ).all()
        return [_object(r) for r in rows]

    def get_object(self, tenant_id: str, object_id: str) -> ObjectRecord | None:
        row = self._s.scalar(
            select(t.DataObject).where(
                t.DataObject.id == object_id, t.DataObject.tenant_id == tenant_id
            )
        )
        return None if row is None else _object(row)

    def packages_of_root(self, tenant_id: str, root_id: str) -> list[PackageRecord]:
        """The packages of a dossier (its first transfer and each addition), by sequence."""
        rows = self._s.scalars(
            select(t.Package)
            .where(t.Package.tenant_id == tenant_id, t.Package.root_unit_id == root_id)
            .order_by(t.Package.sequence, t.Package.created_at)
        ).all()
        return [_package(r) for r in rows]

    def lock_dossier(self, tenant_id: str, root_id: str) -> None:
        """Hold the dossier's root unit row until the transaction ends, so that two additions
        committing at once take sequence numbers one after the other. A no-op UPDATE rather
        than ``SELECT … FOR UPDATE``: on PostgreSQL both lock the row, and on SQLite (which
        has no row locks, and whose Python driver opens the transaction only at the first
        write) the UPDATE is what takes the database's write lock before the reads that
        follow, which then see the other writer's commit."""
        self._s.execute(
            update(t.ArchiveUnit)
            .where(t.ArchiveUnit.tenant_id == tenant_id, t.ArchiveUnit.id == root_id)
            .values(status=t.ArchiveUnit.status)
        )

    def all_packages(self) -> list[PackageRecord]:
        rows = self._s.scalars(select(t.Package).order_by(t.Package.created_at, t.Package.id))
        return [_package(r) for r in rows.all()]

    def unit_any_tenant(self, unit_id: str) -> UnitRecord | None:
        row = self._s.get(t.ArchiveUnit, unit_id)
        return None if row is None else _unit(row)

    def copy_counts(self) -> dict[str, int]:
        rows = self._s.execute(
            select(t.StoredCopy.offer, func.count()).group_by(t.StoredCopy.offer)
        ).all()
        return {offer: int(count) for offer, count in rows}

    def upsert_copy(self, copy: CopyRecord) -> None:
        row = self._s.scalar(
            select(t.StoredCopy).where(
                t.StoredCopy.offer == copy.offer, t.StoredCopy.key == copy.key
            )
        )
        if row is None:
            self._s.add(t.StoredCopy(**_fields(copy)))
        else:
            row.tenant_id = copy.tenant_id
            row.package_id = copy.package_id
            row.kind = copy.kind
            row.size = copy.size
            row.sha256 = copy.sha256
            row.version_id = copy.version_id
            row.stored_at = copy.stored_at
        self._s.flush()

    def copies_of_package(self, tenant_id: str, package_id: str) -> list[CopyRecord]:
        rows = self._s.scalars(
            select(t.StoredCopy)
            .where(t.StoredCopy.tenant_id == tenant_id, t.StoredCopy.package_id == package_id)
            .order_by(t.StoredCopy.id)
        ).all()
        return [_from_row(CopyRecord, r) for r in rows]

    def copies_of_key(self, tenant_id: str, package_id: str, key: str) -> list[CopyRecord]:
        rows = self._s.scalars(
            select(t.StoredCopy)
            .where(
                t.StoredCopy.tenant_id == tenant_id,
                t.StoredCopy.package_id == package_id,
                t.StoredCopy.key == key,
            )
            .order_by(t.StoredCopy.id)
        ).all()
        return [_from_row(CopyRecord, r) for r in rows]
