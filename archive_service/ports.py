"""Ports: the small protocols the services depend on. Adapters implement them.

Each port has a real adapter and a local or in-memory one; a shared contract test suite runs
against every implementation (tests/integration/contracts/).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from archive_service.core.model import FormatInfo


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """What a storage offer says it holds under one key."""

    offer: str
    key: str
    size: int
    sha256: str
    version_id: str | None = None


class BlobStore(Protocol):
    """One storage offer. Keys are write-once: putting an existing key is refused."""

    name: str

    def put_file(self, key: str, path: Path, *, sha256: str) -> StoredBlob:
        """Store the file at ``path`` under ``key``; ``sha256`` is the expected digest (hex).

        Raises ``Conflict`` if the key exists, ``Unavailable`` if the offer cannot be reached.
        """
        ...

    def put_bytes(self, key: str, data: bytes) -> StoredBlob: ...

    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object; ``NotFound`` if absent."""
        ...

    def stat(self, key: str) -> StoredBlob | None: ...

    def iter_keys(self, prefix: str = "") -> Iterator[str]: ...

    def delete(self, key: str) -> None:
        """Remove an object: only for cleaning up what a failed transfer wrote, before commit."""
        ...


class TimestampAuthority(Protocol):
    """An RFC 3161 TSA: external over HTTP, or the built-in one."""

    def timestamp(self, data_digest: bytes, *, hash_algorithm: str = "sha256") -> bytes:
        """Return a DER ``TimeStampResp`` (RFC 3161 §2.4.2) over ``data_digest``.

        The response has been checked to match the request (imprint, nonce) but the caller
        verifies it against the trust anchors. Raises ``Unavailable`` if the TSA is unreachable.
        """
        ...

    def certificate_chain_pem(self) -> bytes:
        """PEM certificates: the TSA certificate first, then its issuers up to the root."""
        ...


class FormatIdentifier(Protocol):
    def identify(self, path: Path, *, filename: str, declared_mime: str | None) -> FormatInfo: ...


Job = Callable[[], None]


class TaskRunner(Protocol):
    """Runs jobs after the current transaction committed (in-process threads or Celery)."""

    def submit(self, job_name: str, job_id: str) -> None: ...
