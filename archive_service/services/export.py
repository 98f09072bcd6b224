"""Exports rebuilt from the database's current state: the DIP of a unit (communication) and
the outgoing ``ArchiveTransfer`` to the definitive archives (issue 5 items 5 and 7).

Both are zip files written to a temporary file under ``<data_dir>/exports`` (the caller sends
or stores it, then deletes it): ``manifest.xml`` first, then every delivered object under
``content/<object id>``, streamed from the copy the database recorded (services/recorded.py),
its SHA-256 recomputed while it is written and compared with the recorded one (a mismatch
fails the export: nothing unverified leaves the archive). The manifest is rebuilt, never the
stored one: units with their *current* rules (events and référentiel changes recompute them),
descriptive metadata from ``archive_units.content``, objects with their digests, and for the DIP
a SEDA ``HoldRule`` on every unit under an active legal hold. It is validated against the
official XSD of its version before the zip is handed over.

* **DIP** (:meth:`ExportService.delivery`): SEDA ``ArchiveDeliveryRequestReply``
  (core/seda/delivery.py) for the unit asked for and its subtree. Who may have it follows
  ``GET /v1/archive-units/{id}`` (other tenant or another organization's platform: not
  found). Objects of units the caller may not read today (communicability,
  ``RetrievalService.readable``; roles without content access) are left out, each such unit
  named in a ``Comment`` of the manifest with the reason; units destroyed or transferred are
  left out whole. Logged ``archive_unit.export`` (or ``REFUSED`` / ``FAILED``).
* **Outgoing transfer** (:meth:`ExportService.outgoing_transfer`): SEDA ``ArchiveTransfer``
  (core/seda/builder.py) of the given units and their subtrees, for the definitive archives'
  system; the disposal service that calls it checks the visa and logs the step. Refused for a
  unit that is not active or is under an active hold.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from archive_service.core.ids import new_id
from archive_service.core.model import (
    AccessRule,
    AppraisalRule,
    ArchiveUnitNode,
    DataObject,
    Description,
    DescriptionLevel,
    FileFingerprints,
    FinalAction,
    Fingerprint,
    FormatInfo,
    Keyword,
    TransferManifestInput,
)
from archive_service.core.seda.builder import build_archive_transfer
from archive_service.core.seda.delivery import DeliveryInput, build_delivery_reply
from archive_service.core.seda.names import SEDA_VERSIONS, SedaVersion
from archive_service.core.seda.validate import SedaValidator
from archive_service.errors import (
    ArchiveError,
    BadRequest,
    Conflict,
    FingerprintMismatch,
    NotFound,
)
from archive_service.ports import (
    BlobStore,
    Caller,
    Clock,
    HoldRecord,
    ObjectRecord,
    UnitOfWork,
    UnitRecord,
)
from archive_service.services.access_log import REFUSED, AccessLog
from archive_service.services.communicability import gone_error
from archive_service.services.recorded import open_recorded
from archive_service.services.retrieval import CONTENT_ROLES, RetrievalService

EXPORT_EVENT = "archive_unit.export"
MANIFEST_NAME = "manifest.xml"
CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Export:
    """A finished export: the zip (a temporary file the caller removes) and what it holds."""

    path: Path
    filename: str
    message_identifier: str
    units: tuple[str, ...]
    objects: int
    withheld: tuple[str, ...]


class ExportService:
    def __init__(
        self,
        *,
        uow: Callable[[], UnitOfWork],
        offers: Sequence[BlobStore],
        clock: Clock,
        validator: SedaValidator,
        retrieval: RetrievalService,
        work_dir: Path,
    ) -> None:
        self._uow = uow
        self._offers = tuple(offers)
        self._clock = clock
        self._validator = validator
        self._retrieval = retrieval
        self._work_dir = work_dir
        self._log = AccessLog(uow=uow, clock=clock)

    # -- DIP -----------------------------------------------------------------------------------

    def delivery(self, caller: Caller, unit_id: str, *, version: str = "2.3") -> Export:
        """The DIP of ``unit_id`` for ``caller`` (see the module docstring)."""
        seda_version = _version(version)
        view = self._retrieval.view(caller, unit_id, event=EXPORT_EVENT)
        unit = view.unit
        if unit.status != "active":
            summary = view.gone.get(unit.id) or {"unit_id": unit.id, "unit_status": unit.status}
            self._log.append(
                caller,
                EXPORT_EVENT,
                subject_type="archive_unit",
                subject_id=unit_id,
                details={"reason": f"unit {unit.status}", "gone": summary},
                outcome=REFUSED,
            )
            raise gone_error(f"the export of archive unit {unit_id}", summary)
        now = self._clock.now()
        with self._uow() as uow:
            family = uow.archive.units_of_root(caller.tenant_id, unit.root_id)
            holds = uow.disposal.active_holds(caller.tenant_id, root_id=unit.root_id)
            tenant = uow.tenancy.get_tenant(caller.tenant_id)
        notes: list[str] = []
        kept = _active_subtree(unit, family, notes)
        withheld: list[str] = []
        readable: set[str] = set()
        for u in kept:
            if not any(o.archive_unit_id == u.id for o in view.objects):
                continue
            if caller.role not in CONTENT_ROLES:
                reason = f"le rôle {caller.role.value} ne donne pas accès au contenu"
            else:
                decision = self._retrieval.readable(caller, u)
                if decision.communicable:
                    readable.add(u.id)
                    continue
                reason = decision.explanation
            withheld.append(u.id)
            notes.append(f"Contenu non communiqué : unité {u.id} ({u.title}) — {reason}.")
        objects = [o for o in view.objects if o.archive_unit_id in readable]
        agency = tenant.archival_agency_identifier if tenant else caller.tenant_id
        message_id = new_id("dip", now)
        package = TransferManifestInput(
            message_identifier=message_id,
            date=now,
            archival_agency=agency,
            transferring_agency=agency,
            objects=tuple(_data_object(o) for o in objects),
            root=_node(unit, family, kept, {o.id for o in objects}, objects, root=True),
            originating_agency=unit.organization_siret,
        )
        delivery = DeliveryInput(
            message_identifier=message_id,
            request_identifier=f"export-{unit_id}",
            date=now,
            requester=caller.client_id,
            package=package,
            holds=_holds_by_unit(unit, family, {u.id for u in kept}, holds),
            notes=tuple(notes),
        )
        details: dict[str, Any] = {
            "message_identifier": message_id,
            "seda_version": seda_version,
            "units": len(kept),
            "objects": len(objects),
            "object_ids": sorted(o.id for o in objects),
            "withheld_units": withheld,
            "holds": sorted(h.id for h in holds),
        }
        try:
            manifest = build_delivery_reply(delivery, version=seda_version)
            self._validator.validate(manifest, version=seda_version, profile=False)
            path = self._write_zip(caller.tenant_id, manifest, objects)
        except ArchiveError as exc:
            self._log.failed(
                caller,
                EXPORT_EVENT,
                exc,
                subject_type="archive_unit",
                subject_id=unit_id,
                details=details,
            )
            raise
        self._log.append(
            caller,
            EXPORT_EVENT,
            subject_type="archive_unit",
            subject_id=unit_id,
            details={**details, "bytes": path.stat().st_size},
        )
        return Export(
            path=path,
            filename=f"{unit_id}-dip-seda{seda_version}.zip",
            message_identifier=message_id,
            units=tuple(u.id for u in kept),
            objects=len(objects),
            withheld=tuple(withheld),
        )

    # -- transfer to the definitive archives ---------------------------------------------------

    def outgoing_transfer(
        self,
        tenant_id: str,
        unit_ids: Sequence[str],
        *,
        message_identifier: str,
        version: str = "2.3",
        archival_agency: str | None = None,
    ) -> Path:
        """A zip with the SEDA ``ArchiveTransfer`` of ``unit_ids`` (and their subtrees) and
        every object, for the definitive archives (``archival_agency``: their identifier;
        default ``archives-definitives``). Several units are gathered under one ``RecordGrp``
        named after the message. ``NotFound`` / ``Conflict`` (not active, held) / ``BadRequest``
        before anything is written."""
        seda_version = _version(version)
        if not unit_ids:
            raise BadRequest("no unit to transfer")
        if not message_identifier.strip():
            raise BadRequest("a message identifier is needed")
        now = self._clock.now()
        trees: list[tuple[UnitRecord, list[UnitRecord]]] = []
        objects: list[ObjectRecord] = []
        with self._uow() as uow:
            tenant = uow.tenancy.get_tenant(tenant_id)
            chosen = set(unit_ids)
            for unit_id in dict.fromkeys(unit_ids):
                unit = uow.archive.get_unit(tenant_id, unit_id)
                if unit is None:
                    raise NotFound(f"no archive unit {unit_id}")
                if unit.status != "active":
                    raise Conflict(f"archive unit {unit_id} is {unit.status}, not active")
                family = uow.archive.units_of_root(tenant_id, unit.root_id)
                if _ancestors(unit, family) & chosen:
                    continue  # inside another chosen unit's subtree
                covering = _covering_holds(
                    unit, family, uow.disposal.active_holds(tenant_id, root_id=unit.root_id)
                )
                if covering:
                    raise Conflict(
                        f"archive unit {unit_id} is under a legal hold",
                        extra={"holds": sorted(h.id for h in covering)},
                    )
                trees.append((unit, family))
                subtree = {u.id for u in _active_subtree(unit, family, [])}
                objects.extend(
                    o
                    for o in uow.archive.objects_of_root(tenant_id, unit.root_id)
                    if o.archive_unit_id in subtree
                )
        ours = tenant.archival_agency_identifier if tenant else tenant_id
        nodes = [
            _node(
                unit,
                family,
                _active_subtree(unit, family, []),
                {o.id for o in objects},
                objects,
                root=True,
            )
            for unit, family in trees
        ]
        if len(nodes) == 1:
            root = nodes[0]
        else:
            root = ArchiveUnitNode(
                id=_transfer_root_id(message_identifier),
                description=Description(
                    level=DescriptionLevel.RECORD_GROUP,
                    title=f"Transfert aux archives définitives {message_identifier}",
                ),
                children=tuple(nodes),
            )
        agencies = {u.organization_siret for u, _ in trees if u.organization_siret}
        manifest = build_archive_transfer(
            TransferManifestInput(
                message_identifier=message_identifier,
                date=now,
                archival_agency=archival_agency or "archives-definitives",
                transferring_agency=ours,
                objects=tuple(_data_object(o) for o in objects),
                root=root,
                comment=f"Transfert aux archives définitives ({len(objects)} objets)",
                originating_agency=agencies.pop() if len(agencies) == 1 else None,
            ),
            version=seda_version,
        )
        self._validator.validate(manifest, version=seda_version, profile=False)
        return self._write_zip(tenant_id, manifest, objects)

    # -- the zip -------------------------------------------------------------------------------

    def _write_zip(self, tenant_id: str, manifest: bytes, objects: Iterable[ObjectRecord]) -> Path:
        self._work_dir.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(
            dir=self._work_dir, prefix="export-", suffix=".zip", delete=False
        )
        path = Path(handle.name)
        handle.close()
        try:
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(MANIFEST_NAME, manifest)
                for record in sorted(objects, key=lambda o: o.id):
                    self._copy_object(zf, tenant_id, record)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def _copy_object(self, zf: zipfile.ZipFile, tenant_id: str, record: ObjectRecord) -> None:
        with self._uow() as uow:
            copies = uow.archive.copies_of_key(tenant_id, record.package_id, record.storage_key)
        stream, _offer = open_recorded(self._offers, copies, record.storage_key)
        digest = hashlib.sha256()
        size = 0
        info = zipfile.ZipInfo(object_uri(record.id), date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        with stream, zf.open(info, "w", force_zip64=True) as out:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if digest.hexdigest() != record.sha256 or size != record.size:
            raise FingerprintMismatch(
                f"object {record.id}: the stored copy gives sha256 {digest.hexdigest()} "
                f"({size} bytes), the archive recorded {record.sha256} ({record.size} bytes)"
            )


def object_uri(object_id: str) -> str:
    """Where an object sits in an export zip (the manifest's ``Uri``)."""
    return f"content/{object_id}"


def _version(version: str) -> SedaVersion:
    for known in SEDA_VERSIONS:
        if version == known:
            return known
    raise BadRequest(f"unsupported SEDA version {version!r} (2.2 or 2.3)")


def _transfer_root_id(message_identifier: str) -> str:
    digest = hashlib.sha256(message_identifier.encode()).hexdigest()[:16]
    return f"transfer-{digest}"


def _children(family: Iterable[UnitRecord]) -> dict[str | None, list[UnitRecord]]:
    out: dict[str | None, list[UnitRecord]] = {}
    for u in sorted(family, key=lambda u: (u.position, u.created_at, u.id)):
        out.setdefault(u.parent_id, []).append(u)
    return out


def _active_subtree(
    unit: UnitRecord, family: Sequence[UnitRecord], notes: list[str]
) -> list[UnitRecord]:
    """``unit`` and its active descendants in document order; a destroyed or transferred
    descendant is left out with its subtree, and named in ``notes``."""
    children = _children(family)
    out: list[UnitRecord] = []

    def visit(node: UnitRecord) -> None:
        out.append(node)
        for child in children.get(node.id, []):
            if child.status != "active":
                notes.append(f"Unité {child.id} ({child.title}) non exportée : {child.status}.")
                continue
            visit(child)

    visit(unit)
    return out


def _ancestors(unit: UnitRecord, family: Sequence[UnitRecord]) -> set[str]:
    by_id = {u.id: u for u in family}
    out: set[str] = set()
    current = by_id.get(unit.parent_id or "")
    while current is not None and current.id not in out:
        out.add(current.id)
        current = by_id.get(current.parent_id or "")
    return out


def _covering_holds(
    unit: UnitRecord, family: Sequence[UnitRecord], holds: Iterable[HoldRecord]
) -> list[HoldRecord]:
    """Holds placed on ``unit``, an ancestor, or a descendant (a hold anywhere in what would
    leave blocks it)."""
    inside = {u.id for u in _active_subtree(unit, family, [])}
    above = _ancestors(unit, family)
    return [h for h in holds if h.active and (h.unit_id in inside or h.unit_id in above)]


def _holds_by_unit(
    unit: UnitRecord, family: Sequence[UnitRecord], kept: set[str], holds: Iterable[HoldRecord]
) -> dict[str, tuple[Mapping[str, Any], ...]]:
    """Active holds by the exported unit they are written on: the unit they were placed on,
    or the export's root for a hold placed on one of its ancestors (it covers it too)."""
    above = _ancestors(unit, family)
    out: dict[str, list[Mapping[str, Any]]] = {}
    for hold in holds:
        if not hold.active:
            continue
        target = (
            hold.unit_id if hold.unit_id in kept else unit.id if hold.unit_id in above else None
        )
        if target is None:
            continue
        out.setdefault(target, []).append(
            {
                "id": hold.id,
                "reason": hold.reason,
                "reference": hold.reference,
                "placed_by": hold.placed_by,
                "placed_at": hold.placed_at,
            }
        )
    return {k: tuple(v) for k, v in out.items()}


def _effective(unit: UnitRecord, family: Sequence[UnitRecord], which: str) -> dict[str, Any] | None:
    """The unit's own rule (``appraisal``/``access``) or its nearest ancestor's."""
    by_id = {u.id: u for u in family}
    current: UnitRecord | None = unit
    seen: set[str] = set()
    while current is not None and current.id not in seen:
        seen.add(current.id)
        rule: dict[str, Any] | None = getattr(current, which)
        if rule:
            return rule
        current = by_id.get(current.parent_id or "")
    return None


def _day(value: object) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value:
        return date.fromisoformat(value[:10])
    return None


def _appraisal(rule: Mapping[str, Any] | None) -> AppraisalRule | None:
    if not rule:
        return None
    return AppraisalRule(
        rule_id=str(rule["rule_id"]),
        duration_years=int(rule.get("duration_years") or 0),
        start_event=str(rule.get("start_event") or "none"),
        final_action=FinalAction(rule.get("final_action") or "Keep"),
        start_date=_day(rule.get("start_date")),
        review=bool(rule.get("review")),
        label=str(rule.get("label") or ""),
    )


def _access(rule: Mapping[str, Any] | None) -> AccessRule | None:
    if not rule:
        return None
    return AccessRule(
        rule_id=str(rule["rule_id"]),
        duration_years=int(rule.get("duration_years") or 0),
        start_event=str(rule.get("start_event") or "none"),
        start_date=_day(rule.get("start_date")),
        label=str(rule.get("label") or ""),
    )


def _level(unit: UnitRecord, has_children: bool) -> DescriptionLevel:
    try:
        return DescriptionLevel(unit.level)
    except ValueError:
        return DescriptionLevel.RECORD_GROUP if has_children else DescriptionLevel.ITEM


def _description(unit: UnitRecord, has_children: bool) -> Description:
    """``archive_units.content`` back to a :class:`Description` (what ingest recorded)."""
    c = unit.content or {}
    text = c.get("description")
    extension = c.get("extension")
    raw_keywords = c.get("keywords")
    keywords: list[Any] = raw_keywords if isinstance(raw_keywords, list) else []
    return Description(
        level=_level(unit, has_children),
        title=unit.title,
        description=text if isinstance(text, str) and text.strip() else None,
        document_type=c.get("document_type") or None,
        keywords=tuple(
            Keyword(content=str(k["content"]), type=k.get("type"), reference=k.get("reference"))
            for k in keywords
            if isinstance(k, dict) and k.get("content")
        ),
        originating_agency=c.get("originating_agency") or None,
        originating_system_ids=tuple(str(s) for s in c.get("originating_system_ids") or ()),
        start_date=_day(c.get("start_date")),
        end_date=_day(c.get("end_date")),
        extension=tuple(sorted((str(k), str(v)) for k, v in extension.items()))
        if isinstance(extension, dict)
        else (),
    )


def _node(
    unit: UnitRecord,
    family: Sequence[UnitRecord],
    kept: Sequence[UnitRecord],
    delivered: set[str],
    objects: Sequence[ObjectRecord],
    *,
    root: bool,
) -> ArchiveUnitNode:
    """The exported tree from ``unit``: its current rules (the root also gets the rules it
    inherits, since its ancestors are not exported), its delivered objects, its kept
    children."""
    kept_ids = {u.id for u in kept}
    children = [c for c in _children(family).get(unit.id, []) if c.id in kept_ids]
    appraisal = _effective(unit, family, "appraisal") if root else unit.appraisal
    access = _effective(unit, family, "access") if root else unit.access
    return ArchiveUnitNode(
        id=unit.id,
        description=_description(unit, bool(children)),
        category=unit.category,
        appraisal=_appraisal(appraisal),
        access=_access(access),
        data_object_ids=tuple(
            o.id for o in objects if o.archive_unit_id == unit.id and o.id in delivered
        ),
        children=tuple(_node(c, family, kept, delivered, objects, root=False) for c in children),
    )


def _data_object(record: ObjectRecord) -> DataObject:
    return DataObject(
        id=record.id,
        path=record.path,
        fingerprints=FileFingerprints(
            size=record.size,
            sha256=Fingerprint("sha256", record.sha256),
            sha512=Fingerprint("sha512", record.sha512),
        ),
        format=FormatInfo(
            mime_type=record.mime_type,
            puid=record.puid,
            format_name=record.format_name,
            format_version=record.format_version,
            declared_mime=record.declared_mime,
        ),
        uri=object_uri(record.id),
    )
