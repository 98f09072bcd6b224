"""Foreign SEDA transfers through the service: a zip in, the same job as our transfers after.

Two steps, like :class:`~archive_service.services.ingest.IngestService`:

* :meth:`SipIngest.register` runs while the request is open, on the zip already streamed to
  staging. Zip safety problems (``UnsafeArchive`` 422, ``ArchiveTooLarge`` 413), a caller who
  may not transfer, an organization it does not serve and a reused message identifier are
  refused there and change nothing. The manifest and every object are then checked
  (:meth:`SipReader.check`: official XSD of its own version, every ``MessageDigest`` and
  ``Size``): a transfer with content problems is registered *rejected* with each reason
  (element, line), so that its ``ArchiveTransferReply`` KO can be fetched like ours, and
  nothing of it is kept in staging or storage.
* :meth:`SipIngest.archive`, called by ``IngestService.process`` (the same job, taking the
  transfer id) for transfers of kind ``seda-sip``: the zip is read again from staging and
  checked again, its objects staged, identified, described by our SEDA manifest
  (``core/seda/foreign_manifest.py``: the sender's tree, rules and metadata kept, the sender's
  manifest as one more object), validated against the official XSD, timestamped, stored on
  every offer, locked, committed, logged and indexed by the ingest service's own steps.

The sender's management rules are applied, fail-closed (``core/sender_rules.py``): every
foreign unit gets its effective ``AppraisalRule``/``AccessRule`` (its own plus those inherited
down the sender's tree; ``PreventInheritance``/``RefNonRuleId`` honoured), durations from the
tenant's référentiel or a few cited Vitam ids, an id known nowhere recorded *unresolved*
(not communicable, never due). Each object's copies are locked until its unit's resolved DUA
end; ``retention recompute`` resolves them again (services/lifecycle.py).

Organization scoping (a foreign manifest names agencies with its own codes, rarely a SIRET):
the transfer is for the tenant organization whose SIRET is the manifest's
``OriginatingAgencyIdentifier`` (else ``TransferringAgency/Identifier``); when neither names an
organization of the tenant, for the one the request names (``?organization=SIRET``). A
platform client must serve it (403 otherwise); a manifest naming one organization of the
tenant while the request names another is refused (403), and so is a transfer naming none.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from lxml import etree

from archive_service.core.fingerprint import fingerprint_bytes
from archive_service.core.ids import derived_id, new_id
from archive_service.core.model import FormatInfo
from archive_service.core.retention import Referential
from archive_service.core.seda.foreign_manifest import SenderManifest, build_foreign_manifest
from archive_service.core.seda.names import SEDA_NS, SedaVersion
from archive_service.core.seda.sip import ForeignTransfer, SipObject, SipUnit, open_sip
from archive_service.core.seda.validate import SedaValidator
from archive_service.core.sender_rules import SenderResolution, SenderUnit, resolve_sender_rules
from archive_service.core.zipsafe import ZipLimits
from archive_service.errors import (
    Forbidden,
    InvalidInput,
    Issue,
    SedaInvalid,
)
from archive_service.ports import (
    Caller,
    Clock,
    FormatIdentifier,
    LogEvent,
    ObjectRecord,
    Role,
    StagedFile,
    Staging,
    TaskRunner,
    TransferFileRecord,
    TransferRecord,
    TransferStatus,
    UnitOfWork,
    UnitRecord,
)
from archive_service.services.dossiers import DossierState, load_dossier_state
from archive_service.services.ingest import (
    PROCESS_JOB,
    TRANSFER_ROLES,
    Blob,
    IngestService,
    RegisterOutcome,
    record_rejection,
    replayed,
    storage_prefix,
)

SIP_KIND = "seda-sip"
_logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Scope:
    organization_id: str
    siret: str


class SipIngest:
    """Registers foreign transfer zips and archives them as the ``seda-sip`` archiver."""

    def __init__(
        self,
        *,
        ingest: IngestService,
        uow: Callable[[], UnitOfWork],
        staging: Staging,
        validator: SedaValidator,
        formats: FormatIdentifier,
        clock: Clock,
        runner: TaskRunner,
        limits: ZipLimits,
        seda_version: SedaVersion = "2.3",
    ) -> None:
        self._ingest = ingest
        self._uow = uow
        self._staging = staging
        self._validator = validator
        self._formats = formats
        self._clock = clock
        self._runner = runner
        self.limits = limits
        self._seda_version = seda_version
        ingest.add_archiver(SIP_KIND, self.archive)

    # -- receive --------------------------------------------------------------------------

    @staticmethod
    def authorize(caller: Caller) -> None:
        """Refuse a caller who may not transfer, before its body is read."""
        if caller.role not in TRANSFER_ROLES:
            raise Forbidden(f"role {caller.role.value!r} may not transfer archives")

    def register(
        self, caller: Caller, staging_dir: str, zip_file: StagedFile, organization: str | None
    ) -> RegisterOutcome:
        """Judge the staged zip and record the transfer; refusals discard the staging dir."""
        try:
            outcome = self._register(caller, staging_dir, zip_file, organization)
        except BaseException:
            self._staging.discard(staging_dir)
            raise
        if outcome.replayed or outcome.transfer.status is TransferStatus.REJECTED:
            self._staging.discard(staging_dir)
        else:
            _logger.info("transfer.registered", extra={"transfer_id": outcome.transfer.id})
            self._runner.submit(PROCESS_JOB, outcome.transfer.id)
        return outcome

    def _register(
        self, caller: Caller, staging_dir: str, zip_file: StagedFile, organization: str | None
    ) -> RegisterOutcome:
        self.authorize(caller)
        path = self._staging.path_of(staging_dir, zip_file.staged_name)
        with path.open("rb") as fh, open_sip(fh, self.limits) as reader:
            check = reader.check(self._validator)
        transfer = check.transfer
        digest = zip_file.fingerprints.sha256.digest
        message_id = check.message_identifier or f"sha256:{digest}"
        named = [
            n
            for n in (
                transfer.originating_agency if transfer else None,
                transfer.transferring_agency if transfer else None,
            )
            if n
        ]
        now = self._clock.now()
        with self._uow() as uow:
            scope = self._scope(uow, caller, named, organization)
            replay = replayed(uow, caller, message_id, digest, where="MessageIdentifier")
            if replay is not None:
                return replay
            growth = (
                self._attachments(uow, caller, transfer, scope.siret)
                if check.accepted and transfer is not None
                else {}
            )
            record = TransferRecord(
                id=new_id("tr", now),
                tenant_id=caller.tenant_id,
                client_id=caller.client_id,
                organization_id=scope.organization_id,
                message_identifier=message_id,
                content_digest=digest,
                status=TransferStatus.RECEIVED,
                metadata={
                    "kind": SIP_KIND,
                    "zip": zip_file.staged_name,
                    "zip_sha256": digest,
                    "zip_size": zip_file.fingerprints.size,
                    "seda_version": check.version,
                    "organization": scope.siret,
                    "title": transfer.comment if transfer else None,
                    **growth,
                },
                staging_dir=staging_dir,
                package_id=new_id("pkg", now),
                created_at=now,
                updated_at=now,
                files=_file_records(transfer.objects, now) if check.accepted and transfer else (),
            )
            uow.transfers.add(record)
            uow.logbook.append(
                LogEvent(
                    tenant_id=caller.tenant_id,
                    at=now,
                    event_type="transfer.received",
                    outcome="OK",
                    subject_type="transfer",
                    subject_id=record.id,
                    actor=caller.client_id,
                    details={
                        "message_identifier": message_id,
                        "kind": SIP_KIND,
                        "zip_sha256": digest,
                        "bytes": zip_file.fingerprints.size,
                    },
                )
            )
            if not check.accepted:
                reasons = [i.as_dict() for i in check.issues]
                record_rejection(uow, record, reasons, at=now)
            uow.commit()
            if not check.accepted:
                stored = uow.transfers.get(caller.tenant_id, record.id)
                return RegisterOutcome(stored or record, replayed=False)
        return RegisterOutcome(record, replayed=False)

    def _attachments(
        self, uow: UnitOfWork, caller: Caller, sip: ForeignTransfer, siret: str
    ) -> dict[str, Any]:
        """A transfer adding to an archived dossier: its top-level ArchiveUnits that name one
        of our units by ``Content/SystemId`` (``{}`` when none does). Refused (422, nothing
        written) like an addition through metadata: a unit unknown in the caller's tenant or
        hidden from it, units of several dossiers, a dossier or unit no longer active, a
        dossier of another organization than the transfer's, a reference below the top."""
        named = {u.id: u.system_id for u in sip.units if u.system_id}
        if not named:
            return {}
        issues: list[Issue] = []
        roots: set[str] = set()
        dossier: UnitRecord | None = None
        for sender_id, system_id in sorted(named.items()):
            where = f"ArchiveUnit[@id='{sender_id}']/Content/SystemId"
            if sender_id not in sip.roots:
                issues.append(
                    Issue(
                        "sip-systemid-nested",
                        "only a top-level ArchiveUnit may name an archived unit by SystemId",
                        where,
                    )
                )
                continue
            unit = uow.archive.get_unit(caller.tenant_id, system_id)
            root = uow.archive.get_unit(caller.tenant_id, unit.root_id) if unit else None
            org = (
                uow.tenancy.organization_by_siret(caller.tenant_id, root.organization_siret or "")
                if root is not None
                else None
            )
            if (
                unit is None
                or root is None
                or (
                    caller.role is Role.PLATFORM
                    and (org is None or org.id not in caller.organization_ids)
                )
            ):
                issues.append(Issue("dossier-unknown", f"no archive unit {system_id} here", where))
                continue
            roots.add(root.id)
            dossier = root
            for which in (root, unit):
                if which.status != "active":
                    issues.append(
                        Issue(
                            "dossier-not-active",
                            f"archive unit {which.id} is {which.status}: nothing can be added",
                            where,
                        )
                    )
            if root.organization_siret != siret:
                issues.append(
                    Issue(
                        "organization-mismatch",
                        f"the dossier belongs to organization {root.organization_siret}, "
                        f"the transfer to {siret}",
                        where,
                    )
                )
        if len(roots) > 1:
            issues.append(
                Issue(
                    "sip-several-dossiers",
                    f"the transfer names units of {len(roots)} dossiers; one transfer adds to "
                    "one dossier",
                    "DescriptiveMetadata",
                )
            )
        if issues:
            raise InvalidInput("the transfer cannot be added to an archived dossier", issues=issues)
        assert dossier is not None
        return {"dossier_id": dossier.id, "attach": dict(sorted(named.items()))}

    def _scope(
        self, uow: UnitOfWork, caller: Caller, named: list[str], organization: str | None
    ) -> _Scope:
        """The organization the transfer is for (see the module docstring)."""
        found = None
        for identifier in named:
            found = uow.tenancy.organization_by_siret(caller.tenant_id, identifier)
            if found is not None:
                break
        requested = None
        if organization:
            requested = uow.tenancy.organization_by_siret(caller.tenant_id, organization)
            if requested is None:
                raise Forbidden(
                    f"no organization {organization} in this archive",
                    issues=[Issue("organization-not-allowed", organization, "organization")],
                )
        if found is not None and requested is not None and found.id != requested.id:
            raise Forbidden(
                f"the manifest names organization {found.siret}, the request {organization}",
                issues=[Issue("organization-mismatch", found.siret, "OriginatingAgency")],
            )
        chosen = found or requested
        if chosen is None:
            raise Forbidden(
                "the manifest names no organization of this archive "
                f"({', '.join(named) or 'none'}); name one with ?organization=SIRET",
                issues=[Issue("organization-unknown", ", ".join(named), "OriginatingAgency")],
            )
        if caller.role is Role.PLATFORM and chosen.id not in caller.organization_ids:
            raise Forbidden(
                f"client {caller.name!r} may not transfer for organization {chosen.siret}",
                issues=[Issue("organization-not-allowed", chosen.siret, "OriginatingAgency")],
            )
        return _Scope(chosen.id, chosen.siret)

    # -- process (called by IngestService.process) ----------------------------------------

    def archive(self, transfer: TransferRecord, agency: str) -> None:
        ingest = self._ingest
        now = transfer.created_at
        prefix = storage_prefix(transfer.tenant_id, transfer.package_id)
        zip_path = self._staging.path_of(transfer.staging_dir, str(transfer.metadata["zip"]))
        by_entry = {f.path: f for f in transfer.files}
        paths: dict[str, Path] = {}

        def sink(obj: SipObject, chunks: Iterator[bytes]) -> None:
            record = by_entry[_object_path(obj)]
            paths[obj.id] = self._stage(transfer, record.staged_name, chunks)

        with zip_path.open("rb") as fh, open_sip(fh, self.limits) as reader:
            check = reader.check(self._validator)
            if not check.accepted or check.transfer is None:
                raise InvalidInput("the transfer no longer checks", issues=list(check.issues))
            reader.stage(check, sink)
        sip = check.transfer
        objects = [o for o in sip.objects if o.id in paths]

        with ingest.stage_timer("identify"):
            formats = self._formats.identify_many(
                [paths[o.id] for o in objects],
                filenames=[o.filename or _object_path(o).rsplit("/", 1)[-1] for o in objects],
                declared_mimes=[o.mime for o in objects],
            )
        records = {o.id: by_entry[_object_path(o)] for o in objects}
        sender = _sender_manifest(sip, transfer, now)
        sender_path = self._stage(transfer, "sender-manifest.xml", iter((sip.manifest,)))

        with ingest.stage_timer("manifest"):
            manifest, version = self._manifest(sip, transfer, now, records, sender)
        token, gen_time = ingest.timestamp_manifest(prefix, hashlib.sha256(manifest).digest())

        blobs: list[Blob] = [
            (
                "object",
                f"{prefix}/content/{records[o.id].object_id}",
                paths[o.id],
                records[o.id].sha256,
            )
            for o in objects
        ]
        blobs.append(
            ("object", f"{prefix}/{sender.uri}", sender_path, sender.fingerprints.sha256.digest)
        )
        copies = ingest.store_blobs(transfer, prefix, blobs, manifest, token)

        dossier = self._dossier(transfer)
        units, unit_of = _units(
            sip,
            transfer,
            now,
            str(transfer.metadata.get("organization")),
            self._clock.now(),
            dossier=dossier,
        )
        # The sender's rules, resolved with the référentiel in force (core/sender_rules.py);
        # each object's copies are locked until its unit's resolved DUA end (the offer's
        # minimum when none is known, as before).
        units = apply_sender_rules(units, ingest.referential_for(transfer.tenant_id))
        end_of_unit = {u.id: u.appraisal_end for u in units if u.appraisal_end is not None}
        root_id = dossier.root.id if dossier is not None else units[0].id
        ingest.lock_copies(
            copies,
            {
                f"{prefix}/content/{records[o.id].object_id}": end_of_unit[unit]
                for o in objects
                if (unit := unit_of.get(o.id, root_id)) in end_of_unit
            },
        )
        sender_unit = UnitRecord(
            id=derived_id("au", now, f"{transfer.id}/sender-manifest"),
            tenant_id=transfer.tenant_id,
            package_id=transfer.package_id,
            root_id=root_id,
            parent_id=root_id,
            position=1
            + max((u.position for u in [*units, *(dossier.units if dossier else ())]), default=-1),
            level="Item",
            title="Bordereau de versement reçu",
            category=None,
            content={"sender_id": sender.unit_id, "description": "the sender's manifest"},
            appraisal=None,
            access=None,
            created_at=self._clock.now(),
            organization_siret=str(transfer.metadata.get("organization")),
        )
        units.append(sender_unit)
        object_records = [
            _object_record(transfer, prefix, records[o.id], o, fmt, unit_of.get(o.id, root_id))
            for o, fmt in zip(objects, formats, strict=True)
        ]
        object_records.append(
            ObjectRecord(
                id=sender.object_id,
                tenant_id=transfer.tenant_id,
                package_id=transfer.package_id,
                archive_unit_id=sender_unit.id,
                path=sip.manifest_name,
                uri=sender.uri,
                size=sender.fingerprints.size,
                sha256=sender.fingerprints.sha256.digest,
                sha512=sender.fingerprints.sha512.digest,
                mime_type="application/xml",
                storage_key=f"{prefix}/{sender.uri}",
            )
        )
        with ingest.stage_timer("commit"):
            ingest.commit_records(
                transfer,
                root_id=root_id,
                seda_version=version,
                manifest=manifest,
                token=token,
                gen_time=gen_time,
                copies=copies,
                units=units,
                objects=object_records,
                index_body=" ".join(
                    filter(None, [sip.comment, *(u.content.get("description") for u in units)])
                ),
                index_keywords=" ".join(
                    [u.title for u in dossier.units if u.id != root_id] if dossier else []
                )
                + " ".join(u.title for u in units),
                dossier=dossier.root if dossier is not None else None,
            )
        if dossier is not None:
            ingest.dossier_changed(transfer.tenant_id, root_id)

    def _dossier(self, transfer: TransferRecord) -> DossierState | None:
        """The archived dossier the transfer adds to, judged again (a disposal may have come
        since its registration): ``InvalidInput``, a rejection, when it cannot take it."""
        root_id = transfer.metadata.get("dossier_id")
        if not isinstance(root_id, str):
            return None
        attach = transfer.metadata.get("attach") or {}
        with self._uow() as uow:
            root = uow.archive.get_unit(transfer.tenant_id, root_id)
            if root is None:
                raise InvalidInput(f"dossier {root_id} is no longer archived")
            state = load_dossier_state(uow, transfer.tenant_id, root)
        status = {u.id: u.status for u in state.units}
        closed = [
            Issue("dossier-not-active", f"archive unit {uid} is {status.get(uid)}", sender)
            for sender, uid in sorted({**attach, "dossier": root_id}.items())
            if status.get(uid) != "active"
        ]
        if closed:
            raise InvalidInput("the dossier can no longer take this transfer", issues=closed)
        return state

    def _stage(self, transfer: TransferRecord, name: str, chunks: Iterator[bytes]) -> Path:
        """Write a staged file anew. A run that went before may have handed the old one to a
        local offer (a read-only hard link to the archived inode): it is replaced, never
        written through."""
        target = self._staging.path_of(transfer.staging_dir, name)
        part = target.with_name(target.name + ".part")
        with part.open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
        os.replace(part, target)
        return target

    def _manifest(
        self,
        sip: ForeignTransfer,
        transfer: TransferRecord,
        now: datetime,
        records: dict[str, TransferFileRecord],
        sender: SenderManifest,
    ) -> tuple[bytes, SedaVersion]:
        """Our manifest in the service's SEDA version, else (2.2-only elements) in 2.2."""
        uris = {oid: f"content/{r.object_id}" for oid, r in records.items()}
        versions: list[SedaVersion] = [self._seda_version]
        if sip.version != self._seda_version:
            versions.append(sip.version)
        failure: SedaInvalid | None = None
        for version in versions:
            manifest = build_foreign_manifest(
                sip,
                message_identifier=f"{transfer.id}",
                date=now,
                uris=uris,
                sender_manifest=sender,
                version=version,
            )
            try:
                self._validator.validate(manifest, version=version, profile=False)
            except SedaInvalid as exc:
                failure = failure or exc
                continue
            return manifest, version
        assert failure is not None
        raise failure


def _object_path(obj: SipObject) -> str:
    return obj.entry if obj.entry is not None else f"attachment/{obj.id}"


def _file_records(objects: tuple[SipObject, ...], now: datetime) -> tuple[TransferFileRecord, ...]:
    out: list[TransferFileRecord] = []
    for index, obj in enumerate(objects):
        if obj.fingerprints is None:
            continue
        out.append(
            TransferFileRecord(
                path=_object_path(obj),
                staged_name=f"o{index}",
                object_id=new_id("obj", now),
                size=obj.fingerprints.size,
                sha256=obj.fingerprints.sha256.digest,
                sha512=obj.fingerprints.sha512.digest,
                declared_mime=obj.mime,
            )
        )
    return tuple(out)


def _sender_manifest(
    sip: ForeignTransfer, transfer: TransferRecord, now: datetime
) -> SenderManifest:
    object_id = derived_id("obj", now, f"{transfer.id}/sender-manifest")
    return SenderManifest(
        object_id=object_id,
        group_id=f"GRP-{object_id}",
        unit_id=f"AU-{object_id}",
        uri=f"content/{object_id}",
        fingerprints=fingerprint_bytes(sip.manifest),
    )


def _description(unit: SipUnit, version: SedaVersion) -> str | None:
    if unit.content_xml is None:
        return None
    content = etree.fromstring(unit.content_xml)
    texts = [
        e.text.strip()
        for e in content.findall(f"{{{SEDA_NS[version]}}}Description")
        if e.text and e.text.strip()
    ]
    return " ".join(texts) or None


def _units(
    sip: ForeignTransfer,
    transfer: TransferRecord,
    now: datetime,
    siret: str,
    created: datetime,
    *,
    dossier: DossierState | None = None,
) -> tuple[list[UnitRecord], dict[str, str]]:
    """Our unit records: a root for the transfer, then the sender's units (first parent wins).

    Added to an archived ``dossier``: no root of its own; a sender unit naming one of our
    units by ``SystemId`` *is* that unit (not recorded again: its children and objects attach
    to it), the other top-level units go under the dossier's root, and positions follow the
    dossier's. Returns them with the unit id of each object (by the sender's object id)."""
    root_id = derived_id("au", now, f"{transfer.id}/root")
    ours = {u.id: derived_id("au", now, f"{transfer.id}/unit/{u.id}") for u in sip.units}
    attach: dict[str, str] = {}
    if dossier is not None:
        root_id = dossier.root.id
        attach = {str(k): str(v) for k, v in (transfer.metadata.get("attach") or {}).items()}
        ours.update(attach)
    records = (
        []
        if dossier is not None
        else [
            UnitRecord(
                id=root_id,
                tenant_id=transfer.tenant_id,
                package_id=transfer.package_id,
                root_id=root_id,
                parent_id=None,
                position=0,
                level="RecordGrp",
                title=sip.comment or f"Transfert {sip.message_identifier}",
                category=None,
                content={
                    "description": sip.comment,
                    "kind": SIP_KIND,
                    "seda_version": sip.version,
                    "message_identifier": sip.message_identifier,
                    "transferring_agency": sip.transferring_agency,
                    "originating_agency": sip.originating_agency,
                },
                appraisal=None,
                access=None,
                created_at=created,
                organization_siret=siret,
            )
        ]
    )
    group_of = {o.id: o.group_id for o in sip.objects}
    unit_of_group: dict[str, str] = {}
    unit_of_object: dict[str, str] = {}
    seen: set[str] = set()
    first_position = 1 + max((u.position for u in dossier.units), default=-1) if dossier else 0

    def visit(unit: SipUnit, parent: str) -> None:
        if unit.id in seen:
            return
        seen.add(unit.id)
        if unit.id in attach:
            for ref in unit.group_refs:
                unit_of_group.setdefault(ref, ours[unit.id])
            for ref in unit.object_refs:
                unit_of_object.setdefault(ref, ours[unit.id])
            for child in unit.children:
                if child.target in ours:
                    visit(sip.unit(child.target), ours[unit.id])
            return
        records.append(
            UnitRecord(
                id=ours[unit.id],
                tenant_id=transfer.tenant_id,
                package_id=transfer.package_id,
                root_id=root_id,
                parent_id=parent,
                position=first_position + len(records),
                level=unit.level or "Item",
                title=unit.title or unit.id,
                category=None,
                content={
                    "description": _description(unit, sip.version),
                    "sender_id": unit.id,
                    "sender_rules": [
                        {
                            "category": r.category,
                            "rule_id": r.rule_id,
                            "start_date": r.start_date,
                            "final_action": r.final_action,
                        }
                        for r in unit.rules
                    ],
                    **(
                        {
                            "sender_inheritance": {
                                i.category: {
                                    "prevent_inheritance": i.prevent_inheritance,
                                    "ref_non_rule_ids": list(i.ref_non_rule_ids),
                                    "final_action": i.final_action,
                                }
                                for i in unit.inheritance
                            }
                        }
                        if unit.inheritance
                        else {}
                    ),
                },
                appraisal=None,
                access=None,
                created_at=created,
                organization_siret=siret,
            )
        )
        for ref in unit.group_refs:
            unit_of_group.setdefault(ref, ours[unit.id])
        for ref in unit.object_refs:
            unit_of_object.setdefault(ref, ours[unit.id])
        for child in unit.children:
            if child.target in ours:
                visit(sip.unit(child.target), ours[unit.id])

    for root in sip.roots:
        visit(sip.unit(root), root_id)
    for oid, gid in group_of.items():
        if oid not in unit_of_object and gid is not None and gid in unit_of_group:
            unit_of_object[oid] = unit_of_group[gid]
    return records, unit_of_object


def sender_resolutions(
    units: Sequence[UnitRecord], referential: Referential | None
) -> dict[str, SenderResolution]:
    """The resolved sender rules of the units of ``units`` recorded from a foreign transfer
    (those whose content has ``sender_rules``); other units are left out."""
    return resolve_sender_rules(
        [
            SenderUnit(
                id=u.id,
                parent_id=u.parent_id,
                sender_id=str(u.content.get("sender_id") or "") or None,
                rules=[r for r in u.content["sender_rules"] if isinstance(r, dict)],
                inheritance={
                    str(k): v
                    for k, v in (u.content.get("sender_inheritance") or {}).items()
                    if isinstance(v, dict)
                },
            )
            for u in units
            if isinstance(u.content.get("sender_rules"), list)
        ],
        referential,
    )


def apply_sender_rules(
    units: list[UnitRecord], referential: Referential | None
) -> list[UnitRecord]:
    """``units`` with the sender's rules resolved onto the foreign ones (appraisal, access and
    their ends); the others unchanged."""
    resolved = sender_resolutions(units, referential)
    return [
        replace(
            u,
            appraisal=r.appraisal,
            access=r.access,
            appraisal_end=r.appraisal_end,
            access_end=r.access_end,
        )
        if (r := resolved.get(u.id)) is not None
        else u
        for u in units
    ]


def _object_record(
    transfer: TransferRecord,
    prefix: str,
    record: TransferFileRecord,
    obj: SipObject,
    fmt: FormatInfo,
    unit_id: str,
) -> ObjectRecord:
    uri = f"content/{record.object_id}"
    return ObjectRecord(
        id=record.object_id,
        tenant_id=transfer.tenant_id,
        package_id=transfer.package_id,
        archive_unit_id=unit_id,
        path=record.path,
        uri=uri,
        size=record.size,
        sha256=record.sha256,
        sha512=record.sha512,
        mime_type=fmt.mime_type,
        storage_key=f"{prefix}/{uri}",
        puid=fmt.puid,
        format_name=fmt.format_name,
        format_version=fmt.format_version,
        declared_mime=fmt.declared_mime,
    )


__all__ = ["SIP_KIND", "SipIngest", "apply_sender_rules", "sender_resolutions"]
