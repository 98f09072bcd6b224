"""Hostile transfer zips, built here byte by byte: each refused with a clear reason, and the sink
never called (nothing extracted).

Header-level cases are refused by :func:`open_sip` before any entry is read; cases whose headers
lie are refused while the check pass streams the entries, still before the staging pass.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from archive_service.core.seda import SedaValidator, profile_dir
from archive_service.core.seda.sip import SipObject, open_sip, read_sip
from archive_service.core.zipsafe import ZipBudget, ZipEntry, ZipLimits, check_produced
from archive_service.errors import ArchiveTooLarge, UnsafeArchive
from tests.seda_helpers import seda_xsd_dir

PDF = b"%PDF-1.4\n" + b"hello transfer\n" * 20

MANIFEST = """<?xml version="1.0" encoding="UTF-8"?>
<ArchiveTransfer xmlns="fr:gouv:culture:archivesdefrance:seda:v2.3">
  <Date>2024-01-02T03:04:05</Date>
  <MessageIdentifier>HOSTILE-1</MessageIdentifier>
  <CodeListVersions/>
  <DataObjectPackage>
    <DataObjectGroup id="og1">
      <BinaryDataObject id="bdo1">
        <Uri>content/a.pdf</Uri>
        <MessageDigest algorithm="SHA-256">{digest}</MessageDigest>
        <Size>{size}</Size>
      </BinaryDataObject>
    </DataObjectGroup>
    <DescriptiveMetadata>
      <ArchiveUnit id="au1">
        <Content>
          <DescriptionLevel>Item</DescriptionLevel>
          <Title>Pièce</Title>
        </Content>
        <DataObjectReference><DataObjectGroupReferenceId>og1</DataObjectGroupReferenceId></DataObjectReference>
      </ArchiveUnit>
    </DescriptiveMetadata>
    <ManagementMetadata/>
  </DataObjectPackage>
  <ArchivalAgency><Identifier>AA</Identifier></ArchivalAgency>
  <TransferringAgency><Identifier>TA</Identifier></TransferringAgency>
</ArchiveTransfer>
"""

SMALL = ZipLimits(
    max_entries=20,
    max_entry_size=4 * 1024**2,
    max_total_size=6 * 1024**2,
    max_ratio=50,
    ratio_grace=64 * 1024,
)


def manifest_for(data: bytes) -> bytes:
    return MANIFEST.format(digest=hashlib.sha256(data).hexdigest(), size=len(data)).encode()


def build_zip(
    entries: list[tuple[str | zipfile.ZipInfo, bytes]],
    *,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names on purpose
        with zipfile.ZipFile(buffer, "w", compression) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    return buffer.getvalue()


def sip_zip(*extra: tuple[str | zipfile.ZipInfo, bytes], data: bytes = PDF) -> bytes:
    return build_zip([("manifest.xml", manifest_for(data)), ("content/a.pdf", data), *extra])


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, obj: SipObject, chunks: Iterator[bytes]) -> None:
        self.calls.append((obj.id, sum(len(c) for c in chunks)))


@pytest.fixture(scope="module")
def validator() -> SedaValidator:
    return SedaValidator(seda_xsd_dir(), profile_dir())


def refuse(blob: bytes, validator: SedaValidator, limits: ZipLimits = SMALL) -> UnsafeArchive:
    sink = Sink()
    with pytest.raises(UnsafeArchive) as caught:
        read_sip(io.BytesIO(blob), validator=validator, limits=limits, sink=sink)
    assert sink.calls == [], "nothing may reach the sink"
    return caught.value


def codes(error: UnsafeArchive) -> set[str]:
    return {i.code for i in error.issues}


def patch_central(blob: bytes, name: str, offset: int, value: int) -> bytes:
    """Overwrite a 4-byte field of ``name``'s central-directory header (16 CRC, 20 compressed
    size, 24 uncompressed size)."""
    raw = bytearray(blob)
    start = raw.find(b"PK\x01\x02" + b"", raw.rfind(b"PK\x05\x06") - 200 * 1024)
    encoded = name.encode()
    while start != -1:
        name_len = struct.unpack_from("<H", raw, start + 28)[0]
        if raw[start + 46 : start + 46 + name_len] == encoded:
            struct.pack_into("<I", raw, start + offset, value)
            return bytes(raw)
        start = raw.find(b"PK\x01\x02", start + 4)
    raise AssertionError(name)


def test_a_clean_transfer_is_staged(validator: SedaValidator) -> None:
    sink = Sink()
    check = read_sip(io.BytesIO(sip_zip()), validator=validator, limits=SMALL, sink=sink)
    assert check.issues == ()
    assert sink.calls == [("bdo1", len(PDF))]
    transfer = check.transfer
    assert transfer is not None
    obj = transfer.object("bdo1")
    assert obj.fingerprints is not None
    assert obj.fingerprints.sha256.digest == hashlib.sha256(PDF).hexdigest()
    assert transfer.unit("au1").title == "Pièce"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("../evil.txt", "zip-path-traversal"),
        ("content/../../evil.txt", "zip-path-traversal"),
        ("/etc/cron.d/evil", "zip-path-absolute"),
        ("C:/Windows/evil.dll", "zip-path-absolute"),
        ("content\\..\\evil.txt", "zip-name-backslash"),
        ("content//a.txt", "zip-name-invalid"),
        ("content/./a.txt", "zip-name-invalid"),
        ("content/a\x01.txt", "zip-name-control"),
    ],
)
def test_dangerous_names_are_refused(name: str, code: str, validator: SedaValidator) -> None:
    error = refuse(sip_zip((name, b"x")), validator)
    assert code in codes(error)
    assert any(repr(name) in (i.location or "") for i in error.issues)


def test_a_symlink_is_refused(validator: SedaValidator) -> None:
    link = zipfile.ZipInfo("content/link")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    error = refuse(sip_zip((link, b"/etc/passwd")), validator)
    assert codes(error) == {"zip-symlink"}


def test_a_device_file_is_refused(validator: SedaValidator) -> None:
    device = zipfile.ZipInfo("content/dev")
    device.create_system = 3
    device.external_attr = (stat.S_IFCHR | 0o666) << 16
    assert codes(refuse(sip_zip((device, b"")), validator)) == {"zip-special-file"}


@pytest.mark.parametrize(
    "twin",
    [
        "content/a.pdf",  # the same name twice
        "Content/A.PDF",  # case
    ],
)
def test_duplicates_are_refused(twin: str, validator: SedaValidator) -> None:
    error = refuse(sip_zip((twin, b"other bytes")), validator)
    assert codes(error) == {"zip-duplicate"}


def test_unicode_normalisation_duplicates_are_refused(validator: SedaValidator) -> None:
    nfc, nfd = "content/caf\u00e9.txt", "content/cafe\u0301.txt"
    error = refuse(build_zip([("manifest.xml", b"<x/>"), (nfc, b"1"), (nfd, b"2")]), validator)
    assert codes(error) == {"zip-duplicate"}


def test_a_file_that_is_also_a_directory_is_refused(validator: SedaValidator) -> None:
    error = refuse(sip_zip(("content/a.pdf/inner.txt", b"x")), validator)
    assert "zip-duplicate" in codes(error)


def test_an_encrypted_entry_is_refused(validator: SedaValidator) -> None:
    blob = bytearray(sip_zip(("content/secret.bin", b"\x00" * 12 + b"ciphertext")))
    # zipfile writes no encrypted entry: set flag bit 0 by hand, in the central directory
    # (offset 8) and in the local header (offset 6).
    central = blob.rfind(b"PK\x01\x02")
    struct.pack_into("<H", blob, central + 8, struct.unpack_from("<H", blob, central + 8)[0] | 1)
    local = struct.unpack_from("<I", blob, central + 42)[0]
    struct.pack_into("<H", blob, local + 6, struct.unpack_from("<H", blob, local + 6)[0] | 1)
    error = refuse(bytes(blob), validator)
    assert codes(error) == {"zip-encrypted"}


def test_an_unsupported_compression_is_refused(validator: SedaValidator) -> None:
    blob = build_zip(
        [("manifest.xml", manifest_for(PDF)), ("content/a.pdf", PDF)],
        compression=zipfile.ZIP_BZIP2,
    )
    assert codes(refuse(blob, validator)) == {"zip-compression-unsupported"}


def test_a_bomb_by_ratio_is_refused(validator: SedaValidator) -> None:
    error = refuse(sip_zip(("content/zeros.bin", b"\x00" * (3 * 1024**2))), validator)
    assert codes(error) == {"zip-bomb-ratio"}
    assert "exceeds 50:1" in error.issues[0].message


def test_a_bomb_by_total_is_refused(validator: SedaValidator) -> None:
    chunk = os.urandom(2 * 1024**2)  # incompressible: the ratio stays ~1
    blob = sip_zip(*[(f"content/part{i}.bin", chunk) for i in range(4)])
    sink = Sink()
    with pytest.raises(ArchiveTooLarge) as caught:
        read_sip(io.BytesIO(blob), validator=validator, limits=SMALL, sink=sink)
    assert sink.calls == []
    assert {i.code for i in caught.value.issues} == {"zip-total-too-large"}


def test_too_many_entries_are_refused(validator: SedaValidator) -> None:
    blob = sip_zip(*[(f"content/f{i}.txt", b"x") for i in range(25)])
    with pytest.raises(ArchiveTooLarge) as caught:
        read_sip(io.BytesIO(blob), validator=validator, limits=SMALL, sink=Sink())
    assert {i.code for i in caught.value.issues} == {"zip-too-many-entries"}


def test_an_entry_declared_too_large_is_refused(validator: SedaValidator) -> None:
    big = os.urandom(5 * 1024**2)
    with pytest.raises(ArchiveTooLarge) as caught:
        read_sip(io.BytesIO(sip_zip(data=big)), validator=validator, limits=SMALL, sink=Sink())
    assert {i.code for i in caught.value.issues} == {"zip-entry-too-large"}


def test_a_size_that_lies_downwards_is_caught_while_reading(validator: SedaValidator) -> None:
    """The directory says 100 bytes (ratio fine) for 3 MiB of zeros: reading stops at the
    declared size and the CRC does not match; nothing reaches the sink."""
    zeros = b"\x00" * (3 * 1024**2)
    blob = patch_central(sip_zip(data=zeros), "content/a.pdf", 24, 100)
    error = refuse(blob, validator)
    assert codes(error) == {"zip-entry-corrupt"}
    assert "CRC" in error.issues[0].message


def test_a_size_that_lies_upwards_is_caught_while_reading(validator: SedaValidator) -> None:
    blob = patch_central(sip_zip(), "content/a.pdf", 24, len(PDF) + 10)
    assert codes(refuse(blob, validator)) & {"zip-entry-corrupt", "zip-size-mismatch"}


def test_a_compressed_size_that_lies_is_an_overlap(validator: SedaValidator) -> None:
    blob = patch_central(sip_zip(), "content/a.pdf", 20, 100_000)
    assert "zip-overlap" in codes(refuse(blob, validator))


def test_overlapping_entries_are_refused(validator: SedaValidator) -> None:
    """Two directory entries pointing at the same local data (the overlap bomb)."""
    blob = bytearray(sip_zip(("content/b.pdf", PDF)))
    end = blob.rfind(b"PK\x05\x06")
    first = blob.find(b"PK\x01\x02")
    offsets = []
    position = first
    while position != -1 and position < end:
        offsets.append(position)
        position = blob.find(b"PK\x01\x02", position + 4)
    a_offset = struct.unpack_from("<I", blob, offsets[1] + 42)[0]
    struct.pack_into("<I", blob, offsets[2] + 42, a_offset)
    assert "zip-overlap" in codes(refuse(bytes(blob), validator))


def test_the_streaming_guard_stops_what_headers_hid() -> None:
    """Defence in depth: ``check_produced`` refuses bytes beyond what the entry declared,
    its ratio or the total budget, whatever zipfile does."""
    info = zipfile.ZipInfo("content/x")
    entry = ZipEntry(name="x", key="x", size=1000, compressed_size=10, crc=0, info=info)
    budget = ZipBudget(SMALL)
    with pytest.raises(UnsafeArchive, match="limits"):
        check_produced(entry, 1001, budget, ratio_cap=10**9)
    with pytest.raises(UnsafeArchive) as caught:
        check_produced(entry, 600, budget, ratio_cap=500)
    assert caught.value.issues[0].code == "zip-bomb-ratio"
    budget.produced = SMALL.max_total_size + 1
    with pytest.raises(UnsafeArchive) as caught:
        check_produced(entry, 10, budget, ratio_cap=10**9)
    assert caught.value.issues[0].code == "zip-total-too-large"


def test_a_nested_zip_is_just_a_file(validator: SedaValidator) -> None:
    inner = build_zip([("../escape.txt", b"nested entries are never opened")])
    sink = Sink()
    check = read_sip(io.BytesIO(sip_zip(data=inner)), validator=validator, limits=SMALL, sink=sink)
    assert check.accepted
    assert sink.calls == [("bdo1", len(inner))]


def test_not_a_zip_is_refused() -> None:
    with pytest.raises(UnsafeArchive) as caught:
        open_sip(io.BytesIO(b"PK\x03\x04 not really"), SMALL)
    assert caught.value.issues[0].code == "zip-unreadable"


def test_every_issue_is_reported_at_once(validator: SedaValidator) -> None:
    link = zipfile.ZipInfo("content/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    error = refuse(sip_zip(("../x", b"1"), (link, b"/etc"), ("/abs", b"2")), validator)
    assert codes(error) == {"zip-path-traversal", "zip-symlink", "zip-path-absolute"}


def test_limits_are_checked_on_creation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_ratio"):
        ZipLimits(max_ratio=0)
