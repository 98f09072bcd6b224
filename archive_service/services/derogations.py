"""Dérogations (Code du patrimoine L213-3): recording, revoking and listing them.

The administration may authorise the consultation of archives before their délai de
communicabilité expires, after the archives authority's agreement, for a named person and
named documents (procurement.md §2.5, §5). An archivist or admin records that decision here:
the unit it covers (with its subtree), the client (API key) it is granted to, the decision's
reference and date, the reason, and an optional last day. It can be revoked (who, when, why).
``AccessGuard`` (services/communicability.py) reads them on every content read.

Refused, with nothing written: a role other than archivist or admin (403); an unknown unit or
client, or one of another tenant (404); a grantor granting to themselves (403: the same client,
or the same person by name from the command line); a grantee that could not use it (auditors
never read content; platforms read only their own organizations' records); a decision dated
after today, or a last day already past, by the injected clock (422); a unit destroyed or
transferred (409). Granting and revoking are logbook entries (``derogation.granted``,
``derogation.revoked``) in the same transaction as the record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import NoReturn

from archive_service.core.ids import new_id
from archive_service.errors import Conflict, Forbidden, InvalidInput, NotFound
from archive_service.ports import (
    Caller,
    Clock,
    DerogationRecord,
    LogEvent,
    Role,
    UnitOfWork,
)
from archive_service.services.access_log import AccessLog, caller_details
from archive_service.services.communicability import lineage_ids

_logger = logging.getLogger(__name__)

WRITE_ROLES = frozenset({Role.ARCHIVIST, Role.ADMIN})
READ_ROLES = frozenset({Role.ARCHIVIST, Role.ADMIN, Role.AUDITOR})
GRANTEE_ROLES = frozenset({Role.ARCHIVIST, Role.ADMIN})
MAX_REASON = 2000
MAX_REFERENCE = 300


def derogation_json(d: DerogationRecord, *, today: date) -> dict[str, object]:
    return {
        "id": d.id,
        "unit_id": d.unit_id,
        "root_id": d.root_id,
        "client_id": d.client_id,
        "reference": d.reference,
        "decision_date": d.decision_date.isoformat(),
        "reason": d.reason,
        "until": d.until.isoformat() if d.until else None,
        "granted_by": d.granted_by,
        "granted_at": d.granted_at.isoformat(),
        "active": d.active_on(today),
        "revoked_by": d.revoked_by,
        "revoked_at": d.revoked_at.isoformat() if d.revoked_at else None,
        "revoke_reason": d.revoke_reason,
    }


@dataclass(frozen=True, slots=True)
class DerogationView:
    """GET …/derogations: those granted on the unit (revoked ones too) and the active ones
    granted on an ancestor, as of ``today``."""

    unit_id: str
    today: date
    on_unit: tuple[DerogationRecord, ...]
    inherited: tuple[DerogationRecord, ...]

    def json(self) -> dict[str, object]:
        return {
            "unit_id": self.unit_id,
            "as_of": self.today.isoformat(),
            "derogations": [derogation_json(d, today=self.today) for d in self.on_unit],
            "inherited": [derogation_json(d, today=self.today) for d in self.inherited],
        }


def _text(value: str | None, what: str, limit: int) -> str:
    text = " ".join((value or "").split())
    if not text:
        raise InvalidInput(f"a dérogation needs {what}")
    if len(text) > limit:
        raise InvalidInput(f"{what} is limited to {limit} characters")
    return text


class DerogationService:
    def __init__(self, *, uow: Callable[[], UnitOfWork], clock: Clock) -> None:
        self._uow = uow
        self._clock = clock
        self._log = AccessLog(uow=uow, clock=clock)

    def today(self) -> date:
        return self._clock.now().date()

    @staticmethod
    def _may_write(caller: Caller) -> None:
        if caller.role not in WRITE_ROLES:
            raise Forbidden(
                f"role {caller.role.value!r} may not grant or revoke dérogations "
                "(archivist or admin)"
            )

    # -- reading (archivists, admins, auditors), each logged -------------------------------

    def _refuse(
        self, caller: Caller, event: str, unit_id: str, details: dict[str, str]
    ) -> NoReturn:
        """403 for a role that may not read dérogations; see :meth:`AccessLog.forbid`."""
        self._log.forbid(
            caller,
            event,
            unit_id=unit_id,
            details=details,
            reason=f"role {caller.role.value} may not read dérogations",
            message=f"role {caller.role.value!r} may not read dérogations",
        )

    def view(self, caller: Caller, unit_id: str) -> DerogationView:
        """The dérogations on ``unit_id`` and the active ones above it (logged
        ``derogations.read``)."""
        today = self.today()
        with self._uow() as uow:
            unit = uow.archive.get_unit(caller.tenant_id, unit_id)
        if caller.role not in READ_ROLES:
            self._refuse(caller, "derogations.read", unit_id if unit else "", {})
        if unit is None:
            raise NotFound(f"no archive unit {unit_id}")
        with self._uow() as uow:
            family = uow.archive.units_of_root(caller.tenant_id, unit.root_id)
            on_unit = uow.derogations.of_unit(caller.tenant_id, unit_id)
            inherited = [
                d
                for ancestor in lineage_ids(unit, family)[1:]
                for d in uow.derogations.of_unit(caller.tenant_id, ancestor)
                if d.active_on(today)
            ]
        self._log.append(
            caller,
            "derogations.read",
            subject_type="archive_unit",
            subject_id=unit_id,
            details={
                "root_id": unit.root_id,
                "derogations": [d.id for d in on_unit],
                "inherited": [d.id for d in inherited],
            },
        )
        return DerogationView(unit_id, today, tuple(on_unit), tuple(inherited))

    def get(self, caller: Caller, derogation_id: str) -> DerogationRecord:
        """One dérogation (logged ``derogation.read`` against the unit it covers)."""
        with self._uow() as uow:
            found = uow.derogations.get(caller.tenant_id, derogation_id)
        if caller.role not in READ_ROLES:
            unit_id = found.unit_id if found else ""
            self._refuse(caller, "derogation.read", unit_id, {"derogation_id": derogation_id})
        if found is None:
            raise NotFound(f"no dérogation {derogation_id}")
        self._log.append(
            caller,
            "derogation.read",
            subject_type="archive_unit",
            subject_id=found.unit_id,
            details={"derogation_id": found.id, "client_id": found.client_id},
        )
        return found

    # -- granting and revoking -------------------------------------------------------------

    def grant(
        self,
        caller: Caller,
        unit_id: str,
        *,
        client_id: str,
        reference: str | None,
        decision_date: date | None,
        reason: str | None,
        until: date | None = None,
    ) -> DerogationRecord:
        """Record a dérogation on ``unit_id`` (and its subtree) for ``client_id``."""
        self._may_write(caller)
        reference = _text(reference, "the decision's reference", MAX_REFERENCE)
        reason = _text(reason, "a reason", MAX_REASON)
        client_id = (client_id or "").strip()
        if not client_id:
            raise InvalidInput("a dérogation needs the client (API key client id) it is granted to")
        now = self._clock.now()
        today = now.date()
        if decision_date is None:
            raise InvalidInput("a dérogation needs the date of the decision")
        if decision_date > today:
            raise InvalidInput(
                f"the decision date {decision_date.isoformat()} is after today "
                f"({today.isoformat()})",
                extra={"decision_date": decision_date.isoformat(), "today": today.isoformat()},
            )
        if until is not None and until < today:
            raise InvalidInput(
                f"until {until.isoformat()} is already past (today is {today.isoformat()})",
                extra={"until": until.isoformat(), "today": today.isoformat()},
            )
        with self._uow() as uow:
            unit = uow.archive.get_unit(caller.tenant_id, unit_id)
            if unit is None:
                raise NotFound(f"no archive unit {unit_id}")
            client = uow.tenancy.client_by_id(client_id)
            if client is None or client.tenant_id != caller.tenant_id:
                raise NotFound(f"no client {client_id}")
            if client.id == caller.client_id or (
                client.name.strip().casefold() == caller.name.strip().casefold()
            ):
                raise Forbidden(
                    "a dérogation cannot be granted by its own beneficiary",
                    extra={"rule": "grantor-cannot-be-grantee", "client_id": client.id},
                )
            if client.role not in GRANTEE_ROLES:
                raise InvalidInput(
                    f"client {client.id} has role {client.role.value!r}: a dérogation is for "
                    "an archivist or admin key (auditors never read content; a platform reads "
                    "only its own organizations' records)",
                    extra={"client_role": client.role.value},
                )
            if client.revoked:
                raise Conflict(f"the API key of client {client.id} is revoked")
            if unit.status != "active":
                raise Conflict(
                    f"archive unit {unit_id} is {unit.status}: there is nothing left to read",
                    extra={"unit_status": unit.status},
                )
            derogation = DerogationRecord(
                id=new_id("drg", now),
                tenant_id=caller.tenant_id,
                unit_id=unit_id,
                root_id=unit.root_id,
                client_id=client.id,
                reference=reference,
                decision_date=decision_date,
                reason=reason,
                granted_by=caller.name,
                granted_by_client=caller.client_id,
                granted_at=now,
                until=until,
            )
            uow.derogations.add(derogation)
            uow.logbook.append(
                LogEvent(
                    tenant_id=caller.tenant_id,
                    at=now,
                    event_type="derogation.granted",
                    outcome="OK",
                    subject_type="archive_unit",
                    subject_id=unit_id,
                    actor=caller.client_id,
                    details={
                        **caller_details(caller),
                        "derogation_id": derogation.id,
                        "client_id": client.id,
                        "client_name": client.name,
                        "reference": reference,
                        "decision_date": decision_date.isoformat(),
                        "until": until.isoformat() if until else None,
                        "reason": reason,
                    },
                )
            )
            uow.commit()
        _logger.info(
            "derogation.granted",
            extra={"derogation_id": derogation.id, "unit_id": unit_id, "client_id": client.id},
        )
        return derogation

    def revoke(self, caller: Caller, derogation_id: str, *, reason: str | None) -> DerogationRecord:
        """Revoke the dérogation: its grantee is subject to the délai again from now on."""
        self._may_write(caller)
        reason = _text(reason, "a reason", MAX_REASON)
        now = self._clock.now()
        with self._uow() as uow:
            found = uow.derogations.get(caller.tenant_id, derogation_id)
            if found is None:
                raise NotFound(f"no dérogation {derogation_id}")
            if found.revoked_at is not None:
                raise Conflict(
                    f"dérogation {derogation_id} was already revoked",
                    extra={"revoked_at": found.revoked_at.isoformat()},
                )
            if not uow.derogations.revoke(derogation_id, by=caller.name, at=now, reason=reason):
                raise Conflict(f"dérogation {derogation_id} was revoked meanwhile")
            uow.logbook.append(
                LogEvent(
                    tenant_id=caller.tenant_id,
                    at=now,
                    event_type="derogation.revoked",
                    outcome="OK",
                    subject_type="archive_unit",
                    subject_id=found.unit_id,
                    actor=caller.client_id,
                    details={
                        **caller_details(caller),
                        "derogation_id": derogation_id,
                        "client_id": found.client_id,
                        "reference": found.reference,
                        "reason": reason,
                    },
                )
            )
            uow.commit()
            revoked = uow.derogations.get(caller.tenant_id, derogation_id)
        assert revoked is not None
        _logger.info("derogation.revoked", extra={"derogation_id": derogation_id})
        return revoked
