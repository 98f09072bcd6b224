"""Who may read a unit's content today: communicability (AccessRule) and disposal (Gone).

Every path that hands out document content asks here: ``GET /v1/objects/{id}/content``
(``RetrievalService``), evidence bundles with objects (``EvidenceService``), and exports
(through ``RetrievalService.require_readable``).

Who is subject to the délais (procurement.md §2.5; Code du patrimoine L213-1, L213-2): a delay
governs the *communication* of archives to anyone but their producer. A platform client
acting for the unit's own organization (the service producteur) reads its own records
whatever the rule; archivists, admins, auditors — every other role, and any role added
later — are subject to it, unless a dérogation (L213-3, ``services/derogations.py``) names
them: an active, unexpired dérogation on the unit or one of its ancestors, granted to the
caller's client, makes a délai (running or pending) readable for that client alone; the
decision then names the dérogation, and so does the read's log entry. A dérogation never
brings back a destroyed or transferred unit, nor opens a rule the service cannot read.

The rules are read at request time, never cached: the events service recomputes
``archive_units.access`` / ``access_end`` when a signature or notification arrives, and the
next read obeys the new dates. Today's date comes from the injected clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date
from typing import Any

from archive_service.core.communicability import (
    PRODUCER,
    AccessDecision,
    access_decision,
    effective_rule,
)
from archive_service.core.derogation import OPENABLE, derogated
from archive_service.errors import AccessRestricted, Gone
from archive_service.ports import (
    Caller,
    Clock,
    DerogationRecord,
    Role,
    TombstoneRecord,
    UnitOfWork,
    UnitRecord,
)
from archive_service.services.holds import ancestor_ids

GONE_STATUSES = frozenset({"destroyed", "transferred"})


def rule_decisions(units: Iterable[UnitRecord], *, today: date) -> dict[str, AccessDecision]:
    """The decision for every unit of a tree (caller-independent), with inheritance."""
    family = list(units)
    parents = {u.id: u.parent_id for u in family}
    rules = {u.id: u.access for u in family}
    ends = {u.id: u.access_end for u in family}
    out: dict[str, AccessDecision] = {}
    for u in family:
        rule, carrier = effective_rule(u.id, parents, rules)
        out[u.id] = access_decision(
            rule,
            today=today,
            recorded_end=ends.get(carrier) if carrier else None,
            inherited_from=carrier if carrier not in (None, u.id) else None,
        )
    return out


def gone_unit(unit: UnitRecord, family: Sequence[UnitRecord]) -> UnitRecord | None:
    """The unit itself or its nearest ancestor that was destroyed or transferred, if any."""
    by_id = {u.id: u for u in family}
    current: UnitRecord | None = unit
    seen: set[str] = set()
    while current is not None and current.id not in seen:
        if current.status in GONE_STATUSES:
            return current
        seen.add(current.id)
        current = by_id.get(current.parent_id) if current.parent_id else None
    return None


def lineage_ids(unit: UnitRecord, tree: Sequence[UnitRecord]) -> list[str]:
    """The unit's id and its ancestors' among ``tree``, nearest first."""
    return [unit.id, *ancestor_ids(unit, tree)]


def covering_derogation(
    derogations: Iterable[DerogationRecord], *, today: date
) -> DerogationRecord | None:
    """Among one client's dérogations on a unit's lineage, the one that lets it read today:
    active (not revoked, ``until`` not passed); of several, the longest-lasting (no end
    first), then the oldest."""
    active = [d for d in derogations if d.active_on(today)]
    if not active:
        return None
    return min(active, key=lambda d: (d.until is not None, -(d.until or today).toordinal()))


def tombstone_summary(unit: UnitRecord, tombstone: TombstoneRecord | None) -> dict[str, Any]:
    """What a 410 answer and the unit view say about a destroyed or transferred unit."""
    out: dict[str, Any] = {"unit_id": unit.id, "unit_status": unit.status, "tombstone": None}
    if tombstone is not None:
        record = tombstone.record
        out["tombstone"] = {
            "outcome": tombstone.outcome,
            "at": tombstone.at.isoformat(),
            "request_id": tombstone.request_id,
            "message_identifier": record.get("message_identifier"),
            "visa": record.get("visa"),
            "certificate": record.get("certificate"),
            "appraisal": record.get("appraisal"),
            "objects": len(record.get("objects") or []),
        }
    return out


class AccessGuard:
    """Communicability and disposal checks over the unit of work, at the clock's date."""

    def __init__(self, *, uow: Callable[[], UnitOfWork], clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def today(self) -> date:
        return self._clock.now().date()

    def family(self, unit: UnitRecord) -> list[UnitRecord]:
        """Every unit of the unit's dossier (for decisions over a whole tree)."""
        with self._uow() as uow:
            return uow.archive.units_of_root(unit.tenant_id, unit.root_id)

    def lineage(self, unit: UnitRecord) -> list[UnitRecord]:
        """The unit and its ancestors, nearest first: all one decision needs (a few primary
        key reads, not the whole dossier, which may hold thousands of units)."""
        chain = [unit]
        seen = {unit.id}
        with self._uow() as uow:
            while chain[-1].parent_id and chain[-1].parent_id not in seen:
                parent = uow.archive.get_unit(unit.tenant_id, chain[-1].parent_id)
                if parent is None:
                    break
                chain.append(parent)
                seen.add(parent.id)
        return chain

    def is_producer(self, caller: Caller, unit: UnitRecord) -> bool:
        """A platform acting for the unit's own organization (its service producteur)."""
        if caller.role is not Role.PLATFORM or caller.tenant_id != unit.tenant_id:
            return False
        with self._uow() as uow:
            org = uow.tenancy.organization_by_siret(caller.tenant_id, unit.organization_siret or "")
        return org is not None and org.id in caller.organization_ids

    def decisions(self, units: Iterable[UnitRecord]) -> dict[str, AccessDecision]:
        return rule_decisions(units, today=self.today())

    def decision(
        self, caller: Caller, unit: UnitRecord, family: Sequence[UnitRecord] | None = None
    ) -> AccessDecision:
        """The decision for ``caller`` reading ``unit``'s content today (``family``: units of
        the dossier already at hand, at least the unit's ancestors)."""
        tree = list(family) if family is not None else self.lineage(unit)
        if all(u.id != unit.id for u in tree):
            tree.append(unit)
        rule = rule_decisions(tree, today=self.today())[unit.id]
        if rule.communicable:
            return rule
        if self.is_producer(caller, unit):
            return replace(rule, communicable=True, reason=PRODUCER)
        if rule.reason in OPENABLE:
            found = self.derogation(caller, unit, tree)
            if found is not None:
                return derogated(
                    rule, derogation_id=found.id, reference=found.reference, until=found.until
                )
        return rule

    def derogation(
        self, caller: Caller, unit: UnitRecord, tree: Sequence[UnitRecord]
    ) -> DerogationRecord | None:
        """The caller's active dérogation on the unit or an ancestor (``tree``: at least the
        unit's lineage), if any."""
        if caller.tenant_id != unit.tenant_id:
            return None
        with self._uow() as uow:
            mine = uow.derogations.unrevoked_for(
                unit.tenant_id, caller.client_id, lineage_ids(unit, tree)
            )
        return covering_derogation(mine, today=self.today())

    def gone(
        self, unit: UnitRecord, family: Sequence[UnitRecord] | None = None
    ) -> dict[str, Any] | None:
        """The tombstone summary when the unit (or an ancestor) was destroyed/transferred."""
        tree = family if family is not None else self.lineage(unit)
        dead = gone_unit(unit, tree)
        if dead is None:
            return None
        with self._uow() as uow:
            tombstone = uow.disposal.tombstone(dead.tenant_id, dead.id)
        return tombstone_summary(dead, tombstone)


def gone_error(what: str, summary: Mapping[str, Any]) -> Gone:
    status = summary.get("unit_status")
    return Gone(
        f"{what} is gone: its archive unit {summary.get('unit_id')} was {status} "
        "after a disposal with the archives authority's visa",
        extra=dict(summary),
    )


def restricted_error(what: str, decision: AccessDecision) -> AccessRestricted:
    return AccessRestricted(f"{what} is {decision.explanation}", extra=decision.members())
