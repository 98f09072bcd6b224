"""Reading what the database recorded: each copy at the version it recorded.

Every read of an archived blob (object content, manifest, token) that has its copy records at
hand goes through :func:`open_recorded`: on an offer with versions (S3), the key's first
version is not necessarily the copy — a repair may have replaced a corrupt locked version with
a new one, and only the database knows which version holds the verified bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import BinaryIO

from archive_service.errors import ArchiveError, Unavailable
from archive_service.ports import BlobStore, CopyRecord


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
