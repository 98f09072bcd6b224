"""The staging area: uploads stream here while they are fingerprinted, before storage.

One directory per upload under ``<data_dir>/staging``. A part is written to ``f<n>`` as its
slices arrive, while SHA-256 and SHA-512 are computed, so a file of any size costs one buffer of
memory. An upload that is refused is discarded whole.

Past its first ``DIRECT_AFTER`` bytes, a large part is written with ``O_DIRECT`` (Linux), from two
page-aligned buffers (a helper thread writes one while the other fills): its bytes go to the disk
without passing through the page cache. Filling gigabytes of page cache costs a page fault per
4 KiB (and, on a virtual machine, often a trip to the host), which showed as the largest
system-time item of a 1 GiB upload; a direct write costs the disk's time, while the CPU hashes.
The head of the file stays in the page cache, where format identification reads it. Where
``O_DIRECT`` is refused (tmpfs, other systems), the whole file is written through the cache.

A staged file is written once, by its :class:`FileSink`, and never opened for writing again:
the ingest job may hand it to the local storage offer, which then hard-links the same inode
(made read-only first) instead of copying it (``BlobStore.put_file(..., consume=True)``). The
staging name is then a read-only alias until the upload's directory is discarded, right after
the package is committed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import shutil
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from archive_service.core.fingerprint import MultiHasher, fingerprint_bytes
from archive_service.errors import (
    ArchiveError,
    InsufficientStorage,
    InvalidInput,
    Issue,
    PayloadTooLarge,
    Unavailable,
)
from archive_service.ports import StagedFile


class LocalStaging:
    def __init__(self, root: Path, *, max_file_size: int, max_files: int) -> None:
        self.root = root
        self.max_file_size = max_file_size
        self.max_files = max_files

    def new_upload(self) -> Upload:
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"up-{uuid.uuid4().hex}"
        (self.root / name).mkdir()
        return Upload(self, name)

    def path_of(self, staging_dir: str, staged_name: str) -> Path:
        if "/" in staging_dir or "/" in staged_name or ".." in (staging_dir + staged_name):
            msg = "bad staging name"
            raise ValueError(msg)
        return self.root / staging_dir / staged_name

    def add_bytes(self, staging_dir: str, part_name: str, data: bytes) -> StagedFile:
        staged_name = f"g{uuid.uuid4().hex[:12]}"
        path = self.path_of(staging_dir, staged_name)
        with path.open("xb") as fh:
            fh.write(data)
        return StagedFile(
            part_name=part_name,
            staged_name=staged_name,
            fingerprints=fingerprint_bytes(data),
            content_type=None,
        )

    def discard(self, staging_dir: str) -> None:
        if staging_dir and "/" not in staging_dir and ".." not in staging_dir:
            shutil.rmtree(self.root / staging_dir, ignore_errors=True)

    def leftovers(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())


#: Bytes of a part written through the page cache before switching to ``O_DIRECT``.
DIRECT_AFTER = 8 * 1024 * 1024
#: Size of each of the two aligned buffers of direct writes (a multiple of any block size).
DIRECT_BUFFER = 4 * 1024 * 1024
_BLOCK = 4096
_O_DIRECT: int = getattr(os, "O_DIRECT", 0)


def _write_all(fd: int, view: memoryview) -> None:
    written = 0
    while written < len(view):
        written += os.write(fd, view[written:])


def _set_direct(fd: int, on: bool) -> bool:
    """Turn ``O_DIRECT`` on or off for ``fd``; ``False`` if the file system refuses it."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT if on else flags & ~_O_DIRECT)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    return True


class _DirectAppender:
    """Appends to ``fd`` (from a block-aligned offset) with ``O_DIRECT``.

    Two page-aligned buffers: while a helper thread writes a full one to the disk, the caller
    fills the other (and hashes), so the disk's time overlaps the CPU's. At most one write is
    in flight; its error, if any, is raised by the next ``write`` or by ``finish``.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._maps = [mmap.mmap(-1, DIRECT_BUFFER) for _ in range(2)]  # page-aligned
        self._views = [memoryview(m) for m in self._maps]
        self._current = 0
        self._fill = 0
        self._direct = True
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="staging-write")
        self._pending: Future[None] | None = None

    def write(self, data: memoryview) -> None:
        while data:
            buffer = self._views[self._current]
            taken = min(len(data), DIRECT_BUFFER - self._fill)
            buffer[self._fill : self._fill + taken] = data[:taken]
            self._fill += taken
            data = data[taken:]
            if self._fill == DIRECT_BUFFER:
                self._wait()  # the other buffer is on disk: it can be filled next
                self._pending = self._writer.submit(self._write, buffer)
                self._current, self._fill = 1 - self._current, 0

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _write(self, view: memoryview) -> None:
        if self._direct:
            try:
                _write_all(self._fd, view)
                return
            except OSError as exc:
                # Refused only at write time on some systems: fall back to the page cache.
                if exc.errno != errno.EINVAL or not _set_direct(self._fd, on=False):
                    raise
                self._direct = False
        _write_all(self._fd, view)

    def finish(self) -> None:
        """Write what is buffered: whole blocks directly, the last partial one through the
        page cache (``O_DIRECT`` writes whole blocks only)."""
        try:
            self._wait()
            buffer = self._views[self._current]
            whole = self._fill - self._fill % _BLOCK
            if whole:
                self._write(buffer[:whole])
            if self._fill > whole:
                if self._direct:
                    _set_direct(self._fd, on=False)
                _write_all(self._fd, buffer[whole : self._fill])
        finally:
            self.release()

    def release(self) -> None:
        """Wait for the write in flight (its error no longer matters) and free the buffers."""
        self._writer.shutdown(wait=True)
        self._pending = None
        for view in self._views:
            view.release()
        for m in self._maps:
            with contextlib.suppress(BufferError):
                m.close()


def _staging_error(exc: OSError, part_name: str) -> ArchiveError:
    """A full staging disk refuses this upload clearly (the sender may retry later or send
    less); any other I/O failure is the service's own trouble."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage(
            "the staging area is full: the transfer was not accepted and nothing was kept",
            issues=[Issue("staging-full", "no space left in the staging area", part_name)],
        )
    return Unavailable(f"staging area cannot take the upload: {exc.strerror}")


class FileSink:
    """One file part being written: ``write`` chunks, then ``finish``."""

    def __init__(self, upload: Upload, part_name: str, staged_name: str, content_type: str | None):
        self._upload = upload
        self.part_name = part_name
        self.staged_name = staged_name
        self.content_type = content_type
        self._path = upload.path / staged_name
        # Unbuffered: the parser hands over slices of up to a few megabytes.
        self._fh = self._path.open("xb", buffering=0)
        self._direct: _DirectAppender | None = None
        self._may_go_direct = bool(_O_DIRECT)
        self._hasher = MultiHasher()

    def write(self, data: bytes | memoryview) -> None:
        size = self._hasher.size
        if size + len(data) > self._upload.staging.max_file_size:
            self.abort()
            raise PayloadTooLarge(
                f"file {self.part_name!r} exceeds the size limit of "
                f"{self._upload.staging.max_file_size} bytes",
                issues=[Issue("file-too-large", "file exceeds the size limit", self.part_name)],
            )
        view = memoryview(data)
        try:
            if self._may_go_direct and size + len(view) > DIRECT_AFTER:
                self._may_go_direct = False
                head = DIRECT_AFTER - size  # the switch happens at a block-aligned offset
                _write_all(self._fh.fileno(), view[:head])
                if _set_direct(self._fh.fileno(), on=True):
                    self._direct = _DirectAppender(self._fh.fileno())
                    self._direct.write(view[head:])
                else:
                    _write_all(self._fh.fileno(), view[head:])
            elif self._direct is not None:
                self._direct.write(view)
            else:
                _write_all(self._fh.fileno(), view)
        except OSError as exc:
            self.abort()
            raise _staging_error(exc, self.part_name) from None
        self._hasher.update(view)

    def finish(self) -> StagedFile:
        try:
            if self._direct is not None:
                self._direct.finish()
        except OSError as exc:
            self.abort()
            raise _staging_error(exc, self.part_name) from None
        self._fh.close()
        return StagedFile(
            part_name=self.part_name,
            staged_name=self.staged_name,
            fingerprints=self._hasher.result(),
            content_type=self.content_type,
        )

    def abort(self) -> None:
        if self._direct is not None:
            self._direct.release()
            self._direct = None
        self._fh.close()


class Upload:
    def __init__(self, staging: LocalStaging, name: str) -> None:
        self.staging = staging
        self.name = name
        self.path = staging.root / name
        self.files: list[StagedFile] = []
        self._count = 0

    def begin_file(self, part_name: str, content_type: str | None) -> FileSink:
        self._count += 1
        if self._count > self.staging.max_files:
            raise InvalidInput(
                f"too many files in one transfer (limit {self.staging.max_files})",
                issues=[Issue("too-many-files", "too many files in one transfer")],
            )
        return FileSink(self, part_name, f"f{self._count:06d}", content_type)

    def add(self, staged: StagedFile) -> None:
        self.files.append(staged)

    def discard(self) -> None:
        self.staging.discard(self.name)
