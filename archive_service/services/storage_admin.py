"""Storage administration: the health of each storage offer, and the repair of missing or
corrupt copies from a healthy one.

``check`` asks each configured offer whether it answers (and, for S3, whether its bucket has
versioning and Object Lock), and counts the copies the database records on it.

``repair`` walks packages (one dossier's, or all of them). The copies a package should have
are every key the database records for it (``stored_copies``, on any offer) on every
configured offer, with the SHA-256 the database recorded. Each copy is read back; one that is
missing, or whose bytes hash to another digest, is rewritten from an offer whose copy reads
back with the right digest, verified, locked like the other copies on offers with Object Lock,
recorded, and logged (``copy.repaired``). Healthy copies are never touched. Write-once rules:

* a missing copy is simply put (the key is free on that offer);
* a corrupt copy on an offer without Object Lock (a local directory) is removed, then
  rewritten: the offer has no other way to replace it, and a healthy copy exists elsewhere;
* a corrupt copy on an offer with Object Lock is left alone and reported: its version is the
  object of a write-once key (reads serve the first version, the server refuses to delete a
  locked one), so putting another version would not repair what is read.

Whenever a repair replaces the copy a row recorded (a missing version, corrupt bytes), the
replaced version is recorded as superseded (``superseded_copies``: version id, expected and
found digests, the version that replaced it); on S3 the new copy is a new version of the key
and every older version stays in the bucket. A healthy copy whose version is not the one the
database recorded (the recorded version was removed by the cluster's operator, and an older
stray version of the key is now the object) is recorded with its version, the recorded one
superseded (``version_mismatch``).
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
            found = {offer.name: self._read_back(offer, key, want.sha256) for offer in self._offers}
            sources = [o for o in self._offers if found[o.name].state == "ok"]
            for offer in self._offers:
                state = found[offer.name]
                if state.state == "ok":
                    outcomes.append(
                        self._ok(package, offer, key, want, state, rows.get((offer.name, key)))
                    )
                    continue
                outcomes.append(
                    self._repair_copy(
                        package, offer, key, want, state, sources, rows.get((offer.name, key))
                    )
                )
        return outcomes

    def _read_back(self, offer: BlobStore, key: str, sha256: str) -> _Found:
        try:
            stat = offer.stat(key)
            if stat is None:
                return _Found("missing", "absent")
            with offer.open(key) as stream:
                size, digest = _hash_stream(stream)
        except NotFound:
            return _Found("missing", "absent")
        except ArchiveError as exc:
            return _Found("unreachable", exc.message)
        except OSError as exc:
            return _Found("unreachable", f"{type(exc).__name__}: {exc}")
        if digest != sha256:
            detail = f"reads back sha256 {digest}, expected {sha256}"
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
        try:
            stat = offer.stat(key)
        except ArchiveError as exc:
            return CopyOutcome(package.id, offer.name, key, "failed", exc.message)
        self._record(package, offer, key, want, found.size, stat.version_id if stat else None)
        return CopyOutcome(package.id, offer.name, key, "recorded", "healthy copy not in database")

    def _repair_copy(
        self,
        package: PackageRecord,
        offer: BlobStore,
        key: str,
        want: _Expected,
        found: _Found,
        sources: Sequence[BlobStore],
        row: CopyRecord | None = None,
    ) -> CopyOutcome:
        def failed(detail: str) -> CopyOutcome:
            return CopyOutcome(package.id, offer.name, key, "failed", detail)

        if found.state == "unreachable":
            return failed(f"offer unreachable: {found.detail}")
        if found.state == "corrupt" and isinstance(offer, LockingBlobStore):
            return failed(
                f"{found.detail}; the offer is write-once with Object Lock: its version is "
                "not replaced (operator action needed)"
            )
        errors: list[str] = []
        for source in sources:
            try:
                version_id = self._copy(source, offer, key, want.sha256, found)
            except ArchiveError as exc:
                errors.append(f"from {source.name}: {exc.message}")
                continue
            except OSError as exc:
                errors.append(f"from {source.name}: {type(exc).__name__}: {exc}")
                continue
            locked = self._lock_like_others(offer, key, version_id)
            self._record(
                package, offer, key, want, None, version_id, source, found, locked, row=row
            )
            detail = f"was {found.state}" + (f" ({found.detail})" if found.detail else "")
            return CopyOutcome(package.id, offer.name, key, "repaired", detail, source.name)
        if not sources:
            return failed(f"{found.state}, and no offer holds a copy with sha256 {want.sha256}")
        return failed(f"{found.state}; " + "; ".join(errors))

    def _copy(
        self, source: BlobStore, target: BlobStore, key: str, sha256: str, found: _Found
    ) -> str | None:
        """Copy ``key`` from ``source`` to ``target`` through a verified temporary file."""
        with tempfile.TemporaryDirectory(prefix="archive-repair-") as tmp:
            path = Path(tmp) / "blob"
            digest = hashlib.sha256()
            with source.open(key) as stream, path.open("wb") as out:
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
            if found.state == "corrupt":
                # Only on an offer without Object Lock (see the module docstring), and only
                # now that a verified copy is in hand.
                target.delete(key)
            stored = target.put_file(key, path, sha256=sha256)
        check = self._read_back(target, key, sha256)
        if check.state != "ok":
            raise IntegrityFailure(
                f"offer {target.name}: {key} after the copy: {check.state} {check.detail}"
            )
        return stored.version_id

    def _lock_like_others(self, offer: BlobStore, key: str, version_id: str | None) -> str:
        """Lock the new version until the latest retain-until of the other locked copies."""
        if not isinstance(offer, LockingBlobStore) or version_id is None:
            return ""
        until: datetime | None = None
        for other in self._offers:
            if other is offer or not isinstance(other, RetentionReader):
                continue
            try:
                stat = other.stat(key)
                if stat is None or stat.version_id is None:
                    continue
                retention = other.retention(key, version_id=stat.version_id)
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
            stat = offer.stat(key)
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
            if row is not None:
                uow.audit.add_superseded(
                    SupersededRecord(
                        tenant_id=package.tenant_id,
                        package_id=package.id,
                        offer=offer.name,
                        key=key,
                        version_id=row.version_id,
                        sha256=row.sha256,
                        found_sha256=found.sha256 if found is not None else None,
                        reason=found.state if found is not None else "version_mismatch",
                        superseded_by=version_id,
                        superseded_at=now,
                    )
                )
            details = {
                "offer": offer.name,
                "key": key,
                "sha256": want.sha256,
                "version_id": version_id,
            }
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
