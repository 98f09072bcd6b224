"""Ports: the small protocols the services depend on. Adapters implement them.

Each port has a real adapter and a local or in-memory one; a shared contract test suite runs
against every implementation (tests/integration/contracts/).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol, runtime_checkable

from archive_service.core.logbook.canonical import canonical_json
from archive_service.core.model import FileFingerprints, FormatInfo


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """What a storage offer says it holds under one key."""

    offer: str
    key: str
    size: int
    sha256: str
    version_id: str | None = None
    #: ``sha256`` was computed by reading the stored object itself, after it was made durable
    #: (as when the local offer adopts a file): the writer's read-back is already done. How
    #: the digest was obtained, not what is stored: left out of comparisons.
    read_back: bool = field(default=False, compare=False)


class BlobStore(Protocol):
    """One storage offer. Keys are write-once: putting an existing key is refused."""

    name: str

    def put_file(self, key: str, path: Path, *, sha256: str, consume: bool = False) -> StoredBlob:
        """Store the file at ``path`` under ``key``; ``sha256`` is the expected digest (hex).

        ``consume=True`` is a hint that the caller will never write to ``path`` again (it will
        only delete it): an offer on the same file system may adopt the file instead of copying
        it. Offers that cannot simply copy.

        Raises ``Conflict`` if the key exists, ``Unavailable`` if the offer cannot be reached.
        """
        ...

    def put_bytes(self, key: str, data: bytes) -> StoredBlob: ...

    def open(self, key: str, *, version_id: str | None = None) -> BinaryIO:
        """A readable binary stream of the object; ``NotFound`` if absent.

        ``version_id``: the version to read, as the database recorded it for this copy
        (``StoredBlob.version_id``). Every read of a recorded copy passes it: after a repair
        on a versioned offer, the recorded version is not the key's first one. ``None``
        reads the object of the write-once key (on S3 its first version). An offer without
        versions (a local directory) records none: any version id is ``NotFound`` there.
        """
        ...

    def stat(self, key: str, *, version_id: str | None = None) -> StoredBlob | None:
        """What the offer holds under ``key`` (that version of it, if given), or ``None``."""
        ...

    def iter_keys(self, prefix: str = "") -> Iterator[str]: ...

    def delete(self, key: str) -> None:
        """Remove an object: only for cleaning up what a failed transfer wrote, before commit."""
        ...

    def purge(self, key: str) -> None:
        """Remove every trace of an archived key, for a disposal or transfer executed with a
        visa: on a versioned offer every version and every delete marker. Absent is not an
        error (an interrupted purge is re-run). Nothing is removed, and ``Conflict`` (S3:
        ``ObjectLocked``) is raised, while any version is retained or under legal hold, or
        when the server refuses a deletion."""
        ...


@runtime_checkable
class LockingBlobStore(BlobStore, Protocol):
    """A storage offer with write-once-read-many retention (S3 Object Lock).

    Objects are written unlocked, so that ``delete`` can clean up a failed transfer; every
    copy of a package is locked just before the commit point. A locked version can no longer
    be deleted nor overwritten, by anyone, until its retention ends.
    """

    def lock(
        self,
        key: str,
        *,
        version_id: str,
        retain_until: datetime,
        mode: Literal["COMPLIANCE", "GOVERNANCE"] = "COMPLIANCE",
    ) -> datetime:
        """Retain ``version_id`` of ``key`` at least until ``retain_until`` (aware datetime).

        Only ever extends: an existing later date, or COMPLIANCE over GOVERNANCE, is kept.
        Returns the retain-until date now in force. Idempotent.
        """
        ...

    def set_legal_hold(self, key: str, *, version_id: str, on: bool) -> None:
        """Put (``on``) or lift a legal hold (gel) on one version, whatever its retention."""
        ...


@runtime_checkable
class VersionedBlobStore(BlobStore, Protocol):
    """An offer that keeps every version of a key (an S3 bucket with versioning)."""

    def put_version(self, key: str, path: Path, *, sha256: str) -> StoredBlob:
        """Store ``path`` as a new version of ``key``, whether the key exists or not; every
        version it has is kept. Only for a repair replacing a recorded version that is missing
        or corrupt (and, with Object Lock, cannot be removed): the new version is served to
        reads pinned to its id, which the caller records. ``FingerprintMismatch`` if the
        file's SHA-256 is not ``sha256``."""
        ...


class RetentionView(Protocol):
    """What an offer reports of one version's retention (only the date is needed here)."""

    @property
    def retain_until(self) -> datetime | None: ...


@runtime_checkable
class RetentionReader(Protocol):
    """An offer that can tell the retention in force on one version (S3 Object Lock)."""

    def retention(self, key: str, *, version_id: str) -> RetentionView | None: ...


@runtime_checkable
class BucketCheck(Protocol):
    """An offer that can check its bucket: it exists (or may be created), with versioning and
    Object Lock on. Raises ``ConfigurationError`` or ``Unavailable`` otherwise."""

    def ensure_bucket(self) -> None: ...


class TimestampAuthority(Protocol):
    """An RFC 3161 TSA: external over HTTP, or the built-in one."""

    def timestamp(self, data_digest: bytes, *, hash_algorithm: str = "sha256") -> bytes:
        """Return a DER ``TimeStampResp`` (RFC 3161 §2.4.2) over ``data_digest``.

        The response has been checked to match the request (imprint, nonce) but the caller
        verifies it against the trust anchors. Raises ``Unavailable`` if the TSA is unreachable.
        """
        ...

    def certificate_chain_pem(self) -> bytes:
        """PEM certificates: the TSA certificate first, then its issuers up to the root."""
        ...


class FormatIdentifier(Protocol):
    def identify(self, path: Path, *, filename: str, declared_mime: str | None) -> FormatInfo: ...

    def identify_many(
        self,
        paths: Sequence[Path],
        *,
        filenames: Sequence[str] | None = None,
        declared_mimes: Sequence[str | None] | None = None,
    ) -> list[FormatInfo]:
        """Identify several files at once (one tool start-up for all); results in order."""
        ...


class TaskRunner(Protocol):
    """Runs jobs after the current transaction committed (in-process threads or Celery)."""

    def submit(self, job_name: str, job_id: str) -> None: ...

    def pending(self) -> int | None:
        """Jobs submitted and waiting for a worker (not yet started); ``None`` when it cannot
        be told now (the broker does not answer)."""
        ...


class Metrics(Protocol):
    """What the services report for monitoring; Prometheus in the adapters, nothing by default.

    Services name stages and offers; they never see the metrics library.
    """

    def observe_stage(self, stage: str, seconds: float) -> None:
        """One run of ``stage`` (of one transfer, or of one transfer on one offer) completed
        in ``seconds``."""
        ...

    def storage_error(self, offer: str, operation: str) -> None:
        """``operation`` (put, open, stat, list, delete, lock, read_back…) failed on ``offer``."""
        ...


class NullMetrics:
    """The ``Metrics`` port that records nothing (services built without monitoring)."""

    def observe_stage(self, stage: str, seconds: float) -> None:
        pass

    def storage_error(self, offer: str, operation: str) -> None:
        pass


@contextmanager
def timed(metrics: Metrics, stage: str) -> Iterator[None]:
    """Observe the duration of the block as ``stage`` when it completes; a block that raises
    is not observed (its failure is reported otherwise: status, logs, storage errors)."""
    start = time.perf_counter()
    yield
    metrics.observe_stage(stage, time.perf_counter() - start)


# --- Persistence: the records repositories exchange with services -------------------------


class Role(StrEnum):
    PLATFORM = "platform"
    ARCHIVIST = "archivist"
    AUDITOR = "auditor"
    ADMIN = "admin"


class TransferStatus(StrEnum):
    RECEIVED = "received"
    PROCESSING = "processing"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """An authenticated client: who it is, its tenant, its role, what it may transfer for."""

    client_id: str
    tenant_id: str
    role: Role
    name: str
    organization_ids: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantRecord:
    id: str
    name: str
    archival_agency_identifier: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrganizationRecord:
    id: str
    tenant_id: str
    siret: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientRecord:
    id: str
    tenant_id: str
    name: str
    role: Role
    key_id: str
    key_hash: str
    organization_ids: frozenset[str] = frozenset()
    revoked: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferFileRecord:
    path: str
    staged_name: str
    object_id: str
    size: int
    sha256: str
    sha512: str
    declared_mime: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferRecord:
    id: str
    tenant_id: str
    client_id: str
    organization_id: str
    message_identifier: str
    content_digest: str
    status: TransferStatus
    metadata: dict[str, Any]
    staging_dir: str
    package_id: str
    created_at: datetime
    updated_at: datetime
    reasons: tuple[dict[str, str], ...] = ()
    archive_unit_id: str | None = None
    attempts: int = 0
    files: tuple[TransferFileRecord, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageRecord:
    id: str
    tenant_id: str
    transfer_id: str
    root_unit_id: str
    seda_version: str
    manifest_key: str
    manifest_sha256: str
    manifest_size: int
    timestamp_key: str
    timestamp_gen_time: datetime
    created_at: datetime
    sequence: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitRecord:
    id: str
    tenant_id: str
    package_id: str
    root_id: str
    parent_id: str | None
    position: int
    level: str
    title: str
    category: str | None
    content: dict[str, Any]
    appraisal: dict[str, Any] | None
    access: dict[str, Any] | None
    created_at: datetime
    organization_siret: str | None = None
    cpv: str | None = None
    notification_date: date | None = None
    status: str = "active"
    appraisal_end: date | None = None
    access_end: date | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectRecord:
    id: str
    tenant_id: str
    package_id: str
    archive_unit_id: str
    path: str
    uri: str
    size: int
    sha256: str
    sha512: str
    mime_type: str
    storage_key: str
    puid: str | None = None
    format_name: str | None = None
    format_version: str | None = None
    declared_mime: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyRecord:
    tenant_id: str
    package_id: str
    kind: str
    offer: str
    key: str
    size: int
    sha256: str
    stored_at: datetime
    version_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEvent:
    """One logbook entry to append (journal des opérations)."""

    tenant_id: str
    at: datetime
    event_type: str
    outcome: str
    subject_type: str
    subject_id: str
    actor: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def canonical(self, entry_id: int) -> bytes:
        """The entry's bytes in the tenant's Merkle log (its leaf data): RFC 8785 JSON of
        form ``v`` 1. Written with the row and never rebuilt, so a JSON round-trip through
        the database cannot change what was hashed (migration 0005 freezes a copy)."""
        return canonical_json(
            {
                "v": 1,
                "tenant": self.tenant_id,
                "id": entry_id,
                "at": self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "type": self.event_type,
                "outcome": self.outcome,
                "actor": self.actor,
                "subject": {"type": self.subject_type, "id": self.subject_id},
                "details": self.details,
            }
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEntryRecord:
    """A stored logbook entry: its columns, its canonical bytes, its place in the tree."""

    id: int
    event: LogEvent
    canonical: bytes
    leaf_index: int | None = None
    """``None`` until the integrator appended it to the tenant's tree."""
    leaf_hash: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LogHeadRecord:
    """What the integrator has appended to a tenant's tree so far."""

    tenant_id: str
    size: int
    root: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointRecord:
    """A signed, timestamped checkpoint as the database keeps it."""

    tenant_id: str
    size: int
    root: bytes
    note: bytes
    token: bytes
    key_name: str
    created_at: datetime
    copies: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchQuery:
    tenant_id: str
    text: str | None = None
    buyer: str | None = None
    cpv: str | None = None
    notified_from: date | None = None
    notified_to: date | None = None
    cursor: str | None = None
    limit: int = 20
    communicable: bool | None = None
    """True: dossiers whose every active document is communicable on ``as_of``; False: those
    holding at least one restricted (or pending) document; None: no filter."""
    as_of: date | None = None
    """The day communicability is judged on (the service sets it from its clock)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchPage:
    unit_ids: tuple[str, ...]
    next_cursor: str | None


class TenancyRepository(Protocol):
    def add_tenant(self, tenant: TenantRecord, *, at: datetime) -> None: ...
    def tenant_by_name(self, name: str) -> TenantRecord | None: ...
    def get_tenant(self, tenant_id: str) -> TenantRecord | None: ...
    def add_organization(self, org: OrganizationRecord, *, at: datetime) -> None: ...
    def organization_by_siret(self, tenant_id: str, siret: str) -> OrganizationRecord | None: ...
    def add_client(self, client: ClientRecord, *, at: datetime) -> None: ...
    def client_by_key_id(self, key_id: str) -> ClientRecord | None: ...
    def client_by_id(self, client_id: str) -> ClientRecord | None: ...
    def revoke_client(self, client_id: str, *, at: datetime) -> bool:
        """Mark the client's key revoked at ``at`` (its later requests are refused); False
        when it already was (one conditional UPDATE: of two revocations, one wins)."""
        ...


class TransferRepository(Protocol):
    def add(self, transfer: TransferRecord) -> None: ...
    def get(self, tenant_id: str, transfer_id: str) -> TransferRecord | None: ...
    def get_any_tenant(self, transfer_id: str) -> TransferRecord | None:
        """For jobs, which carry only the id."""
        ...

    def by_message(self, client_id: str, message_identifier: str) -> TransferRecord | None: ...
    def update_status(
        self,
        transfer_id: str,
        status: TransferStatus,
        *,
        at: datetime,
        reasons: Sequence[dict[str, str]] = (),
        archive_unit_id: str | None = None,
        attempts: int | None = None,
    ) -> None: ...

    def unfinished(self) -> list[str]: ...

    def stuck(self, *, untouched_since: datetime, limit: int) -> list[str]:
        """Ids of unfinished transfers not updated since ``untouched_since``, least recently
        updated first, at most ``limit`` (their job was lost, or gave up)."""
        ...

    def claim(self, transfer_id: str, *, now: datetime, until: datetime) -> bool:
        """Take the processing lease if the transfer is unfinished and nobody holds a live
        lease on it; atomic (one conditional UPDATE). True when taken."""
        ...

    def renew(self, transfer_id: str, *, until: datetime) -> None:
        """Extend the lease of the job that holds it (its heartbeat)."""
        ...

    def release(self, transfer_id: str) -> None: ...


class ArchiveRepository(Protocol):
    def add_package(self, package: PackageRecord) -> None: ...
    def add_units(self, units: Sequence[UnitRecord]) -> None: ...
    def add_objects(self, objects: Sequence[ObjectRecord]) -> None: ...
    def add_copies(self, copies: Sequence[CopyRecord]) -> None: ...
    def get_package(self, tenant_id: str, package_id: str) -> PackageRecord | None: ...
    def get_unit(self, tenant_id: str, unit_id: str) -> UnitRecord | None: ...
    def units_of_root(self, tenant_id: str, root_id: str) -> list[UnitRecord]: ...
    def packages_of_root(self, tenant_id: str, root_id: str) -> list[PackageRecord]: ...
    def lock_dossier(self, tenant_id: str, root_id: str) -> None: ...
    def objects_of_root(self, tenant_id: str, root_id: str) -> list[ObjectRecord]: ...
    def get_object(self, tenant_id: str, object_id: str) -> ObjectRecord | None: ...
    def copies_of_package(self, tenant_id: str, package_id: str) -> list[CopyRecord]: ...
    def copies_of_key(self, tenant_id: str, package_id: str, key: str) -> list[CopyRecord]:
        """The recorded copies of one key of a package (one per offer holding it)."""
        ...

    def all_packages(self) -> list[PackageRecord]:
        """Every package of every tenant, oldest first (administration only)."""
        ...

    def unit_any_tenant(self, unit_id: str) -> UnitRecord | None:
        """For administration commands, which carry only the id."""
        ...

    def copy_counts(self) -> dict[str, int]:
        """How many copies the database records on each offer (by offer name)."""
        ...

    def upsert_copy(self, copy: CopyRecord) -> None:
        """Record a copy, or refresh the row of the same (offer, key): version, digest, time."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditCopyRecord:
    """A stored copy as the integrity audit sees it: the record, and its last verification."""

    id: int
    tenant_id: str
    package_id: str
    kind: str
    offer: str
    key: str
    size: int
    sha256: str
    version_id: str | None = None
    verified_at: datetime | None = None
    verified_outcome: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SupersededRecord:
    """A version of a copy that a repair replaced (kept where the offer allows it)."""

    tenant_id: str
    package_id: str
    offer: str
    key: str
    version_id: str | None
    sha256: str
    found_sha256: str | None
    reason: str
    superseded_by: str | None
    superseded_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRunRecord:
    run_id: str
    tenant_id: str
    started_at: datetime
    finished_at: datetime
    offers: list[str]
    scope: dict[str, Any]
    copies: int
    problems: int
    repaired: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferAuditStatus:
    """Per offer: copies recorded, copies verified healthy since a date, open problems."""

    offer: str
    copies: int
    verified: int
    problems_open: int
    last_verified_at: datetime | None


class AuditRepository(Protocol):
    def copies_to_audit(
        self, *, offers: Sequence[str], package_ids: Sequence[str] | None = None
    ) -> list[AuditCopyRecord]:
        """Copies on ``offers`` (of ``package_ids`` if given), least recently verified first
        (never verified first), then in the order they were recorded."""
        ...

    def record_verification(
        self, copy_ids: Sequence[int], *, at: datetime, outcome: str
    ) -> None: ...
    def add_superseded(self, record: SupersededRecord) -> None: ...
    def add_run(self, run: AuditRunRecord) -> None: ...
    def last_run(self, tenant_id: str) -> AuditRunRecord | None: ...
    def status(self, *, since: datetime, tenant_id: str | None = None) -> list[OfferAuditStatus]:
        """Per offer recorded in the database (of one tenant, or all)."""
        ...

    def superseded(self, tenant_id: str, package_id: str) -> list[SupersededRecord]: ...


class LogbookRepository(Protocol):
    def append(self, event: LogEvent) -> int:
        """Store the entry with its canonical bytes (no lock on the tree); its id."""
        ...

    def for_subject(self, tenant_id: str, subject_id: str) -> list[LogEvent]: ...

    # -- reading entries (id order unless said) --------------------------------------------
    def get_entry(self, tenant_id: str, entry_id: int) -> LogEntryRecord | None: ...
    def entries(
        self,
        tenant_id: str,
        *,
        subject_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[LogEntryRecord]:
        """Entries about any of ``subject_ids``, or at ``start`` <= at < ``end``, with an id
        above ``after_id``, at most ``limit``."""
        ...

    def entries_by_leaf(
        self, tenant_id: str, *, from_leaf: int, limit: int
    ) -> list[LogEntryRecord]:
        """Integrated entries with a leaf index >= ``from_leaf``, in leaf order."""
        ...

    def tenants(self) -> list[str]:
        """Every tenant (each has a log, possibly empty)."""
        ...

    # -- the integrator and the tree ------------------------------------------------------
    def lock_head(self, tenant_id: str, *, at: datetime) -> LogHeadRecord:
        """The tenant's head, locked until the transaction ends (created empty if absent)."""
        ...

    def head(self, tenant_id: str) -> LogHeadRecord: ...
    def pending(self, tenant_id: str, *, limit: int) -> list[tuple[int, bytes]]:
        """(id, canonical) of entries not yet integrated, in id order."""
        ...

    def assign_leaves(self, tenant_id: str, leaves: Sequence[tuple[int, int, bytes]]) -> None:
        """Set (entry id, leaf index, leaf hash) of integrated entries."""
        ...

    def add_nodes(self, tenant_id: str, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        """Store (level, index, hash) of new perfect subtrees, level >= 1."""
        ...

    def node(self, tenant_id: str, level: int, index: int) -> bytes:
        """The hash of a perfect subtree (level 0: a leaf); ``NotFound`` if not stored."""
        ...

    def nodes(
        self, tenant_id: str, coordinates: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        """The stored hashes of those of the (level, index) subtrees that exist, at once."""
        ...

    def set_head(self, tenant_id: str, *, size: int, root: bytes, at: datetime) -> None: ...

    # -- checkpoints ------------------------------------------------------------------------
    def add_checkpoint(self, checkpoint: CheckpointRecord) -> bool:
        """Record it; False when the tenant already has one of that size (left unchanged)."""
        ...

    def latest_checkpoint(self, tenant_id: str) -> CheckpointRecord | None: ...
    def checkpoints(self, tenant_id: str) -> list[CheckpointRecord]:
        """Every checkpoint of the tenant, by size."""
        ...


class SearchIndex(Protocol):
    def index_unit(self, unit: UnitRecord, *, body: str, keywords: str) -> None: ...
    def search(self, query: SearchQuery) -> SearchPage: ...
    def indexed_body(self, unit_id: str) -> str | None:
        """The body text a unit is indexed with; ``None`` if it is not indexed."""
        ...

    def remove_unit(self, unit_id: str) -> None:
        """Forget a unit (destroyed or transferred out); absent is not an error."""
        ...


# -- Lifecycle: dossier events, versioned référentiels, rule updates (issue 5 items 3-4) ------


@dataclass(frozen=True, slots=True, kw_only=True)
class DossierEventRecord:
    """A dated event of a dossier: a ``dossier_events`` row (``id`` set; source ``api`` or
    ``cli``), or one carried by a transfer's metadata (``id`` None, source ``transfer``).
    ``note`` holds the reason of a correction."""

    tenant_id: str
    root_id: str
    event: str
    event_date: date
    source: str
    recorded_at: datetime
    id: int | None = None
    reference: str | None = None
    note: str | None = None
    transfer_id: str | None = None
    recorded_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DossierTransferRecord:
    """One accepted transfer of a dossier, with its package: the metadata it was sent with."""

    transfer_id: str
    package_id: str
    sequence: int
    metadata: dict[str, Any]
    created_at: datetime
    """When its package was committed (the event dates it carries were known from then)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferentialVersionRecord:
    """One version of a tenant's retention référentiel; the highest ``version`` is in force."""

    tenant_id: str
    version: int
    label: str
    text: str
    sha256: str
    created_at: datetime
    comment: str | None = None
    created_by: str | None = None


class LifecycleRepository(Protocol):
    """Dossier events, the tenant's référentiel versions, and recomputed rules of units.
    Writers of one dossier serialize on ``ArchiveRepository.lock_dossier``."""

    def dossier_transfers(self, tenant_id: str, root_id: str) -> list[DossierTransferRecord]:
        """The accepted transfers whose package belongs to the dossier, oldest first."""
        ...

    def events_of(self, tenant_id: str, root_id: str) -> list[DossierEventRecord]:
        """The dossier's ``dossier_events`` rows, in the order they were recorded."""
        ...

    def add_event(self, record: DossierEventRecord) -> DossierEventRecord:
        """Append an event; returns it with its id."""
        ...

    def dossier_roots(self, tenant_id: str) -> list[str]:
        """The root unit id of every dossier of the tenant, oldest first."""
        ...

    def active_units(self, tenant_id: str) -> list[UnitRecord]:
        """Every active unit of the tenant (for impact analyses)."""
        ...

    def update_unit_rules(
        self,
        tenant_id: str,
        unit_id: str,
        *,
        appraisal: dict[str, Any] | None,
        access: dict[str, Any] | None,
        appraisal_end: date | None,
        access_end: date | None,
    ) -> None: ...

    def referential_versions(self, tenant_id: str) -> list[ReferentialVersionRecord]:
        """Every version, oldest first."""
        ...

    def referential_version(
        self, tenant_id: str, version: int | None = None
    ) -> ReferentialVersionRecord | None:
        """That version, or the one in force (the highest) when ``version`` is None."""
        ...

    def add_referential(self, record: ReferentialVersionRecord) -> bool:
        """Insert a version; False (nothing written) if that version number exists already."""
        ...


# -- Disposal: legal holds, disposal requests and their visa, tombstones (items 5-7) --------


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldRecord:
    """A legal hold (gel) placed on a unit: it covers the unit and its whole subtree.

    While active (not lifted) nothing it covers may be proposed, destroyed or transferred,
    and every copy it covers carries an S3 legal hold.
    """

    id: str
    tenant_id: str
    unit_id: str
    root_id: str
    reason: str
    reference: str | None
    placed_by: str
    placed_at: datetime
    lifted_by: str | None = None
    lifted_at: datetime | None = None
    lift_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.lifted_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class TombstoneRecord:
    """What remains of a destroyed or transferred unit (one per unit).

    ``record`` holds what the certificate states: ``unit`` (id, title, level, category,
    parent_id), ``objects`` (id, path, size, sha256, sha512, mime_type), ``appraisal`` (the
    rule in force), ``visa`` (reference, decision, who, when), ``request_id``,
    ``message_identifier``, and ``certificate`` (its message identifier) once issued.
    """

    unit_id: str
    tenant_id: str
    root_id: str
    request_id: str
    outcome: str
    """``destroyed`` or ``transferred``."""
    record: dict[str, Any]
    at: datetime


class RequestStatus(StrEnum):
    """Where a disposal (``destroy``) or transfer request stands.

    destroy: proposed → approved | refused → executing → executed.
    transfer: proposed → approved | refused → accepted-by-archives | rejected-by-archives
    (the definitive archives' ArchiveTransferReply) → executing → executed.
    """

    PROPOSED = "proposed"
    APPROVED = "approved"
    REFUSED = "refused"
    ACCEPTED_BY_ARCHIVES = "accepted-by-archives"
    REJECTED_BY_ARCHIVES = "rejected-by-archives"
    EXECUTING = "executing"
    EXECUTED = "executed"


#: Requests whose units may not be put in another request.
OPEN_REQUEST_STATUSES = frozenset(
    {
        RequestStatus.PROPOSED,
        RequestStatus.APPROVED,
        RequestStatus.ACCEPTED_BY_ARCHIVES,
        RequestStatus.EXECUTING,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DisposalRequestRecord:
    """A bordereau d'élimination (``destroy``) or de versement (``transfer``): its units,
    its visa, its documents (stored copies) and its execution."""

    id: str
    tenant_id: str
    kind: str
    status: RequestStatus
    message_identifier: str
    unit_ids: tuple[str, ...]
    proposed_by: str
    proposed_at: datetime
    visa: dict[str, Any] | None = None
    executed_by: str | None = None
    executed_at: datetime | None = None
    documents: dict[str, Any] = field(default_factory=dict)
    """Per name (``request.xml``, ``bordereau.pdf``…): media type, sha256, size, key, and
    the copies (offer, version id)."""
    details: dict[str, Any] = field(default_factory=dict)
    """Proposer's client id, the units' summaries, execution progress (keys purged)."""


class DisposalRepository(Protocol):
    """Legal holds, disposal / transfer requests with their visa, and tombstones."""

    def add_hold(self, hold: HoldRecord) -> None: ...
    def get_hold(self, tenant_id: str, hold_id: str) -> HoldRecord | None: ...
    def holds_of_unit(self, tenant_id: str, unit_id: str) -> list[HoldRecord]:
        """Every hold placed on the unit, lifted or not, oldest first."""
        ...

    def lift_hold(self, hold_id: str, *, by: str, at: datetime, reason: str) -> bool:
        """Mark the hold lifted; False when it already was (one conditional UPDATE)."""
        ...

    def lock_proposals(self, tenant_id: str) -> None:
        """Serialize the tenant's proposals: held until the transaction ends (call it first in
        the transaction that records a request, then read ``units_in_open_requests``)."""
        ...

    def add_request(self, request: DisposalRequestRecord) -> None: ...
    def get_request(self, tenant_id: str, request_id: str) -> DisposalRequestRecord | None: ...
    def requests(self, tenant_id: str, *, status: str | None = None) -> list[DisposalRequestRecord]:
        """The tenant's requests, newest first."""
        ...

    def units_in_open_requests(self, tenant_id: str) -> dict[str, str]:
        """Unit id → id of the open request (``OPEN_REQUEST_STATUSES``) that holds it."""
        ...

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
        """Change the request if it still has ``expected_status`` (one conditional UPDATE:
        of two concurrent visas, one wins); False otherwise. ``None`` leaves a field."""
        ...

    def due_roots(self, tenant_id: str, *, on: date) -> list[str]:
        """Roots of dossiers with an active unit whose DUA ended on or before ``on``."""
        ...

    def set_unit_status(self, tenant_id: str, unit_ids: Sequence[str], status: str) -> None: ...
    def remove_copies(self, tenant_id: str, keys: Sequence[tuple[str, str]]) -> int:
        """Forget the stored copies (offer, key) a purge removed; how many rows went."""
        ...

    def add_tombstones(self, tombstones: Sequence[TombstoneRecord]) -> None: ...
    def tombstones_of_request(self, tenant_id: str, request_id: str) -> list[TombstoneRecord]: ...

    def tombstone(self, tenant_id: str, unit_id: str) -> TombstoneRecord | None:
        """The tombstone of a destroyed or transferred unit; ``None`` if it was not."""
        ...

    def active_holds(
        self, tenant_id: str, *, root_id: str | None = None, unit_id: str | None = None
    ) -> list[HoldRecord]:
        """Holds not lifted, oldest first: of the dossier ``root_id`` (wherever placed in
        it), and/or placed on ``unit_id`` itself. A hold covers the subtree of its unit:
        to know whether a unit is covered, look at the holds of its dossier and its
        ancestors (``HoldService.covering`` does)."""
        ...


# -- Dérogations: communication before the délai expires (Code du patrimoine L213-3) -------


@dataclass(frozen=True, slots=True, kw_only=True)
class DerogationRecord:
    """A dérogation (L213-3): the administration, after the archives authority's agreement,
    lets one named client read the documents of a unit (and its subtree) before their
    délai de communicabilité expires.

    Active while not revoked and, when ``until`` is set, through that day (inclusive).
    """

    id: str
    tenant_id: str
    unit_id: str
    root_id: str
    client_id: str
    """The grantee: an API key's client id (the named person who may read)."""
    reference: str
    """The decision's reference (e.g. the archives authority's agreement number)."""
    decision_date: date
    reason: str
    granted_by: str
    granted_by_client: str
    granted_at: datetime
    until: date | None = None
    revoked_by: str | None = None
    revoked_at: datetime | None = None
    revoke_reason: str | None = None

    def active_on(self, day: date) -> bool:
        """Not revoked, and ``day`` not after ``until`` (the last day it counts)."""
        return self.revoked_at is None and (self.until is None or day <= self.until)


class DerogationRepository(Protocol):
    """Dérogations granted on units (``uow.derogations``)."""

    def add(self, derogation: DerogationRecord) -> None: ...
    def get(self, tenant_id: str, derogation_id: str) -> DerogationRecord | None: ...
    def of_unit(self, tenant_id: str, unit_id: str) -> list[DerogationRecord]:
        """Every dérogation granted on the unit itself, revoked or not, oldest first."""
        ...

    def unrevoked_for(
        self, tenant_id: str, client_id: str, unit_ids: Sequence[str]
    ) -> list[DerogationRecord]:
        """The client's dérogations not revoked on any of ``unit_ids`` (a unit's lineage),
        oldest first; the caller judges ``until`` against its clock."""
        ...

    def revoke(self, derogation_id: str, *, by: str, at: datetime, reason: str) -> bool:
        """Mark the dérogation revoked; False when it already was (one conditional UPDATE)."""
        ...


class UnitOfWork(Protocol):
    """One transaction. Only ``commit`` makes changes visible; leaving without it rolls back."""

    @property
    def tenancy(self) -> TenancyRepository: ...
    @property
    def transfers(self) -> TransferRepository: ...
    @property
    def archive(self) -> ArchiveRepository: ...
    @property
    def logbook(self) -> LogbookRepository: ...
    @property
    def search(self) -> SearchIndex: ...
    @property
    def audit(self) -> AuditRepository: ...
    @property
    def lifecycle(self) -> LifecycleRepository: ...
    @property
    def disposal(self) -> DisposalRepository: ...
    @property
    def derogations(self) -> DerogationRepository: ...

    def commit(self) -> None: ...
    def __enter__(self) -> UnitOfWork: ...
    def __exit__(self, *exc: object) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


@dataclass(frozen=True, slots=True, kw_only=True)
class StagedFile:
    """A file part received and fingerprinted while it streamed to the staging area."""

    part_name: str
    staged_name: str
    fingerprints: FileFingerprints
    content_type: str | None = None


class Staging(Protocol):
    """Where uploads wait, outside every storage offer, until their package is stored."""

    def path_of(self, staging_dir: str, staged_name: str) -> Path: ...
    def add_bytes(self, staging_dir: str, part_name: str, data: bytes) -> StagedFile:
        """Stage bytes the service generates itself (e.g. the DECP record)."""
        ...

    def discard(self, staging_dir: str) -> None: ...


class ManifestValidator(Protocol):
    def validate(self, xml: bytes) -> None:
        """Raise ``SedaInvalid`` unless ``xml`` validates (official XSD and our profile)."""
        ...
