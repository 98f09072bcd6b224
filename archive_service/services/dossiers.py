"""Growing dossiers (issue 5 item 2): what a dossier is made of across its packages, and its
version history.

A dossier keeps one identity (its root unit id) for its whole life. Its first transfer makes
package 1; each later transfer that adds documents to it (``"dossier"`` in the ingest metadata,
or a foreign SEDA zip whose ArchiveUnit names one of our units by ``SystemId``) makes the next
package: its own manifest, RFC 3161 token, copies and logbook entries. The dossier's version
history is the list of those packages (:meth:`DossierService.versions`); each version's
manifest and token can be read back (logged as any read).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from archive_service.core.model import DescriptionLevel
from archive_service.core.procurement import (
    EVENT_NAMES,
    AdditionMetadata,
    DossierEvents,
    DossierMetadata,
    ExistingUnit,
    merged_events,
    normalize_path,
    parse_addition,
    parse_metadata,
)
from archive_service.errors import InvalidInput, Issue, NotFound
from archive_service.ports import (
    BlobStore,
    Caller,
    Clock,
    ObjectRecord,
    PackageRecord,
    Role,
    TransferRecord,
    UnitOfWork,
    UnitRecord,
)
from archive_service.services.access_log import REFUSED, AccessLog
from archive_service.services.communicability import AccessGuard
from archive_service.services.recorded import RecordedReader

ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class DossierState:
    """A dossier as archived now: its units, objects, packages and their transfers."""

    root: UnitRecord
    units: tuple[UnitRecord, ...]
    objects: tuple[ObjectRecord, ...]
    packages: tuple[PackageRecord, ...]
    transfers: dict[str, TransferRecord] = field(default_factory=dict)
    """By transfer id, for every package."""
    first: DossierMetadata | None = None
    """The validated metadata of the first transfer (``None``: a foreign SEDA transfer, or
    metadata this version cannot read)."""
    recorded: tuple[tuple[str, date], ...] = ()
    """Start events recorded through the events API or CLI (corrections included), in the
    order they were recorded: they amend what the transfers declared."""

    def phases(self) -> dict[str, UnitRecord]:
        """The dossier's active phase units (directly under the root), by phase code."""
        out: dict[str, UnitRecord] = {}
        for unit in self.units:
            code = (unit.content.get("extension") or {}).get("phase")
            if unit.parent_id == self.root.id and unit.status == ACTIVE and isinstance(code, str):
                out.setdefault(code, unit)
        return out

    @staticmethod
    def existing(unit: UnitRecord) -> ExistingUnit:
        return ExistingUnit(id=unit.id, title=unit.title, level=DescriptionLevel(unit.level))

    def transfer_events(self) -> list[DossierEvents]:
        """The events each transfer of the dossier declared, first transfer first."""
        out: list[DossierEvents] = []
        if self.first is not None:
            out.append(self.first.events)
        for package in self.packages[1:]:
            transfer = self.transfers.get(package.transfer_id)
            if transfer is None or "dossier" not in transfer.metadata:
                continue
            try:
                out.append(parse_addition(transfer.metadata).events)
            except InvalidInput:
                continue
        return out

    def current_events(self) -> DossierEvents:
        """The dossier's start events as they stand: what its transfers declared, amended by
        the events recorded since (a correction replaces the date)."""
        merged, _ = merged_events(self.transfer_events())
        dates = dict(merged.known())
        for name, day in self.recorded:
            dates[name] = day
        return DossierEvents(**dates)

    def event_conflicts(self, add: AdditionMetadata) -> list[Issue]:
        """An event the addition dates otherwise than the dossier now does (whether the
        date came from a transfer or was recorded through the events API)."""
        current = self.current_events()
        issues: list[Issue] = []
        for name, day in add.events.known():
            known = current.get(name)
            if known is not None and known != day:
                issues.append(
                    Issue(
                        "event-conflict",
                        f"événement {name} daté {day.isoformat()} ; le dossier le date déjà du "
                        f"{known.isoformat()} (une correction passe par l'API des événements)",
                        f"/events/{name}",
                    )
                )
        return issues

    def events(self, add: AdditionMetadata) -> DossierEvents:
        """The dossier's events with the addition's (conflicts are :meth:`problems`)."""
        dates = dict(add.events.known())
        dates.update(self.current_events().known())
        return DossierEvents(**dates)

    def problems(self, add: AdditionMetadata) -> list[Issue]:
        """Why ``add`` cannot join this dossier now (empty: it can)."""
        issues: list[Issue] = []
        if self.root.status != ACTIVE:
            issues.append(
                Issue(
                    "dossier-not-active",
                    f"dossier {self.root.id} is {self.root.status}: nothing can be added to it",
                    "/dossier",
                )
            )
        if self.first is None:
            issues.append(
                Issue(
                    "dossier-not-extendable",
                    f"dossier {self.root.id} came from a foreign SEDA transfer: add to it with a "
                    "SEDA transfer whose ArchiveUnit names it by SystemId",
                    "/dossier",
                )
            )
        if add.organization is not None and add.organization != self.root.organization_siret:
            issues.append(
                Issue(
                    "organization-mismatch",
                    f"the dossier belongs to organization {self.root.organization_siret}, "
                    f"not {add.organization}",
                    "/organization",
                )
            )
        held = {normalize_path(o.path) for o in self.objects}
        for index, entry in enumerate(add.files):
            if normalize_path(entry.path) in held:
                issues.append(
                    Issue(
                        "path-exists",
                        f"the dossier already holds {entry.path!r}; archived documents are "
                        "never replaced: send a corrected version under a path of its own",
                        f"/files/{index}/path",
                    )
                )
        issues.extend(self.event_conflicts(add))
        return issues


def load_dossier_state(uow: UnitOfWork, tenant_id: str, root: UnitRecord) -> DossierState:
    """Everything :class:`DossierState` holds, read in ``uow``."""
    packages = tuple(uow.archive.packages_of_root(tenant_id, root.id))
    transfers: dict[str, TransferRecord] = {}
    for package in packages:
        transfer = uow.transfers.get(tenant_id, package.transfer_id)
        if transfer is not None:
            transfers[transfer.id] = transfer
    first: DossierMetadata | None = None
    if packages:
        transfer = transfers.get(packages[0].transfer_id)
        if transfer is not None and "kind" not in transfer.metadata:
            try:
                first = parse_metadata(transfer.metadata, decp_validator=None)
            except InvalidInput:
                first = None
    return DossierState(
        root=root,
        units=tuple(uow.archive.units_of_root(tenant_id, root.id)),
        objects=tuple(uow.archive.objects_of_root(tenant_id, root.id)),
        packages=packages,
        transfers=transfers,
        first=first,
        recorded=tuple(
            (e.event, e.event_date)
            for e in uow.lifecycle.events_of(tenant_id, root.id)
            if e.event in EVENT_NAMES
        ),
    )


@dataclass(frozen=True, slots=True)
class DossierVersion:
    """One package of a dossier: what it added, and where its manifest and token are."""

    package: PackageRecord
    transfer: TransferRecord | None
    units: tuple[UnitRecord, ...]
    objects: tuple[ObjectRecord, ...]


@dataclass(frozen=True, slots=True)
class DossierHistory:
    root: UnitRecord
    versions: tuple[DossierVersion, ...]


class DossierService:
    """The version history of a dossier and each version's manifest and token."""

    def __init__(
        self, *, uow: Callable[[], UnitOfWork], offers: Sequence[BlobStore], clock: Clock
    ) -> None:
        self._uow = uow
        self._offers = tuple(offers)
        self._log = AccessLog(uow=uow, clock=clock)
        self._reader = RecordedReader(
            uow, self._offers, self._log, AccessGuard(uow=uow, clock=clock)
        )

    def _root(self, caller: Caller, unit_id: str, event: str) -> UnitRecord:
        """The dossier root of ``unit_id`` as the caller may see it (the visibility of
        ``GET /v1/archive-units/{id}``: another tenant's id or, for a platform, another
        organization's dossier is not found; the latter is logged as refused)."""
        with self._uow() as uow:
            unit = uow.archive.get_unit(caller.tenant_id, unit_id)
            root = uow.archive.get_unit(caller.tenant_id, unit.root_id) if unit else None
            org = (
                uow.tenancy.organization_by_siret(caller.tenant_id, root.organization_siret or "")
                if root is not None
                else None
            )
        if unit is None or root is None:
            raise NotFound(f"no archive unit {unit_id}")
        if caller.role is Role.PLATFORM and (org is None or org.id not in caller.organization_ids):
            self._log.append(
                caller,
                event,
                subject_type="archive_unit",
                subject_id=unit_id,
                details={"root_id": root.id, "reason": "organization not allowed"},
                outcome=REFUSED,
            )
            raise NotFound(f"no archive unit {unit_id}")
        return root

    def _history(self, tenant_id: str, root: UnitRecord) -> DossierHistory:
        with self._uow() as uow:
            packages = uow.archive.packages_of_root(tenant_id, root.id)
            units = uow.archive.units_of_root(tenant_id, root.id)
            objects = uow.archive.objects_of_root(tenant_id, root.id)
            transfers = {
                p.transfer_id: uow.transfers.get(tenant_id, p.transfer_id) for p in packages
            }
        return DossierHistory(
            root=root,
            versions=tuple(
                DossierVersion(
                    package=p,
                    transfer=transfers.get(p.transfer_id),
                    units=tuple(u for u in units if u.package_id == p.id),
                    objects=tuple(o for o in objects if o.package_id == p.id),
                )
                for p in packages
            ),
        )

    def versions(self, caller: Caller, unit_id: str) -> DossierHistory:
        """Every package of the dossier holding ``unit_id``, by sequence (logged
        ``dossier_versions.read``)."""
        root = self._root(caller, unit_id, "dossier_versions.read")
        history = self._history(caller.tenant_id, root)
        self._log.append(
            caller,
            "dossier_versions.read",
            subject_type="archive_unit",
            subject_id=unit_id,
            details={"root_id": root.id, "versions": len(history.versions)},
        )
        return history

    def _version(self, caller: Caller, unit_id: str, sequence: int, event: str) -> PackageRecord:
        root = self._root(caller, unit_id, event)
        with self._uow() as uow:
            packages = uow.archive.packages_of_root(caller.tenant_id, root.id)
        for package in packages:
            if package.sequence == sequence:
                return package
        raise NotFound(
            f"dossier {root.id} has no version {sequence} (versions 1 to {len(packages)})"
        )

    def manifest(self, caller: Caller, unit_id: str, sequence: int) -> tuple[PackageRecord, bytes]:
        """The SEDA manifest of version ``sequence`` (logged ``manifest.read``)."""
        package = self._version(caller, unit_id, sequence, "manifest.read")
        data = self._read_logged(
            caller,
            "manifest.read",
            unit_id,
            package,
            package.manifest_key,
            {"sha256": package.manifest_sha256, "format": "xml"},
        )
        return package, data

    def timestamp(self, caller: Caller, unit_id: str, sequence: int) -> tuple[PackageRecord, bytes]:
        """The RFC 3161 token over the manifest of version ``sequence`` (logged
        ``timestamp.read``)."""
        package = self._version(caller, unit_id, sequence, "timestamp.read")
        data = self._read_logged(
            caller,
            "timestamp.read",
            unit_id,
            package,
            package.timestamp_key,
            {"gen_time": package.timestamp_gen_time.isoformat(), "format": "rfc3161"},
        )
        return package, data

    def _read_logged(
        self,
        caller: Caller,
        event: str,
        unit_id: str,
        package: PackageRecord,
        key: str,
        details: dict[str, Any],
    ) -> bytes:
        """The recorded copy of ``key`` (services/recorded.py), its read logged."""
        return self._reader.read(
            caller,
            event,
            unit_id=unit_id,
            package=package,
            key=key,
            details={**details, "package_id": package.id, "sequence": package.sequence},
            what=f"version {package.sequence} of dossier {package.root_unit_id}",
            purged_reason="version purged by a disposal",
        )
