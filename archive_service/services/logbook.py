"""The tenant's Merkle logbook (issue 4): integration, signed and timestamped checkpoints,
proofs for auditors, and the detection of a database whose log was edited, cut or rewritten.

Queueing is separate from integration, as in Trillian: operations append entries in their
own transactions, with their canonical bytes and no lock on the tree; :meth:`LogbookService.
integrate` later gives the entries not yet integrated their leaf indices, in id order, and
stores the tree nodes they complete, holding the tenant's ``log_heads`` row. Hashing is RFC
9162's (``core.logbook.merkle``).

A checkpoint (``core.logbook.checkpoint``) is the tree's size and root for the tenant's
origin, signed with the service's Ed25519 key, with an RFC 3161 token over the note's bytes.
Before signing, the new root must be consistent with the previous checkpoint (RFC 9162
§2.1.4). The note and token go to every storage offer under write-once keys (locked in
COMPLIANCE mode on Object Lock offers), then to the database. Ed25519 signatures are
deterministic, so a run interrupted after the storage writes makes the very same note next
time, finds it stored and reuses the token stored with it.

:meth:`LogbookService.verify` recomputes every leaf from the canonical bytes in the
database and compares the tree with each checkpoint found in storage (and in the database),
checking signatures, tokens, and consistency between successive checkpoints. Each problem is
named: an entry edited, entries deleted, the log truncated, a checkpoint edited or signed by
another key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from archive_service.core.logbook.checkpoint import (
    Checkpoint,
    CheckpointError,
    key_id,
    parse_signed_note,
    sign_checkpoint,
    verify_checkpoint,
)
from archive_service.core.logbook.merkle import (
    MemoryTree,
    ProofError,
    SubtreeReader,
    append_nodes,
    consistency_proof,
    consistency_proof_nodes,
    inclusion_proof,
    inclusion_proof_nodes,
    leaf_hash,
    root_hash,
    root_nodes,
    verify_consistency,
)
from archive_service.core.timestamp import verify_timestamp
from archive_service.errors import (
    ArchiveError,
    BadRequest,
    Conflict,
    Forbidden,
    IntegrityFailure,
    NotFound,
    TimestampInvalid,
)
from archive_service.ports import (
    BlobStore,
    Caller,
    CheckpointRecord,
    Clock,
    LockingBlobStore,
    LogEntryRecord,
    LogHeadRecord,
    Role,
    TimestampAuthority,
    UnitOfWork,
)
from archive_service.services.access_log import AccessLog

_logger = logging.getLogger(__name__)

READ_ROLES = frozenset({Role.ARCHIVIST, Role.AUDITOR, Role.ADMIN})
INTEGRATE_BATCH = 10_000
VERIFY_PAGE = 5_000
_NAME = re.compile(r"^(\d{12})\.(note|tsr)$")


def checkpoint_prefix(tenant_id: str) -> str:
    return f"tenants/{tenant_id}/logbook/checkpoints/"


def checkpoint_keys(tenant_id: str, size: int) -> tuple[str, str]:
    """Keys of a checkpoint's signed note and RFC 3161 token in every offer."""
    base = f"{checkpoint_prefix(tenant_id)}{size:012d}"
    return f"{base}.note", f"{base}.tsr"


@dataclass(frozen=True, slots=True)
class CheckpointOutcome:
    tenant_id: str
    status: Literal["created", "unchanged", "empty"]
    """``unchanged``: nothing was integrated since the latest checkpoint."""
    checkpoint: CheckpointRecord | None


@dataclass(frozen=True, slots=True)
class InclusionProof:
    entry: LogEntryRecord
    tree_size: int
    root: bytes
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    size1: int
    size2: int
    root1: bytes
    root2: bytes
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem :meth:`LogbookService.verify` found, with a stable code."""

    code: str
    """``entry-edited``, ``entry-deleted``, ``log-truncated``, ``log-rewritten``,
    ``checkpoint-edited``, ``checkpoint-wrong-key``, ``checkpoint-token-invalid``,
    ``checkpoint-missing``, ``checkpoint-fork``, ``checkpoints-inconsistent``,
    ``tree-mismatch``."""
    message: str
    expected: str | None = None
    found: str | None = None


@dataclass(slots=True)
class VerificationReport:
    tenant_id: str
    entries: int = 0
    integrated: int = 0
    checkpoints: list[int] = field(default_factory=list)
    """Sizes of the authentic checkpoints found (storage and database)."""
    checks: list[str] = field(default_factory=list)
    """What was checked and held, in order."""
    notes: list[str] = field(default_factory=list)
    """Facts that are not failures (a checkpoint stored but not yet recorded…)."""
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def fail(
        self, code: str, message: str, *, expected: str | None = None, found: str | None = None
    ) -> None:
        self.findings.append(Finding(code, message, expected, found))


@dataclass(slots=True)
class _Seen:
    """The copies of one checkpoint size: where each note and token was found."""

    notes: dict[str, bytes] = field(default_factory=dict)
    tokens: dict[str, bytes] = field(default_factory=dict)


class LogbookService:
    def __init__(
        self,
        *,
        uow: Callable[[], UnitOfWork],
        offers: Sequence[BlobStore],
        tsa: TimestampAuthority,
        clock: Clock,
        signing_key: Ed25519PrivateKey,
        key_name: str,
        origin_prefix: str,
        retention: timedelta,
        integrate_batch: int = INTEGRATE_BATCH,
    ) -> None:
        self._uow = uow
        self._offers = tuple(offers)
        self._tsa = tsa
        self._clock = clock
        self._access = AccessLog(uow=uow, clock=clock)
        self._key = signing_key
        self._public = signing_key.public_key()
        self.key_name = key_name
        self._origin_prefix = origin_prefix
        self._retention = retention
        self._batch = integrate_batch

    def origin(self, tenant_id: str) -> str:
        return f"{self._origin_prefix}/{tenant_id}"

    @property
    def public_key_raw(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self._public.public_bytes(Encoding.Raw, PublicFormat.Raw)

    def public_key_pem(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self._public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    # -- integration -------------------------------------------------------------------------

    def integrate(self, tenant_id: str) -> LogHeadRecord:
        """Append the entries not yet integrated to the tenant's tree, in id order; the head.

        Holds the tenant's ``log_heads`` row (``FOR UPDATE``; SQLite's write lock) for one
        batch at a time, so appends by operations never wait for it for long.
        """
        while True:
            head, integrated = self._integrate_batch(tenant_id)
            if integrated:
                _logger.info(
                    "logbook.integrated",
                    extra={"tenant_id": tenant_id, "entries": integrated, "size": head.size},
                )
            if integrated < self._batch:
                return head

    def _integrate_batch(self, tenant_id: str) -> tuple[LogHeadRecord, int]:
        with self._uow() as uow:
            head = uow.logbook.lock_head(tenant_id, at=self._clock.now())
            pending = uow.logbook.pending(tenant_id, limit=self._batch)
            if not pending:
                uow.commit()
                return head, 0
            leaves = [leaf_hash(canonical) for _, canonical in pending]
            made: dict[tuple[int, int], bytes] = {}

            def read(level: int, index: int) -> bytes:
                found = made.get((level, index))
                return found if found is not None else uow.logbook.node(tenant_id, level, index)

            nodes = append_nodes(head.size, leaves, read)
            made.update({(level, index): h for level, index, h in nodes})
            size = head.size + len(leaves)
            root = root_hash(size, read)
            uow.logbook.assign_leaves(
                tenant_id,
                [(entry_id, head.size + k, leaves[k]) for k, (entry_id, _) in enumerate(pending)],
            )
            uow.logbook.add_nodes(tenant_id, [n for n in nodes if n[0] > 0])
            uow.logbook.set_head(tenant_id, size=size, root=root, at=self._clock.now())
            uow.commit()
        return LogHeadRecord(tenant_id=tenant_id, size=size, root=root), len(pending)

    # -- checkpoints -------------------------------------------------------------------------

    def tenants(self) -> list[str]:
        with self._uow() as uow:
            return uow.logbook.tenants()

    def checkpoint_all(self) -> list[CheckpointOutcome]:
        """A checkpoint of every tenant's log that changed (the periodic job). A tenant whose
        checkpoint fails does not stop the others; the first error is raised at the end."""
        outcomes: list[CheckpointOutcome] = []
        first: ArchiveError | None = None
        for tenant_id in self.tenants():
            try:
                outcomes.append(self.checkpoint(tenant_id))
            except ArchiveError as exc:
                _logger.error(
                    "logbook.checkpoint_failed",
                    extra={"tenant_id": tenant_id, "code": exc.code, "reason": exc.message},
                )
                first = first or exc
        if first is not None:
            raise first
        return outcomes

    def checkpoint(self, tenant_id: str) -> CheckpointOutcome:
        """Integrate, then sign, timestamp and store a checkpoint of the tenant's log, unless
        nothing was integrated since the latest one.

        Refuses (``IntegrityFailure``, logged as ``logbook.checkpoint_refused``) when the
        latest checkpoint does not verify or the tree is not consistent with it.
        """
        head = self.integrate(tenant_id)
        with self._uow() as uow:
            latest = uow.logbook.latest_checkpoint(tenant_id)
            if head.size == 0:
                return CheckpointOutcome(tenant_id, "empty", None)
            if latest is not None and latest.size >= head.size:
                return CheckpointOutcome(tenant_id, "unchanged", latest)
            size, since = head.size, 0 if latest is None else latest.size
            read = self._tree(
                uow, tenant_id, [*root_nodes(size), *consistency_proof_nodes(since, size)]
            )
            root = root_hash(size, read)
            proof = consistency_proof(since, size, read)
        try:
            if root != head.root:
                raise IntegrityFailure(
                    f"the tree's nodes give root {root.hex()} at size {head.size}, "
                    f"the log head says {head.root.hex()}"
                )
            if latest is not None:
                previous = self._authentic(latest)
                verify_consistency(latest.size, head.size, previous.root, root, proof)
        except (ProofError, CheckpointError, IntegrityFailure) as exc:
            message = (
                f"checkpoint of {tenant_id} at size {head.size} refused: "
                f"{getattr(exc, 'message', exc)}"
            )
            _logger.error(
                "logbook.checkpoint_refused", extra={"tenant_id": tenant_id, "reason": message}
            )
            raise IntegrityFailure(message) from exc
        note = sign_checkpoint(
            Checkpoint(self.origin(tenant_id), head.size, root), self._key, self.key_name
        )
        token, copies = self._store(tenant_id, head.size, note)
        record = CheckpointRecord(
            tenant_id=tenant_id,
            size=head.size,
            root=root,
            note=note,
            token=token,
            key_name=self.key_name,
            created_at=self._clock.now(),
            copies=tuple(copies),
        )
        with self._uow() as uow:
            added = uow.logbook.add_checkpoint(record)
            uow.commit()
        if not added:  # another run recorded this size first: the same note, its token
            with self._uow() as uow:
                record = next(c for c in uow.logbook.checkpoints(tenant_id) if c.size == head.size)
        _logger.info(
            "logbook.checkpoint",
            extra={"tenant_id": tenant_id, "size": head.size, "root": root.hex()},
        )
        return CheckpointOutcome(tenant_id, "created", record)

    def _authentic(self, record: CheckpointRecord) -> Checkpoint:
        """The checkpoint of a recorded note, after its signature and content are checked."""
        cp = verify_checkpoint(record.note, self._public, self.key_name)
        if (
            cp.size != record.size
            or cp.root != record.root
            or cp.origin != self.origin(record.tenant_id)
        ):
            raise CheckpointError(
                f"the recorded checkpoint of size {record.size} does not match its signed note"
            )
        return cp

    def _store(self, tenant_id: str, size: int, note: bytes) -> tuple[bytes, list[dict[str, Any]]]:
        """Write the note and its token to every offer (write-once); (token, copies).

        A note already stored must be the same bytes; a token already stored (by a run that
        stopped before the database) is reused when it verifies over the note.
        """
        note_key, token_key = checkpoint_keys(tenant_id, size)
        chain = self._tsa.certificate_chain_pem()

        def token_ok(data: bytes) -> bool:
            try:
                verify_timestamp(data, message=note, chain_pem=chain)
            except TimestampInvalid:
                return False
            return True

        token: bytes | None = None
        for offer in self._offers:
            stored = _read(offer, note_key)
            if stored is not None and stored != note:
                raise IntegrityFailure(
                    f"offer {offer.name} already holds a different checkpoint at {note_key}"
                )
            found = _read(offer, token_key) if token is None else None
            if found is not None and token_ok(found):
                token = found
        if token is None:
            token = self._tsa.timestamp(hashlib.sha256(note).digest())
            verify_timestamp(token, message=note, chain_pem=chain)
        retain_until = self._clock.now() + self._retention
        copies: list[dict[str, Any]] = []
        for offer in self._offers:
            note_blob = _put_once(offer, note_key, note, lambda data: data == note)
            token_blob = _put_once(offer, token_key, token, token_ok)
            copy: dict[str, Any] = {
                "offer": offer.name,
                "note_key": note_key,
                "note_version": note_blob.version_id,
                "token_key": token_key,
                "token_version": token_blob.version_id,
            }
            if isinstance(offer, LockingBlobStore):
                for key, blob in ((note_key, note_blob), (token_key, token_blob)):
                    if blob.version_id is None:
                        raise IntegrityFailure(f"offer {offer.name} gave no version of {key}")
                    until = offer.lock(key, version_id=blob.version_id, retain_until=retain_until)
                copy["retain_until"] = until.isoformat()
            copies.append(copy)
        return token, copies

    # -- reading, for archivists, auditors and admins ---------------------------------------

    @staticmethod
    def _may_read(caller: Caller) -> None:
        if caller.role not in READ_ROLES:
            raise Forbidden(f"role {caller.role.value!r} may not read the logbook")

    # -- reads on behalf of a caller (the API): each leaves one entry ----------------------
    #
    # Consulting the journal is itself a consultation to trace (who read which part of it).
    # The evidence service calls the plain methods below: its own read is its evidence.read.

    def read_entries(
        self,
        caller: Caller,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[LogEntryRecord]:
        """:meth:`entries`, logged ``logbook.entries_read`` (REFUSED for a role that may not)."""
        found: list[LogEntryRecord] = self._access.traced(
            caller,
            "logbook.entries_read",
            subject=("tenant", caller.tenant_id),
            read=lambda: self.entries(caller, start=start, end=end, after_id=after_id, limit=limit),
            details=lambda got: {
                "from": start.isoformat() if start else None,
                "to": end.isoformat() if end else None,
                "after_id": after_id,
                "entries": len(got),
            },
        )
        return found

    def read_lifecycle(
        self, caller: Caller, unit_id: str, *, after_id: int = 0, limit: int | None = None
    ) -> list[LogEntryRecord]:
        """:meth:`lifecycle`, logged ``logbook.lifecycle_read``. The entry's subject is the
        tenant's journal, the unit is in its details: an entry about the unit would join the
        very lifecycle being read, and a reader paging through it would feed it."""
        found: list[LogEntryRecord] = self._access.traced(
            caller,
            "logbook.lifecycle_read",
            subject=("tenant", caller.tenant_id),
            read=lambda: self.lifecycle(caller, unit_id, after_id=after_id, limit=limit),
            details=lambda got: {"unit_id": unit_id, "after_id": after_id, "entries": len(got)},
        )
        return found

    def read_inclusion(
        self, caller: Caller, entry_id: int, tree_size: int | None = None
    ) -> InclusionProof:
        """:meth:`inclusion`, logged ``logbook.proof_read``."""
        proof: InclusionProof = self._access.traced(
            caller,
            "logbook.proof_read",
            subject=("tenant", caller.tenant_id),
            read=lambda: self.inclusion(caller, entry_id, tree_size),
            details=lambda got: {"entry_id": entry_id, "tree_size": got.tree_size},
        )
        return proof

    def entries(
        self,
        caller: Caller,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[LogEntryRecord]:
        self._may_read(caller)
        with self._uow() as uow:
            return uow.logbook.entries(
                caller.tenant_id, start=start, end=end, after_id=after_id, limit=limit
            )

    def lifecycle(
        self, caller: Caller, unit_id: str, *, after_id: int = 0, limit: int | None = None
    ) -> list[LogEntryRecord]:
        """Every entry about the unit, the units below it, their objects, its package and
        the transfer that brought it, in id order."""
        self._may_read(caller)
        with self._uow() as uow:
            unit = uow.archive.get_unit(caller.tenant_id, unit_id)
            if unit is None:
                raise NotFound(f"no archive unit {unit_id}")
            package = uow.archive.get_package(caller.tenant_id, unit.package_id)
            family = uow.archive.units_of_root(caller.tenant_id, unit.root_id)
            objects = uow.archive.objects_of_root(caller.tenant_id, unit.root_id)
            below = _subtree(unit_id, [(u.id, u.parent_id) for u in family])
            subjects = below | {o.id for o in objects if o.archive_unit_id in below}
            if package is not None:
                subjects |= {package.id, package.transfer_id}
            found: list[LogEntryRecord] = []
            while limit is None or len(found) < limit:
                page = uow.logbook.entries(
                    caller.tenant_id,
                    subject_ids=sorted(subjects),
                    after_id=after_id,
                    limit=VERIFY_PAGE if limit is None else limit - len(found),
                )
                found.extend(page)
                if not page or (limit is None and len(page) < VERIFY_PAGE):
                    break
                after_id = page[-1].id
            return found

    def latest_checkpoint(self, caller: Caller) -> CheckpointRecord:
        self._may_read(caller)
        with self._uow() as uow:
            latest = uow.logbook.latest_checkpoint(caller.tenant_id)
        if latest is None:
            raise NotFound("no checkpoint of this tenant's logbook yet")
        return latest

    def inclusion(
        self, caller: Caller, entry_id: int, tree_size: int | None = None
    ) -> InclusionProof:
        """The RFC 9162 inclusion proof of an entry in the tree of ``tree_size`` leaves
        (default: the latest checkpoint's). An entry not yet integrated is integrated now."""
        self._may_read(caller)
        proof = self._inclusion(caller.tenant_id, entry_id, tree_size)
        if proof is None:
            self.integrate(caller.tenant_id)
            proof = self._inclusion(caller.tenant_id, entry_id, tree_size)
        if proof is None:
            raise NotFound(f"no logbook entry {entry_id}")
        return proof

    def _inclusion(
        self, tenant: str, entry_id: int, tree_size: int | None
    ) -> InclusionProof | None:
        """The proof, from one transaction and one query for the nodes; ``None`` when the
        entry is not integrated yet."""
        with self._uow() as uow:
            entry = uow.logbook.get_entry(tenant, entry_id)
            if entry is None:
                raise NotFound(f"no logbook entry {entry_id}")
            index = entry.leaf_index
            if index is None:
                return None
            size = self._tree_size(uow, tenant, tree_size)
            if not 0 <= index < size:
                raise BadRequest(
                    f"entry {entry_id} is leaf {index}: it is not in the tree of size "
                    f"{size} (ask for a tree_size above {index})"
                )
            read = self._tree(uow, tenant, [*inclusion_proof_nodes(index, size), *root_nodes(size)])
            proof = inclusion_proof(index, size, read)
            root = root_hash(size, read)
        return InclusionProof(entry=entry, tree_size=size, root=root, proof=tuple(proof))

    def consistency(self, caller: Caller, size1: int, size2: int | None = None) -> ConsistencyProof:
        """The RFC 9162 consistency proof from the tree of ``size1`` leaves to ``size2``
        (default: the latest checkpoint's)."""
        self._may_read(caller)
        tenant = caller.tenant_id
        with self._uow() as uow:
            size2 = self._tree_size(uow, tenant, size2)
            if not 0 <= size1 <= size2:
                raise BadRequest(f"consistency needs 0 <= from <= to; got from={size1}, to={size2}")
            read = self._tree(
                uow,
                tenant,
                [
                    *consistency_proof_nodes(size1, size2),
                    *root_nodes(size1),
                    *root_nodes(size2),
                ],
            )
            proof = consistency_proof(size1, size2, read)
            root1, root2 = root_hash(size1, read), root_hash(size2, read)
        return ConsistencyProof(size1, size2, root1, root2, tuple(proof))

    @staticmethod
    def _tree_size(uow: UnitOfWork, tenant_id: str, asked: int | None) -> int:
        if asked is None:
            latest = uow.logbook.latest_checkpoint(tenant_id)
            if latest is None:
                raise Conflict("no checkpoint yet: give tree_size, or make a checkpoint")
            return latest.size
        if asked < 1:
            raise BadRequest(f"tree_size must be at least 1, got {asked}")
        head = uow.logbook.head(tenant_id)
        if asked > head.size:
            raise Conflict(
                f"tree_size {asked} is beyond the integrated log (size {head.size}); "
                "entries are integrated before each checkpoint"
            )
        return asked

    @staticmethod
    def _tree(uow: UnitOfWork, tenant_id: str, wanted: Sequence[tuple[int, int]]) -> SubtreeReader:
        """A reader of the tenant's stored tree holding the subtrees ``wanted`` (those a
        computation reads: ``core.logbook.merkle.*_nodes``), fetched in one query."""
        found = uow.logbook.nodes(tenant_id, wanted)

        def read(level: int, index: int) -> bytes:
            try:
                return found[(level, index)]
            except KeyError:
                raise IntegrityFailure(
                    f"the log of {tenant_id} has lost the Merkle node at level {level}, "
                    f"index {index} (an entry deleted?)"
                ) from None

        return read

    # -- detection ---------------------------------------------------------------------------

    def verify_all(self) -> list[VerificationReport]:
        return [self.verify(tenant_id) for tenant_id in self.tenants()]

    def verify(self, tenant_id: str) -> VerificationReport:
        """Recompute the tenant's log from the canonical bytes in the database and check it
        against every checkpoint in storage and in the database (see the module docstring)."""
        report = VerificationReport(tenant_id)
        self._verify_entries(tenant_id, report)
        tree, intact = self._rebuild(tenant_id, report)
        with self._uow() as uow:
            head = uow.logbook.head(tenant_id)
            recorded = uow.logbook.checkpoints(tenant_id)
        authentic = self._verify_checkpoints(tenant_id, recorded, report)
        if head.size > tree.size:
            report.fail(
                "log-truncated",
                f"the log head says {head.size} entries were integrated; the database holds "
                f"{tree.size}",
                expected=str(head.size),
                found=str(tree.size),
            )
        elif head.size and intact >= head.size:
            ours = tree.root(head.size)
            if ours != head.root:
                report.fail(
                    "tree-mismatch",
                    f"the log head's root at size {head.size} is not the root of the entries",
                    expected=head.root.hex(),
                    found=ours.hex(),
                )
        previous: tuple[int, bytes] | None = None
        for size in sorted(authentic):
            root = authentic[size]
            self._compare(tenant_id, size, root, tree, intact, previous, report)
            if previous is not None:
                self._check_consistency(tenant_id, previous, (size, root), report)
            previous = (size, root)
        report.checkpoints = sorted(authentic)
        if tree.size > (max(authentic) if authentic else 0):
            report.notes.append(
                f"{tree.size - (max(authentic) if authentic else 0)} integrated entries are "
                "not covered by a checkpoint yet"
            )
        return report

    def _verify_entries(self, tenant_id: str, report: VerificationReport) -> None:
        """Each entry's columns give its canonical bytes; an integrated entry's leaf hash is
        the hash of those bytes."""
        edited = 0
        for entry in self._all_entries(tenant_id):
            report.entries += 1
            if entry.event.canonical(entry.id) != entry.canonical:
                edited += 1
                report.fail(
                    "entry-edited",
                    f"entry {entry.id}: its columns no longer give its canonical bytes "
                    f"({_changed_fields(entry)})",
                    expected=entry.canonical.decode("utf-8", "replace"),
                    found=entry.event.canonical(entry.id).decode("utf-8", "replace"),
                )
            if entry.leaf_hash is not None and leaf_hash(entry.canonical) != entry.leaf_hash:
                edited += 1
                report.fail(
                    "entry-edited",
                    f"entry {entry.id} (leaf {entry.leaf_index}): its canonical bytes do not "
                    "hash to the leaf hash integrated",
                    expected=entry.leaf_hash.hex(),
                    found=leaf_hash(entry.canonical).hex(),
                )
        if not edited:
            report.checks.append(
                f"{report.entries} entries: columns match canonical bytes and leaf hashes"
            )

    def _all_entries(self, tenant_id: str) -> Iterator[LogEntryRecord]:
        after = 0
        while True:
            with self._uow() as uow:
                page = uow.logbook.entries(tenant_id, after_id=after, limit=VERIFY_PAGE)
            yield from page
            if len(page) < VERIFY_PAGE:
                return
            after = page[-1].id

    def _rebuild(self, tenant_id: str, report: VerificationReport) -> tuple[MemoryTree, int]:
        """The tree of the integrated entries' canonical bytes, in leaf order, and how many
        leaves are intact (before the first missing one)."""
        tree = MemoryTree()
        intact: int | None = None
        next_leaf = 0
        while True:
            with self._uow() as uow:
                page = uow.logbook.entries_by_leaf(
                    tenant_id, from_leaf=next_leaf, limit=VERIFY_PAGE
                )
            for entry in page:
                assert entry.leaf_index is not None
                if entry.leaf_index != next_leaf:
                    if intact is None:
                        intact = next_leaf
                    report.fail(
                        "entry-deleted",
                        f"leaves {next_leaf} to {entry.leaf_index - 1} are missing: "
                        f"{entry.leaf_index - next_leaf} entries deleted from the database "
                        f"(before entry {entry.id})",
                        expected=f"leaf {next_leaf}",
                        found=f"leaf {entry.leaf_index}",
                    )
                tree.append(leaf_hash(entry.canonical))
                next_leaf = entry.leaf_index + 1
            if len(page) < VERIFY_PAGE:
                break
        report.integrated = tree.size
        return tree, tree.size if intact is None else intact

    def _verify_checkpoints(
        self, tenant_id: str, recorded: Sequence[CheckpointRecord], report: VerificationReport
    ) -> dict[int, bytes]:
        """Authentic checkpoints by size (signature by our key, origin, token), from every
        offer and the database; each copy that is not is a finding."""
        seen: dict[int, _Seen] = {}
        prefix = checkpoint_prefix(tenant_id)
        for offer in self._offers:
            for key in offer.iter_keys(prefix):
                match = _NAME.match(key[len(prefix) :])
                if match is None:
                    continue
                data = _read(offer, key)
                if data is None:
                    continue
                copies = seen.setdefault(int(match.group(1)), _Seen())
                (copies.notes if match.group(2) == "note" else copies.tokens)[offer.name] = data
        for record in recorded:
            copies = seen.setdefault(record.size, _Seen())
            copies.notes["database"] = record.note
            copies.tokens["database"] = record.token
        chain = self._tsa.certificate_chain_pem()
        authentic: dict[int, bytes] = {}
        for size in sorted(seen):
            copies = seen[size]
            roots: dict[str, bytes] = {}
            for source, note in copies.notes.items():
                cp = self._check_note(tenant_id, size, source, note, report)
                if cp is None:
                    continue
                token = copies.tokens.get(source)
                if token is None:
                    report.fail(
                        "checkpoint-missing",
                        f"checkpoint {size}: {source} holds the note but no RFC 3161 token",
                    )
                else:
                    try:
                        verify_timestamp(token, message=note, chain_pem=chain)
                    except TimestampInvalid as exc:
                        report.fail(
                            "checkpoint-token-invalid",
                            f"checkpoint {size} in {source}: its RFC 3161 token does not verify "
                            f"over the note: {exc.message}",
                        )
                roots[source] = cp.root
            for source in set(copies.tokens) - set(copies.notes):
                report.fail(
                    "checkpoint-missing", f"checkpoint {size}: {source} holds a token but no note"
                )
            distinct = set(roots.values())
            if len(distinct) > 1:
                report.fail(
                    "checkpoint-fork",
                    f"checkpoint {size}: validly signed notes with different roots "
                    + ", ".join(f"{s}={r.hex()}" for s, r in sorted(roots.items())),
                )
            elif distinct:
                authentic[size] = distinct.pop()
            stored = set(copies.notes) - {"database"}
            if "database" in copies.notes:
                for offer in self._offers:
                    if offer.name not in stored:
                        report.fail(
                            "checkpoint-missing",
                            f"checkpoint {size} is recorded in the database but offer "
                            f"{offer.name} does not hold it",
                        )
                for source in stored:
                    if copies.notes[source] != copies.notes["database"]:
                        report.fail(
                            "checkpoint-edited",
                            f"checkpoint {size}: the database copy differs from {source}'s",
                            expected=copies.notes[source].decode("utf-8", "replace"),
                            found=copies.notes["database"].decode("utf-8", "replace"),
                        )
            elif stored:
                report.notes.append(
                    f"checkpoint {size} is in storage but not recorded in the database "
                    "(a checkpoint run stopped before its last step)"
                )
        if not seen:
            report.notes.append("no checkpoint yet")
        elif authentic:
            report.checks.append(
                f"{len(authentic)} checkpoints: signatures by {self.key_name} and RFC 3161 "
                "tokens over the notes"
            )
        return authentic

    def _check_note(
        self, tenant_id: str, size: int, source: str, note: bytes, report: VerificationReport
    ) -> Checkpoint | None:
        where = f"checkpoint {size} in {source}"
        ours = key_id(self.key_name, self.public_key_raw)
        try:
            cp = verify_checkpoint(note, self._public, self.key_name)
        except CheckpointError as exc:
            try:
                _body, signatures = parse_signed_note(note)
            except CheckpointError:
                signatures = []
            if signatures and not any(
                s.key_name == self.key_name and s.key_id == ours for s in signatures
            ):
                report.fail(
                    "checkpoint-wrong-key",
                    f"{where} is signed by another key",
                    expected=f"{self.key_name}/{ours.hex()}",
                    found=", ".join(f"{s.key_name}/{s.key_id.hex()}" for s in signatures),
                )
            else:
                report.fail("checkpoint-edited", f"{where} does not verify: {exc}")
            return None
        if cp.origin != self.origin(tenant_id) or cp.size != size:
            report.fail(
                "checkpoint-edited",
                f"{where} is signed for another log or size",
                expected=f"{self.origin(tenant_id)} size {size}",
                found=f"{cp.origin} size {cp.size}",
            )
            return None
        return cp

    def _compare(
        self,
        tenant_id: str,
        size: int,
        root: bytes,
        tree: MemoryTree,
        intact: int,
        previous: tuple[int, bytes] | None,
        report: VerificationReport,
    ) -> None:
        """The entries in the database give the root a checkpoint signed."""
        if size > tree.size:
            report.fail(
                "log-truncated",
                f"checkpoint {size} covers {size} entries; the database holds {tree.size} "
                "integrated entries",
                expected=str(size),
                found=str(tree.size),
            )
            return
        if size > intact:
            return  # already named: entries deleted below this size
        ours = tree.root(size)
        if ours == root:
            report.checks.append(f"checkpoint {size}: the root of the entries in the database")
            return
        since = previous[0] if previous is not None else 0
        report.fail(
            "log-rewritten",
            f"checkpoint {size}: the entries in the database give another root; an entry "
            f"among leaves {since} to {size - 1} was changed",
            expected=root.hex(),
            found=ours.hex(),
        )

    def _check_consistency(
        self,
        tenant_id: str,
        older: tuple[int, bytes],
        newer: tuple[int, bytes],
        report: VerificationReport,
    ) -> None:
        """The stored tree proves the newer checkpoint extends the older one."""
        (size1, root1), (size2, root2) = older, newer
        try:
            with self._uow() as uow:
                read = self._tree(uow, tenant_id, consistency_proof_nodes(size1, size2))
                proof = consistency_proof(size1, size2, read)
            verify_consistency(size1, size2, root1, root2, proof)
        except (ProofError, IntegrityFailure) as exc:
            report.fail(
                "checkpoints-inconsistent",
                f"no consistency proof from checkpoint {size1} to {size2} in the stored tree: "
                f"{getattr(exc, 'message', exc)}",
            )
            return
        report.checks.append(f"checkpoints {size1} -> {size2}: consistency proof holds")


def _subtree(root_id: str, edges: Sequence[tuple[str, str | None]]) -> set[str]:
    children: dict[str | None, list[str]] = {}
    for unit_id, parent in edges:
        children.setdefault(parent, []).append(unit_id)
    found, todo = set(), [root_id]
    while todo:
        node = todo.pop()
        found.add(node)
        todo.extend(children.get(node, []))
    return found


def _changed_fields(entry: LogEntryRecord) -> str:
    try:
        signed = json.loads(entry.canonical)
        now = json.loads(entry.event.canonical(entry.id))
    except ValueError:
        return "canonical bytes unreadable"
    names = sorted(k for k in set(signed) | set(now) if signed.get(k) != now.get(k))
    return "changed: " + ", ".join(names) if names else "bytes differ"


def _read(offer: BlobStore, key: str) -> bytes | None:
    """The bytes of ``key``'s object (on S3 its first version), not of a recorded version:
    checkpoints are written once and never repaired, and their reads stay independent of the
    database, which storage is the witness against."""
    try:
        stream = offer.open(key)
    except NotFound:
        return None
    with stream:
        return stream.read()


def _put_once(offer: BlobStore, key: str, data: bytes, accept: Callable[[bytes], bool]) -> Any:
    """Store ``data`` under the write-once ``key``, or accept what is there already."""
    try:
        return offer.put_bytes(key, data)
    except Conflict:
        existing = _read(offer, key)
        if existing is None or not accept(existing):
            raise IntegrityFailure(
                f"offer {offer.name} holds other bytes at {key}; they are kept (write-once)"
            ) from None
        blob = offer.stat(key)
        if blob is None:
            raise IntegrityFailure(f"offer {offer.name} lost {key} while it was read") from None
        return blob
