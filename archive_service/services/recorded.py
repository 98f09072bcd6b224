"""Reading what the database recorded: each copy at the version it recorded.

Every read of an archived blob (object content, manifest, token) that has its copy records at
hand goes through :func:`open_recorded`: on an offer with versions (S3), the key's first
version is not necessarily the copy — a repair may have replaced a corrupt locked version with
a new one, and only the database knows which version holds the verified bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from archive_service.errors import ArchiveError, Unavailable
from archive_service.ports import BlobStore, Caller, CopyRecord, PackageRecord, UnitOfWork
from archive_service.services.access_log import REFUSED, AccessLog
from archive_service.services.communicability import AccessGuard, gone_error


def recorded_versions(copies: Iterable[CopyRecord], key: str) -> dict[str, str | None]:
    """Offer name → the version id recorded for ``key`` there (``None``: an offer without
    versions); offers with no recorded copy of ``key`` are absent."""
    return {c.offer: c.version_id for c in copies if c.key == key}


def open_recorded(
    offers: Sequence[BlobStore], copies: Iterable[CopyRecord], key: str
) -> tuple[BinaryIO, str]:
    """Open ``key`` on the first offer (in configured order) that holds a recorded copy of it,
    at the recorded version; the next one if it fails. Offers with no recorded copy of ``key``
    are not read (what they may hold was never verified). Returns the stream and the offer's
    name; ``Unavailable`` naming each offer's failure if none could serve it."""
    versions = recorded_versions(copies, key)
    errors: list[str] = []
    for offer in offers:
        if offer.name not in versions:
            continue
        try:
            return offer.open(key, version_id=versions[offer.name]), offer.name
        except ArchiveError as exc:
            errors.append(f"{offer.name}: {exc.message}")
    if not versions:
        errors.append(f"no copy of {key} is recorded")
    elif not errors:
        errors.append(f"no configured offer holds a recorded copy of {key}")
    raise Unavailable("no storage offer could serve the object: " + "; ".join(errors))


@dataclass(frozen=True, slots=True)
class RecordedReader:
    """Reads a package's manifest or token for a caller, from its recorded copy, and logs the
    read (``FAILED`` when storage fails). A package a disposal purged whole (every unit gone,
    so its manifest and token too) answers ``Gone`` with a tombstone, logged ``REFUSED``."""

    uow: Callable[[], UnitOfWork]
    offers: Sequence[BlobStore]
    log: AccessLog
    guard: AccessGuard

    def read(
        self,
        caller: Caller,
        event: str,
        *,
        unit_id: str,
        package: PackageRecord,
        key: str,
        details: dict[str, Any],
        what: str,
        purged_reason: str | None = None,
    ) -> bytes:
        subject = {"subject_type": "archive_unit", "subject_id": unit_id}
        with self.uow() as uow:
            copies = uow.archive.copies_of_key(package.tenant_id, package.id, key)
            units = (
                []
                if copies
                else [
                    u
                    for u in uow.archive.units_of_root(package.tenant_id, package.root_unit_id)
                    if u.package_id == package.id
                ]
            )
        gone = next((g for g in map(self.guard.gone, units) if g is not None), None)
        if gone is not None:
            self.log.append(
                caller,
                event,
                **subject,
                details={
                    **details,
                    "reason": purged_reason or f"archive unit {gone['unit_status']}",
                    "gone": gone,
                },
                outcome=REFUSED,
            )
            raise gone_error(what, gone)
        try:
            stream, offer = open_recorded(self.offers, copies, key)
            with stream:
                data = stream.read()
        except ArchiveError as exc:
            self.log.failed(caller, event, exc, **subject, details=details)
            raise
        self.log.append(
            caller, event, **subject, details={**details, "offer": offer, "bytes": len(data)}
        )
        return data
