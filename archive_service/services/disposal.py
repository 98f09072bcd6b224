"""Disposal with the archives authority's visa (Code du patrimoine R212-14), and the transfer
of kept units to the definitive archives (issue 5, items 6 and 7).

A request (``disposal_requests``) goes through these steps, each one logged:

1. **Propose** (archivist): the units due — DUA ended by the clock's today, the final action
   of the request's kind (``destroy``: Destroy; ``transfer``: Keep, and Keep + review only
   where the archivist selected them; Keep + review units an archivist selects may also go
   to a destroy request: that is the "tri"), not covered by an active legal hold, not in
   another open request. Granularity: the units whose rule ended (documents), plus a phase
   or dossier node once everything under it goes (in this request or already gone) and it
   has no objects of its own. The SEDA ``AuthorizationControlAuthorityRequest`` (validated
   against the official XSD), the PDF and CSV bordereaux are stored write-once in every
   offer under ``tenants/{t}/disposal/{request}/`` and recorded with their digests.
   Proposals of one tenant serialize on the tenant's row at their commit: a unit another
   request took meanwhile refuses the later one (409), so no unit is ever in two open
   requests.
2. **Visa**: an archivist enters the authority's decision and reference, or posts its
   ``AuthorizationControlAuthorityRequestReply`` (validated; its ``MessageRequestIdentifier``
   must be the request's). The person who proposed (same client, or same name) cannot record
   the visa: one person alone cannot destroy public archives.
3. **Execute** (destroy, after an approved visa) or **confirm** (transfer, after the
   definitive archives' ``ArchiveTransferReply`` OK): everything is checked first — no active
   hold, every copy's Object Lock retention over in real time (the S3 server's time, not the
   service clock), no legal hold on a copy — and the request is refused (409) with the list of
   what blocks, nothing deleted. Then the request is marked ``executing`` and every version
   of every copy is purged from every offer. Only once storage confirmed it does one
   transaction mark the units ``destroyed`` (or ``transferred``), write their tombstones
   (ids, digests, rule, visa), forget the purged copies (so audits do not report them
   missing) and the search entries of gone dossiers. A failure midway leaves the request
   ``executing``: running execute again resumes (purging is idempotent).
4. **Certificate**: the SEDA ``ArchiveDestructionNotification`` and its PDF, each with a
   detached Ed25519 signature by the service's logbook key and an RFC 3161 token over its
   SHA-256, stored write-once in every offer. Issued again (same bytes for the message) by a
   re-run if it was interrupted.

Every document a step stores (the proposal's, a visa or transfer reply, the certificate's)
is written unlocked, recorded by the step's commit, and only then locked with Object Lock:
a step that fails before its commit (the commit included) deletes what it wrote, so no
orphan object is left, locked or not. A lock that fails after the commit is logged and made
again by the request's next step (locking only ever extends). The transfer zip is handed out
only once its export is recorded.

A package whose every unit is gone after an execution has its manifest and token purged too:
they describe only destroyed units (titles, digests) and keeping them would keep what the
visa allowed to destroy; the tombstones and the signed certificate are the proof that stays.
A package that still has an active unit keeps them (its remaining units' evidence needs them).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from archive_service.core.ids import new_id
from archive_service.core.seda.lifecycle import (
    AuthorizationRequestInput,
    DestructionNotificationInput,
    LifecycleObject,
    LifecycleUnit,
    build_authorization_request,
    build_destruction_notification,
    parse_authorization_reply,
    parse_transfer_reply,
)
from archive_service.core.seda.names import SedaVersion
from archive_service.core.seda.validate import SedaValidator
from archive_service.core.seda.xmlsafe import parse_untrusted, seda_version_of
from archive_service.core.timestamp import verify_timestamp
from archive_service.errors import (
    ArchiveError,
    Conflict,
    Forbidden,
    IntegrityFailure,
    InvalidInput,
    Issue,
    NotFound,
    SedaInvalid,
    TimestampInvalid,
    Unavailable,
)
from archive_service.ports import (
    BlobStore,
    Caller,
    Clock,
    CopyRecord,
    DisposalRequestRecord,
    HoldRecord,
    LockingBlobStore,
    LogEvent,
    ObjectRecord,
    RequestStatus,
    RetentionReader,
    Role,
    TimestampAuthority,
    TombstoneRecord,
    UnitOfWork,
    UnitRecord,
)
from archive_service.services.access_log import REFUSED, AccessLog, caller_details
from archive_service.services.holds import covering_holds, subtree_ids
from archive_service.services.lifecycle_documents import (
    bordereau_csv,
    bordereau_pdf,
    certificate_pdf,
)

_logger = logging.getLogger(__name__)

WRITE_ROLES = frozenset({Role.ARCHIVIST, Role.ADMIN})
READ_ROLES = frozenset({Role.ARCHIVIST, Role.ADMIN, Role.AUDITOR})
KINDS = ("destroy", "transfer")
DEFAULT_CONTROL_AUTHORITY = "Archives départementales (contrôle scientifique et technique)"
MAX_TEXT = 2000
#: Keys of the request's documents in storage: ``tenants/{t}/disposal/{request}/{name}``.
DOCUMENT_TYPES = {
    "request.xml": "application/xml",
    "bordereau.pdf": "application/pdf",
    "bordereau.csv": "text/csv; charset=utf-8",
    "visa-reply.xml": "application/xml",
    "transfer-reply.xml": "application/xml",
    "certificate.xml": "application/xml",
    "certificate.xml.sig": "application/octet-stream",
    "certificate.xml.tsr": "application/timestamp-reply",
    "certificate.pdf": "application/pdf",
    "certificate.pdf.sig": "application/octet-stream",
    "certificate.pdf.tsr": "application/timestamp-reply",
    "signing-key.pem": "application/x-pem-file",
}


#: (offer, key) of the documents a step wrote and has not committed yet.
_Written = list[tuple[BlobStore, str]]


def document_key(tenant_id: str, request_id: str, name: str) -> str:
    return f"tenants/{tenant_id}/disposal/{request_id}/{name}"


class OutgoingTransfer(Protocol):
    """What builds the SEDA ``ArchiveTransfer`` zip for the definitive archives
    (``ExportService.outgoing_transfer``)."""

    def __call__(
        self,
        tenant_id: str,
        unit_ids: Sequence[str],
        *,
        message_identifier: str,
        version: SedaVersion,
    ) -> Path: ...


@dataclass(frozen=True, slots=True)
class Blocker:
    """Why an execution cannot go on now: a hold, a retained or held copy."""

    kind: Literal["hold", "retention", "legal-hold", "unit"]
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, **self.details}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A unit that is due, with the rule in force for it (its own or inherited)."""

    unit: UnitRecord
    appraisal: dict[str, Any] | None
    review: bool


@dataclass(slots=True)
class _Scope:
    """What an execution purges: units, their objects, the keys and their copies."""

    units: list[UnitRecord]
    objects: list[ObjectRecord]
    copies: list[CopyRecord]
    package_keys: list[tuple[str, str]]
    """(package id, key) of manifests and tokens of packages left without any unit."""
    superseded: list[tuple[str, str, str]] = field(default_factory=list)
    """(offer, key, version id) of versions a repair replaced: purged with their key, so
    their locks are checked too."""


def _effective(
    unit: UnitRecord, by_id: dict[str, UnitRecord], field_name: str
) -> dict[str, Any] | None:
    """The unit's own rule (``appraisal``/``access``), else its nearest ancestor's."""
    current: UnitRecord | None = unit
    seen: set[str] = set()
    while current is not None and current.id not in seen:
        seen.add(current.id)
        rule = getattr(current, field_name)
        if rule:
            return dict(rule)
        current = by_id.get(current.parent_id) if current.parent_id else None
    return None


def _reply_code(answered: str, expected: str, reply_code: str) -> str:
    """``OK`` or ``KO`` from a reply that must answer the message ``expected``; 422 else."""
    if answered != expected:
        raise InvalidInput(
            "the reply answers another message",
            issues=[
                Issue(
                    "wrong-request",
                    f"MessageRequestIdentifier is {answered!r}, expected {expected!r}",
                    "MessageRequestIdentifier",
                )
            ],
        )
    code = reply_code.strip().upper()
    if code not in ("OK", "KO"):
        raise InvalidInput(
            f"ReplyCode {reply_code!r} is neither OK nor KO",
            issues=[Issue("unknown-reply-code", reply_code, "ReplyCode")],
        )
    return code


def candidate_json(c: Candidate) -> dict[str, Any]:
    """A unit a request takes (or would take), as the API and the request's record show it."""
    return {
        "id": c.unit.id,
        "title": c.unit.title,
        "level": c.unit.level,
        "category": c.unit.category,
        "root_id": c.unit.root_id,
        "appraisal_end": c.unit.appraisal_end.isoformat() if c.unit.appraisal_end else None,
        "rule_id": (c.appraisal or {}).get("rule_id"),
        "final_action": (c.appraisal or {}).get("final_action"),
        "review": c.review,
    }


def request_json(request: DisposalRequestRecord) -> dict[str, Any]:
    """The request as the API answers it."""
    return {
        "id": request.id,
        "kind": request.kind,
        "status": request.status.value,
        "message_identifier": request.message_identifier,
        "unit_ids": list(request.unit_ids),
        "units": request.details.get("units", []),
        "proposed_by": request.proposed_by,
        "proposed_at": request.proposed_at.isoformat(),
        "visa": request.visa,
        "executed_by": request.executed_by,
        "executed_at": request.executed_at.isoformat() if request.executed_at else None,
        "documents": {
            name: {k: v for k, v in doc.items() if k != "copies"}
            | {"offers": [c["offer"] for c in doc.get("copies", [])]}
            for name, doc in sorted(request.documents.items())
        },
        "transfer": request.details.get("transfer"),
        "execution": request.details.get("execution"),
        "certificate": request.details.get("certificate"),
    }


class DisposalService:
    def __init__(
        self,
        *,
        uow: Callable[[], UnitOfWork],
        offers: Sequence[BlobStore],
        clock: Clock,
        storage_clock: Clock,
        tsa: TimestampAuthority,
        validator: SedaValidator,
        signing_key: Ed25519PrivateKey,
        key_name: str,
        proof_retention: timedelta,
        seda_version: SedaVersion = "2.3",
        outgoing_transfer: OutgoingTransfer | None = None,
    ) -> None:
        self._uow = uow
        self._offers = tuple(offers)
        self._clock = clock
        self._access = AccessLog(uow=uow, clock=clock)
        self._storage_clock = storage_clock
        self._tsa = tsa
        self._validator = validator
        self._key = signing_key
        self._key_name = key_name
        self._proof_retention = proof_retention
        self._version: SedaVersion = seda_version
        self.outgoing_transfer = outgoing_transfer

    # -- roles -----------------------------------------------------------------------------

    @staticmethod
    def _may_write(caller: Caller, what: str) -> None:
        if caller.role not in WRITE_ROLES:
            raise Forbidden(
                f"role {caller.role.value!r} may not {what} (archivist or admin)",
                extra={"rule": "role", "required_roles": sorted(r.value for r in WRITE_ROLES)},
            )

    @staticmethod
    def _may_read(caller: Caller) -> None:
        if caller.role not in READ_ROLES:
            raise Forbidden(f"role {caller.role.value!r} may not read disposal requests")

    # -- what is due -----------------------------------------------------------------------

    def due(
        self, caller: Caller, kind: str, *, selected: Sequence[str] | None = None
    ) -> list[Candidate]:
        """The units a request of ``kind`` would take now (``selected``: only those, each of
        which must be eligible), phase and dossier nodes included, in dossier order."""
        self._may_read(caller)
        if kind not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        with self._uow() as uow:
            return self._due(uow, caller.tenant_id, kind, selected)

    def _due(
        self, uow: UnitOfWork, tenant_id: str, kind: str, selected: Sequence[str] | None
    ) -> list[Candidate]:
        today = self._clock.now().date()
        in_open = uow.disposal.units_in_open_requests(tenant_id)
        wanted = set(selected or ())
        if selected is not None:
            roots: list[str] = []
            issues: list[Issue] = []
            for unit_id in dict.fromkeys(selected):
                unit = uow.archive.get_unit(tenant_id, unit_id)
                if unit is None:
                    issues.append(Issue("unknown-unit", f"no archive unit {unit_id}", unit_id))
                elif unit.root_id not in roots:
                    roots.append(unit.root_id)
            if issues:
                raise InvalidInput("some selected units cannot be proposed", issues=issues)
        else:
            roots = uow.disposal.due_roots(tenant_id, on=today)
        out: list[Candidate] = []
        issues = []
        for root_id in roots:
            family = uow.archive.units_of_root(tenant_id, root_id)
            by_id = {u.id: u for u in family}
            holds = uow.disposal.active_holds(tenant_id, root_id=root_id)
            objects = uow.archive.objects_of_root(tenant_id, root_id)
            with_objects = {o.archive_unit_id for o in objects}
            # Units explicitly selected stand for their subtree.
            chosen: set[str] | None = None
            if selected is not None:
                chosen = set()
                for unit_id in wanted & set(by_id):
                    chosen |= subtree_ids(unit_id, family)
            taken: dict[str, Candidate] = {}
            for unit in family:
                if chosen is not None and unit.id not in chosen:
                    continue
                if unit.appraisal_end is None and unit.id not in with_objects:
                    continue  # a node without a rule of its own: by the closure below
                rule = _effective(unit, by_id, "appraisal")
                reason = self._ineligible(unit, rule, kind, today, holds, family, in_open)
                review = bool(rule and rule.get("review"))
                if reason is None and review and (chosen is None):
                    reason = "Keep with review (tri): the archivist selects the units"
                if reason is None:
                    taken[unit.id] = Candidate(unit, rule, review)
                elif chosen is not None:
                    issues.append(Issue("not-eligible", f"{unit.title}: {reason}", unit.id))
            if not taken:
                continue
            # Nodes go once everything under them goes (or is gone).
            gone = {u.id for u in family if u.status != "active"}
            children: dict[str, list[str]] = {}
            for unit in family:
                if unit.parent_id is not None:
                    children.setdefault(unit.parent_id, []).append(unit.id)
            changed = True
            while changed:
                changed = False
                for unit in family:
                    kids = children.get(unit.id)
                    if (
                        unit.id in taken
                        or unit.status != "active"
                        or not kids
                        or unit.id in with_objects
                        or unit.id in in_open
                        or covering_holds(unit, family, holds)
                    ):
                        continue
                    if all(k in taken or k in gone for k in kids):
                        taken[unit.id] = Candidate(
                            unit, _effective(unit, by_id, "appraisal"), review=False
                        )
                        changed = True
            out.extend(taken[u.id] for u in family if u.id in taken)
        if issues:
            raise InvalidInput("some selected units cannot be proposed", issues=issues)
        return out

    @staticmethod
    def _ineligible(
        unit: UnitRecord,
        rule: dict[str, Any] | None,
        kind: str,
        today: Any,
        holds: Sequence[HoldRecord],
        family: Sequence[UnitRecord],
        in_open: dict[str, str],
    ) -> str | None:
        if unit.status != "active":
            return f"already {unit.status}"
        if unit.appraisal_end is None:
            return "its DUA has no end date yet (start event pending or suspended)"
        if unit.appraisal_end > today:
            return f"its DUA ends on {unit.appraisal_end.isoformat()}"
        action = (rule or {}).get("final_action")
        review = bool((rule or {}).get("review"))
        if kind == "destroy" and not (action == "Destroy" or (action == "Keep" and review)):
            return f"its final action is {action}, not Destroy"
        if kind == "transfer" and action != "Keep":
            return f"its final action is {action}, not Keep"
        held = covering_holds(unit, family, holds)
        if held:
            return "under legal hold " + ", ".join(h.id for h in held)
        if unit.id in in_open:
            return f"already in open request {in_open[unit.id]}"
        return None

    # -- proposing -------------------------------------------------------------------------

    def propose(
        self,
        caller: Caller,
        kind: str,
        *,
        unit_ids: Sequence[str] | None = None,
        comment: str | None = None,
        control_authority: str | None = None,
    ) -> DisposalRequestRecord:
        self._may_write(caller, "propose a disposal or transfer")
        if kind not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if unit_ids is not None and not unit_ids:
            raise InvalidInput("unit_ids, when given, lists at least one unit")
        comment = (comment or "").strip() or None
        if comment and len(comment) > MAX_TEXT:
            raise InvalidInput(f"comment is limited to {MAX_TEXT} characters")
        authority = (control_authority or "").strip() or DEFAULT_CONTROL_AUTHORITY
        now = self._clock.now()
        with self._uow() as uow:
            candidates = self._due(uow, caller.tenant_id, kind, unit_ids)
            if not candidates:
                raise Conflict(
                    f"no unit is due for {'destruction' if kind == 'destroy' else 'transfer'}"
                    f" on {now.date().isoformat()}",
                    extra={"kind": kind, "date": now.date().isoformat()},
                )
            tenant = uow.tenancy.get_tenant(caller.tenant_id)
            assert tenant is not None
            units = self._lifecycle_units(uow, caller.tenant_id, [c.unit for c in candidates])
        request_id = new_id("dr", now)
        inp = AuthorizationRequestInput(
            message_identifier=request_id,
            date=now,
            archival_agency=tenant.archival_agency_identifier,
            control_authority=authority,
            requester=caller.name,
            comment=comment,
            kind=kind,  # type: ignore[arg-type]
            units=tuple(units),
        )
        xml = build_authorization_request(inp, version=self._version)
        validated = self._validate(xml)
        pieces = (
            ("request.xml", xml),
            ("bordereau.pdf", bordereau_pdf(inp)),
            ("bordereau.csv", bordereau_csv(inp)),
        )
        summaries = [
            candidate_json(c)
            | {
                "objects": sum(len(u.objects) for u in units if u.unit_id == c.unit.id),
                "size": sum(u.size for u in units if u.unit_id == c.unit.id),
            }
            for c in candidates
        ]
        with self._until_committed() as written:
            documents: dict[str, Any] = {
                name: self._write_document(caller.tenant_id, request_id, name, data, written)
                for name, data in pieces
            }
            documents["request.xml"]["validated"] = validated
            record = DisposalRequestRecord(
                id=request_id,
                tenant_id=caller.tenant_id,
                kind=kind,
                status=RequestStatus.PROPOSED,
                message_identifier=request_id,
                unit_ids=tuple(c.unit.id for c in candidates),
                proposed_by=caller.name,
                proposed_at=now,
                documents=documents,
                details={
                    "proposer": {"client_id": caller.client_id, "name": caller.name},
                    "comment": comment,
                    "control_authority": authority,
                    "units": summaries,
                    "selected": list(unit_ids) if unit_ids is not None else None,
                },
            )
            self._record_proposal(caller, record)
            written.clear()
        self._lock_documents(record.documents)
        _logger.info(
            "disposal.proposed",
            extra={"request_id": request_id, "kind": kind, "units": len(record.unit_ids)},
        )
        return record

    def _record_proposal(self, caller: Caller, record: DisposalRequestRecord) -> None:
        """The commit point of a proposal. Proposals of one tenant serialize here: under
        the tenant's lock, a unit another request took since the candidates were read
        refuses this one (409, nothing recorded; proposing again takes what is left)."""
        with self._uow() as uow:
            uow.disposal.lock_proposals(caller.tenant_id)
            in_open = uow.disposal.units_in_open_requests(caller.tenant_id)
            taken = {u: in_open[u] for u in record.unit_ids if u in in_open}
            if taken:
                raise Conflict(
                    f"{len(taken)} of the units were proposed meanwhile by another request; "
                    "nothing was recorded (propose again for what is left)",
                    extra={
                        "taken": [{"unit_id": u, "request_id": r} for u, r in sorted(taken.items())]
                    },
                )
            uow.disposal.add_request(record)
            uow.logbook.append(
                self._event(
                    caller,
                    "disposal.proposed",
                    record,
                    {
                        "kind": record.kind,
                        "units": list(record.unit_ids),
                        "documents": {n: d["sha256"] for n, d in record.documents.items()},
                    },
                )
            )
            uow.commit()

    # -- reading ---------------------------------------------------------------------------
    #
    # ``read_*`` serve a caller (API, CLI) and leave one entry each (REFUSED for a role that
    # may not read); the plain methods are the steps' own reads and log nothing.

    def read_due(self, caller: Caller, kind: str) -> list[Candidate]:
        """:meth:`due`, logged ``disposal.due_read`` (what it listed)."""
        found: list[Candidate] = self._access.traced(
            caller,
            "disposal.due_read",
            subject=("tenant", caller.tenant_id),
            read=lambda: self.due(caller, kind),
            details=lambda got: {"kind": kind, "units": len(got)},
        )
        return found

    def read_requests(
        self, caller: Caller, *, status: str | None = None
    ) -> list[DisposalRequestRecord]:
        """:meth:`requests`, logged ``disposal.requests_read``."""
        found: list[DisposalRequestRecord] = self._access.traced(
            caller,
            "disposal.requests_read",
            subject=("tenant", caller.tenant_id),
            read=lambda: self.requests(caller, status=status),
            details=lambda got: {"status": status, "requests": [r.id for r in got]},
        )
        return found

    def read_request(self, caller: Caller, request_id: str) -> DisposalRequestRecord:
        """:meth:`get`, logged ``disposal.request_read``."""
        found: DisposalRequestRecord = self._access.traced(
            caller,
            "disposal.request_read",
            subject=("disposal_request", request_id),
            read=lambda: self.get(caller, request_id),
            details=lambda got: {"status": got.status.value, "units": len(got.unit_ids)},
        )
        return found

    def read_document(self, caller: Caller, request_id: str, name: str) -> tuple[bytes, str]:
        """:meth:`document`, logged ``disposal.document_read`` with its size and digest."""
        found: tuple[bytes, str] = self._access.traced(
            caller,
            "disposal.document_read",
            subject=("disposal_request", request_id),
            read=lambda: self.document(caller, request_id, name),
            details=lambda got: {
                "document": name,
                "size": len(got[0]),
                "sha256": hashlib.sha256(got[0]).hexdigest(),
            },
        )
        return found

    def get(self, caller: Caller, request_id: str) -> DisposalRequestRecord:
        self._may_read(caller)
        with self._uow() as uow:
            request = uow.disposal.get_request(caller.tenant_id, request_id)
        if request is None:
            raise NotFound(f"no disposal request {request_id}")
        return request

    def requests(self, caller: Caller, *, status: str | None = None) -> list[DisposalRequestRecord]:
        self._may_read(caller)
        if status is not None and status not in {s.value for s in RequestStatus}:
            raise InvalidInput(f"status must be one of {', '.join(s.value for s in RequestStatus)}")
        with self._uow() as uow:
            return uow.disposal.requests(caller.tenant_id, status=status)

    def document(self, caller: Caller, request_id: str, name: str) -> tuple[bytes, str]:
        """A stored document of the request, read from the first offer that serves it and
        checked against its recorded SHA-256."""
        request = self.get(caller, request_id)
        doc = request.documents.get(name)
        if doc is None:
            raise NotFound(
                f"request {request_id} has no document {name!r}",
                extra={"documents": sorted(request.documents)},
            )
        errors: list[str] = []
        for copy in doc.get("copies", []):
            offer = next((o for o in self._offers if o.name == copy["offer"]), None)
            if offer is None:
                continue
            try:
                with offer.open(doc["key"], version_id=copy.get("version_id")) as stream:
                    data = stream.read()
            except ArchiveError as exc:
                errors.append(f"{offer.name}: {exc.message}")
                continue
            if hashlib.sha256(data).hexdigest() != doc["sha256"]:
                errors.append(f"{offer.name}: digest differs from the recorded one")
                continue
            return data, str(doc["media_type"])
        raise Unavailable(f"no offer could serve {name}: " + "; ".join(errors or ["no copy"]))

    # -- the visa --------------------------------------------------------------------------

    def record_visa(
        self,
        caller: Caller,
        request_id: str,
        *,
        decision: str,
        reference: str,
        comment: str | None = None,
    ) -> DisposalRequestRecord:
        """The authority's decision entered by an archivist (a visa given on paper)."""
        self._may_write(caller, "record a visa")
        if decision not in ("approved", "refused"):
            raise InvalidInput(f"decision must be approved or refused, got {decision!r}")
        reference = (reference or "").strip()
        if not reference:
            raise InvalidInput("the visa reference (the authority's number) is required")
        if len(reference) > 300 or (comment and len(comment) > MAX_TEXT):
            raise InvalidInput(f"reference is limited to 300 characters, comment to {MAX_TEXT}")
        request = self._for_visa(caller, request_id)
        visa = {
            "decision": decision,
            "reference": reference,
            "comment": (comment or "").strip() or None,
            "source": "manual",
        }
        return self._set_visa(caller, request, visa, reply=None)

    def record_visa_reply(
        self, caller: Caller, request_id: str, xml: bytes
    ) -> DisposalRequestRecord:
        """The authority's ``AuthorizationControlAuthorityRequestReply``: OK approves, KO
        refuses; its ``MessageIdentifier`` is the visa reference."""
        self._may_write(caller, "record a visa")
        request = self._for_visa(caller, request_id)
        self._validate_incoming(xml)
        reply = parse_authorization_reply(xml)
        code = _reply_code(reply.request_identifier, request.message_identifier, reply.reply_code)
        visa = {
            "decision": "approved" if code == "OK" else "refused",
            "reference": reply.message_identifier,
            "comment": reply.comment,
            "source": "reply",
            "reply_date": reply.date.isoformat(),
        }
        return self._set_visa(caller, request, visa, reply=xml)

    def _for_visa(self, caller: Caller, request_id: str) -> DisposalRequestRecord:
        with self._uow() as uow:
            request = uow.disposal.get_request(caller.tenant_id, request_id)
        if request is None:
            raise NotFound(f"no disposal request {request_id}")
        proposer = request.details.get("proposer") or {}
        if caller.client_id == proposer.get("client_id") or (
            caller.name.strip().casefold() == str(proposer.get("name", "")).strip().casefold()
        ):
            raise Forbidden(
                "the person who proposed a disposal cannot record its visa: the visa comes from "
                "the archives authority and is entered by someone else (R212-14, four eyes)",
                extra={
                    "rule": "proposer-cannot-approve",
                    "proposed_by": request.proposed_by,
                },
            )
        if request.status is not RequestStatus.PROPOSED:
            raise Conflict(
                f"request {request_id} is {request.status.value}: a visa is recorded once, on "
                "a proposed request",
                extra={"status": request.status.value, "visa": request.visa},
            )
        return request

    def _set_visa(
        self,
        caller: Caller,
        request: DisposalRequestRecord,
        visa: dict[str, Any],
        *,
        reply: bytes | None,
    ) -> DisposalRequestRecord:
        now = self._clock.now()
        visa = {
            **visa,
            "recorded_by": caller.name,
            "recorded_by_client": caller.client_id,
            "recorded_at": now.isoformat(),
        }
        documents = dict(request.documents)
        status = RequestStatus.APPROVED if visa["decision"] == "approved" else RequestStatus.REFUSED
        with self._until_committed() as written, self._uow() as uow:
            if reply is not None:
                documents["visa-reply.xml"] = self._write_document(
                    request.tenant_id, request.id, "visa-reply.xml", reply, written
                )
            if not uow.disposal.update_request(
                request.id,
                expected_status=RequestStatus.PROPOSED,
                status=status,
                visa=visa,
                documents=documents,
            ):
                self._spare_referenced(uow, written, request)
                raise Conflict(f"request {request.id} got its visa meanwhile")
            uow.logbook.append(
                self._event(
                    caller,
                    "disposal.visa_recorded",
                    request,
                    {
                        "decision": visa["decision"],
                        "reference": visa["reference"],
                        "source": visa["source"],
                    },
                )
            )
            uow.commit()
            written.clear()
            updated = uow.disposal.get_request(request.tenant_id, request.id)
        assert updated is not None
        self._lock_documents(updated.documents)
        return updated

    # -- transfer to the definitive archives -----------------------------------------------

    def transfer_message_identifier(self, request: DisposalRequestRecord) -> str:
        return f"{request.message_identifier}-AT"

    def transfer_zip(self, caller: Caller, request_id: str) -> Path:
        """The SEDA ``ArchiveTransfer`` zip of an approved transfer request (a temporary
        file the caller removes; built again, same message identifier, on each call until
        the archives reply). Logged with its digest. A request the archives rejected is
        closed: its units may be proposed again."""
        try:
            self._may_write(caller, "export a transfer")
        except Forbidden as exc:
            self._access.append(
                caller,
                "disposal.transfer_exported",
                subject_type="disposal_request",
                subject_id=request_id,
                details={"reason": exc.message},
                outcome=REFUSED,
            )
            raise
        request = self.get(caller, request_id)
        if request.kind != "transfer":
            raise Conflict(f"request {request_id} is a {request.kind} request, not a transfer")
        if request.status is not RequestStatus.APPROVED:
            raise Conflict(
                f"request {request_id} is {request.status.value}: the transfer is exported "
                "after an approved visa",
                extra={"status": request.status.value},
            )
        if self.outgoing_transfer is None:
            raise Unavailable("the export of transfers to the definitive archives is not set up")
        message_id = self.transfer_message_identifier(request)
        path = self.outgoing_transfer(
            request.tenant_id,
            list(request.unit_ids),
            message_identifier=message_id,
            version=self._version,
        )
        try:
            self._record_export(caller, request, path, message_id)
        except BaseException:
            # Not recorded, not logged: the zip is not handed out either.
            path.unlink(missing_ok=True)
            raise
        return path

    def _record_export(
        self, caller: Caller, request: DisposalRequestRecord, path: Path, message_id: str
    ) -> None:
        """Record (and log) the zip at ``path`` as the request's exported transfer."""
        sha = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1024 * 1024), b""):
                sha.update(chunk)
        info = {
            "message_identifier": message_id,
            "sha256": sha.hexdigest(),
            "size": path.stat().st_size,
            "exported_at": self._clock.now().isoformat(),
            "exported_by": caller.name,
        }
        details = {
            **request.details,
            "transfer": {**(request.details.get("transfer") or {}), **info},
        }
        with self._uow() as uow:
            if not uow.disposal.update_request(
                request.id, expected_status=request.status, details=details
            ):
                raise Conflict(
                    f"request {request.id} changed meanwhile; the transfer was not exported"
                )
            uow.logbook.append(self._event(caller, "disposal.transfer_exported", request, info))
            uow.commit()

    def record_transfer_reply(
        self, caller: Caller, request_id: str, xml: bytes
    ) -> DisposalRequestRecord:
        """The definitive archives' ``ArchiveTransferReply``: OK → accepted-by-archives
        (an archivist then confirms the purge), KO → rejected-by-archives."""
        self._may_write(caller, "record a transfer reply")
        request = self.get(caller, request_id)
        if request.kind != "transfer":
            raise Conflict(f"request {request_id} is a {request.kind} request, not a transfer")
        transfer = request.details.get("transfer") or {}
        if request.status is not RequestStatus.APPROVED or not transfer.get("exported_at"):
            raise Conflict(
                f"request {request_id} is {request.status.value}: a reply is recorded for an "
                "approved request whose transfer was exported",
                extra={"status": request.status.value},
            )
        self._validate_incoming(xml)
        reply = parse_transfer_reply(xml)
        code = _reply_code(
            reply.request_identifier, str(transfer.get("message_identifier")), reply.reply_code
        )
        status = (
            RequestStatus.ACCEPTED_BY_ARCHIVES
            if code == "OK"
            else RequestStatus.REJECTED_BY_ARCHIVES
        )
        info = {
            "reply_code": code,
            "reply_identifier": reply.message_identifier,
            "reply_date": reply.date.isoformat(),
            "archive_unit_ids": list(reply.archive_unit_ids),
            "system_ids": list(reply.system_ids),
            "recorded_by": caller.name,
        }
        details = {**request.details, "transfer": {**transfer, "reply": info}}
        with self._until_committed() as written, self._uow() as uow:
            documents = {
                **request.documents,
                "transfer-reply.xml": self._write_document(
                    request.tenant_id, request.id, "transfer-reply.xml", xml, written
                ),
            }
            if not uow.disposal.update_request(
                request.id,
                expected_status=RequestStatus.APPROVED,
                status=status,
                documents=documents,
                details=details,
            ):
                self._spare_referenced(uow, written, request)
                raise Conflict(f"request {request_id} changed meanwhile")
            uow.logbook.append(
                self._event(caller, "disposal.transfer_reply_recorded", request, info)
            )
            uow.commit()
            written.clear()
            updated = uow.disposal.get_request(request.tenant_id, request.id)
        assert updated is not None
        self._lock_documents(updated.documents)
        return updated

    # -- execution -------------------------------------------------------------------------

    def execute(self, caller: Caller, request_id: str) -> DisposalRequestRecord:
        """Destroy the units of an approved destroy request (see the module docstring)."""
        self._may_write(caller, "execute a disposal")
        request = self.get(caller, request_id)
        if request.kind != "destroy":
            raise Conflict(
                f"request {request_id} is a transfer: it is purged by confirm, after the "
                "definitive archives' reply"
            )
        return self._run(caller, request, "destroyed", RequestStatus.APPROVED)

    def confirm(self, caller: Caller, request_id: str) -> DisposalRequestRecord:
        """Purge the units of a transfer the definitive archives accepted."""
        self._may_write(caller, "confirm a transfer")
        request = self.get(caller, request_id)
        if request.kind != "transfer":
            raise Conflict(f"request {request_id} is a destroy request: it is executed")
        return self._run(caller, request, "transferred", RequestStatus.ACCEPTED_BY_ARCHIVES)

    def _run(
        self,
        caller: Caller,
        request: DisposalRequestRecord,
        outcome: Literal["destroyed", "transferred"],
        ready: RequestStatus,
    ) -> DisposalRequestRecord:
        if request.status is RequestStatus.EXECUTED:
            if request.details.get("certificate"):
                raise Conflict(
                    f"request {request.id} was executed on "
                    f"{request.executed_at.isoformat() if request.executed_at else '?'}",
                    extra={"status": request.status.value},
                )
            return self._certify(caller, request, outcome)
        if request.status not in (ready, RequestStatus.EXECUTING):
            raise Conflict(
                f"request {request.id} is {request.status.value}: it can be "
                f"{'executed' if outcome == 'destroyed' else 'confirmed'} once it is "
                f"{ready.value}",
                extra={"status": request.status.value},
            )
        with self._uow() as uow:
            scope = self._scope(uow, request)
            blockers = self._blockers(uow, request, scope)
        if blockers:
            raise Conflict(
                f"request {request.id} cannot be executed now: {len(blockers)} blocking "
                "holds or locked copies; nothing was deleted",
                extra={"blocking": [b.as_dict() for b in blockers]},
            )
        if request.status is not RequestStatus.EXECUTING:
            with self._uow() as uow:
                if not uow.disposal.update_request(
                    request.id, expected_status=ready, status=RequestStatus.EXECUTING
                ):
                    raise Conflict(f"request {request.id} changed meanwhile")
                uow.logbook.append(
                    self._event(
                        caller,
                        "disposal.execution_started",
                        request,
                        {"outcome": outcome, "keys": len(self._keys(scope))},
                    )
                )
                uow.commit()
        purged = self._purge(caller, request, scope)
        now = self._clock.now()
        with self._uow() as uow:
            self._record_execution(uow, caller, request, scope, outcome, purged, now)
            uow.commit()
            updated = uow.disposal.get_request(request.tenant_id, request.id)
        assert updated is not None
        _logger.info(
            "disposal.executed",
            extra={"request_id": request.id, "units": len(scope.units), "keys": len(purged)},
        )
        return self._certify(caller, updated, outcome)

    def _scope(self, uow: UnitOfWork, request: DisposalRequestRecord) -> _Scope:
        tenant = request.tenant_id
        wanted = set(request.unit_ids)
        units: list[UnitRecord] = []
        objects: list[ObjectRecord] = []
        roots: list[str] = []
        for unit_id in request.unit_ids:
            unit = uow.archive.get_unit(tenant, unit_id)
            if unit is None:
                raise IntegrityFailure(f"unit {unit_id} of request {request.id} is not recorded")
            if unit.root_id not in roots:
                roots.append(unit.root_id)
        all_units: list[UnitRecord] = []
        for root_id in roots:
            family = uow.archive.units_of_root(tenant, root_id)
            all_units.extend(family)
            units.extend(u for u in family if u.id in wanted)
            objects.extend(
                o
                for o in uow.archive.objects_of_root(tenant, root_id)
                if o.archive_unit_id in wanted
            )
        packages = sorted({u.package_id for u in units} | {o.package_id for o in objects})
        copies: list[CopyRecord] = []
        package_keys: list[tuple[str, str]] = []
        superseded: list[tuple[str, str, str]] = []
        object_keys = {(o.package_id, o.storage_key) for o in objects}
        for package_id in packages:
            package = uow.archive.get_package(tenant, package_id)
            of_package = [u for u in all_units if u.package_id == package_id]
            left = [u for u in of_package if u.status == "active" and u.id not in wanted]
            meta_keys: set[str] = set()
            if package is not None and not left:
                meta_keys = {package.manifest_key, package.timestamp_key}
                package_keys.extend((package_id, k) for k in sorted(meta_keys))
            for copy in uow.archive.copies_of_package(tenant, package_id):
                if (copy.package_id, copy.key) in object_keys or copy.key in meta_keys:
                    copies.append(copy)
            superseded.extend(
                (old.offer, old.key, old.version_id)
                for old in uow.audit.superseded(tenant, package_id)
                if old.version_id is not None
                and ((package_id, old.key) in object_keys or old.key in meta_keys)
            )
        return _Scope(
            units=units,
            objects=objects,
            copies=copies,
            package_keys=package_keys,
            superseded=superseded,
        )

    @staticmethod
    def _keys(scope: _Scope) -> list[str]:
        keys = [o.storage_key for o in scope.objects] + [k for _, k in scope.package_keys]
        return list(dict.fromkeys(keys))

    def _blockers(
        self, uow: UnitOfWork, request: DisposalRequestRecord, scope: _Scope
    ) -> list[Blocker]:
        blockers: list[Blocker] = []
        families: dict[str, list[UnitRecord]] = {}
        for unit in scope.units:
            if unit.status != "active" and request.status is not RequestStatus.EXECUTING:
                blockers.append(
                    Blocker("unit", f"unit {unit.id} is {unit.status}", {"unit_id": unit.id})
                )
            family = families.get(unit.root_id)
            if family is None:
                family = families[unit.root_id] = uow.archive.units_of_root(
                    request.tenant_id, unit.root_id
                )
            holds = uow.disposal.active_holds(request.tenant_id, root_id=unit.root_id)
            for hold in covering_holds(unit, family, holds):
                blockers.append(
                    Blocker(
                        "hold",
                        f"unit {unit.id} is under legal hold {hold.id} ({hold.reason})",
                        {"unit_id": unit.id, "hold_id": hold.id, "reference": hold.reference},
                    )
                )
        now = self._storage_clock.now()
        readers = {o.name: o for o in self._offers if isinstance(o, RetentionReader)}
        versions = [(c.offer, c.key, c.version_id) for c in scope.copies] + scope.superseded
        for offer_name, key, version_id in dict.fromkeys(versions):
            reader = readers.get(offer_name)
            if reader is None or version_id is None:
                continue
            retention = reader.retention(key, version_id=version_id)
            if retention is None:
                continue  # gone already (a resumed execution)
            where = {"offer": offer_name, "key": key, "version_id": version_id}
            until = retention.retain_until
            if until is not None and until > now:
                blockers.append(
                    Blocker(
                        "retention",
                        f"{offer_name}:{key} is retained until {until.isoformat()}",
                        {**where, "retain_until": until.isoformat()},
                    )
                )
            if bool(getattr(retention, "legal_hold", False)):
                blockers.append(
                    Blocker("legal-hold", f"{offer_name}:{key} has a legal hold", where)
                )
        return blockers

    def _purge(
        self, caller: Caller, request: DisposalRequestRecord, scope: _Scope
    ) -> list[tuple[str, str]]:
        """Purge every key on every offer; (offer, key) purged. A failure is logged (copies
        may already be gone) and raised: the request stays ``executing``."""
        purged: list[tuple[str, str]] = []
        try:
            for key in self._keys(scope):
                for offer in self._offers:
                    offer.purge(key)
                    if offer.stat(key) is not None:
                        raise IntegrityFailure(f"offer {offer.name} still serves {key}")
                    purged.append((offer.name, key))
        except ArchiveError as exc:
            with self._uow() as uow:
                uow.logbook.append(
                    self._event(
                        caller,
                        "disposal.execution_interrupted",
                        request,
                        {"purged": len(purged), "error": exc.message},
                        outcome="KO",
                    )
                )
                uow.commit()
            raise
        return purged

    def _record_execution(
        self,
        uow: UnitOfWork,
        caller: Caller,
        request: DisposalRequestRecord,
        scope: _Scope,
        outcome: Literal["destroyed", "transferred"],
        purged: Sequence[tuple[str, str]],
        now: datetime,
    ) -> None:
        tenant = request.tenant_id
        visa = request.visa or {}
        by_id: dict[str, UnitRecord] = {}
        for root_id in {u.root_id for u in scope.units}:
            by_id.update({u.id: u for u in uow.archive.units_of_root(tenant, root_id)})
        certificate_id = self.certificate_identifier(request)
        tombstones = []
        for unit in scope.units:
            objects = [o for o in scope.objects if o.archive_unit_id == unit.id]
            root = by_id.get(unit.root_id, unit)
            tombstones.append(
                TombstoneRecord(
                    unit_id=unit.id,
                    tenant_id=tenant,
                    root_id=unit.root_id,
                    request_id=request.id,
                    outcome=outcome,
                    at=now,
                    record={
                        "unit": {
                            "id": unit.id,
                            "title": unit.title,
                            "level": unit.level,
                            "category": unit.category,
                            "parent_id": unit.parent_id,
                            "package_id": unit.package_id,
                        },
                        "objects": [
                            {
                                "id": o.id,
                                "path": o.path,
                                "size": o.size,
                                "sha256": o.sha256,
                                "sha512": o.sha512,
                                "mime_type": o.mime_type,
                                "storage_key": o.storage_key,
                            }
                            for o in objects
                        ],
                        "appraisal": _effective(unit, by_id, "appraisal"),
                        "dossier_title": root.title,
                        "originating_agency": unit.content.get("originating_agency")
                        or root.content.get("originating_agency")
                        or unit.organization_siret,
                        "visa": {
                            "reference": visa.get("reference"),
                            "decision": visa.get("decision"),
                            "recorded_by": visa.get("recorded_by"),
                            "recorded_at": visa.get("recorded_at"),
                        },
                        "request_id": request.id,
                        "message_identifier": request.message_identifier,
                        "certificate": certificate_id,
                        "executed_by": caller.name,
                    },
                )
            )
        uow.disposal.add_tombstones(tombstones)
        uow.disposal.set_unit_status(tenant, [u.id for u in scope.units], outcome)
        self._forget_in_search(uow, scope, by_id)
        removed = uow.disposal.remove_copies(tenant, list(purged))
        details = {
            **request.details,
            "execution": {
                "outcome": outcome,
                "keys_purged": len({k for _, k in purged}),
                "copies_purged": len(purged),
                "copy_rows_removed": removed,
                "packages_purged": sorted({p for p, _ in scope.package_keys}),
            },
        }
        if not uow.disposal.update_request(
            request.id,
            expected_status=RequestStatus.EXECUTING,
            status=RequestStatus.EXECUTED,
            executed_by=caller.name,
            executed_at=now,
            details=details,
        ):
            raise Conflict(f"request {request.id} is no longer executing")
        for unit in scope.units:
            uow.logbook.append(
                LogEvent(
                    tenant_id=tenant,
                    at=now,
                    event_type=f"archive_unit.{outcome}",
                    outcome="OK",
                    subject_type="archive_unit",
                    subject_id=unit.id,
                    actor=caller.client_id,
                    details={
                        "request_id": request.id,
                        "visa_reference": visa.get("reference"),
                        "objects": [o.id for o in scope.objects if o.archive_unit_id == unit.id],
                    },
                )
            )
        uow.logbook.append(
            self._event(caller, "disposal.executed", request, details["execution"], at=now)
        )

    @staticmethod
    def _forget_in_search(uow: UnitOfWork, scope: _Scope, by_id: dict[str, UnitRecord]) -> None:
        """A gone dossier leaves the search index; a dossier that keeps units is indexed
        again without the titles of those gone (what the visa destroyed is not findable)."""
        gone = {u.id for u in scope.units}
        for unit_id in sorted(gone):
            uow.search.remove_unit(unit_id)
        for root_id in sorted({u.root_id for u in scope.units} - gone):
            root = by_id.get(root_id)
            body = uow.search.indexed_body(root_id)
            if root is None or body is None:
                continue
            keywords = [
                str(k.get("content"))
                for k in root.content.get("keywords") or []
                if isinstance(k, dict) and k.get("content")
            ]
            titles = [
                u.title
                for u in by_id.values()
                if u.root_id == root_id
                and u.id != root_id
                and u.status == "active"
                and u.id not in gone
            ]
            uow.search.index_unit(root, body=body, keywords=" ".join(keywords + titles))

    # -- the certificate -------------------------------------------------------------------

    def certificate_identifier(self, request: DisposalRequestRecord) -> str:
        return f"{request.message_identifier}-ADN"

    def _certify(
        self,
        caller: Caller,
        request: DisposalRequestRecord,
        outcome: Literal["destroyed", "transferred"],
    ) -> DisposalRequestRecord:
        """Build, sign, timestamp and store the certificate of an executed request."""
        assert request.executed_at is not None
        with self._uow() as uow:
            tombstones = uow.disposal.tombstones_of_request(request.tenant_id, request.id)
            tenant = uow.tenancy.get_tenant(request.tenant_id)
        assert tenant is not None
        units = tuple(self._units_from_tombstones(tombstones, request))
        agencies = sorted({u.originating_agency for u in units if u.originating_agency})
        inp = DestructionNotificationInput(
            message_identifier=self.certificate_identifier(request),
            date=request.executed_at,
            archival_agency=tenant.archival_agency_identifier,
            originating_agency=", ".join(agencies) or tenant.archival_agency_identifier,
            request_identifier=request.message_identifier,
            visa_reference=str((request.visa or {}).get("reference") or "sans référence"),
            units=units,
            outcome=outcome,
        )
        xml = build_destruction_notification(inp, version=self._version)
        validated = self._validate(xml)
        xml_sig = self._key.sign(xml)
        xml_token, xml_info = self._token(request, "certificate.xml.tsr", xml)
        public_pem = self._key.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
        )
        public_raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        signature_info = {
            "key_name": self._key_name,
            "public_key_fingerprint": "SHA256:" + hashlib.sha256(public_raw).hexdigest(),
            "algorithm": "Ed25519 (détachée, sur le message SEDA certificate.xml)",
            "signature": base64.b64encode(xml_sig).decode("ascii"),
            "tsa_gen_time": xml_info.gen_time.isoformat(),
            "tsa_name": xml_info.tsa_name or "",
        }
        pdf = certificate_pdf(inp, signature_info=signature_info)
        pdf_sig = self._key.sign(pdf)
        pdf_token, _ = self._token(request, "certificate.pdf.tsr", pdf)
        certificate = {
            "message_identifier": inp.message_identifier,
            "sha256": hashlib.sha256(xml).hexdigest(),
            "pdf_sha256": hashlib.sha256(pdf).hexdigest(),
            "signature": signature_info,
            "issued_at": self._clock.now().isoformat(),
        }
        documents = dict(request.documents)
        with self._until_committed() as written, self._uow() as uow:
            for name, data in (
                ("certificate.xml", xml),
                ("certificate.xml.sig", xml_sig),
                ("certificate.xml.tsr", xml_token),
                ("certificate.pdf", pdf),
                ("certificate.pdf.sig", pdf_sig),
                ("certificate.pdf.tsr", pdf_token),
                ("signing-key.pem", public_pem),
            ):
                documents[name] = self._write_document(
                    request.tenant_id, request.id, name, data, written
                )
            documents["certificate.xml"]["validated"] = validated
            if not uow.disposal.update_request(
                request.id,
                expected_status=RequestStatus.EXECUTED,
                documents=documents,
                details={**request.details, "certificate": certificate},
            ):
                self._spare_referenced(uow, written, request)
                raise Conflict(f"request {request.id} changed meanwhile")
            uow.logbook.append(
                self._event(
                    caller,
                    "disposal.certificate_issued",
                    request,
                    {
                        "message_identifier": inp.message_identifier,
                        "sha256": certificate["sha256"],
                        "pdf_sha256": certificate["pdf_sha256"],
                        "tsa_gen_time": signature_info["tsa_gen_time"],
                    },
                )
            )
            uow.commit()
            written.clear()
            updated = uow.disposal.get_request(request.tenant_id, request.id)
        assert updated is not None
        self._lock_documents(updated.documents)
        return updated

    def _token(self, request: DisposalRequestRecord, name: str, data: bytes) -> tuple[bytes, Any]:
        """An RFC 3161 token over ``data``'s SHA-256: the one an interrupted run stored, if it
        verifies, else a new one."""
        chain = self._tsa.certificate_chain_pem()
        key = document_key(request.tenant_id, request.id, name)
        for offer in self._offers:
            try:
                with offer.open(key) as stream:
                    stored = stream.read()
            except ArchiveError:
                continue
            try:
                return stored, verify_timestamp(stored, message=data, chain_pem=chain)
            except TimestampInvalid:
                continue
        token = self._tsa.timestamp(hashlib.sha256(data).digest())
        info = verify_timestamp(token, message=data, chain_pem=chain)
        return token, info

    def _units_from_tombstones(
        self, tombstones: Iterable[TombstoneRecord], request: DisposalRequestRecord
    ) -> list[LifecycleUnit]:
        titles = {u["id"]: u.get("title") for u in request.details.get("units", [])}
        out = []
        for ts in tombstones:
            record = ts.record
            unit = record["unit"]
            out.append(
                LifecycleUnit(
                    unit_id=ts.unit_id,
                    title=str(unit.get("title") or titles.get(ts.unit_id) or ts.unit_id),
                    level=str(unit.get("level") or "Item"),
                    category=unit.get("category"),
                    dossier_id=ts.root_id,
                    dossier_title=str(record.get("dossier_title") or ts.root_id),
                    originating_agency=record.get("originating_agency"),
                    appraisal=record.get("appraisal"),
                    access=None,
                    objects=tuple(
                        LifecycleObject(
                            object_id=o["id"],
                            path=o["path"],
                            size=int(o["size"]),
                            sha256=o["sha256"],
                            sha512=o["sha512"],
                            mime_type=o["mime_type"],
                            puid=None,
                        )
                        for o in record.get("objects", [])
                    ),
                )
            )
        return out

    # -- helpers ---------------------------------------------------------------------------

    def _lifecycle_units(
        self, uow: UnitOfWork, tenant_id: str, units: Sequence[UnitRecord]
    ) -> list[LifecycleUnit]:
        out: list[LifecycleUnit] = []
        families: dict[str, dict[str, UnitRecord]] = {}
        objects_by_unit: dict[str, list[ObjectRecord]] = {}
        for unit in units:
            if unit.root_id not in families:
                family = uow.archive.units_of_root(tenant_id, unit.root_id)
                families[unit.root_id] = {u.id: u for u in family}
                for o in uow.archive.objects_of_root(tenant_id, unit.root_id):
                    objects_by_unit.setdefault(o.archive_unit_id, []).append(o)
            by_id = families[unit.root_id]
            root = by_id.get(unit.root_id, unit)
            agency = (
                unit.content.get("originating_agency")
                or root.content.get("originating_agency")
                or unit.organization_siret
            )
            out.append(
                LifecycleUnit(
                    unit_id=unit.id,
                    title=unit.title,
                    level=unit.level,
                    category=unit.category,
                    dossier_id=unit.root_id,
                    dossier_title=root.title,
                    originating_agency=agency,
                    appraisal=_effective(unit, by_id, "appraisal"),
                    access=_effective(unit, by_id, "access"),
                    objects=tuple(
                        LifecycleObject(
                            object_id=o.id,
                            path=o.path,
                            size=o.size,
                            sha256=o.sha256,
                            sha512=o.sha512,
                            mime_type=o.mime_type,
                            puid=o.puid,
                        )
                        for o in sorted(objects_by_unit.get(unit.id, []), key=lambda o: o.id)
                    ),
                )
            )
        return out

    def _validate(self, xml: bytes) -> bool:
        """Validate a message we produced against the official XSD of its version; False
        (and a warning) when that XSD is not installed."""
        version = seda_version_of(parse_untrusted(xml))
        if not self._official_available(version):
            _logger.warning("disposal.message_not_validated", extra={"version": version})
            return False
        self._validator.validate(xml, profile=False)
        return True

    def _validate_incoming(self, xml: bytes) -> None:
        """A reply must validate against the official XSD of its version (when installed)."""
        if not xml.strip():
            raise SedaInvalid("the reply is empty")
        version = seda_version_of(parse_untrusted(xml))
        if self._official_available(version):
            self._validator.validate(xml, profile=False)

    def _official_available(self, version: SedaVersion) -> bool:
        return self._validator.official_available(version)

    def _write_document(
        self, tenant_id: str, request_id: str, name: str, data: bytes, written: _Written
    ) -> dict[str, Any]:
        """Write one document to every offer, unlocked (write-once; an identical copy left
        by an interrupted run is kept), and say where it is. What this call wrote goes to
        ``written``: removed if the step fails before its commit (nothing references it),
        locked by :meth:`_lock_documents` once the commit recorded it. ``retain_until`` is
        the retention asked for (the proofs' retention from the clock's now; an offer may
        raise it to its minimum)."""
        key = document_key(tenant_id, request_id, name)
        digest = hashlib.sha256(data).hexdigest()
        retain_until = self._clock.now() + self._proof_retention
        copies = []
        for offer in self._offers:
            existing = offer.stat(key)
            if existing is None:
                try:
                    blob = offer.put_bytes(key, data)
                    written.append((offer, key))
                except Conflict:
                    blob = offer.stat(key)  # type: ignore[assignment]
                    if blob is None:
                        raise
            else:
                blob = existing
            if blob.sha256 != digest:
                raise IntegrityFailure(
                    f"offer {offer.name} already holds different bytes at {key}",
                    extra={"expected": digest, "found": blob.sha256},
                )
            copy: dict[str, Any] = {"offer": offer.name, "version_id": blob.version_id}
            if isinstance(offer, LockingBlobStore) and blob.version_id is not None:
                copy["retain_until"] = retain_until.isoformat()
            copies.append(copy)
        return {
            "name": name,
            "key": key,
            "media_type": DOCUMENT_TYPES.get(name, "application/octet-stream"),
            "sha256": digest,
            "size": len(data),
            "copies": copies,
        }

    @contextmanager
    def _until_committed(self) -> Iterator[_Written]:
        """The documents a step writes before its commit: if the step fails before the
        commit (the commit itself failing included), they are deleted again — nothing
        references them, and being unlocked they still can be. The step clears the list
        once its commit succeeded."""
        written: _Written = []
        try:
            yield written
        except BaseException:
            for offer, key in written:
                try:
                    offer.delete(key)
                except ArchiveError as exc:
                    _logger.warning(
                        "disposal.document_not_removed",
                        extra={"offer": offer.name, "key": key, "error": exc.message},
                    )
            raise

    @staticmethod
    def _spare_referenced(
        uow: UnitOfWork, written: _Written, request: DisposalRequestRecord
    ) -> None:
        """Another run of the same step committed first: the documents its record names
        (the same bytes, under the same keys, which this run may have written) are not
        this run's to delete."""
        current = uow.disposal.get_request(request.tenant_id, request.id)
        keys = {d.get("key") for d in (current.documents if current else {}).values()}
        written[:] = [(offer, key) for offer, key in written if key not in keys]

    def _lock_documents(self, documents: dict[str, Any]) -> None:
        """Lock every recorded copy of ``documents`` on the offers with Object Lock, after
        the commit that recorded them (locking only ever extends: the documents of earlier
        steps are locked again, which also finishes a lock an earlier step could not make).
        A failure is logged, not raised: the step is committed, and the next step of the
        request locks again."""
        lockers = {o.name: o for o in self._offers if isinstance(o, LockingBlobStore)}
        for doc in documents.values():
            for copy in doc.get("copies", []):
                offer = lockers.get(copy.get("offer", ""))
                until = copy.get("retain_until")
                if offer is None or not copy.get("version_id") or not until:
                    continue
                try:
                    offer.lock(
                        doc["key"],
                        version_id=copy["version_id"],
                        retain_until=datetime.fromisoformat(until),
                    )
                except ArchiveError as exc:
                    _logger.warning(
                        "disposal.document_not_locked",
                        extra={"offer": offer.name, "key": doc["key"], "error": exc.message},
                    )

    def _event(
        self,
        caller: Caller,
        event_type: str,
        request: DisposalRequestRecord,
        details: dict[str, Any],
        *,
        outcome: str = "OK",
        at: datetime | None = None,
    ) -> LogEvent:
        return LogEvent(
            tenant_id=request.tenant_id,
            at=at or self._clock.now(),
            event_type=event_type,
            outcome=outcome,
            subject_type="disposal_request",
            subject_id=request.id,
            actor=caller.client_id,
            details={
                **caller_details(caller),
                "request_id": request.id,
                "by": caller.name,
                **details,
            },
        )
