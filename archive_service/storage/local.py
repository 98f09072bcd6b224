"""A storage offer in a local directory: write-once keys, atomic publication, fsync'd.

The one-machine default offer (DESIGN §5), and the reference behaviour of the ``BlobStore``
port that the S3 offer must match (tests/integration/contracts/).

Writing an object (``put_file``/``put_bytes``):

1. the bytes are streamed, 1 MiB at a time, into a temporary file under ``<root>/.tmp/`` (same
   file system as the objects), hashing them on the way;
2. the temporary file is fsync'd, and its SHA-256 compared with the expected one: on a mismatch
   it is removed and ``FingerprintMismatch`` is raised, so nothing is left behind;
3. it is made read-only (0o444) and published with ``os.link`` to its key: ``link`` fails if the
   key exists, so two writers racing for one key cannot both win and an archived object is
   never overwritten (``Conflict``). The parent directory is fsync'd so that the new name
   survives a crash;
4. the digest is written to a sidecar ``<root>/.sha256/<key>`` (see below).

Adopting a file instead of copying it (``put_file(..., consume=True)``): when the caller hands
over a file it will never write again (the ingest job's staged upload) and the file lives on the
offer's file system, the offer takes its inode rather than copying gigabytes:

1. the file is hard-linked to a temporary name under ``.tmp/``; the inode must then have
   exactly two names (the caller's and ours), otherwise some other name could still be used
   to alter it and the bytes are copied instead;
2. the inode is made read-only (0o444) *before* anything else, fsync'd, and its bytes read
   back (a large file from the disk itself, with ``O_DIRECT``) and their SHA-256 compared with
   the expected one (mismatch: the temporary name is removed, ``FingerprintMismatch``);
3. publication and sidecar as above. The caller's name is left to the caller, who deletes it
   (the staging area does once the package is committed); until then it is a second name of a
   read-only inode.

Because step 2 reads the stored inode itself after the write, the ``StoredBlob`` it returns
says ``read_back=True``: the writer need not read the same bytes a second time.

Why a sidecar for ``stat``: ``StoredBlob.sha256`` is *the digest the offer recorded when it
accepted the object* — what an S3 offer reports from the checksum stored with the object,
without reading it. Recomputing it on every ``stat`` would read the whole object (gigabytes,
for large files) just to answer "is it there, and which version is it?", e.g. when a resumed
transfer meets an object it already wrote. Verifying the bytes is a different operation,
done by reading them through ``open`` (audit, read-back after a write). The sidecar is written
after the object is published, by the writer that won the ``link``; if a crash happened in
between, ``stat`` recomputes the digest from the bytes instead (slower, still correct), and
does not write the sidecar (an offer never repairs itself silently).

Keys are relative POSIX paths (``tenants/t1/packages/pkg-…/content/obj-…``). Refused with
``ValueError``: empty or absolute keys, backslashes, NUL, empty segments, ``.``/``..``, and any
segment starting with a dot — which also keeps keys out of ``.tmp`` and ``.sha256``.

A directory keeps no versions: ``StoredBlob.version_id`` is ``None``, and so is the version the
database records for a local copy. ``open``/``stat`` asked for a version id (which only a
versioned offer issues) answer that it is absent (``NotFound``/``None``), rather than serve
the one object as if it were that version.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import logging
import mmap
import os
import stat as stat_module
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from archive_service.errors import Conflict, FingerprintMismatch, NotFound
from archive_service.ports import StoredBlob

_logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
#: From this size on, an adopted file is read back from the disk with ``O_DIRECT``.
DIRECT_READ_SIZE = 8 * 1024 * 1024
DIRECT_CHUNK = 4 * 1024 * 1024
#: ``link`` errors meaning "no hard link possible here": another file system, or one (or a
#: mount) that does not support them. The bytes are copied instead.
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP})
TEMP_DIR = ".tmp"
DIGEST_DIR = ".sha256"
#: Temporary files older than this are leftovers of a crashed writer.
STALE_TEMP_SECONDS = 24 * 3600
_HEX = frozenset("0123456789abcdef")


def validate_key(key: str) -> str:
    """Return ``key`` if it is an acceptable object key, else raise ``ValueError``."""
    if not isinstance(key, str) or not key:
        msg = "an object key must be a non-empty string"
        raise ValueError(msg)
    if key.startswith("/"):
        msg = f"object key must be relative, got {key!r}"
        raise ValueError(msg)
    if "\\" in key or "\x00" in key:
        msg = f"object key must not contain backslashes or NUL: {key!r}"
        raise ValueError(msg)
    for segment in key.split("/"):
        if not segment:
            msg = f"object key has an empty segment: {key!r}"
            raise ValueError(msg)
        if segment.startswith("."):
            msg = f"object key segments must not start with '.' ('..', hidden names): {key!r}"
            raise ValueError(msg)
    return key


def _validate_prefix(prefix: str) -> str:
    """A listing prefix is a key prefix: the same rules, except that it may end anywhere."""
    if prefix:
        validate_key(prefix.rstrip("/") or "/")
    return prefix


def _expected_digest(sha256: str) -> str:
    digest = sha256.lower()
    if len(digest) != 64 or not set(digest) <= _HEX:
        msg = "expected sha256 must be 64 hexadecimal characters"
        raise ValueError(msg)
    return digest


def _sha256_fd(fd: int) -> tuple[int, str]:
    """Size and SHA-256 of an open file, read from its start with ``pread``."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    offset = 0
    while n := os.preadv(fd, [view], offset):
        digest.update(view[:n])
        offset += n
    return offset, digest.hexdigest()


def _sha256_fd_direct(fd: int) -> tuple[int, str]:
    """Size and SHA-256 of a file opened with ``O_DIRECT``: two aligned buffers, the next
    read in flight on a helper thread while this one hashes the previous chunk."""
    maps = [mmap.mmap(-1, DIRECT_CHUNK) for _ in range(2)]  # page-aligned
    views = [memoryview(m) for m in maps]
    digest = hashlib.sha256()
    offset = 0
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-back") as reader:
            pending: Future[int] | None = reader.submit(os.preadv, fd, [views[0]], 0)
            index = 0
            while pending is not None:
                n = pending.result()
                # A short read is the end of the file (reading past it would be unaligned).
                pending = (
                    reader.submit(os.preadv, fd, [views[1 - index]], offset + n)
                    if n == DIRECT_CHUNK
                    else None
                )
                digest.update(views[index][:n])
                offset += n
                index = 1 - index
    finally:
        for view in views:
            view.release()
        for m in maps:
            m.close()
    return offset, digest.hexdigest()


def _read_back(fd: int, size: int) -> tuple[int, str]:
    """fsync ``fd``, then read it back from its start: its size and SHA-256.

    From ``DIRECT_READ_SIZE`` on, the bytes are read with ``O_DIRECT``: from the disk itself
    rather than from the page cache (a stronger check, and no page cache filled with a second
    copy of a large object), at the disk's speed while the CPU hashes. Where ``O_DIRECT`` is
    refused, through the page cache.
    """
    os.fsync(fd)
    o_direct: int = getattr(os, "O_DIRECT", 0)
    if size < DIRECT_READ_SIZE or not o_direct:
        return _sha256_fd(fd)
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | o_direct)
        return _sha256_fd_direct(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    return _sha256_fd(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalDirectoryStore:
    """The ``BlobStore`` port over a directory of the local file system.

    ``name`` identifies the offer in copies and logbook entries. Creating the store makes
    ``root`` (and its ``.tmp``/``.sha256`` directories) if needed and removes stale temporary
    files left by a crashed writer.
    """

    def __init__(self, name: str, root: Path, *, stale_temp_seconds: int = STALE_TEMP_SECONDS):
        self.name = name
        self.root = Path(root).resolve()
        self._tmp = self.root / TEMP_DIR
        self._digests = self.root / DIGEST_DIR
        for directory in (self.root, self._tmp, self._digests):
            directory.mkdir(parents=True, exist_ok=True)
        self.clean_stale_temp_files(max_age_seconds=stale_temp_seconds)

    # -- paths -----------------------------------------------------------------------------

    def _object_path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def _digest_path(self, key: str) -> Path:
        return self._digests.joinpath(*validate_key(key).split("/"))

    def _make_dirs(self, directory: Path) -> None:
        """Create ``directory`` and missing parents, fsyncing each new entry's parent."""
        missing: list[Path] = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                path.mkdir()
            _fsync_dir(path.parent)

    # -- writing ---------------------------------------------------------------------------

    def put_file(self, key: str, path: Path, *, sha256: str, consume: bool = False) -> StoredBlob:
        """Store ``path`` under ``key`` if its SHA-256 is ``sha256``; refuse an existing key.

        ``consume=True`` promises that nobody will write to ``path`` again: the offer may then
        adopt the file (a hard link, see the module docstring) instead of copying it, and the
        file may be left read-only whatever the outcome. It is a hint: a file on another file
        system, or with other hard links, is copied.
        """
        expected = _expected_digest(sha256)
        if consume:
            adopted = self._adopt(key, Path(path), expected)
            if adopted is not None:
                return adopted
        with Path(path).open("rb") as source:
            return self._put_stream(key, source, expected)

    def put_bytes(self, key: str, data: bytes) -> StoredBlob:
        return self._put_stream(key, io.BytesIO(data), hashlib.sha256(data).hexdigest())

    def _put_stream(self, key: str, source: BinaryIO, expected: str) -> StoredBlob:
        target = self._object_path(key)
        self._refuse_existing(key, target)  # fail fast; the link below is the guarantee
        temp = self._temp_path(".part")
        try:
            size, digest = self._copy_to_temp(source, temp)
            self._publish(key, temp, target, expected=expected, found=digest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        self._record_digest(key, digest, size)
        return StoredBlob(offer=self.name, key=key, size=size, sha256=digest)

    def _adopt(self, key: str, path: Path, expected: str) -> StoredBlob | None:
        """Publish the inode of ``path`` under ``key``; ``None`` if it must be copied instead."""
        target = self._object_path(key)
        self._refuse_existing(key, target)
        temp = self._temp_path(".adopt")
        try:
            os.link(path, temp, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in _NO_LINK:
                return None
            raise
        try:
            try:
                fd = os.open(temp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # a symbolic link: copy what it points to
                    return None
                raise
            try:
                info = os.fstat(fd)
                if not stat_module.S_ISREG(info.st_mode) or info.st_nlink != 2:
                    return None  # another name could alter the bytes after we checked them
                os.fchmod(fd, 0o444)
                # Dated as a copy would be (and not taken for a crashed writer's leftover).
                os.utime(fd)
                size, digest = _read_back(fd, info.st_size)
            finally:
                os.close(fd)
            self._publish(key, temp, target, expected=expected, found=digest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        self._record_digest(key, digest, size)
        return StoredBlob(offer=self.name, key=key, size=size, sha256=digest, read_back=True)

    def _temp_path(self, suffix: str) -> Path:
        return self._tmp / f"{os.getpid()}-{uuid.uuid4().hex}{suffix}"

    def _publish(self, key: str, temp: Path, target: Path, *, expected: str, found: str) -> None:
        """Link the verified, durable, read-only ``temp`` to its key: write-once, atomic."""
        if found != expected:
            raise FingerprintMismatch(
                f"offer {self.name}: {key}: expected sha256 {expected}, received {found}"
            )
        self._make_dirs(target.parent)
        try:
            os.link(temp, target)
        except FileExistsError:
            self._refuse_existing(key, target)
            raise Conflict(f"offer {self.name}: key already exists: {key}") from None
        _fsync_dir(target.parent)

    def _record_digest(self, key: str, digest: str, size: int) -> None:
        try:
            self._write_digest(key, digest)
        except OSError:
            # The object is stored and verified; without its sidecar, stat() recomputes.
            _logger.warning(
                "storage.local.digest_not_recorded",
                extra={"offer": self.name, "key": key},
                exc_info=True,
            )
        _logger.debug("storage.local.put", extra={"offer": self.name, "key": key, "size": size})

    def _refuse_existing(self, key: str, target: Path) -> None:
        """``Conflict`` if ``key`` is taken, or cannot exist beside the keys already stored.

        A directory tree cannot hold both ``a`` and ``a/b``, which S3 can: the local offer
        refuses the second one.
        """
        if target.is_dir():
            raise Conflict(f"offer {self.name}: {key} is a prefix of existing keys")
        if target.exists():
            raise Conflict(f"offer {self.name}: key already exists: {key}")
        for parent in target.relative_to(self.root).parents:
            if parent != Path(".") and (self.root / parent).is_file():
                raise Conflict(f"offer {self.name}: {parent.as_posix()} is an object, not a prefix")

    def _copy_to_temp(self, source: BinaryIO, temp: Path) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            while True:
                n = source.readinto(view)  # type: ignore[attr-defined]
                if not n:
                    break
                digest.update(view[:n])
                written = 0
                while written < n:
                    written += os.write(fd, view[written:n])
                size += n
            os.fsync(fd)
            os.fchmod(fd, 0o444)
        finally:
            os.close(fd)
        return size, digest.hexdigest()

    def _write_digest(self, key: str, digest: str) -> None:
        sidecar = self._digest_path(key)
        self._make_dirs(sidecar.parent)
        temp = self._temp_path(".sha256")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            try:
                os.write(fd, f"{digest}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, sidecar)
            _fsync_dir(sidecar.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    # -- reading ---------------------------------------------------------------------------

    def open(self, key: str, *, version_id: str | None = None) -> BinaryIO:
        """The object's bytes. A directory keeps no versions: the database records none for
        its copies, and a version id (which this offer never issued) is ``NotFound``."""
        if version_id is not None:
            self._no_version(key, version_id)
        try:
            return self._object_path(key).open("rb")
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"offer {self.name}: no object {key}") from None
        except IsADirectoryError:
            raise NotFound(f"offer {self.name}: no object {key} (it is a key prefix)") from None

    def stat(self, key: str, *, version_id: str | None = None) -> StoredBlob | None:
        """Size and recorded SHA-256 of ``key``, or ``None`` if absent (and for any
        ``version_id``: this offer has no versions).

        The digest is the one recorded when the object was accepted (the sidecar); it is
        recomputed from the bytes only if the sidecar is missing. To verify the bytes, read
        them with :meth:`open`.
        """
        target = self._object_path(key)
        if version_id is not None:
            return None
        try:
            info = target.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat_module.S_ISREG(info.st_mode):
            return None
        digest = self._read_digest(key)
        if digest is None:
            _logger.warning("storage.local.digest_missing", extra={"offer": self.name, "key": key})
            digest = self.compute_sha256(key)
        return StoredBlob(offer=self.name, key=key, size=info.st_size, sha256=digest)

    def _no_version(self, key: str, version_id: str) -> None:
        validate_key(key)
        raise NotFound(
            f"offer {self.name}: no version {version_id} of {key} (a directory keeps no versions)"
        )

    def _read_digest(self, key: str) -> str | None:
        try:
            text = self._digest_path(key).read_text("ascii").strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return text if len(text) == 64 and set(text) <= _HEX else None

    def compute_sha256(self, key: str) -> str:
        """SHA-256 of the bytes stored under ``key``, read now, in chunks."""
        digest = hashlib.sha256()
        with self.open(key) as stream:
            for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix`` (a string prefix, as in S3), in sorted order.

        Sorted by code point, which is the UTF-8 byte order S3 lists in. Temporary files and
        digest sidecars are not keys.
        """
        _validate_prefix(prefix)
        head, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*head.split("/")) if head else self.root
        base = f"{head}/" if head else ""
        yield from (k for k in self._walk(start, base) if k.startswith(prefix))

    def _walk(self, directory: Path, base: str) -> Iterator[str]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        # A directory "a" sorts as "a/": its keys all begin with that.
        named: list[tuple[str, os.DirEntry[str]]] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue  # .tmp, .sha256 (keys never have dot segments)
            if entry.is_dir(follow_symlinks=False):
                named.append((f"{entry.name}/", entry))
            elif entry.is_file(follow_symlinks=False):
                named.append((entry.name, entry))
        for name, entry in sorted(named, key=lambda item: item[0]):
            if name.endswith("/"):
                yield from self._walk(Path(entry.path), base + name)
            else:
                yield base + name

    # -- cleaning --------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Remove an object and its sidecar; absent keys are not an error (retries happen).

        Only for cleaning up what a failed transfer wrote before its commit point. The sidecar
        goes first: a crash in between leaves an object without a sidecar (``stat`` then
        recomputes), never a sidecar that could outlive its object and describe a later one.
        """
        target = self._object_path(key)
        if target.is_dir():
            msg = f"{key!r} is a key prefix, not an object"
            raise ValueError(msg)
        for path in (self._digest_path(key), target):
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError):
                continue
            _fsync_dir(path.parent)
        _logger.info("storage.local.deleted", extra={"offer": self.name, "key": key})

    def purge(self, key: str) -> None:
        """Remove an archived object and its sidecar (a disposal executed with a visa). A
        directory keeps no versions and no locks: this is ``delete``, under its own name so
        that the two uses stay apart in the logs."""
        self.delete(key)
        _logger.info("storage.local.purged", extra={"offer": self.name, "key": key})

    def clean_stale_temp_files(self, *, max_age_seconds: int = STALE_TEMP_SECONDS) -> int:
        """Remove temporary files not modified for ``max_age_seconds``; return how many."""
        limit = time.time() - max_age_seconds
        removed = 0
        for entry in os.scandir(self._tmp):
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < limit:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            _logger.info(
                "storage.local.stale_temp_removed", extra={"offer": self.name, "count": removed}
            )
        return removed
