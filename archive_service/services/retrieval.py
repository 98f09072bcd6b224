"""Retrieval use cases: archive units with their tree and objects, manifests, tokens,
object content (first healthy offer, falling back to the next), and search.

Blobs are read where the database recorded a copy of them, at the recorded version
(services/recorded.py): after a repair on S3, that is not the key's first version.

Every read is scoped to the caller's tenant: an id from another tenant is not found.

Every read of a unit, a manifest, a token or content leaves one logbook entry (who, what,
when), and so does every search (its parameters and how many units it found). A read the
caller may not make, of something that exists in its tenant, is logged ``REFUSED``; a read
that storage could not serve, ``FAILED``. An id that does not exist in the caller's tenant
leaves nothing: there is no subject to log it against, and another tenant's id must not
appear in this tenant's log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from archive_service.errors import ArchiveError, Forbidden, NotFound
from archive_service.ports import (
    BlobStore,
    Caller,
    Clock,
    ObjectRecord,
    PackageRecord,
    Role,
    SearchQuery,
    UnitOfWork,
    UnitRecord,
)
from archive_service.services.access_log import OK, REFUSED, AccessLog
from archive_service.services.recorded import open_recorded

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
        self._log = AccessLog(uow=uow, clock=clock)

    def _may_see(self, caller: Caller, unit: UnitRecord) -> bool:
        """Platforms see the units of the organizations they transfer for; staff see all."""
        if caller.role is not Role.PLATFORM:
            return True
        with self._uow() as uow:
            org = uow.tenancy.organization_by_siret(caller.tenant_id, unit.organization_siret or "")
        return org is not None and org.id in caller.organization_ids

    def _visible(self, caller: Caller, unit: UnitRecord | None, what: str) -> UnitRecord:
        if unit is None or not self._may_see(caller, unit):
            raise NotFound(f"no {what}")
        return unit

    def _refuse(
        self, caller: Caller, event: str, subject: tuple[str, str], details: dict[str, Any]
    ) -> None:
        self._log.append(
            caller,
            event,
            subject_type=subject[0],
            subject_id=subject[1],
            details=details,
            outcome=REFUSED,
        )

    def _view(self, caller: Caller, unit_id: str, event: str) -> UnitView:
        """The unit and its subtree; a unit hidden from the caller is logged as a refused
        ``event`` and answered as not found."""
        with self._uow() as uow:
            unit = uow.archive.get_unit(caller.tenant_id, unit_id)
        if unit is None:
            raise NotFound(f"no archive unit {unit_id}")
        if not self._may_see(caller, unit):
            self._refuse(
                caller,
                event,
                ("archive_unit", unit_id),
                {"package_id": unit.package_id, "reason": "organization not allowed"},
            )
            raise NotFound(f"no archive unit {unit_id}")
        with self._uow() as uow:
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

    def unit(self, caller: Caller, unit_id: str) -> UnitView:
        """The unit's metadata, tree and object list (logged ``archive_unit.read``)."""
        view = self._view(caller, unit_id, "archive_unit.read")
        self._log.append(
            caller,
            "archive_unit.read",
            subject_type="archive_unit",
            subject_id=unit_id,
            details={
                "package_id": view.package.id,
                "units": len(view.units),
                "objects": len(view.objects),
            },
        )
        return view

    def _open_first(self, tenant_id: str, package_id: str, key: str) -> tuple[BinaryIO, str]:
        """The first offer's recorded copy of ``key``, at its recorded version."""
        with self._uow() as uow:
            copies = uow.archive.copies_of_key(tenant_id, package_id, key)
        return open_recorded(self._offers, copies, key)

    def _read_logged(
        self,
        caller: Caller,
        event: str,
        unit_id: str,
        package: PackageRecord,
        key: str,
        details: dict[str, Any],
    ) -> bytes:
        subject = {"subject_type": "archive_unit", "subject_id": unit_id}
        try:
            stream, offer = self._open_first(package.tenant_id, package.id, key)
            with stream:
                data = stream.read()
        except ArchiveError as exc:
            self._log.failed(caller, event, exc, **subject, details=details)
            raise
        self._log.append(
            caller, event, **subject, details={**details, "offer": offer, "bytes": len(data)}
        )
        return data

    def manifest(self, caller: Caller, unit_id: str) -> tuple[PackageRecord, bytes]:
        """The package's SEDA manifest (logged ``manifest.read`` against the unit asked for)."""
        package = self._view(caller, unit_id, "manifest.read").package
        data = self._read_logged(
            caller,
            "manifest.read",
            unit_id,
            package,
            package.manifest_key,
            {"package_id": package.id, "sha256": package.manifest_sha256, "format": "xml"},
        )
        return package, data

    def timestamp(self, caller: Caller, unit_id: str) -> bytes:
        """The RFC 3161 token over the manifest (logged ``timestamp.read``)."""
        package = self._view(caller, unit_id, "timestamp.read").package
        return self._read_logged(
            caller,
            "timestamp.read",
            unit_id,
            package,
            package.timestamp_key,
            {
                "package_id": package.id,
                "gen_time": package.timestamp_gen_time.isoformat(),
                "format": "rfc3161",
            },
        )

    def open_object(self, caller: Caller, object_id: str) -> OpenedObject:
        """Open an object's content on the first offer that serves it.

        The read is logged by :meth:`log_content_read` once the entry point knows what it
        serves (whole, a range, not modified); a refusal or a storage failure is logged here.
        """
        with self._uow() as uow:
            record = uow.archive.get_object(caller.tenant_id, object_id)
            unit = (
                uow.archive.get_unit(caller.tenant_id, record.archive_unit_id) if record else None
            )
        details = _object_details(record) if record else {}
        if caller.role not in CONTENT_ROLES:
            if record is not None and unit is not None:
                reason = f"role {caller.role.value!r} may not read document content"
                self._refuse(
                    caller, "object.read", ("object", object_id), {**details, "reason": reason}
                )
            raise Forbidden(f"role {caller.role.value!r} may not read document content")
        if record is None or unit is None:
            raise NotFound(f"no object {object_id}")
        if not self._may_see(caller, unit):
            reason = "organization not allowed"
            self._refuse(
                caller, "object.read", ("object", object_id), {**details, "reason": reason}
            )
            raise NotFound(f"no object {object_id}")
        try:
            stream, offer = self._open_first(
                record.tenant_id, record.package_id, record.storage_key
            )
        except ArchiveError as exc:
            self._log.failed(
                caller,
                "object.read",
                exc,
                subject_type="object",
                subject_id=object_id,
                details=details,
            )
            raise
        return OpenedObject(record=record, stream=stream, offer=offer)

    def log_content_read(
        self,
        caller: Caller,
        opened: OpenedObject,
        *,
        span: tuple[int, int] | None = None,
        not_modified: bool = False,
        unsatisfiable: str | None = None,
    ) -> None:
        """One entry per content request, written before the first byte is sent.

        ``span`` is the inclusive byte range served (``None``: the whole object);
        ``not_modified``: a conditional request answered without content; ``unsatisfiable``:
        the Range header that could not be served (logged ``REFUSED``).
        """
        size = opened.record.size
        details: dict[str, Any] = {**_object_details(opened.record), "offer": opened.offer}
        outcome = OK
        if unsatisfiable is not None:
            outcome = REFUSED
            details.update(range=unsatisfiable, bytes=0, reason="range not satisfiable")
        elif not_modified:
            details.update(not_modified=True, bytes=0)
        elif span is None:
            details.update(range=None, bytes=size)
        else:
            details.update(range=f"bytes={span[0]}-{span[1]}", bytes=span[1] - span[0] + 1)
        self._log.append(
            caller,
            "object.read",
            subject_type="object",
            subject_id=opened.record.id,
            details=details,
            outcome=outcome,
        )

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
        self._log.append(
            caller,
            "search.performed",
            subject_type="tenant",
            subject_id=caller.tenant_id,
            details={
                "query": _query_details(query),
                "results": len(visible),
                "more": page.next_cursor is not None,
            },
        )
        return visible, page.next_cursor


def _object_details(record: ObjectRecord) -> dict[str, Any]:
    return {
        "object_id": record.id,
        "unit_id": record.archive_unit_id,
        "package_id": record.package_id,
        "size": record.size,
        "sha256": record.sha256,
        "format": {"mime_type": record.mime_type, "puid": record.puid},
    }


def _query_details(query: SearchQuery) -> dict[str, Any]:
    """The search's parameters as given (dates in ISO form); never its results."""
    return {
        "text": query.text,
        "buyer": query.buyer,
        "cpv": query.cpv,
        "notified_from": query.notified_from.isoformat() if query.notified_from else None,
        "notified_to": query.notified_to.isoformat() if query.notified_to else None,
        "next_page": query.cursor is not None,
        "limit": query.limit,
    }
