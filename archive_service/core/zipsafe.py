"""Zip safety for transfers received from outside: inspect first, then read within limits.

A SEDA transfer arrives as a zip built by someone else. Before a single byte is extracted,
:func:`inspect_zip` reads the central directory only and refuses, naming every offending entry:

- names that could escape a directory: ``..`` components, absolute paths (``/x``, ``\\\\server``),
  drive letters (``C:``), backslashes, empty or ``.`` components, control characters;
- symbolic links and other special files (the Unix mode in the high half of ``external_attr``);
- duplicate names, including names equal after Unicode NFC normalisation and case folding
  (two such entries would land on one file on macOS or Windows);
- a name used both as a file and as a directory;
- encrypted entries (general-purpose flag bit 0, strong encryption bit 6, masked central
  directory bit 13);
- compression methods other than stored (0) and deflated (8);
- more entries than allowed, an entry whose declared size exceeds the per-entry limit, a declared
  total beyond the total limit, a declared compression ratio beyond the ratio limit (bombs);
- entries whose data overlaps the next entry (the overlapping-entry bomb: many directory entries
  pointing into the same compressed kernel).

Headers can lie, so :func:`read_entry` enforces the same limits again on the bytes actually
produced while it streams an entry: more bytes than declared, more than the ratio allows, more
than the per-entry or total budget, fewer than declared, a bad CRC or a broken deflate stream
all stop the read with :class:`~archive_service.errors.UnsafeArchive`.

Nested zips are ordinary files: they are never opened. Pure: the only I/O is reading the file
object handed in.
"""

from __future__ import annotations

import re
import stat
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from archive_service.errors import ArchiveTooLarge, Issue, UnsafeArchive

__all__ = [
    "ZipBudget",
    "ZipEntry",
    "ZipInventory",
    "ZipLimits",
    "entry_key",
    "inspect_zip",
    "read_entry",
]

#: Compression methods read: stored and deflated (what every SIP builder writes).
SUPPORTED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}

_ENCRYPTED_FLAGS = 0x0001 | 0x0040 | 0x2000
_DRIVE = re.compile(r"^[A-Za-z]:")
_LOCAL_HEADER_SIZE = 30
READ_CHUNK = 256 * 1024

_SIZE_CODES = frozenset({"zip-too-many-entries", "zip-entry-too-large", "zip-total-too-large"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ZipLimits:
    """Limits on a received zip; every one is checked on the headers and again while reading.

    ``max_ratio`` applies to entries that expand to more than ``ratio_grace`` bytes: tiny
    files (an empty-ish XML, a run of spaces) legitimately compress far beyond any sane ratio.
    """

    max_entries: int = 10_000
    max_entry_size: int = 4 * 1024**3
    max_total_size: int = 20 * 1024**3
    max_ratio: int = 200
    ratio_grace: int = 1024 * 1024
    max_manifest_size: int = 64 * 1024**2

    def __post_init__(self) -> None:
        for name in ("max_entries", "max_entry_size", "max_total_size", "max_ratio"):
            if getattr(self, name) <= 0:
                msg = f"{name} must be > 0"
                raise ValueError(msg)
        if self.ratio_grace < 0 or self.max_manifest_size <= 0:
            msg = "ratio_grace must be >= 0 and max_manifest_size > 0"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class ZipEntry:
    """One checked member of the zip (files only; directory entries are dropped)."""

    name: str
    """The name as stored, ``/``-separated, relative, checked."""
    key: str
    """NFC + case-folded name: how entries are compared."""
    size: int
    compressed_size: int
    crc: int
    info: zipfile.ZipInfo = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ZipInventory:
    """The checked files of a zip, in central-directory order."""

    entries: tuple[ZipEntry, ...]

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.entries)

    def by_key(self) -> dict[str, ZipEntry]:
        return {e.key: e for e in self.entries}


def entry_key(name: str) -> str:
    """The comparison key of a path inside a zip: NFC-normalised, case-folded, no end slash."""
    return unicodedata.normalize("NFC", name).casefold().rstrip("/")


def _name_issues(name: str, where: str) -> list[Issue]:
    issues: list[Issue] = []

    def add(code: str, message: str) -> None:
        issues.append(Issue(code, message, where))

    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        add("zip-name-control", "entry name contains control characters")
    if "\\" in name:
        add("zip-name-backslash", "entry name contains a backslash")
    if name.startswith("/"):
        add("zip-path-absolute", "entry name is an absolute path")
    if _DRIVE.match(name):
        add("zip-path-absolute", "entry name starts with a drive letter")
    parts = name.rstrip("/").split("/") if name.rstrip("/") else [""]
    if any(p == ".." for p in parts):
        add("zip-path-traversal", "entry name has a '..' component (path traversal)")
    elif not name.startswith("/") and any(p in ("", ".") for p in parts):
        add("zip-name-invalid", "entry name has an empty or '.' component")
    return issues


def _is_dir(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return info.filename.endswith("/") or stat.S_ISDIR(mode) or bool(info.external_attr & 0x10)


def _mode_issue(info: zipfile.ZipInfo, where: str) -> Issue | None:
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        return Issue("zip-symlink", "entry is a symbolic link", where)
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return Issue("zip-special-file", f"entry is a special file (mode {oct(kind)})", where)
    return None


def inspect_zip(file: BinaryIO, limits: ZipLimits) -> tuple[zipfile.ZipFile, ZipInventory]:
    """Open ``file`` (seekable) and check its central directory; extract nothing.

    Returns the open :class:`zipfile.ZipFile` (the caller closes it) and the checked entries.
    Raises :class:`UnsafeArchive` carrying every issue found, or :class:`ArchiveTooLarge`
    when the only issues are sizes (entry count, entry size, total size).
    """
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        issue = Issue("zip-unreadable", f"not a readable zip file: {exc}", "zip")
        raise UnsafeArchive("the transfer is not a readable zip file", issues=[issue]) from exc
    try:
        inventory = _check(archive.infolist(), limits, getattr(archive, "start_dir", None))
    except BaseException:
        archive.close()
        raise
    return archive, inventory


def _check(
    infos: list[zipfile.ZipInfo], limits: ZipLimits, directory_offset: int | None
) -> ZipInventory:
    issues: list[Issue] = []
    if len(infos) > limits.max_entries:
        issues.append(
            Issue(
                "zip-too-many-entries",
                f"{len(infos)} entries, at most {limits.max_entries} allowed",
                "zip",
            )
        )
        _raise(issues)
    seen: dict[str, str] = {}
    directories: set[str] = set()
    entries: list[ZipEntry] = []
    total = 0
    for info in infos:
        name = info.filename
        where = f"zip entry {name!r}"
        issues += _name_issues(name, where)
        mode_issue = _mode_issue(info, where)
        if mode_issue is not None:
            issues.append(mode_issue)
        if info.flag_bits & _ENCRYPTED_FLAGS:
            issues.append(Issue("zip-encrypted", "entry is encrypted", where))
        key = entry_key(name)
        earlier = seen.get(key)
        if earlier is not None:
            same = "the same name" if earlier == name else f"a name equal to {earlier!r}"
            issues.append(
                Issue("zip-duplicate", f"entry has {same} (after NFC and case folding)", where)
            )
        seen[key] = name
        parents = key.split("/")[:-1]
        directories.update("/".join(parents[: i + 1]) for i in range(len(parents)))
        if _is_dir(info):
            directories.add(key)
            continue
        if info.compress_type not in SUPPORTED_METHODS:
            issues.append(
                Issue(
                    "zip-compression-unsupported",
                    f"compression method {info.compress_type} is not supported "
                    "(stored or deflated only)",
                    where,
                )
            )
        if info.file_size > limits.max_entry_size:
            issues.append(
                Issue(
                    "zip-entry-too-large",
                    f"declares {info.file_size} bytes, at most {limits.max_entry_size} allowed",
                    where,
                )
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > limits.ratio_grace and ratio > limits.max_ratio:
            issues.append(
                Issue(
                    "zip-bomb-ratio",
                    f"compression ratio {ratio:.0f}:1 exceeds {limits.max_ratio}:1",
                    where,
                )
            )
        total += info.file_size
        entries.append(
            ZipEntry(
                name=name,
                key=key,
                size=info.file_size,
                compressed_size=info.compress_size,
                crc=info.CRC,
                info=info,
            )
        )
    for entry in entries:
        if entry.key in directories:
            issues.append(
                Issue(
                    "zip-duplicate",
                    "entry is used both as a file and as a directory",
                    f"zip entry {entry.name!r}",
                )
            )
    if total > limits.max_total_size:
        issues.append(
            Issue(
                "zip-total-too-large",
                f"entries expand to {total} bytes, at most {limits.max_total_size} allowed",
                "zip",
            )
        )
    issues += _overlaps(infos, directory_offset)
    if issues:
        _raise(issues)
    return ZipInventory(tuple(entries))


def _overlaps(infos: list[zipfile.ZipInfo], directory_offset: int | None) -> list[Issue]:
    """Entries whose local header + data reach past the next entry or the central directory.

    This catches overlapping-entry bombs and compressed sizes that lie upwards; the local
    extra field is not counted, so the bound never refuses an honest zip.
    """
    ordered = sorted(infos, key=lambda i: i.header_offset)
    bounds: list[tuple[int, str]] = [(i.header_offset, f"entry {i.filename!r}") for i in ordered]
    bounds = bounds[1:]
    if directory_offset is not None:
        bounds.append((directory_offset, "the central directory"))
    issues: list[Issue] = []
    for current, (limit, what) in zip(ordered, bounds, strict=False):
        name_len = _stored_name_length(current)
        end = current.header_offset + _LOCAL_HEADER_SIZE + name_len + current.compress_size
        if end > limit:
            issues.append(
                Issue(
                    "zip-overlap",
                    f"entry data reaches into {what} (overlapping entries or a lying size)",
                    f"zip entry {current.filename!r}",
                )
            )
    return issues


def _stored_name_length(info: zipfile.ZipInfo) -> int:
    """Bytes of the name in the headers: UTF-8 with flag bit 11, otherwise CP437."""
    if info.flag_bits & 0x800:
        return len(info.orig_filename.encode("utf-8", "surrogateescape"))
    try:
        return len(info.orig_filename.encode("cp437"))
    except UnicodeEncodeError:
        return len(info.orig_filename.encode("utf-8", "surrogateescape"))


def _raise(issues: list[Issue]) -> None:
    if all(i.code in _SIZE_CODES for i in issues):
        raise ArchiveTooLarge("the transfer zip exceeds the size limits", issues=issues)
    raise UnsafeArchive(f"the transfer zip is refused: {len(issues)} issue(s)", issues=issues)


@dataclass(slots=True)
class ZipBudget:
    """Bytes produced so far over the whole zip (the total limit, enforced while reading)."""

    limits: ZipLimits
    produced: int = 0


def read_entry(
    archive: zipfile.ZipFile, entry: ZipEntry, budget: ZipBudget, *, chunk_size: int = READ_CHUNK
) -> Iterator[bytes]:
    """The decompressed bytes of ``entry``, in chunks, with every limit enforced on real bytes.

    Raises :class:`UnsafeArchive` as soon as the entry produces more than it declared, more
    than its ratio, per-entry or total allowance, or ends short, with a bad CRC or a broken
    stream. A consumer that stops early simply closes the generator.
    """
    limits = budget.limits
    where = f"zip entry {entry.name!r}"
    ratio_cap = max(limits.ratio_grace, limits.max_ratio * max(entry.compressed_size, 1))
    produced = 0
    try:
        with archive.open(entry.info) as stream:
            while True:
                chunk = stream.read(chunk_size)
                if not chunk:
                    break
                produced += len(chunk)
                budget.produced += len(chunk)
                check_produced(entry, produced, budget, ratio_cap)
                yield chunk
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        issue = Issue("zip-entry-corrupt", f"entry cannot be read: {exc}", where)
        raise UnsafeArchive("a zip entry is corrupt", issues=[issue]) from exc
    if produced != entry.size:
        issue = Issue(
            "zip-size-mismatch",
            f"entry declares {entry.size} bytes but holds {produced}",
            where,
        )
        raise UnsafeArchive("a zip entry lies about its size", issues=[issue])


def check_produced(entry: ZipEntry, produced: int, budget: ZipBudget, ratio_cap: int) -> None:
    """Refuse once the bytes produced for ``entry`` pass what its headers and limits allow."""
    limits = budget.limits
    where = f"zip entry {entry.name!r}"
    problem: Issue | None = None
    if produced > entry.size:
        problem = Issue(
            "zip-size-mismatch",
            f"entry declares {entry.size} bytes but holds more",
            where,
        )
    elif produced > limits.max_entry_size:
        problem = Issue(
            "zip-entry-too-large", f"entry expands beyond {limits.max_entry_size} bytes", where
        )
    elif produced > ratio_cap:
        problem = Issue(
            "zip-bomb-ratio", f"entry expands beyond {limits.max_ratio}:1 while reading", where
        )
    elif budget.produced > limits.max_total_size:
        problem = Issue(
            "zip-total-too-large",
            f"entries expand beyond {limits.max_total_size} bytes while reading",
            where,
        )
    if problem is not None:
        raise UnsafeArchive("a zip entry exceeds its limits while reading", issues=[problem])
