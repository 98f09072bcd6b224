"""Storage administration: the health of each storage offer, and the repair of missing or
corrupt copies from a healthy one.

``check`` asks each configured offer whether it answers (and, for S3, whether its bucket has
versioning and Object Lock), and counts the copies the database records on it.

``repair`` walks packages (one dossier's, or all of them). The copies a package should have
are every key the database records for it (``stored_copies``, on any offer) on every
configured offer, with the SHA-256 the database recorded. Each copy is read back, at the
version the database recorded for it on that offer (an offer with no record of the key: the
key's object); one that is missing, or whose bytes hash to another digest, is rewritten from
an offer whose copy reads back with the right digest (the source is read at the version just
verified), read back, locked like the other copies on offers with Object Lock, recorded, and
logged (``copy.repaired``). Healthy copies are never touched. Write-once rules:

* a missing copy on an offer without versions, or of a key the offer never held, is simply
  put (write-once: the key is free on that offer);
* a corrupt copy on an offer without versions (a local directory) is removed, then rewritten:
  the offer has no other way to replace it, and a healthy copy exists elsewhere;
* on an offer with versions (S3), a recorded version that is missing or corrupt is replaced by
  a *new version* of the key (``VersionedBlobStore.put_version``): the bad version is never
  deleted (Object Lock would refuse it anyway) and stays the key's first version, but every
  read of a recorded copy is pinned to the version the database records (services/recorded.py),
  which is now the new one. The new version is locked in COMPLIANCE mode until the latest
  retain-until date of the key's other versions found (the version it replaces, the copies on
  other offers), at least the offer's configured minimum.

Whenever a repair replaces a version (a recorded one missing or corrupt, or a corrupt one the
database did not record), the replaced version is recorded as superseded
(``superseded_copies``: version id, expected and found digests, why, the version that replaced
it) and named in the ``copy.repaired`` entry (``superseded_version_id``). A healthy copy that
the database recorded without a version id, or did not record at all, is recorded with the
version read (``copy.recorded``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal

from archive_service.errors import ArchiveError, IntegrityFailure, NotFound
from archive_service.ports import (
    BlobStore,
    BucketCheck,
    Clock,
    CopyRecord,
    LockingBlobStore,
    LogEvent,
    PackageRecord,
    RetentionReader,
    SupersededRecord,
    UnitOfWork,
    VersionedBlobStore,
)

CHUNK_SIZE = 1024 * 1024
#: A key no archived object uses: ``stat`` on it proves the offer answers.
PROBE_KEY = "health/probe"

CopyState = Literal["ok", "missing", "corrupt", "unreachable"]
Outcome = Literal["ok", "repaired", "recorded", "failed"]


@dataclass(frozen=True, slots=True)
class OfferHealth:
    name: str
    object_lock: bool
    healthy: bool
    detail: str
    copies: int


@dataclass(frozen=True, slots=True)
class CopyOutcome:
    package_id: str
    offer: str
    key: str
    outcome: Outcome
    detail: str = ""
    source: str | None = None


@dataclass(slots=True)
class RepairReport:
    packages: int = 0
    outcomes: list[CopyOutcome] = field(default_factory=list)

    @property
    def checked(self) -> int:
        return len(self.outcomes)

    @property
    def repaired(self) -> list[CopyOutcome]:
        return [o for o in self.outcomes if o.outcome == "repaired"]

    @property
    def failed(self) -> list[CopyOutcome]:
        return [o for o in self.outcomes if o.outcome == "failed"]

    @property
    def complete(self) -> bool:
        return not self.failed


@dataclass(frozen=True, slots=True)
class _Expected:
    kind: str
    sha256: str


@dataclass(frozen=True, slots=True)
class _Found:
    state: CopyState
    detail: str = ""
    size: int = 0
    sha256: str | None = None
    version_id: str | None = None


class StorageAdminService:
    def __init__(
        self, *, uow: Callable[[], UnitOfWork], offers: Sequence[BlobStore], clock: Clock
    ) -> None:
        self._uow = uow
        self._offers = tuple(offers)
        self._clock = clock

    # -- check -----------------------------------------------------------------------------

    def check(self) -> list[OfferHealth]:
        with self._uow() as uow:
            counts = uow.archive.copy_counts()
        return [self._health(offer, counts.get(offer.name, 0)) for offer in self._offers]

    def _health(self, offer: BlobStore, copies: int) -> OfferHealth:
        locking = isinstance(offer, LockingBlobStore)
        try:
            if isinstance(offer, BucketCheck):
                offer.ensure_bucket()
            offer.stat(PROBE_KEY)
        except ArchiveError as exc:
            return OfferHealth(offer.name, locking, False, exc.message, copies)
        except OSError as exc:
            return OfferHealth(offer.name, locking, False, f"{type(exc).__name__}: {exc}", copies)
        detail = "reachable"
        if isinstance(offer, BucketCheck):
            detail += "; bucket versioned with Object Lock"
        return OfferHealth(offer.name, locking, True, detail, copies)

    # -- repair ----------------------------------------------------------------------------

    def packages_of_unit(self, unit_id: str) -> list[PackageRecord]:
        with self._uow() as uow:
            unit = uow.archive.unit_any_tenant(unit_id)
            package = uow.archive.get_package(unit.tenant_id, unit.package_id) if unit else None
        if package is None:
            raise NotFound(f"no archive unit {unit_id}")
        return [package]

    def all_packages(self) -> list[PackageRecord]:
        with self._uow() as uow:
            return uow.archive.all_packages()

    def repair(
        self, packages: Sequence[PackageRecord], *, keys: Collection[str] | None = None
    ) -> RepairReport:
        """Repair the copies of ``packages`` (only of ``keys``, when given: the integrity
        audit names the keys it found wrong)."""
        report = RepairReport()
        for package in packages:
            report.packages += 1
            report.outcomes.extend(self._repair_package(package, keys))
        return report

    def _repair_package(
        self, package: PackageRecord, keys: Collection[str] | None = None
    ) -> list[CopyOutcome]:
        with self._uow() as uow:
            recorded = uow.archive.copies_of_package(package.tenant_id, package.id)
        expected: dict[str, _Expected] = {}
        rows: dict[tuple[str, str], CopyRecord] = {}
        for copy in recorded:
            if keys is not None and copy.key not in keys:
                continue
            expected.setdefault(copy.key, _Expected(copy.kind, copy.sha256))
            rows[(copy.offer, copy.key)] = copy
        outcomes: list[CopyOutcome] = []
        for key, want in expected.items():
            found: dict[str, _Found] = {}
            for offer in self._offers:
                row = rows.get((offer.name, key))
                found[offer.name] = self._read_back(
                    offer, key, want.sha256, row.version_id if row else None
                )
            for offer in self._offers:
                state = found[offer.name]
                if state.state == "ok":
                    outcomes.append(
                        self._ok(package, offer, key, want, state, rows.get((offer.name, key)))
                    )
                    continue
                outcomes.append(
                    self._repair_copy(package, offer, key, want, found, rows.get((offer.name, key)))
                )
        return outcomes

    def _read_back(
        self, offer: BlobStore, key: str, sha256: str, version_id: str | None = None
    ) -> _Found:
        """Read ``version_id`` of ``key`` (the recorded one; ``None``: the key's object)."""
        absent = f"version {version_id} absent" if version_id else "absent"
        try:
            stat = offer.stat(key, version_id=version_id)
            if stat is None:
                return _Found("missing", absent)
            with offer.open(key, version_id=stat.version_id) as stream:
                size, digest = _hash_stream(stream)
        except NotFound:
            return _Found("missing", absent)
        except ArchiveError as exc:
            return _Found("unreachable", exc.message)
        except OSError as exc:
            return _Found("unreachable", f"{type(exc).__name__}: {exc}")
        if digest != sha256:
            detail = f"reads back sha256 {digest}, expected {sha256}"
            if stat.version_id:
                detail = f"version {stat.version_id} {detail}"
            return _Found("corrupt", detail, size, digest, stat.version_id)
        return _Found("ok", size=size, sha256=digest, version_id=stat.version_id)

    def _ok(
        self,
        package: PackageRecord,
        offer: BlobStore,
        key: str,
        want: _Expected,
        found: _Found,
        row: CopyRecord | None,
    ) -> CopyOutcome:
        """A healthy copy: left alone; recorded if the database did not know it yet, or knew
        another version of it."""
        if row is not None and (row.version_id is None or row.version_id == found.version_id):
            return CopyOutcome(package.id, offer.name, key, "ok")
        if row is not None:
            self._record(package, offer, key, want, found.size, found.version_id, row=row)
            detail = f"healthy version {found.version_id}, recorded {row.version_id}"
            return CopyOutcome(package.id, offer.name, key, "recorded", detail)
        # The version read and verified (the key's object, there being no record to pin to).
        self._record(package, offer, key, want, found.size, found.version_id)
        return CopyOutcome(package.id, offer.name, key, "recorded", "healthy copy not in database")

    def _repair_copy(
        self,
        package: PackageRecord,
        offer: BlobStore,
        key: str,
        want: _Expected,
        states: dict[str, _Found],
        row: CopyRecord | None = None,
    ) -> CopyOutcome:
        def failed(detail: str) -> CopyOutcome:
            return CopyOutcome(package.id, offer.name, key, "failed", detail)

        found = states[offer.name]
        sources = [o for o in self._offers if states[o.name].state == "ok"]
        if found.state == "unreachable":
            return failed(f"offer unreachable: {found.detail}")
        versioned = isinstance(offer, VersionedBlobStore)
        if found.state == "corrupt" and isinstance(offer, LockingBlobStore) and not versioned:
            return failed(
                f"{found.detail}; the offer is write-once with Object Lock and cannot add a "
                "version: the copy is not replaced (operator action needed)"
            )
        # A new version when a version is replaced (or the key may hold stray versions).
        new_version = versioned and (row is not None or found.state == "corrupt")
        errors: list[str] = []
        for source in sources:
            try:
                version_id = self._copy(
                    source,
                    states[source.name].version_id,
                    offer,
                    key,
                    want.sha256,
                    found,
                    new_version=new_version,
                )
            except ArchiveError as exc:
                errors.append(f"from {source.name}: {exc.message}")
                continue
            except OSError as exc:
                errors.append(f"from {source.name}: {type(exc).__name__}: {exc}")
                continue
            locked = self._lock_like_others(offer, key, version_id, states)
            self._record(
                package, offer, key, want, None, version_id, source, found, locked, row=row
            )
            detail = f"was {found.state}" + (f" ({found.detail})" if found.detail else "")
            return CopyOutcome(package.id, offer.name, key, "repaired", detail, source.name)
        if not sources:
            return failed(f"{found.state}, and no offer holds a copy with sha256 {want.sha256}")
        return failed(f"{found.state}; " + "; ".join(errors))

    def _copy(
        self,
        source: BlobStore,
        source_version: str | None,
        target: BlobStore,
        key: str,
        sha256: str,
        found: _Found,
        *,
        new_version: bool = False,
    ) -> str | None:
        """Copy ``source_version`` of ``key`` (the one verified) from ``source`` to ``target``
        through a verified temporary file; on ``target`` as a new version if ``new_version``."""
        with tempfile.TemporaryDirectory(prefix="archive-repair-") as tmp:
            path = Path(tmp) / "blob"
            digest = hashlib.sha256()
            with source.open(key, version_id=source_version) as stream, path.open("wb") as out:
                for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != sha256:
                raise IntegrityFailure(
                    f"offer {source.name}: {key} changed while copied "
                    f"(sha256 {digest.hexdigest()}, expected {sha256})"
                )
            if new_version and isinstance(target, VersionedBlobStore):
                # The bad or lost version is kept; reads pinned to the new one serve it.
                stored = target.put_version(key, path, sha256=sha256)
            else:
                if found.state == "corrupt":
                    # Only on an offer without versions (see the module docstring), and only
                    # now that a verified copy is in hand.
                    target.delete(key)
                stored = target.put_file(key, path, sha256=sha256)
        check = self._read_back(target, key, sha256, stored.version_id)
        if check.state != "ok":
            raise IntegrityFailure(
                f"offer {target.name}: {key} after the copy: {check.state} {check.detail}"
            )
        return stored.version_id

    def _lock_like_others(
        self, offer: BlobStore, key: str, version_id: str | None, states: dict[str, _Found]
    ) -> str:
        """Lock the new version until the latest retain-until of the key's other versions read
        (on other offers, and the version it replaces on this one: the unit's retention)."""
        if not isinstance(offer, LockingBlobStore) or version_id is None:
            return ""
        until: datetime | None = None
        for other in self._offers:
            other_version = states[other.name].version_id if other.name in states else None
            if not isinstance(other, RetentionReader) or other_version in (None, version_id):
                continue
            try:
                retention = other.retention(key, version_id=other_version)
            except ArchiveError:
                continue
            if retention is not None and retention.retain_until is not None:
                until = max(until, retention.retain_until) if until else retention.retain_until
        # No other locked copy to match: the offer's configured minimum applies.
        in_force = offer.lock(key, version_id=version_id, retain_until=until or self._clock.now())
        return in_force.isoformat()

    def _record(
        self,
        package: PackageRecord,
        offer: BlobStore,
        key: str,
        want: _Expected,
        size: int | None,
        version_id: str | None,
        source: BlobStore | None = None,
        found: _Found | None = None,
        locked: str = "",
        *,
        row: CopyRecord | None = None,
    ) -> None:
        now = self._clock.now()
        if size is None:
            stat = offer.stat(key, version_id=version_id)
            size = stat.size if stat else 0
        with self._uow() as uow:
            uow.archive.upsert_copy(
                CopyRecord(
                    tenant_id=package.tenant_id,
                    package_id=package.id,
                    kind=want.kind,
                    offer=offer.name,
                    key=key,
                    size=size,
                    sha256=want.sha256,
                    stored_at=now,
                    version_id=version_id,
                )
            )
            # The version replaced: the recorded one, or a corrupt one nobody recorded.
            replaced = row.version_id if row is not None else found.version_id if found else None
            if row is not None or replaced is not None:
                uow.audit.add_superseded(
                    SupersededRecord(
                        tenant_id=package.tenant_id,
                        package_id=package.id,
                        offer=offer.name,
                        key=key,
                        version_id=replaced,
                        sha256=row.sha256 if row is not None else want.sha256,
                        found_sha256=found.sha256 if found is not None else None,
                        reason=found.state if found is not None else "version_mismatch",
                        superseded_by=version_id,
                        superseded_at=now,
                    )
                )
            details: dict[str, object] = {
                "offer": offer.name,
                "key": key,
                "sha256": want.sha256,
                "version_id": version_id,
            }
            if replaced is not None:
                details["superseded_version_id"] = replaced
            if source is not None and found is not None:
                details.update(source=source.name, was=found.state)
                if locked:
                    details["retain_until"] = locked
            uow.logbook.append(
                LogEvent(
                    tenant_id=package.tenant_id,
                    at=now,
                    # A healthy copy the database did not know is recorded, not repaired.
                    event_type="copy.repaired" if source is not None else "copy.recorded",
                    outcome="OK",
                    subject_type="package",
                    subject_id=package.id,
                    details=details,
                )
            )
            uow.commit()


def _hash_stream(stream: BinaryIO) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()
