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

Content is handed out only when the unit is communicable to the caller today
(services/communicability.py: the AccessRule, inherited from the nearest ancestor, read at
request time; the producer's own platform is not subject to it). A restricted read answers
``AccessRestricted`` (403) naming the rule and its end date, and is logged ``REFUSED`` with the
rule; an allowed read is logged with the rule that allowed it. Content of a unit destroyed or
transferred by a disposal answers ``Gone`` (410) with its tombstone. Metadata (unit views,
search) stays visible, with an ``access`` block per unit saying whether it is communicable now
and until when: titles are not hidden (the readers of this API are the archive service's staff
and the producer's platforms, never the public; archivists need the titles to handle
communication requests and disposal).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

from archive_service.core.communicability import GONE, PRODUCER, AccessDecision
from archive_service.core.derogation import OPENABLE, derogated
from archive_service.errors import ArchiveError, Forbidden, NotFound
from archive_service.ports import (
    BlobStore,
    Caller,
    Clock,
    DerogationRecord,
    ObjectRecord,
    PackageRecord,
    Role,
    SearchQuery,
    UnitOfWork,
    UnitRecord,
)
from archive_service.services.access_log import OK, REFUSED, AccessLog
from archive_service.services.communicability import (
    AccessGuard,
    covering_derogation,
    gone_error,
    gone_unit,
    lineage_ids,
    restricted_error,
    tombstone_summary,
)
from archive_service.services.recorded import RecordedReader, open_recorded

CONTENT_ROLES = frozenset({Role.ARCHIVIST, Role.ADMIN, Role.PLATFORM})


@dataclass(frozen=True, slots=True)
class UnitView:
    unit: UnitRecord
    package: PackageRecord
    units: tuple[UnitRecord, ...]
    """The unit and its descendants, in document order."""
    objects: tuple[ObjectRecord, ...]
    access: dict[str, AccessDecision] = field(default_factory=dict)
    """Communicability of every unit of ``units`` today, for anyone but the producer."""
    producer: bool = False
    """The caller is the units' producer (its platform): delays do not apply to it."""
    gone: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Tombstone summaries of the units of ``units`` destroyed or transferred, by id."""
    readable: dict[str, AccessDecision] = field(default_factory=dict)
    """The decision for the caller itself, per unit of ``units``: ``access`` opened for the
    producer or by the caller's active dérogation, closed (``gone``) for a destroyed or
    transferred unit. ``communicable`` is what a content read would answer today."""


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A dossier found by a search, with the communicability of the documents it holds."""

    unit: UnitRecord
    access: AccessDecision
    """The dossier unit's own decision (usually free: rules sit on documents)."""
    restricted_units: int
    pending_units: int
    restricted_until: str | None
    """ISO date when the last restricted document becomes communicable; None if any is
    pending (no date yet) or none is restricted."""

    @property
    def communicable(self) -> bool:
        return self.access.communicable and self.restricted_units == 0


@dataclass(frozen=True, slots=True)
class OpenedObject:
    record: ObjectRecord
    stream: BinaryIO
    offer: str
    access: AccessDecision | None = None
    """The decision that allowed the read (logged with it)."""


class RetrievalService:
    def __init__(
        self, *, uow: Callable[[], UnitOfWork], offers: Sequence[BlobStore], clock: Clock
    ) -> None:
        self._uow = uow
        self._offers = tuple(offers)
        self._clock = clock
        self._log = AccessLog(uow=uow, clock=clock)
        self._guard = AccessGuard(uow=uow, clock=clock)
        self._reader = RecordedReader(uow, self._offers, self._log, self._guard)

    # -- communicability, for every path that hands out content ------------------------------

    def readable(self, caller: Caller, unit: UnitRecord) -> AccessDecision:
        """May ``caller`` read ``unit``'s content today? (No log; see :meth:`require_readable`.)

        Only communicability and disposal are judged here, not the caller's role (see
        ``CONTENT_ROLES``). A unit destroyed or transferred is never readable (reason
        ``gone``)."""
        family = self._guard.lineage(unit)
        if self._guard.gone(unit, family) is not None:
            return AccessDecision(communicable=False, reason=GONE)
        return self._guard.decision(caller, unit, family)

    def require_readable(
        self,
        caller: Caller,
        unit: UnitRecord,
        *,
        event: str,
        subject: tuple[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> AccessDecision:
        """The decision allowing ``caller`` to read ``unit``'s content, or the refusal.

        Raises :class:`~archive_service.errors.Gone` (destroyed or transferred, with the
        tombstone) or :class:`~archive_service.errors.AccessRestricted` (the rule and its end
        date), after logging ``event`` ``REFUSED`` against ``subject`` (default: the unit).
        Exports and other content paths call this before handing out any byte, and log their
        read with ``decision.members()``.
        """
        subject = subject or ("archive_unit", unit.id)
        base = dict(details or {})
        family = self._guard.lineage(unit)
        gone = self._guard.gone(unit, family)
        if gone is not None:
            self._refuse(
                caller,
                event,
                subject,
                {**base, "reason": f"archive unit {gone['unit_status']}", "gone": gone},
            )
            raise gone_error(f"{subject[0]} {subject[1]}", gone)
        decision = self._guard.decision(caller, unit, family)
        if not decision.communicable:
            self._refuse(
                caller,
                event,
                subject,
                {**base, "reason": "not communicable", "access": decision.members()},
            )
            raise restricted_error(f"{subject[0]} {subject[1]}", decision)
        return decision

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

    def view(self, caller: Caller, unit_id: str, *, event: str) -> UnitView:
        """The unit and its subtree, with each unit's communicability (for anyone, and for
        the caller); not logged as a read (the entry point logs what it serves). A unit
        hidden from the caller is logged as a refused ``event`` and answered as not found."""
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
        decisions = self._guard.decisions(family)
        gone: dict[str, dict[str, Any]] = {}
        for u in subtree:
            if u.status != "active":
                with self._uow() as uow:
                    tombstone = uow.disposal.tombstone(caller.tenant_id, u.id)
                gone[u.id] = tombstone_summary(u, tombstone)
        producer = self._guard.is_producer(caller, unit)
        return UnitView(
            unit=unit,
            package=package,
            units=tuple(subtree),
            objects=tuple(o for o in objects if o.archive_unit_id in ids),
            access={u.id: decisions[u.id] for u in subtree},
            producer=producer,
            gone=gone,
            readable=self._for_caller(caller, subtree, family, decisions, producer=producer),
        )

    def _for_caller(
        self,
        caller: Caller,
        subtree: Sequence[UnitRecord],
        family: Sequence[UnitRecord],
        decisions: dict[str, AccessDecision],
        *,
        producer: bool,
    ) -> dict[str, AccessDecision]:
        """What ``AccessGuard.decision`` (and ``readable``) would answer ``caller`` for each
        unit of ``subtree``, the dérogations read in one query rather than one per unit."""
        restricted = [
            u
            for u in subtree
            if gone_unit(u, family) is None
            and not decisions[u.id].communicable
            and decisions[u.id].reason in OPENABLE
            and not producer
        ]
        mine: list[DerogationRecord] = []
        if restricted and caller.tenant_id == subtree[0].tenant_id:
            lineages = {uid for u in restricted for uid in lineage_ids(u, family)}
            with self._uow() as uow:
                mine = uow.derogations.unrevoked_for(
                    caller.tenant_id, caller.client_id, sorted(lineages)
                )
        today = self._guard.today()
        out: dict[str, AccessDecision] = {}
        for u in subtree:
            rule = decisions[u.id]
            if gone_unit(u, family) is not None:
                out[u.id] = AccessDecision(communicable=False, reason=GONE)
            elif rule.communicable:
                out[u.id] = rule
            elif producer:
                out[u.id] = replace(rule, communicable=True, reason=PRODUCER)
            elif rule.reason in OPENABLE and mine:
                lineage = set(lineage_ids(u, family))
                found = covering_derogation((d for d in mine if d.unit_id in lineage), today=today)
                out[u.id] = (
                    rule
                    if found is None
                    else derogated(
                        rule, derogation_id=found.id, reference=found.reference, until=found.until
                    )
                )
            else:
                out[u.id] = rule
        return out

    def unit(self, caller: Caller, unit_id: str) -> UnitView:
        """The unit's metadata, tree and object list (logged ``archive_unit.read``)."""
        view = self.view(caller, unit_id, event="archive_unit.read")
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
        return self._reader.read(
            caller,
            event,
            unit_id=unit_id,
            package=package,
            key=key,
            details=details,
            what=f"{event.split('.', 1)[0]} of {unit_id}",
        )

    def manifest(self, caller: Caller, unit_id: str) -> tuple[PackageRecord, bytes]:
        """The package's SEDA manifest (logged ``manifest.read`` against the unit asked for)."""
        package = self.view(caller, unit_id, event="manifest.read").package
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
        package = self.view(caller, unit_id, event="timestamp.read").package
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
        decision = self.require_readable(
            caller, unit, event="object.read", subject=("object", object_id), details=details
        )
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
        return OpenedObject(record=record, stream=stream, offer=offer, access=decision)

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
        if opened.access is not None:
            details["access"] = opened.access.members()
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

    def search(self, caller: Caller, query: SearchQuery) -> tuple[list[SearchHit], str | None]:
        """Dossiers matching ``query``, each with the communicability of its documents.

        ``query.communicable`` filters on it (True: every document communicable today), as of
        the clock's date."""
        if query.tenant_id != caller.tenant_id:
            raise Forbidden("search is limited to the caller's tenant")
        query = replace(query, as_of=self._guard.today())
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
        hits = [self._hit(u) for u in visible]
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
        return hits, page.next_cursor

    def _hit(self, unit: UnitRecord) -> SearchHit:
        family = self._guard.family(unit)
        decisions = self._guard.decisions(family)
        active = {u.id for u in family if u.status == "active"}
        restricted = [
            d
            for uid, d in decisions.items()
            if uid != unit.id and uid in active and not d.communicable
        ]
        own_rules = [d for d in restricted if d.inherited_from is None]
        pending = [d for d in own_rules if d.pending]
        ends = [d.end_date for d in own_rules if d.end_date is not None]
        until = max(ends).isoformat() if ends and not pending else None
        return SearchHit(
            unit=unit,
            access=decisions.get(unit.id) or self._guard.decisions([unit])[unit.id],
            restricted_units=len(restricted),
            pending_units=len([d for d in restricted if d.pending]),
            restricted_until=until,
        )


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
        "communicable": query.communicable,
    }
