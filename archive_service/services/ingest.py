"""Ingest use case: receive a procurement dossier, then turn it into a stored SEDA package.

Two steps (DESIGN.md §3):

* :meth:`IngestService.register` runs while the HTTP request is open. Everything that can be
  judged from the request alone is judged here (metadata, files listed vs sent, declared
  digests, empty files, the caller's right to transfer for the organization, replays), so bad
  input is refused synchronously and changes nothing: no transfer row, no staged file kept.
* :meth:`IngestService.process` runs as a job after the commit: identify formats, build the
  ArchiveUnit tree and the SEDA manifest, validate it, timestamp it, write every blob to
  every storage offer, read them back, and only then commit the package (the commit point).
  A crash before the commit leaves no package; the job can run again and finds its own
  half-written keys, which it checks and completes (keys are fixed at registration).

Each stage reports its duration to the ``Metrics`` port (``STAGES``), and every log line of a
job carries the ``transfer_id`` it is archiving (``structlog.contextvars``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from time import perf_counter
from typing import Any

import structlog

from archive_service.core.fingerprint import sha256_stream
from archive_service.core.ids import derived_id, new_id
from archive_service.core.model import (
    AccessRule,
    AppraisalRule,
    ArchiveUnitNode,
    DataObject,
    FileFingerprints,
    Fingerprint,
    ReplyCode,
    TransferManifestInput,
    TransferReplyInput,
)
from archive_service.core.procurement import (
    AdditionMetadata,
    DossierEvents,
    DossierMetadata,
    FileEntry,
    build_addition_tree,
    build_dossier_tree,
    is_addition,
    metadata_for_addition,
    normalize_path,
    parse_addition,
    parse_metadata,
)
from archive_service.core.retention import Referential
from archive_service.core.seda import REFERENTIAL_CODE_LIST
from archive_service.core.seda.builder import build_archive_transfer
from archive_service.core.seda.reply import build_transfer_reply
from archive_service.core.timestamp import verify_timestamp
from archive_service.errors import (
    ArchiveError,
    ConfigurationError,
    Conflict,
    Forbidden,
    InvalidInput,
    Issue,
    NotFound,
    Unavailable,
)
from archive_service.ports import (
    BlobStore,
    Caller,
    Clock,
    CopyRecord,
    FormatIdentifier,
    LockingBlobStore,
    LogEvent,
    ManifestValidator,
    Metrics,
    NullMetrics,
    ObjectRecord,
    PackageRecord,
    Role,
    StagedFile,
    Staging,
    TaskRunner,
    TimestampAuthority,
    TransferFileRecord,
    TransferRecord,
    TransferStatus,
    UnitOfWork,
    UnitRecord,
    timed,
)
from archive_service.services.access_log import AccessLog
from archive_service.services.dossiers import DossierState, load_dossier_state

PROCESS_JOB = "process_transfer"
#: One blob to store: (kind, key, source, sha256 hex); ``kind`` is "object", "manifest"…
Blob = tuple[str, str, Path | bytes, str]
#: Archives a registered transfer of another kind (``metadata["kind"]``), e.g. a foreign SEDA
#: transfer (``services/sip_ingest.py``): called with the transfer and the archival agency.
Archiver = Callable[[TransferRecord, str], None]
_logger = logging.getLogger(__name__)
#: Blobs written to one offer at once (see step 4 of ``_archive``).
STORE_WORKERS = 4
TRANSFER_ROLES = frozenset({Role.PLATFORM, Role.ADMIN})
#: Stages whose durations are reported, in order. ``receive`` (the upload streamed to staging
#: and hashed) is measured by the API; ``store`` and ``read_back`` once per storage offer.
STAGES = (
    "receive",
    "register",
    "identify",
    "describe",
    "manifest",
    "timestamp",
    "store",
    "read_back",
    "lock",
    "commit",
)


@dataclass(frozen=True, slots=True)
class RegisterOutcome:
    transfer: TransferRecord
    replayed: bool


def content_digest(metadata: dict[str, Any], files: Sequence[tuple[str, str]]) -> str:
    """Identity of a transfer's content: canonical metadata JSON plus each file's SHA-256.

    Used to tell a replay (same message identifier, same content) from a conflicting reuse.
    Declared digests are dropped from the metadata first, since the files' real digests stand
    in for them.
    """
    meta = json.loads(json.dumps(metadata))
    for entry in meta.get("files", []) if isinstance(meta.get("files"), list) else []:
        if isinstance(entry, dict):
            entry.pop("sha256", None)
    canonical = json.dumps(
        {"metadata": meta, "files": sorted(files)},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


DECP_RECORD_PATH = "donnees-essentielles/decp.json"
DECP_RECORD_TITLE = "Données essentielles du marché (DECP 2.0.3)"


def with_decp_record(meta: DossierMetadata) -> tuple[DossierMetadata, bytes | None]:
    """Add the DECP record as a document of its own (``donnees.decp``), unless sent already.

    The record is archived losslessly as an official DECP 2.0.3 document
    (``{"marches": {"marche": [...]}}``), so the manifest need not carry every DECP field and
    the record validates against the official schema on its own. Deterministic: the same
    metadata gives the same bytes, so a resumed job finds the same staged file.
    """
    if meta.decp is None or any(
        f.category == "donnees.decp" or normalize_path(f.path) == DECP_RECORD_PATH
        for f in meta.files
    ):
        return meta, None
    data = (
        json.dumps(
            {"marches": {"marche": [meta.decp]}}, ensure_ascii=False, indent=2, sort_keys=True
        ).encode("utf-8")
        + b"\n"
    )
    entry = FileEntry(
        path=DECP_RECORD_PATH,
        category="donnees.decp",
        title=DECP_RECORD_TITLE,
        mime_type="application/json",
    )
    return replace(meta, files=(*meta.files, entry)), data


def _match_staged(
    entries: Sequence[FileEntry], staged: Sequence[StagedFile], issues: list[Issue]
) -> dict[str, StagedFile]:
    """The staged files by NFC path; each listed-but-missing, empty, mis-digested or
    unlisted file is appended to ``issues``."""
    by_name: dict[str, StagedFile] = {}
    # Part names and listed paths are compared in NFC, as duplicates are detected.
    for f in staged:
        name = normalize_path(f.part_name)
        if name in by_name:
            issues.append(Issue("duplicate-file", "file sent twice", f.part_name))
        by_name[name] = f
    listed = {normalize_path(entry.path) for entry in entries}
    for index, entry in enumerate(entries):
        where = f"/files/{index}"
        got = by_name.get(normalize_path(entry.path))
        if got is None:
            issues.append(
                Issue("file-missing", f"file {entry.path!r} is listed but was not sent", where)
            )
            continue
        if got.fingerprints.size == 0:
            issues.append(Issue("file-empty", f"file {entry.path!r} is empty", where))
        if entry.sha256 is not None and entry.sha256 != got.fingerprints.sha256.digest:
            issues.append(
                Issue(
                    "digest-mismatch",
                    f"declared sha256 {entry.sha256} but received {got.fingerprints.sha256.digest}",
                    where + "/sha256",
                )
            )
    for name in sorted(set(by_name) - listed):
        issues.append(Issue("file-not-listed", f"file {name!r} was sent but is not listed", name))
    return by_name


def storage_prefix(tenant_id: str, package_id: str) -> str:
    return f"tenants/{tenant_id}/packages/{package_id}"


def rule_json(rule: AppraisalRule | AccessRule | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    out: dict[str, Any] = {
        "rule_id": rule.rule_id,
        "duration_years": rule.duration_years,
        "start_event": rule.start_event,
        "start_date": rule.start_date.isoformat() if rule.start_date else None,
        "end_date": rule.end_date.isoformat() if rule.end_date else None,
        "pending": rule.pending,
        "label": rule.label,
    }
    if isinstance(rule, AppraisalRule):
        out["final_action"] = rule.final_action.value
        out["review"] = rule.review
    return out


def _date_or_none(value: object) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def replayed(
    uow: UnitOfWork, caller: Caller, message_identifier: str, digest: str, *, where: str
) -> RegisterOutcome | None:
    """The (client, message identifier) rule: the first transfer again for the same content;
    ``Conflict`` for other content; ``None`` for a new identifier."""
    previous = uow.transfers.by_message(caller.client_id, message_identifier)
    if previous is None:
        return None
    if previous.content_digest == digest:
        return RegisterOutcome(previous, replayed=True)
    raise Conflict(
        f"message identifier {message_identifier!r} was already used with different content",
        issues=[
            Issue("message-identifier-reused", f"already used by transfer {previous.id}", where)
        ],
    )


def record_rejection(
    uow: UnitOfWork, transfer: TransferRecord, reasons: list[dict[str, str]], *, at: datetime
) -> None:
    """Mark ``transfer`` rejected with ``reasons`` and log it (in the caller's transaction)."""
    uow.transfers.update_status(transfer.id, TransferStatus.REJECTED, at=at, reasons=reasons)
    uow.logbook.append(
        LogEvent(
            tenant_id=transfer.tenant_id,
            at=at,
            event_type="transfer.rejected",
            outcome="KO",
            subject_type="transfer",
            subject_id=transfer.id,
            details={"reasons": reasons},
        )
    )


class IngestService:
    def __init__(
        self,
        *,
        uow: Callable[[], UnitOfWork],
        staging: Staging,
        offers: Sequence[BlobStore],
        tsa: TimestampAuthority,
        formats: FormatIdentifier,
        validator: ManifestValidator,
        referential: Referential | Callable[[str], Referential],
        clock: Clock,
        runner: TaskRunner,
        seda_version: str = "2.3",
        decp_validator: Callable[[dict[str, Any]], list[str]] | None = None,
        lease_seconds: int = 1800,
        metrics: Metrics | None = None,
    ) -> None:
        if not offers:
            msg = "at least one storage offer is required"
            raise ValueError(msg)
        self._uow = uow
        self._staging = staging
        self._offers = tuple(offers)
        self._tsa = tsa
        self._formats = formats
        self._validator = validator
        # One référentiel for every tenant, or a function giving the one in force for a tenant
        # (the versioned référentiels of services/referentials.py).
        self._referentials: Callable[[str], Referential] = (
            referential if callable(referential) else (lambda _tenant: referential)
        )
        self._dossier_listeners: list[Callable[[str, str], None]] = []
        self._clock = clock
        self._runner = runner
        self._seda_version = seda_version
        self._decp_validator = decp_validator
        self._lease = timedelta(seconds=lease_seconds)
        self._metrics = metrics or NullMetrics()
        self._archivers: dict[str, Archiver] = {}

    def referential_for(self, tenant_id: str) -> Referential:
        """The retention référentiel in force for ``tenant_id`` now."""
        return self._referentials(tenant_id)

    def on_dossier_changed(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(tenant_id, root_id)`` after a package of a dossier commits (its
        rules may need recomputing from the events the dossier now has)."""
        self._dossier_listeners.append(listener)

    def dossier_changed(self, tenant_id: str, root_id: str) -> None:
        """Tell the listeners; the package is committed already, so a listener's failure is
        logged and left for its own retry (the next event or recomputation), not raised."""
        for listener in self._dossier_listeners:
            try:
                listener(tenant_id, root_id)
            except Exception:
                _logger.exception(
                    "ingest.dossier_listener_failed",
                    extra={"tenant_id": tenant_id, "root_id": root_id},
                )

    def add_archiver(self, kind: str, archiver: Archiver) -> None:
        """Let ``archiver`` process the transfers whose ``metadata["kind"]`` is ``kind``."""
        self._archivers[kind] = archiver

    # -- step 1: receive -------------------------------------------------------------------

    def register(
        self,
        caller: Caller,
        raw_metadata: object,
        staging_dir: str,
        staged: Sequence[StagedFile],
    ) -> RegisterOutcome:
        """Validate a received transfer and record it; the staged files become its own.

        On any refusal the staging directory is discarded and nothing is written.
        """
        try:
            with timed(self._metrics, "register"):
                outcome = self._register(caller, raw_metadata, staging_dir, staged)
        except BaseException:
            self._staging.discard(staging_dir)
            raise
        if outcome.replayed:
            self._staging.discard(staging_dir)
        else:
            _logger.info(
                "transfer.registered",
                extra={"transfer_id": outcome.transfer.id, "files": len(outcome.transfer.files)},
            )
            self._runner.submit(PROCESS_JOB, outcome.transfer.id)
        return outcome

    def _register(
        self,
        caller: Caller,
        raw_metadata: object,
        staging_dir: str,
        staged: Sequence[StagedFile],
    ) -> RegisterOutcome:
        if caller.role not in TRANSFER_ROLES:
            raise Forbidden(f"role {caller.role.value!r} may not transfer archives")
        if is_addition(raw_metadata):
            return self._register_addition(caller, raw_metadata, staging_dir, staged)
        meta = parse_metadata(raw_metadata, decp_validator=self._decp_validator)
        issues = self._future_events(meta.events)
        by_name = _match_staged(meta.files, staged, issues)
        if issues:
            raise InvalidInput("the transfer does not match its metadata", issues=issues)
        meta, record = with_decp_record(meta)
        if record is not None:
            generated = self._staging.add_bytes(staging_dir, DECP_RECORD_PATH, record)
            by_name[DECP_RECORD_PATH] = generated

        digest = content_digest(
            raw_metadata if isinstance(raw_metadata, dict) else {},
            [(f.part_name, f.fingerprints.sha256.digest) for f in staged],
        )
        with self._uow() as uow:
            org = uow.tenancy.organization_by_siret(caller.tenant_id, meta.organization)
            if org is None or (
                caller.role is Role.PLATFORM and org.id not in caller.organization_ids
            ):
                raise Forbidden(
                    f"client {caller.name!r} may not transfer for organization {meta.organization}",
                    issues=[Issue("organization-not-allowed", "organization", "/organization")],
                )
            replay = replayed(
                uow, caller, meta.message_identifier, digest, where="/message_identifier"
            )
            if replay is not None:
                return replay
            transfer = self._add_transfer(
                uow, caller, org.id, raw_metadata, digest, staging_dir, meta.files, by_name
            )
            uow.commit()
        return RegisterOutcome(transfer, replayed=False)

    def _add_transfer(
        self,
        uow: UnitOfWork,
        caller: Caller,
        organization_id: str,
        raw_metadata: object,
        digest: str,
        staging_dir: str,
        entries: Sequence[FileEntry],
        by_name: dict[str, StagedFile],
        details: dict[str, Any] | None = None,
    ) -> TransferRecord:
        """Record a received transfer and its ``transfer.received`` entry (not committed)."""
        now = self._clock.now()
        metadata = raw_metadata if isinstance(raw_metadata, dict) else {}
        transfer = TransferRecord(
            id=new_id("tr", now),
            tenant_id=caller.tenant_id,
            client_id=caller.client_id,
            organization_id=organization_id,
            message_identifier=str(metadata.get("message_identifier", "")),
            content_digest=digest,
            status=TransferStatus.RECEIVED,
            metadata=metadata,
            staging_dir=staging_dir,
            package_id=new_id("pkg", now),
            created_at=now,
            updated_at=now,
            files=tuple(
                TransferFileRecord(
                    path=entry.path,
                    staged_name=got.staged_name,
                    object_id=new_id("obj", now),
                    size=got.fingerprints.size,
                    sha256=got.fingerprints.sha256.digest,
                    sha512=got.fingerprints.sha512.digest,
                    declared_mime=entry.mime_type,
                )
                for entry in entries
                for got in (by_name[normalize_path(entry.path)],)
            ),
        )
        uow.transfers.add(transfer)
        uow.logbook.append(
            LogEvent(
                tenant_id=caller.tenant_id,
                at=now,
                event_type="transfer.received",
                outcome="OK",
                subject_type="transfer",
                subject_id=transfer.id,
                actor=caller.client_id,
                details={
                    "message_identifier": transfer.message_identifier,
                    "files": len(transfer.files),
                    "bytes": sum(f.size for f in transfer.files),
                    **(details or {}),
                },
            )
        )
        return transfer

    def _future_events(self, events: DossierEvents) -> list[Issue]:
        """A rule cannot start in the future: such a date is a typing error, and it would
        make the manifest invalid long after the sender was told "received"."""
        today = self._clock.now().date()
        return [
            Issue(
                "event-in-future",
                f"event {event} dated {when.isoformat()} is after today",
                f"/events/{event}",
            )
            for event, when in events.known()
            if when > today
        ]

    # -- additions to an archived dossier (growing dossiers) ----------------------------------

    def _register_addition(
        self,
        caller: Caller,
        raw_metadata: object,
        staging_dir: str,
        staged: Sequence[StagedFile],
    ) -> RegisterOutcome:
        """Register a transfer adding documents to an archived dossier (``"dossier"`` key).

        Refused with nothing written (422, each reason an issue): a dossier unknown in the
        caller's tenant or hidden from it (a platform sees only its organizations' dossiers:
        the same answer, so nothing leaks), another organization than the dossier's, a
        dossier no longer active (destroyed, transferred), a path the dossier already holds
        (documents are never replaced: a corrected version is a new document with its own
        path), an event dated differently from the dossier's.
        """
        add = parse_addition(raw_metadata)
        issues = self._future_events(add.events)
        by_name = _match_staged(add.files, staged, issues)
        digest = content_digest(
            raw_metadata if isinstance(raw_metadata, dict) else {},
            [(f.part_name, f.fingerprints.sha256.digest) for f in staged],
        )
        with self._uow() as uow:
            dossier = self._addition_target(uow, caller, add)
            replay = replayed(
                uow, caller, add.message_identifier, digest, where="/message_identifier"
            )
            if replay is not None:
                return replay
            org = uow.tenancy.organization_by_siret(
                caller.tenant_id, dossier.root.organization_siret or ""
            )
            if org is None:
                raise Forbidden(
                    f"client {caller.name!r} may not transfer for the dossier's organization",
                    issues=[Issue("organization-not-allowed", "organization", "/organization")],
                )
            issues.extend(dossier.problems(add))
            if issues:
                raise InvalidInput(
                    f"the addition to dossier {dossier.root.id} cannot be accepted", issues=issues
                )
            transfer = self._add_transfer(
                uow,
                caller,
                org.id,
                raw_metadata,
                digest,
                staging_dir,
                add.files,
                by_name,
                details={"dossier_id": dossier.root.id},
            )
            uow.commit()
        return RegisterOutcome(transfer, replayed=False)

    def _addition_target(
        self, uow: UnitOfWork, caller: Caller | None, add: AdditionMetadata, tenant_id: str = ""
    ) -> DossierState:
        """The dossier ``add`` names, as the caller may see it; ``InvalidInput`` otherwise."""
        tenant = caller.tenant_id if caller is not None else tenant_id
        unknown = InvalidInput(
            f"no archived dossier {add.dossier} to add to",
            issues=[
                Issue(
                    "dossier-unknown", f"no archive unit {add.dossier} in this tenant", "/dossier"
                )
            ],
        )
        unit = uow.archive.get_unit(tenant, add.dossier)
        root = uow.archive.get_unit(tenant, unit.root_id) if unit is not None else None
        if unit is None or root is None:
            raise unknown
        if caller is not None and caller.role is Role.PLATFORM:
            org = uow.tenancy.organization_by_siret(tenant, root.organization_siret or "")
            if org is None or org.id not in caller.organization_ids:
                raise unknown
        return load_dossier_state(uow, tenant, root)

    def _archive_addition(self, transfer: TransferRecord, agency: str) -> None:
        """Archive an addition as its own package of the dossier (same steps as a first
        transfer: identify, describe, manifest, timestamp, store, lock, commit)."""
        add = parse_addition(transfer.metadata)
        with self._uow() as uow:
            dossier = self._addition_target(uow, None, add, transfer.tenant_id)
        # The dossier may have changed since registration (a disposal, a concurrent addition
        # of the same path): judged again, a rejection with the reasons.
        problems = dossier.problems(add)
        if problems:
            raise InvalidInput(
                f"the addition to dossier {dossier.root.id} cannot be archived", issues=problems
            )
        assert dossier.first is not None
        meta = metadata_for_addition(replace(dossier.first, events=dossier.events(add)), add)
        now = transfer.created_at
        counter = itertools.count()
        staged, objects = self._identify(transfer, meta.files)
        referential = self.referential_for(transfer.tenant_id)
        with timed(self._metrics, "describe"):
            root = build_addition_tree(
                meta,
                objects,
                referential,
                dossier=dossier.existing(dossier.root),
                phases={code: dossier.existing(u) for code, u in dossier.phases().items()},
                new_id=lambda prefix_: derived_id(prefix_, now, f"{transfer.id}/{next(counter)}"),
                phase_id=lambda code: derived_id(
                    "au", dossier.root.created_at, f"{dossier.root.id}/phase/{code}"
                ),
            )
        existing_ids = frozenset({dossier.root.id, *(u.id for u in dossier.phases().values())})
        self._seal(
            transfer,
            agency,
            meta,
            root,
            objects,
            staged,
            referential,
            comment=f"Ajout au dossier : {meta.title}",
            dossier=dossier,
            existing_ids=existing_ids,
        )

    def get_transfer(self, caller: Caller, transfer_id: str) -> TransferRecord:
        with self._uow() as uow:
            transfer = uow.transfers.get(caller.tenant_id, transfer_id)
        if transfer is None or (
            caller.role is Role.PLATFORM and transfer.client_id != caller.client_id
        ):
            raise NotFound(f"no transfer {transfer_id}")
        return transfer

    def transfer_reply(self, caller: Caller, transfer_id: str) -> bytes:
        """SEDA ``ArchiveTransferReply`` for a finished transfer (acknowledgement before)."""
        transfer = self.get_transfer(caller, transfer_id)
        with self._uow() as uow:
            tenant = uow.tenancy.get_tenant(transfer.tenant_id)
        agency = tenant.archival_agency_identifier if tenant else transfer.tenant_id
        code = {
            TransferStatus.ACCEPTED: ReplyCode.OK,
            TransferStatus.REJECTED: ReplyCode.KO,
        }.get(transfer.status)
        if code is None:
            raise Conflict(
                f"transfer {transfer_id} is still {transfer.status.value}; "
                "its reply exists once it is accepted or rejected"
            )
        reply = TransferReplyInput(
            message_identifier=f"ATR-{transfer.id}",
            message_request_identifier=transfer.message_identifier,
            date=transfer.updated_at,
            reply_code=code,
            archival_agency=agency,
            transferring_agency=transfer.client_id,
            reasons=tuple(
                f"{r.get('code', '')}: {r.get('message', '')}"
                + (f" ({r['location']})" if r.get("location") else "")
                for r in transfer.reasons
            ),
            archive_unit_id=transfer.archive_unit_id,
            grant_date=transfer.updated_at if code is ReplyCode.OK else None,
        )
        xml = build_transfer_reply(reply, version="2.3")
        AccessLog(uow=self._uow, clock=self._clock).append(
            caller,
            "transfer_reply.read",
            subject_type="transfer",
            subject_id=transfer.id,
            details={"reply_code": code.value, "bytes": len(xml), "format": "xml"},
        )
        return xml

    def unfinished(self) -> list[str]:
        """Ids of transfers acknowledged but not finished (to resubmit after a restart)."""
        with self._uow() as uow:
            return uow.transfers.unfinished()

    def stuck(self, *, untouched_for: timedelta, limit: int) -> list[str]:
        """Ids of unfinished transfers untouched for ``untouched_for``, least recent first."""
        with self._uow() as uow:
            return uow.transfers.stuck(
                untouched_since=self._clock.now() - untouched_for, limit=limit
            )

    # -- step 2: process (a job taking the transfer id) --------------------------------------

    def process(self, transfer_id: str) -> TransferStatus:
        """Archive a registered transfer; idempotent (a finished transfer is left as it is).

        Raises ``Unavailable`` when a dependency is down: the transfer stays unfinished with
        the reason in its status, and the job is retried.
        """
        with structlog.contextvars.bound_contextvars(transfer_id=transfer_id):
            status = self._process(transfer_id)
            _logger.info("transfer.processed", extra={"status": status.value})
            return status

    def _process(self, transfer_id: str) -> TransferStatus:
        # One job at a time: a second delivery of the same job (broker redelivery, the resume
        # job, a restart) finds the lease taken and comes back later, so two runs never write
        # or clean up the same keys at once.
        with self._uow() as uow:
            transfer = uow.transfers.get_any_tenant(transfer_id)
            if transfer is None:
                raise NotFound(f"no transfer {transfer_id}")
            if transfer.status in (TransferStatus.ACCEPTED, TransferStatus.REJECTED):
                return transfer.status
            now = self._clock.now()
            if not uow.transfers.claim(transfer.id, now=now, until=now + self._lease):
                raise Unavailable(f"transfer {transfer.id} is being archived by another job")
            tenant = uow.tenancy.get_tenant(transfer.tenant_id)
            uow.transfers.update_status(
                transfer.id,
                TransferStatus.PROCESSING,
                at=now,
                attempts=transfer.attempts + 1,
            )
            uow.commit()
        agency = tenant.archival_agency_identifier if tenant else transfer.tenant_id
        try:
            try:
                with self._heartbeat(transfer.id):
                    self._archive(transfer, agency)
            except ConfigurationError as exc:
                # The operator's to fix (an offer misconfigured), not the sender's fault: the
                # transfer waits, with the reason, instead of being rejected.
                raise Unavailable(f"configuration: {exc.message}") from exc
        except Unavailable as exc:
            _logger.warning("transfer.waiting", extra={"reason": exc.message})
            with self._uow() as uow:
                uow.transfers.update_status(
                    transfer.id,
                    TransferStatus.PROCESSING,
                    at=self._clock.now(),
                    reasons=[{"code": exc.code, "message": f"waiting: {exc.message}"}],
                )
                uow.transfers.release(transfer.id)
                uow.commit()
            raise
        except ArchiveError as exc:
            self._reject(transfer, exc)
            return TransferStatus.REJECTED
        except BaseException:
            # An unexpected failure: give the lease back so that a later job can resume.
            with self._uow() as uow:
                uow.transfers.release(transfer.id)
                uow.commit()
            raise
        self._staging.discard(transfer.staging_dir)
        return TransferStatus.ACCEPTED

    @contextmanager
    def _heartbeat(self, transfer_id: str) -> Iterator[None]:
        """Renew the lease every third of its length while the job runs, so that a live job
        keeps the transfer and a dead one (``kill -9``, lost host) lets it go within one lease."""
        stop = threading.Event()
        period = self._lease.total_seconds() / 3

        def beat() -> None:
            while not stop.wait(period):
                try:
                    with self._uow() as uow:
                        uow.transfers.renew(transfer_id, until=self._clock.now() + self._lease)
                        uow.commit()
                except Exception:  # a missed beat only shortens the lease
                    _logger.warning("transfer.lease_renewal_failed", extra={"id": transfer_id})

        thread = threading.Thread(target=beat, name=f"lease-{transfer_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def release_leases(self) -> int:
        """Free every processing lease; only for a single process starting up, when no other
        job can be running (the in-process runner)."""
        ids = self.unfinished()
        with self._uow() as uow:
            for transfer_id in ids:
                uow.transfers.release(transfer_id)
            uow.commit()
        return len(ids)

    def _reject(self, transfer: TransferRecord, exc: ArchiveError) -> None:
        self._remove_written(transfer)
        reasons = [i.as_dict() for i in exc.issues] or [{"code": exc.code, "message": exc.message}]
        now = self._clock.now()
        with self._uow() as uow:
            record_rejection(uow, transfer, reasons, at=now)
            uow.commit()
        self._staging.discard(transfer.staging_dir)

    def _remove_written(self, transfer: TransferRecord) -> None:
        """Remove what a failed attempt wrote to the offers: nothing was committed for it."""
        prefix = storage_prefix(transfer.tenant_id, transfer.package_id) + "/"
        for offer in self._offers:
            for key in list(offer.iter_keys(prefix)):
                try:
                    offer.delete(key)
                except Conflict:
                    # Already locked (the failure came after the lock step): it cannot be
                    # removed before its retention ends; the copies table never names it.
                    continue

    def _archive(self, transfer: TransferRecord, agency: str) -> None:
        archiver = self._archivers.get(str(transfer.metadata.get("kind", "")))
        if archiver is not None:
            archiver(transfer, agency)
            return
        if is_addition(transfer.metadata):
            self._archive_addition(transfer, agency)
            return
        meta, _ = with_decp_record(parse_metadata(transfer.metadata, decp_validator=None))
        # The manifest is dated by the transfer's arrival and its unit ids derive from the
        # transfer id, so a job that runs again rebuilds the same bytes and finds its own
        # earlier copies (which may already be locked on S3) identical.
        now = transfer.created_at
        counter = itertools.count()

        # 1. Identify the files (in one batch: one tool start-up for all) and describe each
        #    as a DataObject.
        staged, objects = self._identify(transfer, meta.files)

        # 2. The ArchiveUnit tree with its rules, then the manifest, validated before storage.
        referential = self.referential_for(transfer.tenant_id)
        with timed(self._metrics, "describe"):
            root = build_dossier_tree(
                meta,
                objects,
                referential,
                new_id=lambda prefix_: derived_id(prefix_, now, f"{transfer.id}/{next(counter)}"),
            )
        self._seal(transfer, agency, meta, root, objects, staged, referential, comment=meta.title)

    def _seal(
        self,
        transfer: TransferRecord,
        agency: str,
        meta: DossierMetadata,
        root: ArchiveUnitNode,
        objects: dict[str, DataObject],
        staged: list[Path],
        referential: Referential,
        *,
        comment: str,
        dossier: DossierState | None = None,
        existing_ids: frozenset[str] = frozenset(),
    ) -> None:
        """Steps 2-5 of a package once its tree is built: manifest (validated before storage),
        token, every offer, lock, commit. ``dossier``/``existing_ids``: an addition."""
        now = transfer.created_at
        prefix = storage_prefix(transfer.tenant_id, transfer.package_id)
        with timed(self._metrics, "manifest"):
            manifest = build_archive_transfer(
                TransferManifestInput(
                    message_identifier=transfer.message_identifier,
                    date=now,
                    archival_agency=agency,
                    transferring_agency=transfer.client_id,
                    originating_agency=meta.organization,
                    objects=tuple(objects[e.path] for e in meta.files),
                    root=root,
                    comment=comment,
                ),
                version=self._seda_version,  # type: ignore[arg-type]
                rule_code_list=f"{REFERENTIAL_CODE_LIST}:{referential.version}",
                existing_ids=existing_ids,
            )
            self._validator.validate(manifest)
            manifest_sha256 = hashlib.sha256(manifest).digest()

        # 3. RFC 3161 token over SHA-256 of the manifest bytes, verified before we rely on it.
        #    A token an earlier attempt stored for these very bytes is kept, not replaced.
        token, gen_time = self.timestamp_manifest(prefix, manifest_sha256)

        # 4. Every blob to every offer under write-once keys, then read back and compare. The
        #    last offer may adopt the staged files rather than copy them (the staging area
        #    never writes to them again); earlier offers, done before it, still read them.
        #    Blobs go to an offer a few at a time: each write mostly waits for its fsyncs,
        #    and concurrent fsyncs share the file system's journal commits.
        blobs: list[Blob] = []
        for entry, path in zip(meta.files, staged, strict=True):
            obj = objects[entry.path]
            blobs.append(("object", f"{prefix}/{obj.uri}", path, obj.fingerprints.sha256.digest))
        copies = self.store_blobs(transfer, prefix, blobs, manifest, token)

        # 5. Lock every copy on offers with Object Lock (retention until the end of the DUA,
        #    or the offer's minimum while the start event is pending), then the commit point:
        #    the package exists once this transaction commits.
        self._lock_copies(copies, root, objects)
        with timed(self._metrics, "commit"):
            self._commit_package(
                transfer,
                meta,
                root,
                objects,
                manifest,
                token,
                gen_time,
                copies,
                dossier=dossier,
                existing_ids=existing_ids,
            )
        self.dossier_changed(transfer.tenant_id, root.id)

    def _identify(
        self, transfer: TransferRecord, entries: Sequence[FileEntry]
    ) -> tuple[list[Path], dict[str, DataObject]]:
        """The staged path of each of ``entries`` and its DataObject (formats identified in
        one batch: one tool start-up for all), keyed by declared path."""
        files = {f.path: f for f in transfer.files}
        staged = [
            self._staging.path_of(transfer.staging_dir, files[e.path].staged_name) for e in entries
        ]
        with timed(self._metrics, "identify"):
            formats = self._formats.identify_many(
                staged,
                filenames=[e.path.rsplit("/", 1)[-1] for e in entries],
                declared_mimes=[files[e.path].declared_mime for e in entries],
            )
        objects: dict[str, DataObject] = {}
        for entry, fmt in zip(entries, formats, strict=True):
            f = files[entry.path]
            objects[entry.path] = DataObject(
                id=f.object_id,
                path=entry.path,
                fingerprints=FileFingerprints(
                    size=f.size,
                    sha256=Fingerprint("sha256", f.sha256),
                    sha512=Fingerprint("sha512", f.sha512),
                ),
                format=fmt,
                uri=f"content/{f.object_id}",
            )
        return staged, objects

    def timestamp_manifest(self, prefix: str, manifest_sha256: bytes) -> tuple[bytes, datetime]:
        """RFC 3161 token over SHA-256 of the manifest, verified before we rely on it; a token
        an earlier attempt stored for these very bytes is kept, not replaced."""
        with timed(self._metrics, "timestamp"):
            chain = self._tsa.certificate_chain_pem()
            token = self._stored_token(f"{prefix}/manifest.tsr", manifest_sha256, chain)
            if token is None:
                token = self._tsa.timestamp(manifest_sha256, hash_algorithm="sha256")
            info = verify_timestamp(token, digest=manifest_sha256, chain_pem=chain)
        return token, info.gen_time

    def store_blobs(
        self,
        transfer: TransferRecord,
        prefix: str,
        blobs: list[Blob],
        manifest: bytes,
        token: bytes,
    ) -> list[CopyRecord]:
        """Write the objects ``blobs``, then the manifest and its token, to every offer."""
        blobs = [
            *blobs,
            ("manifest", f"{prefix}/manifest.xml", manifest, hashlib.sha256(manifest).hexdigest()),
            ("timestamp", f"{prefix}/manifest.tsr", token, hashlib.sha256(token).hexdigest()),
        ]
        keys = [key for _, key, _, _ in blobs]
        sources = [source for _, _, source, _ in blobs]
        digests = [sha for _, _, _, sha in blobs]
        copies: list[CopyRecord] = []
        with ThreadPoolExecutor(max_workers=STORE_WORKERS, thread_name_prefix="store") as pool:
            for index, offer in enumerate(self._offers):
                started, read_back = perf_counter(), 0.0
                put = partial(self._put, offer, consume=index == len(self._offers) - 1)
                stored = pool.map(put, keys, sources, digests)
                for (kind, key, _source, sha), (size, version_id, reading) in zip(
                    blobs, stored, strict=True
                ):
                    read_back += reading
                    copies.append(
                        CopyRecord(
                            tenant_id=transfer.tenant_id,
                            package_id=transfer.package_id,
                            kind=kind,
                            offer=offer.name,
                            key=key,
                            size=size,
                            sha256=sha,
                            stored_at=self._clock.now(),
                            version_id=version_id,
                        )
                    )
                # Read-backs overlap each other and the writes: their time is summed.
                self._metrics.observe_stage("store", perf_counter() - started)
                self._metrics.observe_stage("read_back", read_back)

        return copies

    def stage_timer(self, stage: str) -> Any:
        """Report the duration of one of ``STAGES`` to the metrics (a context manager)."""
        return timed(self._metrics, stage)

    def lock_copies(
        self, copies: Sequence[CopyRecord], ends_by_key: Mapping[str, date] | None = None
    ) -> None:
        """Lock ``copies`` for the offers' minimum retention (no rule this service can date),
        or an object's copies until ``ends_by_key[storage key]`` (a foreign transfer's
        resolved sender rules; manifest and token until the latest of them)."""
        self._lock_copies(copies, None, {}, ends_by_key)

    def _stored_token(self, key: str, digest: bytes, chain: bytes) -> bytes | None:
        for offer in self._offers:
            if offer.stat(key) is None:
                continue
            with offer.open(key) as stream:
                token = stream.read()
            try:
                verify_timestamp(token, digest=digest, chain_pem=chain)
            except ArchiveError:
                return None
            return token
        return None

    def _lock_copies(
        self,
        copies: Sequence[CopyRecord],
        root: ArchiveUnitNode | None,
        objects: dict[str, DataObject],
        ends_by_key: Mapping[str, date] | None = None,
    ) -> None:
        """Apply COMPLIANCE retention to every copy on a locking offer (only ever extends).
        Without ``root`` (no rule we can date) every copy gets the offer's minimum."""
        lockers = {o.name: o for o in self._offers if isinstance(o, LockingBlobStore)}
        if not lockers:
            return
        with timed(self._metrics, "lock"):
            self._lock(lockers, copies, root, objects, ends_by_key or {})

    def _lock(
        self,
        lockers: dict[str, LockingBlobStore],
        copies: Sequence[CopyRecord],
        root: ArchiveUnitNode | None,
        objects: dict[str, DataObject],
        ends_by_key: Mapping[str, date] | None = None,
    ) -> None:
        now = self._clock.now()
        end_by_object: dict[str, date] = {}
        by_key = ends_by_key or {}

        def visit(node: ArchiveUnitNode, inherited: date | None) -> None:
            rule = node.appraisal
            end = rule.end_date if rule is not None else inherited
            for ref in node.data_object_ids:
                if end is not None:
                    end_by_object[ref] = end
            for child in node.children:
                visit(child, end)

        if root is not None:
            visit(root, None)
        uri_to_object = {o.uri: o.id for o in objects.values()}
        package_end = max([*end_by_object.values(), *by_key.values()], default=None)

        def until(end: date | None) -> datetime:
            if end is None:
                return now  # pending: the offer's configured minimum applies
            return max(now, datetime.combine(end, time.min, tzinfo=UTC))

        jobs: list[tuple[LockingBlobStore, str, str, datetime]] = []
        for copy in copies:
            offer = lockers.get(copy.offer)
            if offer is None or copy.version_id is None:
                continue
            if copy.kind == "object":
                uri = copy.key[copy.key.find("content/") :]
                end = by_key.get(copy.key) or end_by_object.get(uri_to_object.get(uri, ""))
            else:
                end = package_end
            jobs.append((offer, copy.key, copy.version_id, until(end)))

        def lock(job: tuple[LockingBlobStore, str, str, datetime]) -> None:
            offer, key, version_id, retain_until = job
            offer.lock(key, version_id=version_id, retain_until=retain_until)

        # Each lock is a few round trips to its offer: run them side by side, like the writes.
        # ``map`` re-raises the first failure; the transfer then waits and locks again (locking
        # only ever extends, so a repeated lock is harmless).
        with ThreadPoolExecutor(max_workers=STORE_WORKERS, thread_name_prefix="lock") as pool:
            list(pool.map(lock, jobs))

    def _put(
        self, offer: BlobStore, key: str, source: Path | bytes, sha256: str, *, consume: bool
    ) -> tuple[int, str | None, float]:
        """Write one blob (or accept an identical one left by an earlier attempt), read it
        back, and compare its SHA-256 with what we meant to store. Returns the size, the
        version id and the seconds the read-back took.

        The read-back is skipped only when the offer already did exactly that: computed the
        digest it returns by reading the stored, durable object (``StoredBlob.read_back``).
        """
        existing = offer.stat(key)
        if existing is not None:
            if existing.sha256 != sha256:
                # Left by an interrupted attempt with other bytes (e.g. a manifest rebuilt
                # with a later date); nothing references it yet.
                offer.delete(key)
                existing = None
        stored = None
        if existing is None:
            try:
                if isinstance(source, Path):
                    stored = offer.put_file(key, source, sha256=sha256, consume=consume)
                else:
                    stored = offer.put_bytes(key, source)
            except Conflict:
                pass
        if stored is None:  # an earlier attempt's, or a concurrent writer's: the key's object
            stored = offer.stat(key)
        # The version read back is the version recorded (write-once: the key's first).
        version_id = stored.version_id if stored else None
        started = perf_counter()
        if stored is not None and stored.read_back:
            size, found = stored.size, stored.sha256
        else:
            with offer.open(key, version_id=version_id) as stream:
                size, found = sha256_stream(stream)
        reading = perf_counter() - started
        if found != sha256:
            self._metrics.storage_error(offer.name, "read_back")
            raise Unavailable(
                f"offer {offer.name}: read-back of {key} gave sha256 {found}, expected {sha256}"
            )
        return size, version_id, reading

    def _commit_package(
        self,
        transfer: TransferRecord,
        meta: DossierMetadata,
        root: ArchiveUnitNode,
        objects: dict[str, DataObject],
        manifest: bytes,
        token: bytes,
        gen_time: datetime,
        copies: list[CopyRecord],
        *,
        dossier: DossierState | None = None,
        existing_ids: frozenset[str] = frozenset(),
    ) -> None:
        """Records of the package. For an addition to ``dossier``, the units of
        ``existing_ids`` (the dossier, its existing phases) are already archived: only the
        new units are recorded, numbered after the dossier's, with its organization, CPV and
        notification date (what search filters on)."""
        now = self._clock.now()
        prefix = storage_prefix(transfer.tenant_id, transfer.package_id)
        decp = meta.decp or {}
        cpv = decp.get("codeCPV") if isinstance(decp.get("codeCPV"), str) else None
        notified = _date_or_none(meta.events.get("notification"))
        if dossier is not None:
            cpv, notified = dossier.root.cpv, dossier.root.notification_date
        first_position = 1 + max((u.position for u in dossier.units), default=-1) if dossier else 0
        units: list[UnitRecord] = []
        object_unit: dict[str, str] = {}

        def visit(
            node: ArchiveUnitNode,
            parent: str | None,
            inherited: tuple[AppraisalRule | None, AccessRule | None] = (None, None),
        ) -> None:
            d = node.description
            appraisal = node.appraisal or inherited[0]
            access = node.access or inherited[1]
            if node.id in existing_ids:
                for child in node.children:
                    visit(child, node.id, (appraisal, access))
                return
            units.append(
                UnitRecord(
                    id=node.id,
                    tenant_id=transfer.tenant_id,
                    package_id=transfer.package_id,
                    root_id=root.id,
                    parent_id=parent,
                    position=first_position + len(units),
                    level=d.level.value,
                    title=d.title,
                    category=node.category,
                    content={
                        "description": d.description,
                        "document_type": d.document_type,
                        "keywords": [
                            {"content": k.content, "type": k.type, "reference": k.reference}
                            for k in d.keywords
                        ],
                        "originating_agency": d.originating_agency,
                        "originating_system_ids": list(d.originating_system_ids),
                        "start_date": d.start_date.isoformat() if d.start_date else None,
                        "end_date": d.end_date.isoformat() if d.end_date else None,
                        "extension": dict(d.extension),
                    },
                    appraisal=rule_json(node.appraisal),
                    access=rule_json(node.access),
                    created_at=now,
                    organization_siret=meta.organization,
                    cpv=cpv,
                    notification_date=notified,
                    appraisal_end=appraisal.end_date if appraisal else None,
                    access_end=access.end_date if access else None,
                )
            )
            for ref in node.data_object_ids:
                object_unit[ref] = node.id
            for child in node.children:
                visit(child, node.id, (appraisal, access))

        visit(root, None)
        object_records = [
            ObjectRecord(
                id=o.id,
                tenant_id=transfer.tenant_id,
                package_id=transfer.package_id,
                archive_unit_id=object_unit.get(o.id, root.id),
                path=o.path,
                uri=o.uri,
                size=o.size,
                sha256=o.fingerprints.sha256.digest,
                sha512=o.fingerprints.sha512.digest,
                mime_type=o.format.mime_type,
                storage_key=f"{prefix}/{o.uri}",
                puid=o.format.puid,
                format_name=o.format.format_name,
                format_version=o.format.format_version,
                declared_mime=o.format.declared_mime,
            )
            for o in objects.values()
        ]
        titles = [u.title for u in units[1:]]
        keywords = [k.content for k in root.description.keywords]
        if dossier is not None:
            # The dossier's search entry is rebuilt with every title it now holds (not the
            # titles of units a disposal destroyed or transferred out: they left the index).
            titles = [
                u.title for u in dossier.units if u.id != root.id and u.status == "active"
            ] + [u.title for u in units]
            keywords = list(dossier.first.keywords) if dossier.first is not None else []
        self.commit_records(
            transfer,
            root_id=root.id,
            seda_version=self._seda_version,
            manifest=manifest,
            token=token,
            gen_time=gen_time,
            copies=copies,
            units=units,
            objects=object_records,
            index_body=" ".join(
                filter(None, [meta.description, str(decp.get("objet") or ""), cpv or ""])
            ),
            index_keywords=" ".join(keywords + titles),
            dossier=dossier.root if dossier is not None else None,
        )

    def commit_records(
        self,
        transfer: TransferRecord,
        *,
        root_id: str,
        seda_version: str,
        manifest: bytes,
        token: bytes,
        gen_time: datetime,
        copies: list[CopyRecord],
        units: list[UnitRecord],
        objects: list[ObjectRecord],
        index_body: str,
        index_keywords: str,
        dossier: UnitRecord | None = None,
    ) -> None:
        """The commit point: package, units, objects, copies, logbook and index at once.

        ``dossier``: the root unit of the archived dossier this package adds to. Its next
        sequence number is taken under a lock of the dossier (two additions committing at
        once are numbered one after the other), and the dossier id and sequence go into the
        package's logbook entries.
        """
        now = self._clock.now()
        prefix = storage_prefix(transfer.tenant_id, transfer.package_id)
        with self._uow() as uow:
            current = uow.transfers.get_any_tenant(transfer.id)
            if current is not None and current.status is TransferStatus.ACCEPTED:
                return
            sequence = 1
            growth: dict[str, Any] = {}
            if dossier is not None:
                uow.archive.lock_dossier(transfer.tenant_id, dossier.id)
                known = uow.archive.packages_of_root(transfer.tenant_id, dossier.id)
                sequence = 1 + max((p.sequence for p in known), default=0)
                growth = {"dossier_id": dossier.id, "sequence": sequence}
                # A phase a concurrent addition created first (same id, per dossier and
                # phase) is recorded once: this package's documents go under it.
                units = [u for u in units if uow.archive.get_unit(u.tenant_id, u.id) is None]
            uow.archive.add_package(
                PackageRecord(
                    id=transfer.package_id,
                    tenant_id=transfer.tenant_id,
                    transfer_id=transfer.id,
                    root_unit_id=root_id,
                    seda_version=seda_version,
                    manifest_key=f"{prefix}/manifest.xml",
                    manifest_sha256=hashlib.sha256(manifest).hexdigest(),
                    manifest_size=len(manifest),
                    timestamp_key=f"{prefix}/manifest.tsr",
                    timestamp_gen_time=gen_time,
                    created_at=now,
                    sequence=sequence,
                )
            )
            uow.archive.add_units(units)
            uow.archive.add_objects(objects)
            uow.archive.add_copies(copies)
            for copy in copies:
                uow.logbook.append(
                    LogEvent(
                        tenant_id=transfer.tenant_id,
                        at=copy.stored_at,
                        event_type=f"{copy.kind}.stored",
                        outcome="OK",
                        subject_type="package",
                        subject_id=transfer.package_id,
                        details={"offer": copy.offer, "key": copy.key, "sha256": copy.sha256},
                    )
                )
            uow.logbook.append(
                LogEvent(
                    tenant_id=transfer.tenant_id,
                    at=now,
                    event_type="package.timestamped",
                    outcome="OK",
                    subject_type="package",
                    subject_id=transfer.package_id,
                    details={
                        "gen_time": gen_time.isoformat(),
                        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
                        "token_sha256": hashlib.sha256(token).hexdigest(),
                        **growth,
                    },
                )
            )
            uow.logbook.append(
                LogEvent(
                    tenant_id=transfer.tenant_id,
                    at=now,
                    event_type="transfer.accepted",
                    outcome="OK",
                    subject_type="archive_unit",
                    subject_id=root_id,
                    details={
                        "transfer_id": transfer.id,
                        "package_id": transfer.package_id,
                        **growth,
                    },
                )
            )
            uow.transfers.update_status(
                transfer.id, TransferStatus.ACCEPTED, at=now, archive_unit_id=root_id
            )
            uow.search.index_unit(dossier or units[0], body=index_body, keywords=index_keywords)
            uow.commit()
