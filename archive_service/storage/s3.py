"""A storage offer in an S3 bucket with versioning and Object Lock (Ceph RGW, MinIO, AWS).

Implements ``BlobStore`` and ``LockingBlobStore`` (ports.py), with the behaviour of the local
offer (tests/integration/contracts/) and these choices:

**Lock at commit.** Objects are written *without* retention. A failed transfer can then delete
what it wrote (``delete``), so no orphan is left in any bucket. Just before the commit point the
service locks every copy (``lock``: COMPLIANCE until the end of the DUA, at least
``object_lock_days_default`` days from now) and then commits; from then on no one, not even
these credentials, can delete or overwrite that version until the date, and the date can only
be pushed later. A crash between locking and committing leaves locked copies that the resumed
job adopts (same key, same digest, ``lock`` is idempotent); it never cleans them up. For this to
hold, the bucket must have no *default* retention (it would lock objects at PUT): ``ensure_bucket``
refuses one.

**Write-once keys.** S3 overwrites by default, and Ceph Pacific ignores ``If-None-Match: *``
(checked on 16.2.15: four racing writers all get 200 and the key gets four versions). So every
write (1) lists the key's versions and refuses an existing key, (2) PUTs with
``If-None-Match: *`` (honoured by AWS and recent servers: 412 is ``Conflict``), then (3) lists
the versions again: the key's *first* version is the object, a writer whose version is not the
first deletes its own (unlocked) version and raises ``Conflict``. ``stat`` and ``open`` without
a version id read the first version, so a losing writer's bytes are never served, even before
it removed them. A writer that crashed between (2) and its clean-up leaves an extra unlocked
version that ``delete`` or an audit removes; the object itself is unaffected.

**Reads pinned to the recorded version.** The database records the version id of every copy
it verified; ``open(key, version_id=…)`` and ``stat(key, version_id=…)`` read exactly that
version (an unknown one is ``NotFound``/``None``), and every read of a recorded copy passes it.
That is what lets a repair replace a locked version whose bytes went bad: ``put_version`` adds
a new version (no write-once check), the repair locks it and records its id, and the bad
version stays in the bucket, still first, locked, recorded as superseded, and never read again.

**Integrity.** Our own SHA-256 is the reference (Ceph Pacific ignores the flexible checksums
``x-amz-checksum-*``, so boto3 is told to send them only when required): it is computed from
the local file before a single PUT and compared with the expected digest before anything is
sent; the PUT carries Content-MD5 (which Ceph checks) and the digest as object metadata
``sha256``, read back by ``stat``. Large files go multipart, one part at a time from the file
(never the whole object in memory), each part with its Content-MD5, the SHA-256 computed on
the way and compared before CompleteMultipartUpload; a mismatch aborts the upload. Ceph
ignores lock headers on multipart uploads, which lock-at-commit does not use anyway.

**Errors.** Connection failures, timeouts and 5xx are ``Unavailable`` (retry later); a missing
key or version is ``NotFound``; a refused overwrite is ``Conflict``; a version the server will
not delete because of its retention or legal hold is :class:`ObjectLocked`; refused credentials
or a bad bucket are ``ConfigurationError``. No botocore exception leaves this module.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import math
import os
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from archive_service.core.fingerprint import sha256_stream
from archive_service.errors import (
    ArchiveError,
    ConfigurationError,
    Conflict,
    FingerprintMismatch,
    NotFound,
    Unavailable,
)
from archive_service.ports import StoredBlob
from archive_service.storage.local import validate_key

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

_logger = logging.getLogger(__name__)

MiB = 1024 * 1024
#: Files larger than this go multipart.
MULTIPART_THRESHOLD = 16 * MiB
#: Part size of multipart uploads (S3: at least 5 MiB except the last, at most 10,000 parts).
PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10_000
#: Bytes read from a local file, or asked of the HTTP stream, at a time.
CHUNK_SIZE = MiB
#: Object metadata (``x-amz-meta-…``) holding our digest, and the id of the write that made it.
META_SHA256 = "sha256"
META_WRITER = "writer"
MODES = ("COMPLIANCE", "GOVERNANCE")
LockMode = Literal["COMPLIANCE", "GOVERNANCE"]

_HEX = frozenset("0123456789abcdef")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_RETRYABLE_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling"}
)
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NotFound", "404"})
_NO_RETENTION_CODES = frozenset(
    {"ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration"}
)
_AUTH_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"})


class MissingBucket(ConfigurationError):
    """The offer's bucket does not exist (yet: it is created on the first write)."""


class ObjectLocked(Conflict):
    """The S3 server refused to delete a version: it is under retention or legal hold."""

    code = "object-locked"
    title = "Object locked"


@dataclass(frozen=True, slots=True)
class ObjectRetention:
    """What Object Lock says of one version: retention mode and date, legal hold."""

    mode: str | None
    retain_until: datetime | None
    legal_hold: bool

    def describe(self) -> str:
        parts = []
        if self.mode:
            until = self.retain_until.isoformat() if self.retain_until else "?"
            parts.append(f"{self.mode} until {until}")
        if self.legal_hold:
            parts.append("legal hold")
        return ", ".join(parts) or "not locked"


def _parse_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"S3 offer: {name} must be true or false, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class S3OfferConfig:
    """One S3 storage offer as the settings describe it (the wiring builds the store)."""

    name: str
    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"
    path_style: bool = True
    #: Retention floor for archived objects, e.g. while the start event of the DUA is unknown.
    min_retention_days: int | None = None
    #: The same floor in seconds, instead of days: for test servers only, where a retention
    #: must lapse in real time within a test (a disposal). Production leaves it unset.
    min_retention_seconds: int | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigurationError("S3 offer: name is empty")
        if not re.match(r"^https?://[^/\s]+/?$", self.endpoint_url):
            raise ConfigurationError(
                f"S3 offer {self.name}: endpoint_url must be http(s)://host[:port], "
                f"got {self.endpoint_url!r}"
            )
        if not _BUCKET.match(self.bucket) or ".." in self.bucket:
            raise ConfigurationError(f"S3 offer {self.name}: invalid bucket name {self.bucket!r}")
        if not self.access_key or not self.secret_key:
            raise ConfigurationError(f"S3 offer {self.name}: access_key and secret_key are needed")
        if self.min_retention_days is not None and self.min_retention_days < 1:
            raise ConfigurationError(f"S3 offer {self.name}: min_retention_days must be >= 1")
        if self.min_retention_seconds is not None:
            if self.min_retention_seconds < 1:
                raise ConfigurationError(
                    f"S3 offer {self.name}: min_retention_seconds must be >= 1"
                )
            if self.min_retention_days is not None:
                raise ConfigurationError(
                    f"S3 offer {self.name}: give min_retention_days or min_retention_seconds, "
                    "not both"
                )

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> S3OfferConfig:
        """From settings (JSON or environment variables: strings are accepted for every field).

        Unknown keys are refused, so that a misspelt setting is not silently ignored.
        """
        known = {
            "name",
            "endpoint_url",
            "bucket",
            "access_key",
            "secret_key",
            "region",
            "path_style",
            "min_retention_days",
            "min_retention_seconds",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(f"S3 offer: unknown settings {', '.join(unknown)}")
        missing = sorted(
            k
            for k in ("name", "endpoint_url", "bucket", "access_key", "secret_key")
            if not data.get(k)
        )
        if missing:
            raise ConfigurationError(f"S3 offer: missing settings {', '.join(missing)}")
        min_days = _whole_number(data, "min_retention_days")
        min_seconds = _whole_number(data, "min_retention_seconds")
        return cls(
            name=str(data["name"]),
            endpoint_url=str(data["endpoint_url"]),
            bucket=str(data["bucket"]),
            access_key=str(data["access_key"]),
            secret_key=str(data["secret_key"]),
            region=str(data.get("region") or "us-east-1"),
            path_style=_parse_bool("path_style", data.get("path_style", True)),
            min_retention_days=min_days,
            min_retention_seconds=min_seconds,
        )

    def store(self, **options: Any) -> S3BlobStore:
        """The offer; ``options`` are the tuning arguments of :class:`S3BlobStore`."""
        return S3BlobStore(
            self.name,
            endpoint_url=self.endpoint_url,
            bucket=self.bucket,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            path_style=self.path_style,
            object_lock_days_default=self.min_retention_days,
            object_lock_seconds_default=self.min_retention_seconds,
            **options,
        )


def _whole_number(data: Mapping[str, object], name: str) -> int | None:
    value = data.get(name)
    if isinstance(value, str):
        value = value.strip() or None
    try:
        return None if value is None else int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"S3 offer: {name} must be a whole number, got {value!r}"
        ) from None


def _expected_sha256(sha256: str) -> str:
    digest = sha256.lower()
    if len(digest) != 64 or not set(digest) <= _HEX:
        msg = "expected sha256 must be 64 hexadecimal characters"
        raise ValueError(msg)
    return digest


def _check_key(key: str) -> str:
    validate_key(key)
    if len(key.encode("utf-8")) > 1024:
        msg = f"object key longer than 1024 bytes: {key[:60]!r}…"
        raise ValueError(msg)
    return key


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _ceil_second(moment: datetime) -> datetime:
    """Whole seconds, rounded up: servers that keep seconds read back what we asked."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


class _Window(io.RawIOBase):
    """A readable, seekable byte range of known ``size``, read from position ``_pos``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        target = base + offset
        if target < 0:
            msg = f"negative seek position {target}"
            raise ValueError(msg)
        if target != self._pos:
            self._moved()
            self._pos = target
        return self._pos

    def _moved(self) -> None:
        """Called before the position changes by a seek."""


class _FilePart(_Window):
    """A window ``[start, start + length)`` of an open file: one multipart part, streamed
    (botocore reads it to sign it, then to send it, and seeks back to retry)."""

    def __init__(self, fh: BinaryIO, start: int, length: int) -> None:
        super().__init__(length)
        self._fh = fh
        self._start = start

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        self._fh.seek(self._start + self._pos)
        n = self._fh.readinto(memoryview(buffer)[:want])  # type: ignore[attr-defined]
        self._pos += n
        return int(n)

    def __len__(self) -> int:
        return self._size


class _ObjectReader(_Window):
    """One version of one object, read over HTTP: seekable, streamed.

    Sequential reads consume one open GET (``Range: bytes=pos-``); a ``seek`` elsewhere drops
    it and the next read opens a ranged GET at the new position, so the API's Range requests
    fetch only what they send. Wrapped in a ``BufferedReader`` by :meth:`S3BlobStore.open`.
    """

    def __init__(self, store: S3BlobStore, key: str, version_id: str, size: int) -> None:
        super().__init__(size)
        self._store = store
        self._key = key
        self._version_id = version_id
        self._body: Any = None

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        for attempt in (1, 2):
            if self._body is None:
                self._body = self._store._get_range(self._key, self._version_id, self._pos)
            try:
                chunk = self._body.read(want)
            except (HTTPClientError, IncompleteReadError, Urllib3HTTPError, OSError) as exc:
                if attempt == 2:
                    raise Unavailable(
                        f"offer {self._store.name}: {self._key}: download failed at byte "
                        f"{self._pos} of {self._size}: {exc}"
                    ) from exc
                chunk = b""
            if chunk:
                break
            # The connection ended early (server restarted, idle timeout): resume once.
            self._drop_body()
        else:
            raise Unavailable(
                f"offer {self._store.name}: {self._key}: the S3 server ended the download "
                f"at byte {self._pos} of {self._size}"
            )
        n = len(chunk)
        memoryview(buffer)[:n] = chunk
        self._pos += n
        return n

    def _moved(self) -> None:
        self._drop_body()

    def _drop_body(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop_body()
        super().close()


class S3BlobStore:
    """The ``BlobStore`` and ``LockingBlobStore`` ports over one S3 bucket.

    Nothing is sent to the server until first use: the service starts even if an offer is
    down. The first write checks the bucket (versioning and Object Lock on, no default
    retention), creating it with Object Lock if it is missing and ``create_bucket`` is true.
    ``object_lock_days_default``: ``lock`` never sets a retain-until date earlier than this many
    days from now (the configured minimum while the DUA's start event is unknown).
    ``object_lock_seconds_default``: the same floor in seconds, used instead of the days when
    set (test servers, where a disposal must find the retention lapsed in real time).
    """

    def __init__(
        self,
        name: str,
        *,
        endpoint_url: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        path_style: bool = True,
        object_lock_days_default: int | None = None,
        object_lock_seconds_default: int | None = None,
        create_bucket: bool = True,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
        max_pool_connections: int = 16,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            msg = f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)"
            raise ValueError(msg)
        if object_lock_days_default is not None and object_lock_days_default < 1:
            msg = "object_lock_days_default must be at least 1 day"
            raise ValueError(msg)
        self.name = name
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        if object_lock_seconds_default is not None and object_lock_seconds_default < 1:
            msg = "object_lock_seconds_default must be at least 1 second"
            raise ValueError(msg)
        self.object_lock_days_default = object_lock_days_default
        self.object_lock_seconds_default = object_lock_seconds_default
        self.create_bucket = create_bucket
        self.multipart_threshold = max(multipart_threshold, part_size)
        self.part_size = part_size
        config = Config(
            region_name=region,
            signature_version="s3v4",
            s3={"addressing_style": "path" if path_style else "virtual"},
            # Ceph Pacific knows no x-amz-checksum-*: send them only where an API demands one.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_pool_connections,
        )
        self._s3: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=config,
        )
        self._ready = False
        self._ready_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: S3OfferConfig, **options: Any) -> S3BlobStore:
        return config.store(**options)

    def __repr__(self) -> str:
        return f"S3BlobStore({self.name!r}, {self.endpoint_url}/{self.bucket})"

    # -- errors ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _translated(self, action: str, key: str | None = None) -> Iterator[None]:
        """Turn what boto3 raises into the service's errors (module docstring, Errors)."""
        try:
            yield
        except ClientError as exc:
            raise self._client_error(exc, action, key) from exc
        except (BotoConnectionError, HTTPClientError, IncompleteReadError, Urllib3HTTPError) as exc:
            raise Unavailable(
                f"offer {self.name}: cannot reach the S3 server at {self.endpoint_url} "
                f"({action}): {exc}"
            ) from exc
        except BotoCoreError as exc:
            raise ArchiveError(f"offer {self.name}: {action} failed: {exc}") from exc

    def _client_error(self, exc: ClientError, action: str, key: str | None) -> ArchiveError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = error.get("Message") or ""
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        where = f"offer {self.name}: {action}" + (f" {key}" if key else "")
        detail = f"{code or status}{': ' + message if message else ''}"
        if status >= 500 or code in _RETRYABLE_CODES:
            return Unavailable(f"{where}: the S3 server failed ({detail})")
        if code == "NoSuchBucket":
            return MissingBucket(f"{where}: bucket {self.bucket} does not exist")
        if code in _MISSING_CODES or status == 404:
            return NotFound(f"{where}: not found ({detail})")
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412:
            return Conflict(f"{where}: key already exists ({detail})")
        if code in ("BadDigest", "InvalidDigest"):
            return FingerprintMismatch(
                f"{where}: the bytes the server received differ from those hashed ({detail})"
            )
        if code in _AUTH_CODES or status == 403:
            return ConfigurationError(
                f"{where}: refused by the S3 server ({detail}); check the offer's credentials "
                "and the bucket policy"
            )
        return ArchiveError(f"{where}: refused by the S3 server ({detail})")

    # -- the bucket ------------------------------------------------------------------------

    def ensure_bucket(self) -> None:
        """Check (or create) the bucket: versioning and Object Lock enabled, no default
        retention. ``ConfigurationError`` if it cannot serve as an archive offer."""
        with self._translated("check bucket"):
            try:
                self._s3.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status != 404:
                    raise
                if not self.create_bucket:
                    raise ConfigurationError(
                        f"offer {self.name}: bucket {self.bucket} does not exist"
                    ) from None
                self._create_bucket()
            versioning = self._s3.get_bucket_versioning(Bucket=self.bucket).get("Status")
            try:
                lock = self._s3.get_object_lock_configuration(Bucket=self.bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in _NO_RETENTION_CODES:
                    raise
                lock = {}  # type: ignore[typeddict-item]
        config = lock.get("ObjectLockConfiguration", {})
        if config.get("ObjectLockEnabled") != "Enabled" or versioning != "Enabled":
            raise ConfigurationError(
                f"offer {self.name}: bucket {self.bucket} must have versioning and Object Lock "
                f"enabled (versioning: {versioning}, Object Lock: "
                f"{config.get('ObjectLockEnabled')}); Object Lock can only be enabled when "
                "the bucket is created"
            )
        if config.get("Rule", {}).get("DefaultRetention"):
            raise ConfigurationError(
                f"offer {self.name}: bucket {self.bucket} has a default retention, which locks "
                "every object as it is written: a failed transfer could not remove what it "
                "wrote. Remove it; the service locks each archived object at its commit point"
            )
        _logger.info("storage.s3.bucket_ready", extra={"offer": self.name, "bucket": self.bucket})

    def _create_bucket(self) -> None:
        extra: dict[str, Any] = {}
        region = self._s3.meta.region_name
        if region and region != "us-east-1":
            extra["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._s3.create_bucket(Bucket=self.bucket, ObjectLockEnabledForBucket=True, **extra)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise
        _logger.info("storage.s3.bucket_created", extra={"offer": self.name, "bucket": self.bucket})

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                self.ensure_bucket()
                self._ready = True

    # -- versions of one key ---------------------------------------------------------------

    def _versions(self, key: str) -> list[dict[str, Any]]:
        """Object versions of exactly ``key``, newest first (delete markers left out)."""
        try:
            return self._list_versions(key)
        except MissingBucket:
            if not self.create_bucket:
                raise  # it should exist: the operator's configuration is wrong
            # The bucket is created on the first write: before it, no key exists.
            return []

    def _list_versions(self, key: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": key, "MaxKeys": 100}
        with self._translated("list versions of", key):
            while True:
                page = self._s3.list_object_versions(**kwargs)
                versions = page.get("Versions", [])
                found.extend(dict(v) for v in versions if v.get("Key") == key)
                # Listed by key: once past ``key`` (to ``key/…`` or ``key…``), we are done.
                beyond = any(v.get("Key") != key for v in versions) or any(
                    m.get("Key") != key for m in page.get("DeleteMarkers", [])
                )
                if beyond or not page.get("IsTruncated"):
                    return found
                kwargs["KeyMarker"] = page.get("NextKeyMarker")
                kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")

    def _first_version(self, key: str) -> dict[str, Any] | None:
        """The version that *is* the object of a write-once key: its first one."""
        versions = self._versions(key)
        return versions[-1] if versions else None

    # -- writing ---------------------------------------------------------------------------

    def put_file(self, key: str, path: Path, *, sha256: str, consume: bool = False) -> StoredBlob:
        """Upload ``path`` to ``key`` if its SHA-256 is ``sha256``; refuse an existing key.

        ``consume`` is accepted for the port and ignored: a remote offer always copies.
        """
        _check_key(key)
        expected = _expected_sha256(sha256)
        with Path(path).open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            return self._write(key, expected, size, self._uploader(key, fh, size, expected))

    def put_version(self, key: str, path: Path, *, sha256: str) -> StoredBlob:
        """Upload ``path`` as a new version of ``key``, existing or not (``VersionedBlobStore``):
        for a repair only. No write-once check: the key's other versions are kept, and its
        first version stays what unpinned reads serve; the caller locks the new version and
        records its id, which pinned reads then serve."""
        _check_key(key)
        expected = _expected_sha256(sha256)
        self._ensure_ready()
        meta = {META_SHA256: expected, META_WRITER: uuid.uuid4().hex}
        with Path(path).open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            version_id: str = self._uploader(key, fh, size, expected, once=False)(meta)
        _logger.info(
            "storage.s3.new_version",
            extra={"offer": self.name, "key": key, "size": size, "version_id": version_id},
        )
        return StoredBlob(
            offer=self.name, key=key, size=size, sha256=expected, version_id=version_id
        )

    def _uploader(
        self, key: str, fh: BinaryIO, size: int, expected: str, *, once: bool = True
    ) -> Any:
        """The upload of ``fh`` (single PUT or multipart), given its metadata; a single PUT's
        file is hashed first and refused (``FingerprintMismatch``) before anything is sent."""
        if size > self.multipart_threshold:
            return lambda meta: self._put_multipart(key, fh, size, meta, once=once)
        digest, md5 = self._hash_file(fh)
        if digest != expected:
            raise FingerprintMismatch(
                f"offer {self.name}: {key}: expected sha256 {expected}, received {digest}"
            )
        fh.seek(0)
        return lambda meta: self._put_single(key, fh, size, md5, meta, once=once)

    def put_bytes(self, key: str, data: bytes) -> StoredBlob:
        _check_key(key)
        digest = hashlib.sha256(data).hexdigest()
        md5 = _b64(hashlib.md5(data, usedforsecurity=False).digest())
        return self._write(
            key,
            digest,
            len(data),
            lambda meta: self._put_single(key, io.BytesIO(data), len(data), md5, meta),
        )

    def _hash_file(self, fh: BinaryIO) -> tuple[str, str]:
        sha = hashlib.sha256()
        md5 = hashlib.md5(usedforsecurity=False)
        for chunk in iter(lambda: fh.read(CHUNK_SIZE), b""):
            sha.update(chunk)
            md5.update(chunk)
        return sha.hexdigest(), _b64(md5.digest())

    def _write(self, key: str, digest: str, size: int, upload: Any) -> StoredBlob:
        """The write-once protocol around one upload (module docstring, Write-once keys)."""
        self._ensure_ready()
        if self._versions(key):
            raise Conflict(f"offer {self.name}: key already exists: {key}")
        writer = uuid.uuid4().hex
        meta = {META_SHA256: digest, META_WRITER: writer}
        try:
            version_id: str = upload(meta)
        except Conflict:
            # 412: someone's version exists. Ours, if a retried request had in fact succeeded.
            first = self._first_version(key)
            if first is None or self._writer_of(key, first["VersionId"]) != writer:
                raise Conflict(f"offer {self.name}: key already exists: {key}") from None
            version_id = first["VersionId"]
        first = self._first_version(key)
        if first is None or first.get("VersionId") != version_id:
            self._discard_version(key, version_id)
            raise Conflict(f"offer {self.name}: key already exists: {key} (a concurrent write won)")
        _logger.debug(
            "storage.s3.put",
            extra={"offer": self.name, "key": key, "size": size, "version_id": version_id},
        )
        return StoredBlob(offer=self.name, key=key, size=size, sha256=digest, version_id=version_id)

    def _writer_of(self, key: str, version_id: str) -> str | None:
        with self._translated("read metadata of", key):
            head = self._s3.head_object(Bucket=self.bucket, Key=key, VersionId=version_id)
        return head.get("Metadata", {}).get(META_WRITER)

    def _discard_version(self, key: str, version_id: str) -> None:
        """Remove our own losing version; left for ``delete``/audit if that fails too."""
        try:
            with self._translated("discard version of", key):
                self._s3.delete_object(Bucket=self.bucket, Key=key, VersionId=version_id)
        except ArchiveError:
            _logger.warning(
                "storage.s3.losing_version_left",
                extra={"offer": self.name, "key": key, "version_id": version_id},
                exc_info=True,
            )

    def _put_single(
        self,
        key: str,
        body: BinaryIO,
        size: int,
        md5: str,
        meta: dict[str, str],
        *,
        once: bool = True,
    ) -> str:
        condition: dict[str, Any] = {"IfNoneMatch": "*"} if once else {}
        with self._translated("put", key):
            response = self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentLength=size,
                ContentMD5=md5,
                Metadata=meta,
                **condition,
            )
        return self._version_of(key, response.get("VersionId"))

    def _version_of(self, key: str, version_id: str | None) -> str:
        if not version_id:
            raise ConfigurationError(
                f"offer {self.name}: the server gave no version id for {key}: "
                f"is versioning enabled on bucket {self.bucket}?"
            )
        return version_id

    def _put_multipart(
        self, key: str, fh: BinaryIO, size: int, meta: dict[str, str], *, once: bool = True
    ) -> str:
        part_size = max(self.part_size, math.ceil(size / MAX_PARTS))
        condition: dict[str, Any] = {"IfNoneMatch": "*"} if once else {}
        with self._translated("start multipart upload of", key):
            upload_id = self._s3.create_multipart_upload(
                Bucket=self.bucket, Key=key, Metadata=meta
            )["UploadId"]
        try:
            sha = hashlib.sha256()
            parts = []
            for number, start in enumerate(range(0, size, part_size), start=1):
                length = min(part_size, size - start)
                md5 = hashlib.md5(usedforsecurity=False)
                fh.seek(start)
                remaining = length
                while remaining:
                    chunk = fh.read(min(CHUNK_SIZE, remaining))
                    if not chunk:
                        raise FingerprintMismatch(
                            f"offer {self.name}: {key}: the file shrank while it was uploaded"
                        )
                    sha.update(chunk)
                    md5.update(chunk)
                    remaining -= len(chunk)
                with self._translated(f"upload part {number} of", key):
                    etag = self._s3.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=_FilePart(fh, start, length),  # type: ignore[arg-type]
                        ContentLength=length,
                        ContentMD5=_b64(md5.digest()),
                    )["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
            digest = sha.hexdigest()
            if digest != meta[META_SHA256]:
                raise FingerprintMismatch(
                    f"offer {self.name}: {key}: expected sha256 {meta[META_SHA256]}, "
                    f"received {digest}"
                )
            with self._translated("complete multipart upload of", key):
                response = self._s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                    **condition,
                )
        except BaseException:
            self._abort_upload(key, upload_id)
            raise
        return self._version_of(key, response.get("VersionId"))

    def _abort_upload(self, key: str, upload_id: str) -> None:
        try:
            with self._translated("abort multipart upload of", key):
                self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ArchiveError:
            _logger.warning(
                "storage.s3.upload_not_aborted",
                extra={"offer": self.name, "key": key, "upload_id": upload_id},
                exc_info=True,
            )

    # -- reading ---------------------------------------------------------------------------

    def open(self, key: str, *, version_id: str | None = None) -> BinaryIO:
        """A seekable, buffered stream of ``version_id`` of ``key`` (by default its first
        version: the object of the write-once key); ``NotFound`` if absent."""
        _check_key(key)
        if version_id is not None:
            with self._translated("open", key):
                head = self._s3.head_object(Bucket=self.bucket, Key=key, VersionId=version_id)
            size = int(head.get("ContentLength", 0))
        else:
            first = self._first_version(key)
            if first is None:
                raise NotFound(f"offer {self.name}: no object {key}")
            version_id, size = first["VersionId"], int(first.get("Size", 0))
        raw = _ObjectReader(self, key, version_id, size)
        return io.BufferedReader(raw, buffer_size=CHUNK_SIZE)

    def _get_range(self, key: str, version_id: str, start: int) -> Any:
        with self._translated("read", key):
            return self._s3.get_object(
                Bucket=self.bucket, Key=key, VersionId=version_id, Range=f"bytes={start}-"
            )["Body"]

    def stat(self, key: str, *, version_id: str | None = None) -> StoredBlob | None:
        """Size, recorded SHA-256 and version id of ``version_id`` of ``key`` (by default its
        first version), or ``None`` if absent.

        The digest is the one stored with the object when it was accepted; it is recomputed
        from the bytes only for an object some other writer left without it.
        """
        _check_key(key)
        if version_id is None:
            first = self._first_version(key)
            if first is None:
                return None
            version_id = first["VersionId"]
        try:
            with self._translated("stat", key):
                head = self._s3.head_object(Bucket=self.bucket, Key=key, VersionId=version_id)
        except NotFound:
            return None
        digest = head.get("Metadata", {}).get(META_SHA256, "").lower()
        if len(digest) != 64 or not set(digest) <= _HEX:
            _logger.warning("storage.s3.digest_missing", extra={"offer": self.name, "key": key})
            digest = self.compute_sha256(key, version_id=version_id)
        return StoredBlob(
            offer=self.name,
            key=key,
            size=int(head.get("ContentLength", 0)),
            sha256=digest,
            version_id=version_id,
        )

    def compute_sha256(self, key: str, *, version_id: str | None = None) -> str:
        """SHA-256 of the bytes stored under ``key`` (that version), read now, in chunks."""
        with self.open(key, version_id=version_id) as stream:
            return sha256_stream(stream, chunk_size=CHUNK_SIZE)[1]

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix``, in the order S3 lists them: sorted by UTF-8 bytes,
        which is code-point order."""
        if prefix:
            validate_key(prefix.rstrip("/") or "/")
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            with self._translated("list", prefix or "/"):
                for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                    for item in page.get("Contents", []):
                        yield item["Key"]
        except MissingBucket:
            if not self.create_bucket:
                raise  # it should exist: the operator's configuration is wrong
            return  # created on the first write: before it, there is nothing to list

    # -- cleaning --------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Remove every version of ``key`` (and unfinished uploads to it); absent is not an error.

        Only for cleaning up what a failed transfer wrote before its commit point. A version the
        server keeps because of its retention or legal hold raises :class:`ObjectLocked` after
        every other version was removed.
        """
        _check_key(key)
        self._abort_uploads_of(key)
        locked: list[str] = []
        for version_id in self._all_version_ids(key):
            try:
                with self._translated("delete", key):
                    self._s3.delete_object(Bucket=self.bucket, Key=key, VersionId=version_id)
            except ConfigurationError:
                retention = self.retention(key, version_id=version_id)
                if retention is None or not (retention.legal_hold or retention.mode):
                    raise
                locked.append(f"{version_id} ({retention.describe()})")
        if locked:
            raise ObjectLocked(
                f"offer {self.name}: {key}: the S3 server refuses to delete locked versions: "
                + "; ".join(locked)
            )
        _logger.info("storage.s3.deleted", extra={"offer": self.name, "key": key})

    def purge(self, key: str) -> None:
        """Remove every version and every delete marker of an archived ``key``, for a
        disposal or transfer executed with a visa; absent is not an error (a purge that
        stopped midway is run again).

        First every version's Object Lock is read: while one is retained (its retain-until
        date, by this machine's clock, is not past) or under legal hold, :class:`ObjectLocked`
        names them and nothing is deleted. The server has the last word: a deletion it still
        refuses (its clock, a retention set meanwhile) raises :class:`ObjectLocked` too, the
        versions already removed staying removed. Afterwards the key must list no version.
        """
        _check_key(key)
        entries = self._version_entries(key)
        if not entries:
            return
        now = datetime.now(UTC)
        locked: list[str] = []
        for version_id, is_marker in entries:
            if is_marker:
                continue
            retention = self.retention(key, version_id=version_id)
            if retention is None:
                continue
            if retention.legal_hold or (
                retention.retain_until is not None and retention.retain_until > now
            ):
                locked.append(f"{version_id} ({retention.describe()})")
        if locked:
            raise ObjectLocked(
                f"offer {self.name}: {key}: locked versions, nothing purged: " + "; ".join(locked)
            )
        self._abort_uploads_of(key)
        for version_id, _ in entries:
            try:
                with self._translated("purge", key):
                    self._s3.delete_object(Bucket=self.bucket, Key=key, VersionId=version_id)
            except (ConfigurationError, NotFound) as exc:
                if isinstance(exc, NotFound):
                    continue
                raise ObjectLocked(
                    f"offer {self.name}: {key}: the S3 server refuses to delete version "
                    f"{version_id}: {exc.message}"
                ) from exc
        left = self._version_entries(key)
        if left:
            raise ObjectLocked(
                f"offer {self.name}: {key}: {len(left)} versions or delete markers remain "
                "after the purge"
            )
        _logger.info(
            "storage.s3.purged", extra={"offer": self.name, "key": key, "versions": len(entries)}
        )

    def _version_entries(self, key: str) -> list[tuple[str, bool]]:
        """(version id, is a delete marker) of every version and delete marker of ``key``."""
        found: list[tuple[str, bool]] = []
        paginator = self._s3.get_paginator("list_object_versions")
        try:
            with self._translated("list versions of", key):
                for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
                    for version in page.get("Versions", []):
                        if version.get("Key") == key:
                            found.append((version["VersionId"], False))
                    for marker in page.get("DeleteMarkers", []):
                        if marker.get("Key") == key:
                            found.append((marker["VersionId"], True))
        except MissingBucket:
            if not self.create_bucket:
                raise
            return []
        return found

    def _all_version_ids(self, key: str) -> list[str]:
        ids: list[str] = []
        paginator = self._s3.get_paginator("list_object_versions")
        with self._translated("list versions of", key):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
                for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                    if entry.get("Key") == key:
                        ids.append(entry["VersionId"])
        return ids

    def _abort_uploads_of(self, key: str) -> None:
        paginator = self._s3.get_paginator("list_multipart_uploads")
        with self._translated("list multipart uploads of", key):
            uploads = [
                upload["UploadId"]
                for page in paginator.paginate(Bucket=self.bucket, Prefix=key)
                for upload in page.get("Uploads", [])
                if upload.get("Key") == key
            ]
        for upload_id in uploads:
            self._abort_upload(key, upload_id)

    # -- Object Lock -----------------------------------------------------------------------

    def retention(self, key: str, *, version_id: str) -> ObjectRetention | None:
        """Retention and legal hold of one version; ``None`` if the version does not exist."""
        return self._retention(key, version_id=version_id, with_hold=True)

    def _retention(self, key: str, *, version_id: str, with_hold: bool) -> ObjectRetention | None:
        """:meth:`retention`; without ``with_hold`` the legal hold is not asked (reported off):
        one round trip less for :meth:`lock`, which only needs the retention."""
        _check_key(key)
        mode: str | None = None
        until: datetime | None = None
        hold = False
        try:
            with self._translated("read retention of", key):
                try:
                    found = self._s3.get_object_retention(
                        Bucket=self.bucket, Key=key, VersionId=version_id
                    ).get("Retention", {})
                    mode, until = found.get("Mode"), found.get("RetainUntilDate")
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") not in _NO_RETENTION_CODES:
                        raise
                if with_hold:
                    hold = self._legal_hold_on(key, version_id)
        except NotFound:
            return None
        return ObjectRetention(
            mode=mode, retain_until=until.astimezone(UTC) if until else None, legal_hold=hold
        )

    def _legal_hold_on(self, key: str, version_id: str) -> bool:
        try:
            status = self._s3.get_object_legal_hold(
                Bucket=self.bucket, Key=key, VersionId=version_id
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in _NO_RETENTION_CODES:
                raise
            return False
        return bool(status.get("LegalHold", {}).get("Status") == "ON")

    def lock(
        self,
        key: str,
        *,
        version_id: str,
        retain_until: datetime,
        mode: LockMode = "COMPLIANCE",
    ) -> datetime:
        """Retain one version until ``retain_until`` at least; only ever extends.

        The date is raised to ``object_lock_days_default`` days from now if that is later, and
        to whole seconds. An existing later date is kept, and so is COMPLIANCE over GOVERNANCE.
        Returns the retain-until date in force. ``NotFound`` if the version does not exist.
        """
        _check_key(key)
        if retain_until.tzinfo is None:
            msg = "retain_until must be timezone-aware"
            raise ValueError(msg)
        if mode not in MODES:
            msg = f"mode must be one of {MODES}, got {mode!r}"
            raise ValueError(msg)
        target = retain_until
        floor = self._retention_floor()
        if floor is not None:
            target = max(target, datetime.now(UTC) + floor)
        target = _ceil_second(target)
        for _ in range(3):  # two lockers at once: one may have extended it meanwhile
            current = self._retention(key, version_id=version_id, with_hold=False)
            if current is None:
                raise NotFound(f"offer {self.name}: no version {version_id} of {key}")
            new_mode = mode if current.mode is None or current.mode == mode else "COMPLIANCE"
            new_until = max(target, current.retain_until) if current.retain_until else target
            if current.mode == new_mode and current.retain_until == new_until:
                return new_until
            try:
                with self._translated("lock", key):
                    self._s3.put_object_retention(
                        Bucket=self.bucket,
                        Key=key,
                        VersionId=version_id,
                        Retention={"Mode": new_mode, "RetainUntilDate": new_until},
                    )
            except ConfigurationError:
                continue  # refused as a shortening: re-read what is in force now
            _logger.info(
                "storage.s3.locked",
                extra={
                    "offer": self.name,
                    "key": key,
                    "version_id": version_id,
                    "mode": new_mode,
                    "retain_until": new_until.isoformat(),
                },
            )
            return new_until
        raise ConfigurationError(
            f"offer {self.name}: the S3 server refuses to set {mode} retention until "
            f"{target.isoformat()} on {key} version {version_id}"
        )

    def _retention_floor(self) -> timedelta | None:
        if self.object_lock_seconds_default:
            return timedelta(seconds=self.object_lock_seconds_default)
        if self.object_lock_days_default:
            return timedelta(days=self.object_lock_days_default)
        return None

    def set_legal_hold(self, key: str, *, version_id: str, on: bool) -> None:
        _check_key(key)
        with self._translated("set legal hold on", key):
            self._s3.put_object_legal_hold(
                Bucket=self.bucket,
                Key=key,
                VersionId=version_id,
                LegalHold={"Status": "ON" if on else "OFF"},
            )
        _logger.info(
            "storage.s3.legal_hold",
            extra={"offer": self.name, "key": key, "version_id": version_id, "on": on},
        )
