"""Events drive retention (issue 5, item 3): dossier events, recomputation of the rules of
every unit of the dossier, and the extension of Object Lock on every copy.

A dossier (the root unit) knows the events carried by the metadata of each of its transfers
and the ones recorded since (``dossier_events``: notification, signature, infructuosité,
sans suite, réception, paiement du solde, dispute opened / closed). Recording one, in one
transaction: the dossier is locked against concurrent writers, the event is checked against
what the dossier knows (core/retention.py :func:`check_event`), appended and logged, and the
rules of every active categorized unit are recomputed with the référentiel in force
(:func:`recompute_dossier`: DUA = max of the applicable terms, pending until the start date is
known, suspended while a dispute is open and pushed by the days disputes stopped the clock),
the changes logged with the old and new ends.

After the commit, every copy whose unit's end moved later is locked until that end on every
locking offer (manifest and token: the latest end of their package); the offers only ever
extend. An offer that fails leaves the event recorded (it is a fact) and the dossier's
units marked ``lock_pending`` in their appraisal JSON; ``archive-service retention relock``
and any later recomputation of the dossier lock again (the whole dossier while a mark
remains) and clear the mark once every copy is locked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from archive_service.core.procurement import EVENT_NAMES
from archive_service.core.retention import (
    CONTRADICTION,
    DISPUTE_CLOSED,
    DISPUTE_OPENED,
    DUPLICATE,
    LIFECYCLE_EVENTS,
    ComputedRules,
    DossierFacts,
    Referential,
    UnitNode,
    UnitOutcome,
    check_event,
    dossier_facts,
    recompute_dossier,
)
from archive_service.errors import ArchiveError, Conflict, Forbidden, InvalidInput, Issue, NotFound
from archive_service.ports import (
    BlobStore,
    Caller,
    Clock,
    CopyRecord,
    DossierEventRecord,
    DossierTransferRecord,
    LockingBlobStore,
    LogEvent,
    Role,
    UnitOfWork,
    UnitRecord,
)
from archive_service.services.access_log import REFUSED, AccessLog, caller_details
from archive_service.services.ingest import _date_or_none as _date
from archive_service.services.ingest import rule_json
from archive_service.services.referentials import (
    READ_ROLES,
    ReferentialService,
    ReferentialVersion,
    parse_referential,
)
from archive_service.services.sip_ingest import sender_resolutions

_logger = logging.getLogger(__name__)

WRITE_ROLES = frozenset({Role.PLATFORM, Role.ARCHIVIST, Role.ADMIN})
LOCK_WORKERS = 8
MAX_TEXT = 300


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


# -- records of what happened ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnitChange:
    """A unit whose rules or end dates a recomputation changed (or would change)."""

    unit_id: str
    root_id: str
    title: str
    category: str | None
    before: dict[str, Any]
    after: dict[str, Any]

    @property
    def fields(self) -> list[str]:
        return [k for k in self.after if self.before.get(k) != self.after[k]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "unit_id": self.unit_id,
            "dossier_id": self.root_id,
            "title": self.title,
            "category": self.category,
            "changed": self.fields,
            "before": self.before,
            "after": self.after,
        }


@dataclass
class LockReport:
    """What extending the locks of a dossier did: copies locked per offer, failures per
    offer. ``status``: ``done`` (every copy that needed it is locked), ``pending`` (an offer
    failed: retry with ``retention relock``), ``unchanged`` (no end moved later), ``none``
    (no offer has Object Lock)."""

    status: str = "unchanged"
    extended: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "extended": self.extended, "failed": self.failed}


@dataclass
class RecomputeResult:
    root_id: str
    referential_version: int
    changes: list[UnitChange]
    moved: set[str]
    """Units whose DUA end became later (or dated): their copies need a longer lock."""
    locks: LockReport = field(default_factory=LockReport)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dossier_id": self.root_id,
            "referential_version": self.referential_version,
            "changes": [c.as_dict() for c in self.changes],
            "locks": self.locks.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class EventOutcome:
    root_id: str
    event: DossierEventRecord
    recorded: bool
    """False when the same event with the same date was already known (nothing written)."""
    previous_date: date | None
    """For a correction: the date it replaced."""
    result: RecomputeResult | None


@dataclass(frozen=True, slots=True)
class Dossier:
    """What the service knows of a dossier: its transfers, events in recording order, and
    the facts the rules depend on."""

    root_id: str
    transfers: tuple[DossierTransferRecord, ...]
    history: tuple[DossierEventRecord, ...]
    facts: DossierFacts


def _transfer_events(
    t: DossierTransferRecord, tenant_id: str, root_id: str
) -> Iterable[DossierEventRecord]:
    events = t.metadata.get("events")
    if not isinstance(events, dict):
        return
    for name in EVENT_NAMES:
        when = _date(events.get(name))
        if when is not None:
            yield DossierEventRecord(
                tenant_id=tenant_id,
                root_id=root_id,
                event=name,
                event_date=when,
                source="transfer",
                recorded_at=t.created_at,
                transfer_id=t.transfer_id,
            )


def load_dossier(uow: UnitOfWork, tenant_id: str, root_id: str) -> Dossier:
    """The dossier's transfers, events and facts (contract type and flags from its first
    transfer's metadata; an infructuosité or sans suite event sets the flag too)."""
    transfers = uow.lifecycle.dossier_transfers(tenant_id, root_id)
    carried = [e for t in transfers for e in _transfer_events(t, tenant_id, root_id)]
    rows = uow.lifecycle.events_of(tenant_id, root_id)
    # Recording order: a later statement of a date replaces an earlier one. Transfer events
    # come first on equal times (a correction through the API follows what was sent).
    history = sorted([*carried, *rows], key=lambda e: (e.recorded_at, e.id is not None, e.id or 0))
    first = transfers[0].metadata if transfers else {}

    def flag(name: str) -> bool:
        return first.get(name) is True

    facts = dossier_facts(
        contract_type=str(first.get("contract_type") or ""),
        infructueux=flag("infructueux"),
        sans_suite=flag("sans_suite"),
        recurrent=flag("recurrent"),
        events=[(e.event, e.event_date) for e in history],
    )
    return Dossier(root_id, tuple(transfers), tuple(history), facts)


# -- the JSON a unit carries --------------------------------------------------------------------


def appraisal_json(
    rules: ComputedRules, version: ReferentialVersion, *, lock_pending: bool = False
) -> dict[str, Any]:
    """services/ingest.py ``rule_json`` of the appraisal rule, with ``end_date`` the end
    after suspensions (``None`` while pending or suspended), ``base_end_date`` the end the
    rule gives without them, and the référentiel version that gave it."""
    out = rule_json(rules.appraisal) or {}
    out.update(
        end_date=_iso(rules.appraisal_end),
        base_end_date=_iso(rules.appraisal.end_date),
        suspended=rules.suspended,
        suspension_days=rules.suspension_days,
        referential_version=version.record.version,
        referential_label=version.record.label,
    )
    if lock_pending:
        out["lock_pending"] = True
    return out


def access_json(rules: ComputedRules, version: ReferentialVersion) -> dict[str, Any]:
    out = rule_json(rules.access) or {}
    out.update(referential_version=version.record.version, referential_label=version.record.label)
    return out


def unit_state(
    appraisal: dict[str, Any] | None,
    access: dict[str, Any] | None,
    appraisal_end: date | None,
    access_end: date | None,
) -> dict[str, Any]:
    """The comparable part of a unit's rules (what an impact analysis lists)."""
    a = appraisal or {}
    c = access or {}
    return {
        "appraisal_rule": a.get("rule_id"),
        "final_action": a.get("final_action"),
        "review": a.get("review"),
        "start_event": a.get("start_event"),
        "appraisal_end": _iso(appraisal_end),
        "pending": a.get("pending"),
        "suspended": bool(a.get("suspended", False)),
        "access_rule": c.get("rule_id"),
        "access_end": _iso(access_end),
    }


def _nodes(units: Sequence[UnitRecord]) -> list[UnitNode]:
    return [
        UnitNode(
            id=u.id,
            parent_id=u.parent_id,
            category=u.category,
            own_rule=u.appraisal is not None,
            active=u.status == "active",
        )
        for u in units
    ]


def _new_rules(
    unit: UnitRecord, outcome: UnitOutcome, version: ReferentialVersion, lock_pending: bool
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if outcome.rules is None:  # inherits: no rule of its own
        return unit.appraisal, unit.access
    return (
        appraisal_json(outcome.rules, version, lock_pending=lock_pending),
        access_json(outcome.rules, version),
    )


def _later(new: date | None, old: date | None) -> bool:
    return new is not None and (old is None or new > old)


class LifecycleService:
    def __init__(
        self,
        *,
        uow: Callable[[], UnitOfWork],
        offers: Sequence[BlobStore],
        clock: Clock,
        referentials: ReferentialService,
    ) -> None:
        self._uow = uow
        self._offers = tuple(offers)
        self._clock = clock
        self._referentials = referentials
        self._log = AccessLog(uow=uow, clock=clock)

    # -- who may do what ------------------------------------------------------------------

    def _unit_for(
        self, caller: Caller, unit_id: str, *, write: bool, read_event: str = "retention.read"
    ) -> UnitRecord:
        """The unit, if the caller may see it (platforms: their organizations' units); for
        ``write``, if the caller's role may record events (not an auditor). A refusal is
        logged ``REFUSED`` as ``dossier.event_recorded``, or as ``read_event`` for a read."""
        with self._uow() as uow:
            unit = uow.archive.get_unit(caller.tenant_id, unit_id)
            allowed = True
            if unit is not None and caller.role is Role.PLATFORM:
                org = uow.tenancy.organization_by_siret(
                    caller.tenant_id, unit.organization_siret or ""
                )
                allowed = org is not None and org.id in caller.organization_ids
        if unit is None:
            raise NotFound(f"no archive unit {unit_id}")
        event = "dossier.event_recorded" if write else read_event
        if not allowed:
            self._log.append(
                caller,
                event,
                subject_type="archive_unit",
                subject_id=unit_id,
                details={"reason": "organization not allowed"},
                outcome=REFUSED,
            )
            raise NotFound(f"no archive unit {unit_id}")
        if write and caller.role not in WRITE_ROLES:
            self._log.append(
                caller,
                event,
                subject_type="archive_unit",
                subject_id=unit_id,
                details={"reason": f"role {caller.role.value} may not record events"},
                outcome=REFUSED,
            )
            raise Forbidden(f"role {caller.role.value!r} may not record dossier events")
        return unit

    # -- events -----------------------------------------------------------------------------

    def record_event(
        self,
        caller: Caller,
        unit_id: str,
        *,
        event: str,
        when: date,
        reference: str | None = None,
        note: str | None = None,
        correction: bool = False,
        reason: str | None = None,
        source: str = "api",
    ) -> EventOutcome:
        """Record ``event`` on the dossier of ``unit_id`` and recompute its rules.

        The same event with the same date again is a no-op (``recorded`` False). A start
        event already known with another date is ``Conflict`` unless ``correction`` with a
        ``reason`` (the correction is logged with the date it replaces)."""
        for name, value in (("reference", reference), ("note", note), ("reason", reason)):
            if value is not None and len(value) > (MAX_TEXT if name == "reference" else 4000):
                raise InvalidInput(f"{name} is too long", issues=[Issue("too-long", name, name)])
        if correction and not (reason and reason.strip()):
            raise InvalidInput(
                "a correction needs a reason",
                issues=[Issue("missing-reason", "say why the date changes", "reason")],
            )
        if event not in LIFECYCLE_EVENTS:
            raise InvalidInput(
                f"unknown dossier event {event!r}",
                issues=[Issue("unknown-event", f"known: {', '.join(LIFECYCLE_EVENTS)}", "event")],
            )
        unit = self._unit_for(caller, unit_id, write=True)
        root = unit.root_id
        version = self._referentials.in_force(caller.tenant_id)
        now = self._clock.now()
        with self._uow() as uow:
            uow.archive.lock_dossier(caller.tenant_id, root)
            dossier = load_dossier(uow, caller.tenant_id, root)
            kind, recorded = check_event(
                [(e.event, e.event_date) for e in dossier.history],
                event,
                when,
                today=now.date(),
            )
            if kind == DUPLICATE:
                same = next(
                    e
                    for e in reversed(dossier.history)
                    if e.event == event and e.event_date == when
                )
                return EventOutcome(root, same, False, None, None)
            if kind == CONTRADICTION and not correction:
                assert recorded is not None
                raise Conflict(
                    f"the dossier already has {event} on {recorded.isoformat()}; to replace it "
                    f'with {when.isoformat()}, send "correction": true with a reason',
                    issues=[Issue("contradicts-recorded-event", recorded.isoformat(), "date")],
                    extra={"recorded_date": recorded.isoformat()},
                )
            if correction and kind != CONTRADICTION:
                raise InvalidInput(
                    f"nothing to correct: the dossier has no other date for {event}",
                    issues=[Issue("nothing-to-correct", "send it without correction", "event")],
                )
            text = note
            if correction:
                assert reason is not None
                text = f"correction: {reason.strip()}" + (f" — {note}" if note else "")
            row = uow.lifecycle.add_event(
                DossierEventRecord(
                    tenant_id=caller.tenant_id,
                    root_id=root,
                    event=event,
                    event_date=when,
                    source=source,
                    recorded_at=now,
                    reference=reference,
                    note=text,
                    recorded_by=caller.name,
                )
            )
            details: dict[str, Any] = {
                **caller_details(caller),
                "event": event,
                "date": when.isoformat(),
                "unit_id": unit_id,
                "source": source,
                "event_id": row.id,
            }
            if reference:
                details["reference"] = reference
            if correction:
                details.update(previous_date=_iso(recorded), reason=reason)
            uow.logbook.append(
                LogEvent(
                    tenant_id=caller.tenant_id,
                    at=now,
                    event_type="dossier.event_corrected"
                    if correction
                    else "dossier.event_recorded",
                    outcome="OK",
                    subject_type="archive_unit",
                    subject_id=root,
                    actor=caller.client_id,
                    details=details,
                )
            )
            dossier = load_dossier(uow, caller.tenant_id, root)
            result = self._recompute_in(
                uow,
                caller.tenant_id,
                dossier,
                version,
                cause={"trigger": "event", "event": event, "event_id": row.id},
                caller=caller,
            )
            uow.commit()
        result.locks = self._extend_locks(caller.tenant_id, root, result.moved, caller=caller)
        return EventOutcome(root, row, True, recorded if correction else None, result)

    def events(self, caller: Caller, unit_id: str) -> tuple[Dossier, list[dict[str, Any]]]:
        """The dossier and its event history (each event: where it came from, whether it
        corrected an earlier date, whether its date is the one in force); logged
        ``dossier_events.read``."""
        unit = self._unit_for(caller, unit_id, write=False, read_event="dossier_events.read")
        with self._uow() as uow:
            dossier = load_dossier(uow, caller.tenant_id, unit.root_id)
        history = history_json(dossier)
        self._log.append(
            caller,
            "dossier_events.read",
            subject_type="archive_unit",
            subject_id=unit_id,
            details={"root_id": unit.root_id, "events": len(history)},
        )
        return dossier, history

    # -- recomputation --------------------------------------------------------------------

    def _recompute_in(
        self,
        uow: UnitOfWork,
        tenant_id: str,
        dossier: Dossier,
        version: ReferentialVersion,
        *,
        cause: dict[str, Any],
        caller: Caller | None,
    ) -> RecomputeResult:
        units = uow.archive.units_of_root(tenant_id, dossier.root_id)
        outcomes = recompute_dossier(version.referential, dossier.facts, _nodes(units))
        sender = sender_resolutions(units, version.referential)
        pending_mark = any((u.appraisal or {}).get("lock_pending") for u in units)
        changes: list[UnitChange] = []
        moved: set[str] = set()
        updated = 0
        for unit in units:
            outcome = outcomes.get(unit.id)
            if outcome is None:
                continue
            appraisal, access = _new_rules(unit, outcome, version, pending_mark)
            before = unit_state(unit.appraisal, unit.access, unit.appraisal_end, unit.access_end)
            after = unit_state(appraisal, access, outcome.appraisal_end, outcome.access_end)
            if (
                appraisal == unit.appraisal
                and access == unit.access
                and outcome.appraisal_end == unit.appraisal_end
                and outcome.access_end == unit.access_end
            ):
                continue
            uow.lifecycle.update_unit_rules(
                tenant_id,
                unit.id,
                appraisal=appraisal,
                access=access,
                appraisal_end=outcome.appraisal_end,
                access_end=outcome.access_end,
            )
            updated += 1
            if _later(outcome.appraisal_end, unit.appraisal_end):
                moved.add(unit.id)
            if before != after:
                changes.append(
                    UnitChange(unit.id, dossier.root_id, unit.title, unit.category, before, after)
                )
        # A foreign transfer's units: the sender's rules, resolved again with this version
        # (services/sip_ingest.py; core/sender_rules.py). Additive to the loop above, which
        # leaves them out (no category, rules of their own).
        for unit in units:
            resolved = sender.get(unit.id)
            if resolved is None or unit.status != "active":
                continue
            appraisal = resolved.appraisal
            if appraisal is not None and (unit.appraisal or {}).get("lock_pending"):
                appraisal = {**appraisal, "lock_pending": True}
            if (appraisal, resolved.access, resolved.appraisal_end, resolved.access_end) == (
                unit.appraisal,
                unit.access,
                unit.appraisal_end,
                unit.access_end,
            ):
                continue
            uow.lifecycle.update_unit_rules(
                tenant_id,
                unit.id,
                appraisal=appraisal,
                access=resolved.access,
                appraisal_end=resolved.appraisal_end,
                access_end=resolved.access_end,
            )
            updated += 1
            if _later(resolved.appraisal_end, unit.appraisal_end):
                moved.add(unit.id)
            before = unit_state(unit.appraisal, unit.access, unit.appraisal_end, unit.access_end)
            after = unit_state(
                appraisal, resolved.access, resolved.appraisal_end, resolved.access_end
            )
            if before != after:
                changes.append(
                    UnitChange(unit.id, dossier.root_id, unit.title, unit.category, before, after)
                )
        # Logged when a rule, an end date or a final action changed. A first recomputation
        # after the ingest only completes the JSON the ingest wrote (référentiel version,
        # suspension fields): the same rules, nothing to record.
        if changes:
            uow.logbook.append(
                LogEvent(
                    tenant_id=tenant_id,
                    at=self._clock.now(),
                    event_type="retention.recomputed",
                    outcome="OK",
                    subject_type="archive_unit",
                    subject_id=dossier.root_id,
                    actor=caller.client_id if caller else None,
                    details={
                        **(caller_details(caller) if caller else {}),
                        **cause,
                        "referential_version": version.record.version,
                        "units_updated": updated,
                        "units": [
                            {
                                "unit_id": c.unit_id,
                                "appraisal_end": [
                                    c.before["appraisal_end"],
                                    c.after["appraisal_end"],
                                ],
                                "access_end": [c.before["access_end"], c.after["access_end"]],
                                "appraisal_rule": [
                                    c.before["appraisal_rule"],
                                    c.after["appraisal_rule"],
                                ],
                                "final_action": [c.before["final_action"], c.after["final_action"]],
                                "suspended": c.after["suspended"],
                            }
                            for c in changes
                        ],
                    },
                )
            )
        if pending_mark:
            moved = {u.id for u in units}  # an earlier lock failed: lock the whole dossier
        return RecomputeResult(dossier.root_id, version.record.version, changes, moved)

    def recompute(
        self, tenant_id: str, root_id: str, *, cause: dict[str, Any], caller: Caller | None = None
    ) -> RecomputeResult:
        """Recompute one dossier with the référentiel in force, then extend its locks."""
        version = self._referentials.in_force(tenant_id)
        with self._uow() as uow:
            uow.archive.lock_dossier(tenant_id, root_id)
            dossier = load_dossier(uow, tenant_id, root_id)
            result = self._recompute_in(
                uow, tenant_id, dossier, version, cause=cause, caller=caller
            )
            uow.commit()
        result.locks = self._extend_locks(tenant_id, root_id, result.moved, caller=caller)
        return result

    def dossier_changed(self, tenant_id: str, root_id: str) -> None:
        """Ingest listener: a package of the dossier committed; its rules follow every event
        the dossier knows (including those recorded before this package arrived)."""
        self.recompute(tenant_id, root_id, cause={"trigger": "package"})

    def recompute_all(self, caller: Caller, unit_id: str | None = None) -> list[RecomputeResult]:
        """Apply the référentiel in force to every dossier of the tenant (or the dossier of
        ``unit_id``) on purpose: administrators and archivists."""
        if caller.role not in (Role.ADMIN, Role.ARCHIVIST):
            raise Forbidden(f"role {caller.role.value!r} may not recompute retention rules")
        roots = self._roots(caller, unit_id)
        version = self._referentials.in_force(caller.tenant_id)
        self._log.append(
            caller,
            "retention.recompute_requested",
            subject_type="referential",
            subject_id=f"retention:{version.record.version}",
            details={"dossiers": len(roots), "unit_id": unit_id},
        )
        return [
            self.recompute(
                caller.tenant_id,
                root,
                cause={"trigger": "recompute", "referential_version": version.record.version},
                caller=caller,
            )
            for root in roots
        ]

    def _roots(self, caller: Caller, unit_id: str | None) -> list[str]:
        if unit_id is not None:
            return [self._unit_for(caller, unit_id, write=True).root_id]
        with self._uow() as uow:
            return uow.lifecycle.dossier_roots(caller.tenant_id)

    # -- Object Lock --------------------------------------------------------------------------

    def relock(self, caller: Caller, unit_id: str | None = None) -> list[RecomputeResult]:
        """Lock again the copies of dossiers whose last lock extension failed (or of the
        dossier of ``unit_id``, whatever its mark): the retry path of a pending lock."""
        if caller.role not in (Role.ADMIN, Role.ARCHIVIST):
            raise Forbidden(f"role {caller.role.value!r} may not lock copies")
        roots = self._roots(caller, unit_id)
        results = []
        for root in roots:
            with self._uow() as uow:
                units = uow.archive.units_of_root(caller.tenant_id, root)
            marked = any((u.appraisal or {}).get("lock_pending") for u in units)
            if unit_id is None and not marked:
                continue
            result = RecomputeResult(root, 0, [], {u.id for u in units})
            result.locks = self._extend_locks(caller.tenant_id, root, result.moved, caller=caller)
            results.append(result)
        return results

    def _extend_locks(
        self, tenant_id: str, root_id: str, scope: set[str], *, caller: Caller | None
    ) -> LockReport:
        lockers = {o.name: o for o in self._offers if isinstance(o, LockingBlobStore)}
        if not lockers:
            return LockReport(status="none")
        if not scope:
            return LockReport(status="unchanged")
        with self._uow() as uow:
            units = uow.archive.units_of_root(tenant_id, root_id)
            objects = uow.archive.objects_of_root(tenant_id, root_id)
            packages = {t.package_id for t in uow.lifecycle.dossier_transfers(tenant_id, root_id)}
            copies = [
                c for p in sorted(packages) for c in uow.archive.copies_of_package(tenant_id, p)
            ]
        end_of = {u.id: u.appraisal_end for u in units}
        unit_of_key = {o.storage_key: o.archive_unit_id for o in objects}
        package_end: dict[str, date] = {}
        package_moved: set[str] = set()
        for u in units:
            if u.appraisal_end is not None:
                package_end[u.package_id] = max(
                    u.appraisal_end, package_end.get(u.package_id, u.appraisal_end)
                )
            if u.id in scope:
                package_moved.add(u.package_id)
        jobs: list[tuple[LockingBlobStore, CopyRecord, datetime]] = []
        for copy in copies:
            offer = lockers.get(copy.offer)
            if offer is None or copy.version_id is None:
                continue
            if copy.kind == "object":
                unit = unit_of_key.get(copy.key)
                end = end_of.get(unit) if unit is not None else None
                wanted = unit in scope
            else:
                end = package_end.get(copy.package_id)
                wanted = copy.package_id in package_moved
            if wanted and end is not None:
                jobs.append((offer, copy, datetime.combine(end, time.min, tzinfo=UTC)))
        report = LockReport(status="done")
        if not jobs:
            report.status = "unchanged"

        def lock(job: tuple[LockingBlobStore, CopyRecord, datetime]) -> tuple[str, str | None]:
            offer, copy, until = job
            assert copy.version_id is not None
            try:
                offer.lock(copy.key, version_id=copy.version_id, retain_until=until)
            except ArchiveError as exc:
                return offer.name, exc.message
            return offer.name, None

        with ThreadPoolExecutor(max_workers=LOCK_WORKERS, thread_name_prefix="relock") as pool:
            for offer_name, problem in pool.map(lock, jobs):
                if problem is None:
                    report.extended[offer_name] = report.extended.get(offer_name, 0) + 1
                else:
                    report.failed.setdefault(offer_name, problem)
        if report.failed:
            report.status = "pending"
        self._record_locks(tenant_id, root_id, report, jobs, caller)
        return report

    def _record_locks(
        self,
        tenant_id: str,
        root_id: str,
        report: LockReport,
        jobs: Sequence[tuple[LockingBlobStore, CopyRecord, datetime]],
        caller: Caller | None,
    ) -> None:
        """Log the extension, and set (failure) or clear (success) the dossier's mark."""
        pending = report.status == "pending"
        if not jobs:
            # Nothing was locked (no end known, e.g. while a dispute suspends every DUA): a
            # mark left by an earlier failure stays for the next attempt.
            return
        now = self._clock.now()
        with self._uow() as uow:
            uow.archive.lock_dossier(tenant_id, root_id)
            for u in uow.archive.units_of_root(tenant_id, root_id):
                if u.appraisal is None or bool(u.appraisal.get("lock_pending")) == pending:
                    continue
                appraisal = dict(u.appraisal)
                if pending:
                    appraisal["lock_pending"] = True
                else:
                    appraisal.pop("lock_pending", None)
                uow.lifecycle.update_unit_rules(
                    tenant_id,
                    u.id,
                    appraisal=appraisal,
                    access=u.access,
                    appraisal_end=u.appraisal_end,
                    access_end=u.access_end,
                )
            if jobs:
                latest = max(until for _o, _c, until in jobs)
                uow.logbook.append(
                    LogEvent(
                        tenant_id=tenant_id,
                        at=now,
                        event_type="retention.locks_pending"
                        if pending
                        else "retention.locks_extended",
                        outcome="FAILED" if pending else "OK",
                        subject_type="archive_unit",
                        subject_id=root_id,
                        actor=caller.client_id if caller else None,
                        details={
                            **(caller_details(caller) if caller else {}),
                            "extended": report.extended,
                            "failed": report.failed,
                            "copies": len(jobs),
                            "latest_retain_until": latest.isoformat(),
                        },
                    )
                )
            uow.commit()
        if pending:
            _logger.warning(
                "retention.locks_pending",
                extra={"tenant_id": tenant_id, "root_id": root_id, "failed": report.failed},
            )

    # -- views ----------------------------------------------------------------------------------

    def retention(self, caller: Caller, unit_id: str) -> dict[str, Any]:
        """Every unit of the dossier with its rules and ends, and the dossier's due summary
        (logged ``retention.read``)."""
        unit = self._unit_for(caller, unit_id, write=False)
        version = self._referentials.in_force(caller.tenant_id)
        with self._uow() as uow:
            dossier = load_dossier(uow, caller.tenant_id, unit.root_id)
            units = uow.archive.units_of_root(caller.tenant_id, unit.root_id)
        view = retention_json(dossier, units, version, today=self._clock.now().date())
        self._log.append(
            caller,
            "retention.read",
            subject_type="archive_unit",
            subject_id=unit_id,
            details={
                "root_id": unit.root_id,
                "units": len(units),
                "referential_version": version.record.version,
            },
        )
        return view

    def impact(self, caller: Caller, text: str) -> dict[str, Any]:
        """What replacing the référentiel by ``text`` would change for the tenant's active
        units, if each were recomputed now (before: what the unit has; after: what the
        candidate gives). Writes nothing."""
        if caller.role not in READ_ROLES:
            raise Forbidden(f"role {caller.role.value!r} may not analyse référentiel changes")
        candidate = parse_referential(text)
        in_force = self._referentials.in_force(caller.tenant_id)
        return self._impact(caller.tenant_id, candidate, in_force, text)

    def _impact(
        self, tenant_id: str, candidate: Referential, in_force: ReferentialVersion, text: str
    ) -> dict[str, Any]:
        import hashlib

        changes: list[UnitChange] = []
        examined = 0
        with self._uow() as uow:
            roots = uow.lifecycle.dossier_roots(tenant_id)
            for root in roots:
                dossier = load_dossier(uow, tenant_id, root)
                units = uow.archive.units_of_root(tenant_id, root)
                outcomes = recompute_dossier(candidate, dossier.facts, _nodes(units))
                for u in units:
                    outcome = outcomes.get(u.id)
                    if outcome is None:
                        continue
                    examined += 1
                    before = unit_state(u.appraisal, u.access, u.appraisal_end, u.access_end)
                    if outcome.rules is None:
                        appraisal, access = u.appraisal, u.access
                    else:
                        appraisal = rule_json(outcome.rules.appraisal)
                        if appraisal is not None:
                            appraisal["suspended"] = outcome.rules.suspended
                        access = rule_json(outcome.rules.access)
                    after = unit_state(appraisal, access, outcome.appraisal_end, outcome.access_end)
                    if before != after:
                        changes.append(UnitChange(u.id, root, u.title, u.category, before, after))
        return {
            "in_force": {
                "version": in_force.record.version,
                "label": in_force.record.label,
                "sha256": in_force.record.sha256,
            },
            "candidate": {
                "label": candidate.version,
                "sha256": hashlib.sha256(text.encode()).hexdigest(),
            },
            "units_examined": examined,
            "units_changed": len(changes),
            "dossiers_changed": len({c.root_id for c in changes}),
            "changes": [c.as_dict() for c in changes],
        }


# -- JSON views (used by the API and the CLI) -------------------------------------------------


def event_json(e: DossierEventRecord, *, previous_date: date | None) -> dict[str, Any]:
    """One event as the API shows it; ``previous_date``: the date a correction replaced."""
    return {
        "id": e.id,
        "event": e.event,
        "date": e.event_date.isoformat(),
        "source": e.source,
        "transfer_id": e.transfer_id,
        "reference": e.reference,
        "note": e.note,
        "recorded_by": e.recorded_by,
        "recorded_at": e.recorded_at.isoformat(),
        "correction": previous_date is not None,
        "previous_date": _iso(previous_date),
    }


def history_json(dossier: Dossier) -> list[dict[str, Any]]:
    current: dict[str, date] = {}
    rows = []
    for e in dossier.history:
        previous = current.get(e.event) if e.event in EVENT_NAMES else None
        rows.append(event_json(e, previous_date=previous if previous != e.event_date else None))
        if e.event in EVENT_NAMES:
            current[e.event] = e.event_date
    return rows


def facts_json(dossier: Dossier) -> dict[str, Any]:
    f = dossier.facts
    return {
        "contract_type": f.contract_type or None,
        "infructueux": f.infructueux,
        "sans_suite": f.sans_suite,
        "recurrent": f.recurrent,
        "events": {name: when.isoformat() for name, when in f.events.known()},
        "disputes": [
            {
                "opened": d.opened.isoformat(),
                "closed": _iso(d.closed),
                "days": (d.closed - d.opened).days if d.closed else None,
            }
            for d in f.disputes
        ],
        "dispute_open": f.dispute_open,
    }


def retention_json(
    dossier: Dossier, units: Sequence[UnitRecord], version: ReferentialVersion, *, today: date
) -> dict[str, Any]:
    out_units = []
    due: list[str] = []
    ends: list[date] = []
    pending = 0
    lock_pending = False
    for u in units:
        a = u.appraisal or {}
        is_pending = bool(a.get("pending")) if u.appraisal is not None else False
        suspended = bool(a.get("suspended", False))
        if u.appraisal is not None and u.appraisal_end is None and not suspended:
            pending += 1
        lock_pending = lock_pending or bool(a.get("lock_pending"))
        is_due = (
            u.status == "active"
            and u.appraisal_end is not None
            and u.appraisal_end <= today
            and not suspended
            and u.appraisal is not None
        )
        if is_due:
            due.append(u.id)
        if u.appraisal_end is not None and u.status == "active":
            ends.append(u.appraisal_end)
        out_units.append(
            {
                "id": u.id,
                "title": u.title,
                "level": u.level,
                "category": u.category,
                "package_id": u.package_id,
                "parent_id": u.parent_id,
                "status": u.status,
                "appraisal": u.appraisal,
                "appraisal_end": _iso(u.appraisal_end),
                "access": u.access,
                "access_end": _iso(u.access_end),
                "final_action": a.get("final_action"),
                "review": a.get("review"),
                "start_event": a.get("start_event"),
                "start_date": a.get("start_date"),
                "pending": is_pending,
                "suspended": suspended,
                "inherited": u.appraisal is None and u.appraisal_end is not None,
                "due": is_due,
            }
        )
    later = [e for e in ends if e > today]
    return {
        "dossier_id": dossier.root_id,
        "referential": {"version": version.record.version, "label": version.record.label},
        "facts": facts_json(dossier),
        "units": out_units,
        "due": {
            "today": today.isoformat(),
            "due_units": due,
            "next_end": _iso(min(later, default=None)),
            "last_end": _iso(max(ends, default=None)),
            "pending_units": pending,
            "suspended": dossier.facts.dispute_open,
            "lock_pending": lock_pending,
        },
    }


# Names callers use when building event bodies.
EVENTS = LIFECYCLE_EVENTS
__all__ = [
    "DISPUTE_CLOSED",
    "DISPUTE_OPENED",
    "EVENTS",
    "EventOutcome",
    "LifecycleService",
    "LockReport",
    "RecomputeResult",
]
