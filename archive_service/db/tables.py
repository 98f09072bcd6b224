"""SQLAlchemy 2 tables. ORM rows never leave ``db/``: repositories map them to core values.

Every row that belongs to a tenant carries ``tenant_id`` and every query filters on it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Stores aware UTC datetimes; SQLite drops the offset, so it is restored on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            msg = "naive datetime refused; use timezone-aware UTC"
            raise ValueError(msg)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        from datetime import UTC

        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    archival_agency_identifier: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Organization(Base):
    """A buyer (service producteur), identified by SIRET within a tenant."""

    __tablename__ = "organizations"
    __table_args__ = (UniqueConstraint("tenant_id", "siret"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    siret: Mapped[str] = mapped_column(String(14))
    name: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Client(Base):
    """An API caller (service versant or staff); only a hash of its key is stored."""

    __tablename__ = "clients"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    key_id: Mapped[str] = mapped_column(String(40), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class ClientOrganization(Base):
    """Organizations a platform client may transfer for."""

    __tablename__ = "client_organizations"
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id"), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), primary_key=True)


class Transfer(Base):
    """One incoming transfer (bordereau de versement) and its processing state."""

    __tablename__ = "transfers"
    __table_args__ = (UniqueConstraint("client_id", "message_identifier"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id"), index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    message_identifier: Mapped[str] = mapped_column(String(200))
    content_digest: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), index=True)
    reasons: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    metadata_json: Mapped[dict[str, Any]] = mapped_column(JSON)
    staging_dir: Mapped[str] = mapped_column(Text)
    archive_unit_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    package_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    """While set and in the future, one job holds the transfer; others leave it alone."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class TransferFile(Base):
    """A file received with a transfer, as staged and fingerprinted on arrival."""

    __tablename__ = "transfer_files"
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    staged_name: Mapped[str] = mapped_column(String(100))
    object_id: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    sha512: Mapped[str] = mapped_column(String(128))
    declared_mime: Mapped[str | None] = mapped_column(String(200), nullable=True)


class Package(Base):
    """An archived package (AIP): manifest, timestamp token and objects, in every offer."""

    __tablename__ = "packages"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), unique=True)
    root_unit_id: Mapped[str] = mapped_column(String(40), index=True)
    seda_version: Mapped[str] = mapped_column(String(8))
    sequence: Mapped[int] = mapped_column(Integer, default=1)
    """The dossier version this package made: 1 for the transfer that created the dossier,
    then 2, 3… for each later transfer that added to it (``root_unit_id`` is the dossier)."""
    manifest_key: Mapped[str] = mapped_column(String(400))
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    manifest_size: Mapped[int] = mapped_column(BigInteger)
    timestamp_key: Mapped[str] = mapped_column(String(400))
    timestamp_gen_time: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ArchiveUnit(Base):
    """A node of a dossier tree: the dossier, a phase, or a document."""

    __tablename__ = "archive_units"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    package_id: Mapped[str] = mapped_column(ForeignKey("packages.id"), index=True)
    root_id: Mapped[str] = mapped_column(String(40), index=True)
    parent_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    position: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(80), nullable=True)
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    appraisal: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    access: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    organization_siret: Mapped[str | None] = mapped_column(String(14), nullable=True, index=True)
    cpv: Mapped[str | None] = mapped_column(String(12), nullable=True, index=True)
    notification_date: Mapped[date | None] = mapped_column(Date, nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(20), default="active", index=True)
    """``active``; ``destroyed`` (disposal executed with a visa) or ``transferred`` (handed to
    the definitive archives and purged): the row stays, its objects are gone (tombstone)."""
    appraisal_end: Mapped[date | None] = mapped_column(Date, nullable=True, index=True)
    """End of the DUA in force for this unit (its own rule or the inherited one); ``None``
    while pending or suspended. Kept in step with ``appraisal`` by every recomputation."""
    access_end: Mapped[date | None] = mapped_column(Date, nullable=True)
    """When the unit becomes communicable; ``None`` if freely so or still pending."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class DataObject(Base):
    __tablename__ = "data_objects"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    package_id: Mapped[str] = mapped_column(ForeignKey("packages.id"), index=True)
    archive_unit_id: Mapped[str] = mapped_column(String(40), index=True)
    path: Mapped[str] = mapped_column(String(1024))
    uri: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    sha512: Mapped[str] = mapped_column(String(128))
    mime_type: Mapped[str] = mapped_column(String(200))
    puid: Mapped[str | None] = mapped_column(String(40), nullable=True)
    format_name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    format_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    declared_mime: Mapped[str | None] = mapped_column(String(200), nullable=True)
    storage_key: Mapped[str] = mapped_column(String(400))


class StoredCopy(Base):
    """One copy of one stored blob (object, manifest or token) in one storage offer."""

    __tablename__ = "stored_copies"
    __table_args__ = (UniqueConstraint("offer", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    package_id: Mapped[str] = mapped_column(ForeignKey("packages.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    offer: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(400))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    stored_at: Mapped[datetime] = mapped_column(UtcDateTime())
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)
    """When an integrity audit last re-read this copy (``None``: never)."""
    verified_outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    """That audit's verdict: ``ok``, ``missing``, ``corrupt``, ``version_mismatch``,
    ``manifest_mismatch`` or ``unreachable``."""


class SupersededCopy(Base):
    """A version of a copy that a repair replaced: kept in the offer (write-once), recorded here."""

    __tablename__ = "superseded_copies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    package_id: Mapped[str] = mapped_column(ForeignKey("packages.id"), index=True)
    offer: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(400))
    version_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    """The digest the database expected of the copy."""
    found_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """What the superseded version hashed to (``None``: missing or unreadable)."""
    reason: Mapped[str] = mapped_column(String(20))
    superseded_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    superseded_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AuditRun(Base):
    """One integrity audit run, as it concerned one tenant."""

    __tablename__ = "audit_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(40), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime())
    offers: Mapped[list[str]] = mapped_column(JSON)
    scope: Mapped[dict[str, Any]] = mapped_column(JSON)
    copies: Mapped[int] = mapped_column(Integer)
    problems: Mapped[int] = mapped_column(Integer)
    repaired: Mapped[int] = mapped_column(Integer)


class LogbookEntry(Base):
    """An operation in the journal des opérations; append-only.

    ``canonical`` holds the entry's bytes as hashed into the tenant's Merkle log (RFC 8785
    JSON, written with the row); ``leaf_index`` and ``leaf_hash`` are set when the integrator
    appends it to the tree, after the operation's transaction committed.
    """

    __tablename__ = "logbook_entries"
    __table_args__ = (
        Index("ix_logbook_subject", "tenant_id", "subject_id"),
        UniqueConstraint("tenant_id", "leaf_index"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    event_type: Mapped[str] = mapped_column(String(80))
    outcome: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str | None] = mapped_column(String(40), nullable=True)
    subject_type: Mapped[str] = mapped_column(String(40))
    subject_id: Mapped[str] = mapped_column(String(40))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_index: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    leaf_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)


class MerkleNode(Base):
    """A perfect subtree of a tenant's log: ``2**level`` leaves from ``index * 2**level``.

    Levels 1 and up; the leaves (level 0) are ``logbook_entries.leaf_hash``. Written once by
    the integrator, never changed.
    """

    __tablename__ = "merkle_nodes"
    __table_args__ = (
        PrimaryKeyConstraint("tenant_id", "level", "index"),
        {"sqlite_with_rowid": False},
    )
    tenant_id: Mapped[str] = mapped_column(String(40))
    level: Mapped[int] = mapped_column(Integer)
    index: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LogHead(Base):
    """The integrated size and root of a tenant's log; its row is the integrator's lock."""

    __tablename__ = "log_heads"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Checkpoint(Base):
    """A signed, timestamped checkpoint of a tenant's log, also stored in every offer."""

    __tablename__ = "checkpoints"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[bytes] = mapped_column(LargeBinary)
    """The signed note (C2SP signed-note over a transparency-dev checkpoint body), verbatim."""
    token: Mapped[bytes] = mapped_column(LargeBinary)
    """RFC 3161 TimeStampResp (DER) over the note's bytes."""
    key_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    copies: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """Where the note and token are stored: offer, keys and version ids."""


class DossierEvent(Base):
    """A dated event in a dossier's life (notification, réception, dispute opened…), as
    recorded through the events API or carried by a transfer's metadata; append-only."""

    __tablename__ = "dossier_events"
    __table_args__ = (Index("ix_dossier_events_root", "tenant_id", "root_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    root_id: Mapped[str] = mapped_column(String(40))
    event: Mapped[str] = mapped_column(String(40))
    event_date: Mapped[date] = mapped_column(Date)
    reference: Mapped[str | None] = mapped_column(String(300), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(20))
    """``api``, ``cli`` or ``transfer`` (with ``transfer_id``)."""
    transfer_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    recorded_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RetentionReferential(Base):
    """One version of a tenant's retention référentiel (rule set); the highest is in force."""

    __tablename__ = "retention_referentials"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "version"),)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    version: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(200))
    """The référentiel's own ``version`` string, as written in its JSON."""
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LegalHold(Base):
    """A gel: while ``lifted_at`` is None, the unit (and its subtree) may be neither destroyed
    nor transferred, and its copies carry an S3 legal hold."""

    __tablename__ = "legal_holds"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    unit_id: Mapped[str] = mapped_column(String(40), index=True)
    root_id: Mapped[str] = mapped_column(String(40), index=True)
    reason: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(String(300), nullable=True)
    placed_by: Mapped[str] = mapped_column(String(200))
    placed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    lifted_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lifted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    lift_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class DisposalRequest(Base):
    """A bordereau: units proposed for destruction (``destroy``) or for transfer to the
    definitive archives (``transfer``), its visa and its execution."""

    __tablename__ = "disposal_requests"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    message_identifier: Mapped[str] = mapped_column(String(200))
    unit_ids: Mapped[list[str]] = mapped_column(JSON)
    proposed_by: Mapped[str] = mapped_column(String(200))
    proposed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    visa: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """Who approved or refused, when, the authority's reference, and how it came."""
    executed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    executed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    documents: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Messages and reports of the request (SEDA request, bordereau, certificate): storage
    keys and digests."""
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Tombstone(Base):
    """What remains of a destroyed or transferred unit: ids, digests, rule, visa reference."""

    __tablename__ = "tombstones"
    unit_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    root_id: Mapped[str] = mapped_column(String(40), index=True)
    request_id: Mapped[str] = mapped_column(String(40), index=True)
    outcome: Mapped[str] = mapped_column(String(20))
    """``destroyed`` or ``transferred``."""
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class AccessDerogation(Base):
    """A dérogation (Code du patrimoine L213-3): one client may read a unit's subtree before
    its délai de communicabilité expires, on the archives authority's agreement."""

    __tablename__ = "access_derogations"
    __table_args__ = (Index("ix_access_derogations_client", "tenant_id", "client_id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    unit_id: Mapped[str] = mapped_column(String(40), index=True)
    root_id: Mapped[str] = mapped_column(String(40))
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id"))
    reference: Mapped[str] = mapped_column(String(300))
    decision_date: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text)
    granted_by: Mapped[str] = mapped_column(String(200))
    granted_by_client: Mapped[str] = mapped_column(String(200))
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    until: Mapped[date | None] = mapped_column(Date, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoke_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
