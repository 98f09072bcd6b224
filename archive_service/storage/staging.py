"""The staging area: uploads stream here while they are fingerprinted, before storage.

One directory per upload under ``<data_dir>/staging``. A part is written to ``f<n>`` in
1 MiB writes while SHA-256 and SHA-512 are computed, so a file of any size costs one buffer of
memory. An upload that is refused is discarded whole.

A staged file is written once, by its :class:`FileSink`, and never opened for writing again:
the ingest job may hand it to the local storage offer, which then hard-links the same inode
(made read-only first) instead of copying it (``BlobStore.put_file(..., consume=True)``). The
staging name is then a read-only alias until the upload's directory is discarded, right after
the package is committed.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import BinaryIO

from archive_service.core.fingerprint import MultiHasher, fingerprint_bytes
from archive_service.errors import InvalidInput, Issue, PayloadTooLarge, Unavailable
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


class FileSink:
    """One file part being written: ``write`` chunks, then ``finish``."""

    def __init__(self, upload: Upload, part_name: str, staged_name: str, content_type: str | None):
        self._upload = upload
        self.part_name = part_name
        self.staged_name = staged_name
        self.content_type = content_type
        self._path = upload.path / staged_name
        self._fh: BinaryIO = self._path.open("xb")
        self._hasher = MultiHasher()

    def write(self, data: bytes | memoryview) -> None:
        if self._hasher.size + len(data) > self._upload.staging.max_file_size:
            self._fh.close()
            raise PayloadTooLarge(
                f"file {self.part_name!r} exceeds the size limit of "
                f"{self._upload.staging.max_file_size} bytes",
                issues=[Issue("file-too-large", "file exceeds the size limit", self.part_name)],
            )
        try:
            self._fh.write(data)
        except OSError as exc:
            self._fh.close()
            raise Unavailable(f"staging area cannot take the upload: {exc.strerror}") from None
        self._hasher.update(data)

    def finish(self) -> StagedFile:
        try:
            self._fh.flush()
        finally:
            self._fh.close()
        return StagedFile(
            part_name=self.part_name,
            staged_name=self.staged_name,
            fingerprints=self._hasher.result(),
            content_type=self.content_type,
        )

    def abort(self) -> None:
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
