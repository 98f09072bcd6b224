"""Tenants, organizations, clients and API keys; authentication of every request.

An API key reads ``ask_<key id>_<secret>``. Only an HMAC-SHA256 of the secret (keyed with a
server-side pepper) is stored, so a copy of the database gives no usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from archive_service.core.ids import new_id
from archive_service.core.procurement import is_valid_siret
from archive_service.errors import Forbidden, InvalidInput, Issue, NotAuthenticated, NotFound
from archive_service.ports import (
    Caller,
    ClientRecord,
    Clock,
    LogEvent,
    OrganizationRecord,
    Role,
    TenantRecord,
    UnitOfWork,
)
from archive_service.services.access_log import caller_details

KEY_PREFIX = "ask"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    client_id: str
    role: Role
    key: str


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    tenant_id: str
    tenant_name: str
    organizations: tuple[OrganizationRecord, ...]
    keys: tuple[IssuedKey, ...]


def parse_org_spec(spec: str) -> tuple[str, str]:
    """``SIRET:Name`` → (siret, name); the SIRET checksum is verified."""
    siret, sep, name = spec.partition(":")
    siret = siret.strip().replace(" ", "")
    if not sep or not name.strip():
        raise InvalidInput(
            f"organization {spec!r} must be given as SIRET:NAME",
            issues=[Issue("bad-organization", "expected SIRET:NAME", spec)],
        )
    if not is_valid_siret(siret):
        raise InvalidInput(
            f"{siret!r} is not a valid SIRET (14 digits with a valid checksum)",
            issues=[Issue("invalid-siret", "invalid SIRET", spec)],
        )
    return siret, name.strip()


class TenancyService:
    def __init__(self, *, uow: Callable[[], UnitOfWork], clock: Clock, pepper: bytes) -> None:
        self._uow = uow
        self._clock = clock
        self._pepper = pepper

    def _hash(self, secret: str) -> str:
        return hmac.new(self._pepper, secret.encode(), hashlib.sha256).hexdigest()

    def _issue(
        self, tenant_id: str, role: Role, name: str, orgs: frozenset[str]
    ) -> tuple[ClientRecord, str]:
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = ClientRecord(
            id=new_id("cl", self._clock.now()),
            tenant_id=tenant_id,
            name=name,
            role=role,
            key_id=key_id,
            key_hash=self._hash(secret),
            organization_ids=orgs,
        )
        return record, f"{KEY_PREFIX}_{key_id}_{secret}"

    def bootstrap(
        self,
        tenant_name: str,
        organizations: Sequence[str],
        *,
        archival_agency: str | None = None,
        operator: str | None = None,
    ) -> BootstrapResult:
        """Create (or reuse) a tenant and its organizations, and issue one key per role.

        Each creation is logged in the tenant's logbook (``tenant.created``,
        ``organization.created``, ``apikey.created``) in the same transaction; ``operator``
        says who ran it (an administration command has no API key to be the actor).
        """
        if not tenant_name.strip():
            raise InvalidInput("tenant name must not be empty")
        specs = [parse_org_spec(s) for s in organizations]
        now = self._clock.now()
        by = {"operator": operator} if operator else {}
        with self._uow() as uow:
            found = uow.tenancy.tenant_by_name(tenant_name)
            tenant = found or TenantRecord(
                id=new_id("tn", now),
                name=tenant_name,
                archival_agency_identifier=archival_agency or tenant_name,
            )

            def log(event: str, subject_type: str, subject_id: str, **details: str) -> None:
                uow.logbook.append(
                    LogEvent(
                        tenant_id=tenant.id,
                        at=now,
                        event_type=event,
                        outcome="OK",
                        subject_type=subject_type,
                        subject_id=subject_id,
                        details={**details, **by},
                    )
                )

            if found is None:
                uow.tenancy.add_tenant(tenant, at=now)
                log(
                    "tenant.created",
                    "tenant",
                    tenant.id,
                    name=tenant.name,
                    archival_agency=tenant.archival_agency_identifier,
                )
            orgs: list[OrganizationRecord] = []
            for siret, name in specs:
                org = uow.tenancy.organization_by_siret(tenant.id, siret)
                if org is None:
                    org = OrganizationRecord(
                        id=new_id("org", now), tenant_id=tenant.id, siret=siret, name=name
                    )
                    uow.tenancy.add_organization(org, at=now)
                    log("organization.created", "organization", org.id, siret=siret, name=name)
                orgs.append(org)
            keys: list[IssuedKey] = []
            for role in Role:
                allowed = frozenset(o.id for o in orgs) if role is Role.PLATFORM else frozenset()
                client, key = self._issue(tenant.id, role, f"{tenant_name} {role.value}", allowed)
                uow.tenancy.add_client(client, at=now)
                keys.append(IssuedKey(client.id, role, key))
                log(
                    "apikey.created",
                    "client",
                    client.id,
                    role=role.value,
                    key_id=client.key_id,
                    name=client.name,
                )
            uow.commit()
        return BootstrapResult(tenant.id, tenant.name, tuple(orgs), tuple(keys))

    def authenticate(self, key: str | None) -> Caller:
        """The caller behind an API key; ``NotAuthenticated`` for anything else."""
        if not key:
            raise NotAuthenticated("missing API key (Authorization: Bearer <key>)")
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != KEY_PREFIX:
            raise NotAuthenticated("malformed API key")
        _, key_id, secret = parts
        with self._uow() as uow:
            client = uow.tenancy.client_by_key_id(key_id)
        if (
            client is None
            or client.revoked
            or not hmac.compare_digest(client.key_hash, self._hash(secret))
        ):
            raise NotAuthenticated("unknown or revoked API key")
        return Caller(
            client_id=client.id,
            tenant_id=client.tenant_id,
            role=client.role,
            name=client.name,
            organization_ids=client.organization_ids,
        )

    def revoke_key(
        self, key: str, *, by: Caller | None = None, operator: str | None = None
    ) -> tuple[ClientRecord, bool]:
        """Revoke an API key, named by its key id (``ask_<key id>_…``) or its client id.

        ``by`` is the admin key asking through the API: it may revoke keys of its own tenant
        only (another tenant's key is not found). Without ``by``, an operator's command, any
        tenant's. Returns the client and whether this call revoked it (False: it already was,
        and nothing is logged again). Logged ``apikey.revoked`` in the same transaction.
        """
        if by is not None and by.role is not Role.ADMIN:
            raise Forbidden(f"role {by.role.value!r} may not revoke API keys")
        now = self._clock.now()
        with self._uow() as uow:
            client = uow.tenancy.client_by_key_id(key) or uow.tenancy.client_by_id(key)
            if client is None or (by is not None and client.tenant_id != by.tenant_id):
                raise NotFound(f"no API key {key}")
            revoked = uow.tenancy.revoke_client(client.id, at=now)
            if revoked:
                details: dict[str, str] = {
                    "key_id": client.key_id,
                    "role": client.role.value,
                    "name": client.name,
                }
                if by is not None:
                    details.update(caller_details(by))
                if operator:
                    details["operator"] = operator
                uow.logbook.append(
                    LogEvent(
                        tenant_id=client.tenant_id,
                        at=now,
                        event_type="apikey.revoked",
                        outcome="OK",
                        subject_type="client",
                        subject_id=client.id,
                        actor=by.client_id if by else None,
                        details=details,
                    )
                )
            uow.commit()
        return client, revoked
