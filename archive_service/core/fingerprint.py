"""Streaming SHA-256 + SHA-512 in one pass over the bytes (empreintes).

The two digests are fed from the same buffer, so a file is read once whatever its size; memory
use is one chunk. hashlib releases the GIL on large buffers, so the two digests run on two
threads when the chunk is big enough to pay for the hand-off.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from archive_service.core.model import FileFingerprints, Fingerprint

CHUNK_SIZE = 1024 * 1024
#: Below this many bytes per update, a thread hand-off costs more than it saves.
_PARALLEL_THRESHOLD = 256 * 1024


class MultiHasher:
    """Incremental SHA-256 + SHA-512; ``update`` as bytes arrive, ``result`` at the end."""

    def __init__(self, executor: ThreadPoolExecutor | None = None) -> None:
        self._sha256 = hashlib.sha256()
        self._sha512 = hashlib.sha512()
        self._size = 0
        self._executor = executor

    def update(self, data: bytes | memoryview) -> None:
        self._size += len(data)
        if self._executor is not None and len(data) >= _PARALLEL_THRESHOLD:
            pending = self._executor.submit(self._sha512.update, data)
            self._sha256.update(data)
            pending.result()
        else:
            self._sha256.update(data)
            self._sha512.update(data)

    @property
    def size(self) -> int:
        return self._size

    def result(self) -> FileFingerprints:
        return FileFingerprints(
            size=self._size,
            sha256=Fingerprint("sha256", self._sha256.hexdigest()),
            sha512=Fingerprint("sha512", self._sha512.hexdigest()),
        )


def fingerprint_stream(stream: BinaryIO, *, chunk_size: int = CHUNK_SIZE) -> FileFingerprints:
    """Read ``stream`` to its end and return its size and both digests."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        hasher = MultiHasher(pool)
        buffer = bytearray(chunk_size)
        view = memoryview(buffer)
        while True:
            n = stream.readinto(view)  # type: ignore[attr-defined]
            if not n:
                break
            hasher.update(view[:n])
        return hasher.result()


def fingerprint_chunks(chunks: Iterable[bytes]) -> FileFingerprints:
    hasher = MultiHasher()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.result()


def fingerprint_bytes(data: bytes) -> FileFingerprints:
    return fingerprint_chunks([data])


def sha256_stream(stream: BinaryIO, *, chunk_size: int = CHUNK_SIZE) -> tuple[int, str]:
    """Size and SHA-256 (hex) of a stream: the cheaper check used to read copies back."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    while True:
        n = stream.readinto(view)  # type: ignore[attr-defined]
        if not n:
            break
        digest.update(view[:n])
        size += n
    return size, digest.hexdigest()
