"""Versioned retention référentiels, one history per tenant (issue 5, item 4).

Version 1 of a tenant is the default shipped with the service
(``archive_service/data/retention_referential.json``, procurement.md §2.4), installed the first
time the tenant needs one. An administrator replaces it with a new version; the highest
version is *in force*. A change applies to new computations only: a unit keeps the rules it
has until an event of its dossier, a new package of it, or an explicit
``archive-service retention recompute`` recomputes them (each logged).

Every version keeps the exact text that was sent, its SHA-256, who made it, when and why.
A text that does not validate (:meth:`Referential.from_json`) writes nothing.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

from archive_service.core.retention import Referential, ReferentialInvalid
from archive_service.errors import Conflict, Forbidden, InvalidInput, Issue, NotFound
from archive_service.ports import (
    Caller,
    Clock,
    LogEvent,
    ReferentialVersionRecord,
    Role,
    UnitOfWork,
)
from archive_service.services.access_log import REFUSED, AccessLog, caller_details

READ_ROLES = frozenset({Role.ARCHIVIST, Role.AUDITOR, Role.ADMIN})
DEFAULT_COMMENT = "référentiel par défaut livré avec archive-service (procurement.md §2.4)"


@dataclass(frozen=True, slots=True)
class ReferentialVersion:
    """A stored version and the référentiel it parses to."""

    record: ReferentialVersionRecord
    referential: Referential


def _issue(problem: str) -> Issue:
    where, _, what = problem.partition(": ")
    return Issue("invalid-referential", what or where, where if what else None)


def parse_referential(text: str) -> Referential:
    """The référentiel of ``text``; ``InvalidInput`` listing every problem otherwise."""
    try:
        return Referential.from_json(text)
    except ReferentialInvalid as exc:
        raise InvalidInput(
            f"the retention référentiel is invalid ({len(exc.problems)} problems); nothing "
            "was written",
            issues=[_issue(problem) for problem in exc.problems],
        ) from None


def cli_caller(tenant_id: str, operator: str) -> Caller:
    """The administrator running a command on the server (no API key: ``cli`` is the actor,
    the operator's login is in the entry's details)."""
    return Caller(client_id="cli", tenant_id=tenant_id, role=Role.ADMIN, name=operator)


class ReferentialService:
    def __init__(self, *, uow: Callable[[], UnitOfWork], clock: Clock, default_text: str) -> None:
        self._uow = uow
        self._clock = clock
        self._log = AccessLog(uow=uow, clock=clock)
        # The shipped default must be valid: a broken installation fails at start, not later.
        parse_referential(default_text)
        self._default = default_text
        self._parsed: dict[str, Referential] = {}
        self._lock = threading.Lock()

    def tenant_id(self, name: str) -> str:
        """The id of the tenant called ``name`` (administration commands name tenants)."""
        with self._uow() as uow:
            tenant = uow.tenancy.tenant_by_name(name)
        if tenant is None:
            raise InvalidInput(f"no tenant named {name!r}")
        return tenant.id

    # -- the version in force --------------------------------------------------------------

    def _parse(self, record: ReferentialVersionRecord) -> Referential:
        with self._lock:
            found = self._parsed.get(record.sha256)
        if found is None:
            found = parse_referential(record.text)
            with self._lock:
                self._parsed[record.sha256] = found
        return found

    def in_force(self, tenant_id: str) -> ReferentialVersion:
        """The tenant's highest version; installs the shipped default as version 1 first if
        the tenant has none (logged ``referential.installed``)."""
        with self._uow() as uow:
            record = uow.lifecycle.referential_version(tenant_id)
        if record is None:
            record = self._install_default(tenant_id)
        return ReferentialVersion(record, self._parse(record))

    def referential_for(self, tenant_id: str) -> Referential:
        """For the ingest: the référentiel in force for ``tenant_id``."""
        return self.in_force(tenant_id).referential

    def _install_default(self, tenant_id: str) -> ReferentialVersionRecord:
        now = self._clock.now()
        record = ReferentialVersionRecord(
            tenant_id=tenant_id,
            version=1,
            label=Referential.from_json(self._default).version,
            text=self._default,
            sha256=hashlib.sha256(self._default.encode()).hexdigest(),
            created_at=now,
            comment=DEFAULT_COMMENT,
            created_by="archive-service",
        )
        with self._uow() as uow:
            if uow.lifecycle.add_referential(record):
                uow.logbook.append(
                    LogEvent(
                        tenant_id=tenant_id,
                        at=now,
                        event_type="referential.installed",
                        outcome="OK",
                        subject_type="referential",
                        subject_id="retention:1",
                        details={
                            "version": 1,
                            "label": record.label,
                            "sha256": record.sha256,
                            "comment": DEFAULT_COMMENT,
                        },
                    )
                )
                uow.commit()
        with self._uow() as uow:
            found = uow.lifecycle.referential_version(tenant_id)
        assert found is not None
        return found

    # -- reads (archivist, auditor, admin), each logged --------------------------------------

    def _may_read(self, caller: Caller, event: str) -> None:
        """A platform may not read the référentiel: logged ``REFUSED`` (it exists in every
        tenant), then 403."""
        if caller.role not in READ_ROLES:
            self._log.append(
                caller,
                event,
                subject_type="referential",
                subject_id="retention",
                details={"reason": f"role {caller.role.value} may not read the référentiel"},
                outcome=REFUSED,
            )
            raise Forbidden(f"role {caller.role.value!r} may not read the retention référentiel")

    def _logged(self, caller: Caller, found: ReferentialVersion, in_force: int) -> None:
        self._log.append(
            caller,
            "referential.read",
            subject_type="referential",
            subject_id=f"retention:{found.record.version}",
            details={
                "version": found.record.version,
                "sha256": found.record.sha256,
                "in_force": found.record.version == in_force,
            },
        )

    def current(self, caller: Caller) -> ReferentialVersion:
        """The version in force (logged ``referential.read``)."""
        self._may_read(caller, "referential.read")
        found = self.in_force(caller.tenant_id)
        self._logged(caller, found, found.record.version)
        return found

    def version(self, caller: Caller, version: int) -> ReferentialVersion:
        """Version ``version`` (logged ``referential.read``; an unknown one is 404, not
        logged: there is nothing to name)."""
        self._may_read(caller, "referential.read")
        in_force = self.in_force(caller.tenant_id).record.version
        with self._uow() as uow:
            record = uow.lifecycle.referential_version(caller.tenant_id, version)
        if record is None:
            raise NotFound(f"no version {version} of the retention référentiel")
        found = ReferentialVersion(record, self._parse(record))
        self._logged(caller, found, in_force)
        return found

    def versions(self, caller: Caller) -> list[ReferentialVersionRecord]:
        """Every version, oldest first (logged ``referential.versions_read``)."""
        self._may_read(caller, "referential.versions_read")
        self.in_force(caller.tenant_id)
        with self._uow() as uow:
            found = uow.lifecycle.referential_versions(caller.tenant_id)
        self._log.append(
            caller,
            "referential.versions_read",
            subject_type="referential",
            subject_id="retention",
            details={"versions": len(found), "in_force": found[-1].version if found else None},
        )
        return found

    # -- replace (admin) ---------------------------------------------------------------------

    def replace(self, caller: Caller, text: str, *, comment: str | None) -> ReferentialVersion:
        """Make ``text`` the tenant's référentiel in force, as a new version (logged
        ``referential.replaced``). Refused with nothing written: another role (403), a text
        that does not validate or no comment (422), the very text in force (409)."""
        if caller.role is not Role.ADMIN:
            raise Forbidden(
                f"role {caller.role.value!r} may not replace the retention référentiel (admin)"
            )
        if not comment or not comment.strip():
            raise InvalidInput(
                "say why the référentiel changes (a comment)",
                issues=[Issue("missing-comment", "a comment is required", "comment")],
            )
        referential = parse_referential(text)
        current = self.in_force(caller.tenant_id).record
        sha256 = hashlib.sha256(text.encode()).hexdigest()
        if sha256 == current.sha256:
            raise Conflict(
                f"this text is version {current.version}, already in force; nothing written",
                extra={"version": current.version, "sha256": sha256},
            )
        now = self._clock.now()
        record = ReferentialVersionRecord(
            tenant_id=caller.tenant_id,
            version=current.version + 1,
            label=referential.version,
            text=text,
            sha256=sha256,
            created_at=now,
            comment=comment.strip(),
            created_by=caller.name,
        )
        with self._uow() as uow:
            if not uow.lifecycle.add_referential(record):
                raise Conflict(
                    f"version {record.version} was just created by someone else; read it and "
                    "try again"
                )
            uow.logbook.append(
                LogEvent(
                    tenant_id=caller.tenant_id,
                    at=now,
                    event_type="referential.replaced",
                    outcome="OK",
                    subject_type="referential",
                    subject_id=f"retention:{record.version}",
                    actor=caller.client_id,
                    details={
                        **caller_details(caller),
                        "version": record.version,
                        "label": record.label,
                        "sha256": sha256,
                        "previous_version": current.version,
                        "previous_sha256": current.sha256,
                        "comment": record.comment,
                    },
                )
            )
            uow.commit()
        with self._lock:
            self._parsed[sha256] = referential
        return ReferentialVersion(record, referential)
