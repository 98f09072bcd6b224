"""Retrieval use cases: archive units with their tree and objects, manifests, tokens,
object content (first healthy offer, falling back to the next), and search.

Every read is scoped to the caller's tenant: an id from another tenant is not found.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from archive_service.errors import ArchiveError, Forbidden, NotFound, Unavailable
from archive_service.ports import (
    BlobStore,
    Caller,
    Clock,
    LogEvent,
    ObjectRecord,
    PackageRecord,
    Role,
    SearchQuery,
    UnitOfWork,
    UnitRecord,
)

CONTENT_ROLES = frozenset({Role.ARCHIVIST, Role.ADMIN, Role.PLATFORM})


@dataclass(frozen=True, slots=True)
class UnitView:
    unit: UnitRecord
    package: PackageRecord
    units: tuple[UnitRecord, ...]
    """The unit and its descendants, in document order."""
    objects: tuple[ObjectRecord, ...]


@dataclass(frozen=True, slots=True)
class OpenedObject:
    record: ObjectRecord
    stream: BinaryIO
    offer: str


class RetrievalService:
    def __init__(
        self, *, uow: Callable[[], UnitOfWork], offers: Sequence[BlobStore], clock: Clock
    ) -> None:
        self._uow = uow
        self._offers = tuple(offers)
        self._clock = clock

    def _visible(self, caller: Caller, unit: UnitRecord | None, what: str) -> UnitRecord:
        if unit is None:
            raise NotFound(f"no {what}")
        if caller.role is Role.PLATFORM:
            with self._uow() as uow:
                org = uow.tenancy.organization_by_siret(
                    caller.tenant_id, unit.organization_siret or ""
                )
            if org is None or org.id not in caller.organization_ids:
                raise NotFound(f"no {what}")
        return unit

    def unit(self, caller: Caller, unit_id: str) -> UnitView:
        with self._uow() as uow:
            unit = self._visible(
                caller, uow.archive.get_unit(caller.tenant_id, unit_id), f"archive unit {unit_id}"
            )
            package = uow.archive.get_package(caller.tenant_id, unit.package_id)
            family = uow.archive.units_of_root(caller.tenant_id, unit.root_id)
            objects = uow.archive.objects_of_root(caller.tenant_id, unit.root_id)
        if package is None:
            raise NotFound(f"no package for archive unit {unit_id}")
        children: dict[str | None, list[UnitRecord]] = {}
        for u in family:
            children.setdefault(u.parent_id, []).append(u)
        subtree: list[UnitRecord] = []

        def collect(node: UnitRecord) -> None:
            subtree.append(node)
            for child in children.get(node.id, []):
                collect(child)

        collect(unit)
        ids = {u.id for u in subtree}
        return UnitView(
            unit=unit,
            package=package,
            units=tuple(subtree),
            objects=tuple(o for o in objects if o.archive_unit_id in ids),
        )

    def _open_first(self, keys: Sequence[str]) -> tuple[BinaryIO, str]:
        errors: list[str] = []
        for offer in self._offers:
            for key in keys:
                try:
                    return offer.open(key), offer.name
                except ArchiveError as exc:
                    errors.append(f"{offer.name}: {exc.message}")
        raise Unavailable("no storage offer could serve the object: " + "; ".join(errors))

    def _read_all(self, key: str) -> bytes:
        stream, _ = self._open_first([key])
        with stream:
            return stream.read()

    def manifest(self, caller: Caller, unit_id: str) -> tuple[PackageRecord, bytes]:
        view = self.unit(caller, unit_id)
        data = self._read_all(view.package.manifest_key)
        self._log_read(caller, "manifest.read", view.package.id, {"unit_id": unit_id})
        return view.package, data

    def timestamp(self, caller: Caller, unit_id: str) -> bytes:
        view = self.unit(caller, unit_id)
        data = self._read_all(view.package.timestamp_key)
        self._log_read(caller, "timestamp.read", view.package.id, {"unit_id": unit_id})
        return data

    def open_object(self, caller: Caller, object_id: str) -> OpenedObject:
        if caller.role not in CONTENT_ROLES:
            raise Forbidden(f"role {caller.role.value!r} may not read document content")
        with self._uow() as uow:
            record = uow.archive.get_object(caller.tenant_id, object_id)
            unit = (
                uow.archive.get_unit(caller.tenant_id, record.archive_unit_id) if record else None
            )
        if record is None:
            raise NotFound(f"no object {object_id}")
        self._visible(caller, unit, f"object {object_id}")
        stream, offer = self._open_first([record.storage_key])
        self._log_read(caller, "object.read", object_id, {"offer": offer})
        return OpenedObject(record=record, stream=stream, offer=offer)

    def _log_read(self, caller: Caller, event: str, subject: str, details: dict[str, Any]) -> None:
        with self._uow() as uow:
            uow.logbook.append(
                LogEvent(
                    tenant_id=caller.tenant_id,
                    at=self._clock.now(),
                    event_type=event,
                    outcome="OK",
                    subject_type=event.split(".", 1)[0],
                    subject_id=subject,
                    actor=caller.client_id,
                    details=details,
                )
            )
            uow.commit()

    def search(self, caller: Caller, query: SearchQuery) -> tuple[list[UnitRecord], str | None]:
        if query.tenant_id != caller.tenant_id:
            raise Forbidden("search is limited to the caller's tenant")
        with self._uow() as uow:
            page = uow.search.search(query)
            units = [uow.archive.get_unit(caller.tenant_id, uid) for uid in page.unit_ids]
        visible: list[UnitRecord] = []
        for u in units:
            if u is None:
                continue
            try:
                visible.append(self._visible(caller, u, "unit"))
            except NotFound:
                continue
        return visible, page.next_cursor
