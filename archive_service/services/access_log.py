"""Logbook entries for what callers do outside a transaction of their own: reads (content,
manifest, token, reply, unit metadata), searches, and refused or failed attempts.

A read changes nothing, so it has no transaction to ride in: its entry is one insert in a short
transaction of its own, committed before the answer leaves (no bytes without their entry).

Outcomes: ``OK`` the operation happened; ``REFUSED`` the service declined (the caller may not,
or asked for something unsatisfiable); ``FAILED`` the service could not (storage unreachable).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any, NoReturn, TypeVar

from archive_service.errors import ArchiveError, Forbidden
from archive_service.ports import Caller, Clock, LogEvent, UnitOfWork

OK = "OK"
REFUSED = "REFUSED"
FAILED = "FAILED"


T = TypeVar("T")


def caller_details(caller: Caller) -> dict[str, str]:
    """Who did it, beyond the client id that is the entry's actor."""
    return {"actor_role": caller.role.value, "actor_name": caller.name}


class AccessLog:
    """Appends one caller's entry in its own short transaction."""

    def __init__(self, *, uow: Callable[[], UnitOfWork], clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def append(
        self,
        caller: Caller,
        event_type: str,
        *,
        subject_type: str,
        subject_id: str,
        details: Mapping[str, Any],
        outcome: str = OK,
    ) -> None:
        with self._uow() as uow:
            uow.logbook.append(
                LogEvent(
                    tenant_id=caller.tenant_id,
                    at=self._clock.now(),
                    event_type=event_type,
                    outcome=outcome,
                    subject_type=subject_type,
                    subject_id=subject_id,
                    actor=caller.client_id,
                    details={**caller_details(caller), **details},
                )
            )
            uow.commit()

    def traced(
        self,
        caller: Caller,
        event_type: str,
        *,
        subject: tuple[str, str],
        read: Callable[[], T],
        details: Callable[[T], Mapping[str, Any]],
    ) -> T:
        """Run ``read`` for ``caller`` and log it: ``details(result)`` when it answered, or
        REFUSED (with the reason) when the caller may not; any other error propagates."""
        try:
            found = read()
        except Forbidden as exc:
            self.append(
                caller,
                event_type,
                subject_type=subject[0],
                subject_id=subject[1],
                details={"reason": exc.message},
                outcome=REFUSED,
            )
            raise
        self.append(
            caller,
            event_type,
            subject_type=subject[0],
            subject_id=subject[1],
            details=details(found),
        )
        return found

    def forbid(
        self,
        caller: Caller,
        event_type: str,
        *,
        unit_id: str,
        details: Mapping[str, Any],
        reason: str,
        message: str,
    ) -> NoReturn:
        """Raise ``Forbidden(message)`` for a role that may not read ``event_type``'s kind of
        record, logged ``REFUSED`` against the unit when it exists (``unit_id`` given): the
        answer is the same either way, so nothing is disclosed."""
        if unit_id:
            self.append(
                caller,
                event_type,
                subject_type="archive_unit",
                subject_id=unit_id,
                details={**details, "reason": reason},
                outcome=REFUSED,
            )
        raise Forbidden(message)

    def failed(
        self,
        caller: Caller,
        event_type: str,
        exc: ArchiveError,
        *,
        subject_type: str,
        subject_id: str,
        details: Mapping[str, Any],
    ) -> None:
        """Record that ``exc`` stopped the operation; never hides ``exc`` behind a failure to
        record it (the caller re-raises ``exc``)."""
        with suppress(ArchiveError):
            self.append(
                caller,
                event_type,
                subject_type=subject_type,
                subject_id=subject_id,
                details={**details, "reason": exc.message},
                outcome=FAILED,
            )
