"""Legal holds (gel, SEDA ``HoldRule``): placed on a unit by an archivist, with a reason and a
reference (a court case, an audit), they cover the unit and everything below it until lifted.

While a hold is active nothing it covers may be proposed for disposal or transfer, nor
destroyed or purged (``services.disposal`` asks :func:`covering_holds`). On S3 offers every
copy it covers carries an Object Lock legal hold, which even an expired retention does not
override: the objects of the subtree and the manifest and token of every package holding one
of its units (the manifest describes the held units; without it their evidence is gone).

Order of the two writes: a hold is set in storage first, then recorded (and logged) in one
transaction; if storage fails midway the legal holds already set are released again (those
no other active hold covers) and nothing is recorded. Lifting releases first the copies no
other active hold still covers, then records the lift; if storage fails midway the released
copies are held again and the hold stays active. Storage can thus hold more than the
database says for a moment, never less while the database says held.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from archive_service.core.ids import new_id
from archive_service.errors import ArchiveError, Conflict, Forbidden, InvalidInput, NotFound
from archive_service.ports import (
    BlobStore,
    Caller,
    Clock,
    CopyRecord,
    HoldRecord,
    LockingBlobStore,
    LogEvent,
    Role,
    UnitOfWork,
    UnitRecord,
)
from archive_service.services.access_log import AccessLog

_logger = logging.getLogger(__name__)

WRITE_ROLES = frozenset({Role.ARCHIVIST, Role.ADMIN})
READ_ROLES = frozenset({Role.ARCHIVIST, Role.ADMIN, Role.AUDITOR})
MAX_REASON = 2000
MAX_REFERENCE = 300


def subtree_ids(unit_id: str, units: Iterable[UnitRecord]) -> set[str]:
    """``unit_id`` and every unit below it, among ``units`` (one dossier)."""
    children: dict[str | None, list[str]] = {}
    for unit in units:
        children.setdefault(unit.parent_id, []).append(unit.id)
    found: set[str] = set()
    todo = [unit_id]
    while todo:
        node = todo.pop()
        if node in found:
            continue
        found.add(node)
        todo.extend(children.get(node, []))
    return found


def ancestor_ids(unit: UnitRecord, units: Iterable[UnitRecord]) -> list[str]:
    """The unit's ancestors, nearest first."""
    by_id = {u.id: u for u in units}
    out: list[str] = []
    parent = unit.parent_id
    while parent is not None and parent not in out:
        out.append(parent)
        found = by_id.get(parent)
        parent = found.parent_id if found is not None else None
    return out


def covering_holds(
    unit: UnitRecord, family: Sequence[UnitRecord], holds: Sequence[HoldRecord]
) -> list[HoldRecord]:
    """The active holds among ``holds`` (the dossier's) that cover ``unit``: placed on it or
    on one of its ancestors."""
    line = {unit.id, *ancestor_ids(unit, family)}
    return [h for h in holds if h.active and h.unit_id in line]


def covered_copies(uow: UnitOfWork, tenant_id: str, unit_ids: set[str]) -> list[CopyRecord]:
    """The copies a hold on these units protects: their objects' copies, and the manifest and
    token copies of every package holding one of them."""
    if not unit_ids:
        return []
    some = uow.archive.get_unit(tenant_id, next(iter(unit_ids)))
    if some is None:
        return []
    units = [u for u in uow.archive.units_of_root(tenant_id, some.root_id) if u.id in unit_ids]
    objects = [
        o
        for o in uow.archive.objects_of_root(tenant_id, some.root_id)
        if o.archive_unit_id in unit_ids
    ]
    packages = sorted({u.package_id for u in units} | {o.package_id for o in objects})
    wanted_objects = {(o.package_id, o.storage_key) for o in objects}
    copies: list[CopyRecord] = []
    for package_id in packages:
        package = uow.archive.get_package(tenant_id, package_id)
        for copy in uow.archive.copies_of_package(tenant_id, package_id):
            if (copy.package_id, copy.key) in wanted_objects or (
                package is not None and copy.key in (package.manifest_key, package.timestamp_key)
            ):
                copies.append(copy)
    return copies


def hold_json(hold: HoldRecord) -> dict[str, object]:
    return {
        "id": hold.id,
        "unit_id": hold.unit_id,
        "root_id": hold.root_id,
        "reason": hold.reason,
        "reference": hold.reference,
        "placed_by": hold.placed_by,
        "placed_at": hold.placed_at.isoformat(),
        "active": hold.active,
        "lifted_by": hold.lifted_by,
        "lifted_at": hold.lifted_at.isoformat() if hold.lifted_at else None,
        "lift_reason": hold.lift_reason,
    }


def hold_view_json(view: HoldView) -> dict[str, object]:
    """GET …/holds: whether the unit is held, the holds placed on it, those from above."""
    return {
        "unit_id": view.unit_id,
        "held": view.held,
        "holds": [hold_json(h) for h in view.on_unit],
        "inherited": [hold_json(h) for h in view.inherited],
    }


@dataclass(frozen=True, slots=True)
class HoldView:
    """What GET …/holds answers: the holds placed on the unit (lifted ones too) and the
    active holds that cover it from an ancestor."""

    unit_id: str
    on_unit: tuple[HoldRecord, ...]
    inherited: tuple[HoldRecord, ...]

    @property
    def held(self) -> bool:
        return any(h.active for h in self.on_unit) or bool(self.inherited)


def _key(copy: CopyRecord) -> tuple[str, str, str | None]:
    return (copy.offer, copy.key, copy.version_id)


class HoldService:
    def __init__(
        self,
        *,
        uow: Callable[[], UnitOfWork],
        offers: Sequence[BlobStore],
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._lockers = {o.name: o for o in offers if isinstance(o, LockingBlobStore)}
        self._clock = clock
        self._log = AccessLog(uow=uow, clock=clock)

    @staticmethod
    def _may_write(caller: Caller) -> None:
        if caller.role not in WRITE_ROLES:
            raise Forbidden(
                f"role {caller.role.value!r} may not place or lift legal holds (archivist or admin)"
            )

    # -- reading (archivists, admins, auditors), each logged -------------------------------

    def _refuse(
        self, caller: Caller, event: str, unit_id: str, details: dict[str, str]
    ) -> NoReturn:
        """403 for a role that may not read holds; see :meth:`AccessLog.forbid`."""
        self._log.forbid(
            caller,
            event,
            unit_id=unit_id,
            details=details,
            reason=f"role {caller.role.value} may not read holds",
            message=f"role {caller.role.value!r} may not read legal holds",
        )

    def view(self, caller: Caller, unit_id: str) -> HoldView:
        """The holds on ``unit_id`` and those covering it from above (logged
        ``holds.read``)."""
        with self._uow() as uow:
            unit = uow.archive.get_unit(caller.tenant_id, unit_id)
        if caller.role not in READ_ROLES:
            self._refuse(caller, "holds.read", unit_id if unit else "", {})
        if unit is None:
            raise NotFound(f"no archive unit {unit_id}")
        with self._uow() as uow:
            family = uow.archive.units_of_root(caller.tenant_id, unit.root_id)
            active = uow.disposal.active_holds(caller.tenant_id, root_id=unit.root_id)
            on_unit = uow.disposal.holds_of_unit(caller.tenant_id, unit_id)
        above = set(ancestor_ids(unit, family))
        inherited = tuple(h for h in active if h.unit_id in above)
        view = HoldView(unit_id, tuple(on_unit), inherited)
        self._log.append(
            caller,
            "holds.read",
            subject_type="archive_unit",
            subject_id=unit_id,
            details={
                "root_id": unit.root_id,
                "held": view.held,
                "holds": [h.id for h in view.on_unit],
                "inherited": [h.id for h in view.inherited],
            },
        )
        return view

    def get(self, caller: Caller, hold_id: str) -> HoldRecord:
        """One hold (logged ``hold.read`` against the unit it was placed on)."""
        with self._uow() as uow:
            hold = uow.disposal.get_hold(caller.tenant_id, hold_id)
        if caller.role not in READ_ROLES:
            self._refuse(caller, "hold.read", hold.unit_id if hold else "", {"hold_id": hold_id})
        if hold is None:
            raise NotFound(f"no legal hold {hold_id}")
        self._log.append(
            caller,
            "hold.read",
            subject_type="archive_unit",
            subject_id=hold.unit_id,
            details={"hold_id": hold.id, "active": hold.active},
        )
        return hold

    # -- placing and lifting ---------------------------------------------------------------

    def place(
        self, caller: Caller, unit_id: str, *, reason: str, reference: str | None
    ) -> HoldRecord:
        """Hold the unit and its subtree: S3 legal hold on every copy, then the record."""
        self._may_write(caller)
        reason = (reason or "").strip()
        reference = (reference or "").strip() or None
        if not reason:
            raise InvalidInput("a legal hold needs a reason")
        if len(reason) > MAX_REASON or (reference and len(reference) > MAX_REFERENCE):
            raise InvalidInput(
                f"reason is limited to {MAX_REASON} characters, reference to {MAX_REFERENCE}"
            )
        now = self._clock.now()
        with self._uow() as uow:
            unit = uow.archive.get_unit(caller.tenant_id, unit_id)
            if unit is None:
                raise NotFound(f"no archive unit {unit_id}")
            if unit.status != "active":
                raise Conflict(
                    f"archive unit {unit_id} is {unit.status}: there is nothing left to hold",
                    extra={"unit_status": unit.status},
                )
            family = uow.archive.units_of_root(caller.tenant_id, unit.root_id)
            below = subtree_ids(unit_id, family)
            copies = covered_copies(uow, caller.tenant_id, below)
            already = self._held_keys(uow, caller.tenant_id, unit.root_id, family, exclude=None)
        hold = HoldRecord(
            id=new_id("hold", now),
            tenant_id=caller.tenant_id,
            unit_id=unit_id,
            root_id=unit.root_id,
            reason=reason,
            reference=reference,
            placed_by=caller.name,
            placed_at=now,
        )
        done: list[CopyRecord] = []
        try:
            for copy in copies:
                if self._set(copy, on=True):
                    done.append(copy)
        except ArchiveError:
            self._undo(done, keep=already, on=False)
            raise
        with self._uow() as uow:
            uow.disposal.add_hold(hold)
            uow.logbook.append(
                LogEvent(
                    tenant_id=caller.tenant_id,
                    at=now,
                    event_type="hold.placed",
                    outcome="OK",
                    subject_type="archive_unit",
                    subject_id=unit_id,
                    actor=caller.client_id,
                    details={
                        "hold_id": hold.id,
                        "reason": reason,
                        "reference": reference,
                        "placed_by": caller.name,
                        "units_covered": len(below),
                        "storage_legal_holds": len(done),
                    },
                )
            )
            uow.commit()
        _logger.info(
            "hold.placed",
            extra={"hold_id": hold.id, "unit_id": unit_id, "storage_legal_holds": len(done)},
        )
        return hold

    def lift(self, caller: Caller, hold_id: str, *, reason: str) -> HoldRecord:
        """Lift the hold; release the S3 legal hold of the copies no other active hold covers."""
        self._may_write(caller)
        reason = (reason or "").strip()
        if not reason:
            raise InvalidInput("lifting a legal hold needs a reason")
        if len(reason) > MAX_REASON:
            raise InvalidInput(f"reason is limited to {MAX_REASON} characters")
        now = self._clock.now()
        with self._uow() as uow:
            hold = uow.disposal.get_hold(caller.tenant_id, hold_id)
            if hold is None:
                raise NotFound(f"no legal hold {hold_id}")
            if not hold.active:
                raise Conflict(
                    f"legal hold {hold_id} was already lifted",
                    extra={"lifted_at": hold.lifted_at.isoformat() if hold.lifted_at else None},
                )
            family = uow.archive.units_of_root(caller.tenant_id, hold.root_id)
            copies = covered_copies(uow, caller.tenant_id, subtree_ids(hold.unit_id, family))
            still = self._held_keys(uow, caller.tenant_id, hold.root_id, family, exclude=hold.id)
        released: list[CopyRecord] = []
        try:
            for copy in copies:
                if _key(copy) in still:
                    continue
                if self._set(copy, on=False):
                    released.append(copy)
        except ArchiveError:
            self._undo(released, keep=set(), on=True)
            raise
        with self._uow() as uow:
            if not uow.disposal.lift_hold(hold_id, by=caller.name, at=now, reason=reason):
                raise Conflict(f"legal hold {hold_id} was lifted meanwhile")
            uow.logbook.append(
                LogEvent(
                    tenant_id=caller.tenant_id,
                    at=now,
                    event_type="hold.lifted",
                    outcome="OK",
                    subject_type="archive_unit",
                    subject_id=hold.unit_id,
                    actor=caller.client_id,
                    details={
                        "hold_id": hold_id,
                        "reason": reason,
                        "lifted_by": caller.name,
                        "storage_legal_holds_released": len(released),
                        "storage_legal_holds_kept": sum(1 for c in copies if _key(c) in still),
                    },
                )
            )
            uow.commit()
            lifted = uow.disposal.get_hold(caller.tenant_id, hold_id)
        assert lifted is not None
        _logger.info("hold.lifted", extra={"hold_id": hold_id, "released": len(released)})
        return lifted

    def dossier_changed(self, tenant_id: str, root_id: str) -> None:
        """After a package added to a held dossier (``IngestService.on_dossier_changed``):
        the new copies under an active hold get their S3 legal hold too. Idempotent; logged
        when it set any."""
        with self._uow() as uow:
            holds = uow.disposal.active_holds(tenant_id, root_id=root_id)
            if not holds:
                return
            family = uow.archive.units_of_root(tenant_id, root_id)
            copies: dict[tuple[str, str, str | None], CopyRecord] = {}
            for hold in holds:
                for copy in covered_copies(uow, tenant_id, subtree_ids(hold.unit_id, family)):
                    copies[_key(copy)] = copy
        done = sum(1 for copy in copies.values() if self._set(copy, on=True))
        if not done:
            return
        with self._uow() as uow:
            uow.logbook.append(
                LogEvent(
                    tenant_id=tenant_id,
                    at=self._clock.now(),
                    event_type="hold.storage_applied",
                    outcome="OK",
                    subject_type="archive_unit",
                    subject_id=root_id,
                    details={
                        "holds": [h.id for h in holds],
                        "storage_legal_holds": done,
                        "why": "the dossier changed (a package was added)",
                    },
                )
            )
            uow.commit()

    # -- storage ---------------------------------------------------------------------------

    def _held_keys(
        self,
        uow: UnitOfWork,
        tenant_id: str,
        root_id: str,
        family: Sequence[UnitRecord],
        *,
        exclude: str | None,
    ) -> set[tuple[str, str, str | None]]:
        """Copies covered by the dossier's active holds other than ``exclude``."""
        held: set[tuple[str, str, str | None]] = set()
        for other in uow.disposal.active_holds(tenant_id, root_id=root_id):
            if other.id == exclude:
                continue
            below = subtree_ids(other.unit_id, family)
            held.update(_key(c) for c in covered_copies(uow, tenant_id, below))
        return held

    def _set(self, copy: CopyRecord, *, on: bool) -> bool:
        offer = self._lockers.get(copy.offer)
        if offer is None or copy.version_id is None:
            return False
        offer.set_legal_hold(copy.key, version_id=copy.version_id, on=on)
        return True

    def _undo(
        self, copies: Sequence[CopyRecord], *, keep: set[tuple[str, str, str | None]], on: bool
    ) -> None:
        for copy in copies:
            if _key(copy) in keep:
                continue
            try:
                self._set(copy, on=on)
            except ArchiveError:
                _logger.warning(
                    "hold.storage_undo_failed",
                    extra={"offer": copy.offer, "key": copy.key, "on": on},
                    exc_info=True,
                )
