"""A storage offer that reports its failed operations to the ``Metrics`` port.

:func:`instrument` wraps an offer so that every call that fails is counted as a storage error
of that offer and operation (``archive_storage_errors_total{offer, operation}``), then raised
as it was. ``NotFound`` and ``Conflict`` are answers (an absent key or version, a write-once
key that exists), not failures: they are not counted. Errors raised later, while reading a
stream that ``open`` returned, are not counted either. A read's ``version_id`` is passed on.

The wrapper has exactly the capabilities of the offer it wraps (``LockingBlobStore``,
``VersionedBlobStore``, ``RetentionReader``, ``BucketCheck``: services test them with
``isinstance``), and attributes the ports do not name are the wrapped offer's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar

from archive_service.errors import Conflict, NotFound
from archive_service.ports import (
    BlobStore,
    BucketCheck,
    LockingBlobStore,
    Metrics,
    RetentionReader,
    RetentionView,
    StoredBlob,
    VersionedBlobStore,
)

T = TypeVar("T")
#: Outcomes that are answers of a healthy offer.
ANSWERS = (NotFound, Conflict)


class InstrumentedStore:
    """The ``BlobStore`` port over ``inner``, counting failed operations."""

    def __init__(self, inner: BlobStore, metrics: Metrics) -> None:
        self.inner = inner
        self.name = inner.name
        self._metrics = metrics

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)

    def __repr__(self) -> str:
        return f"InstrumentedStore({self.inner!r})"

    def _call(self, operation: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return call(*args, **kwargs)
        except ANSWERS:
            raise
        except Exception:
            self._metrics.storage_error(self.name, operation)
            raise

    def put_file(self, key: str, path: Path, *, sha256: str, consume: bool = False) -> StoredBlob:
        return self._call("put", self.inner.put_file, key, path, sha256=sha256, consume=consume)

    def put_bytes(self, key: str, data: bytes) -> StoredBlob:
        return self._call("put", self.inner.put_bytes, key, data)

    def open(self, key: str, *, version_id: str | None = None) -> BinaryIO:
        return self._call("open", self.inner.open, key, version_id=version_id)

    def stat(self, key: str, *, version_id: str | None = None) -> StoredBlob | None:
        return self._call("stat", self.inner.stat, key, version_id=version_id)

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        keys = self._call("list", self.inner.iter_keys, prefix)
        while True:
            try:
                key = self._call("list", next, keys)
            except StopIteration:
                return
            yield key

    def delete(self, key: str) -> None:
        self._call("delete", self.inner.delete, key)

    def purge(self, key: str) -> None:
        self._call("purge", self.inner.purge, key)


class _Locking(InstrumentedStore):
    inner: LockingBlobStore

    def lock(
        self,
        key: str,
        *,
        version_id: str,
        retain_until: datetime,
        mode: Literal["COMPLIANCE", "GOVERNANCE"] = "COMPLIANCE",
    ) -> datetime:
        return self._call(
            "lock",
            self.inner.lock,
            key,
            version_id=version_id,
            retain_until=retain_until,
            mode=mode,
        )

    def set_legal_hold(self, key: str, *, version_id: str, on: bool) -> None:
        self._call("legal_hold", self.inner.set_legal_hold, key, version_id=version_id, on=on)


class _Versioned(InstrumentedStore):
    inner: VersionedBlobStore

    def put_version(self, key: str, path: Path, *, sha256: str) -> StoredBlob:
        return self._call("put", self.inner.put_version, key, path, sha256=sha256)


class _Retention(InstrumentedStore):
    inner: Any

    def retention(self, key: str, *, version_id: str) -> RetentionView | None:
        result: RetentionView | None = self._call(
            "retention", self.inner.retention, key, version_id=version_id
        )
        return result


class _Bucket(InstrumentedStore):
    inner: Any

    def ensure_bucket(self) -> None:
        self._call("bucket", self.inner.ensure_bucket)


_CAPABILITIES: tuple[tuple[type, type[InstrumentedStore]], ...] = (
    (LockingBlobStore, _Locking),
    (VersionedBlobStore, _Versioned),
    (RetentionReader, _Retention),
    (BucketCheck, _Bucket),
)
_classes: dict[tuple[type[InstrumentedStore], ...], type[InstrumentedStore]] = {}


def instrument(offer: BlobStore, metrics: Metrics) -> BlobStore:
    """``offer``, its failed operations counted in ``metrics``, with the same capabilities."""
    mixins = tuple(mixin for port, mixin in _CAPABILITIES if isinstance(offer, port))
    cls = _classes.get(mixins)
    if cls is None:
        cls = (
            type("InstrumentedStore", (*mixins, InstrumentedStore), {})
            if mixins
            else (InstrumentedStore)
        )
        _classes[mixins] = cls
    return cls(offer, metrics)
