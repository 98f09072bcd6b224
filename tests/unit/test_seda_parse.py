"""Reading manifests for offline verification: round trip, foreign manifests, hostile input."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from datetime import UTC, datetime

import pytest
from lxml import etree

from archive_service.core.model import Fingerprint, ReplyCode, TransferReplyInput
from archive_service.core.seda import build_archive_transfer, build_transfer_reply, read_manifest
from archive_service.errors import SedaInvalid
from tests.seda_helpers import (
    FILES,
    data_objects,
    find,
    mutate,
    remove,
    sample_manifest,
    seda_examples_dir,
)


@pytest.mark.parametrize("version", ["2.3", "2.2"])
def test_round_trip_gives_back_every_digest(version: str) -> None:
    manifest = sample_manifest()
    parsed = read_manifest(build_archive_transfer(manifest, version=version))  # type: ignore[arg-type]
    assert parsed.version == version
    assert parsed.message_identifier == manifest.message_identifier
    by_id = {o.id: o for o in parsed.objects}
    assert sorted(by_id) == sorted(FILES)
    for obj in data_objects():
        got = by_id[obj.id]
        assert got.uri == obj.uri
        assert got.digest_algorithm == "SHA-256"
        assert got.digest == obj.fingerprints.sha256.digest
        assert got.fingerprint == obj.fingerprints.sha256
        assert got.sha512 == obj.fingerprints.sha512.digest
        assert got.sha512_fingerprint == obj.fingerprints.sha512
        assert got.size == obj.size
        assert got.filename == obj.filename
        assert got.mime == obj.format.mime_type
        assert got.puid == obj.format.puid
        assert got.group_id == f"og-{obj.id}"


def test_digests_match_the_file_contents() -> None:
    parsed = read_manifest(build_archive_transfer(sample_manifest()))
    for obj in parsed.objects:
        content = FILES[obj.id]
        assert obj.digest == hashlib.sha256(content).hexdigest()
        assert obj.sha512 == hashlib.sha512(content).hexdigest()
    assert parsed.by_uri()["content/obj-07"].size == 0


@pytest.mark.reference
def test_foreign_manifest_with_sha512_digests() -> None:
    parsed = read_manifest((seda_examples_dir() / "2.3" / "sip2_3.xml").read_bytes())
    assert parsed.version == "2.3"
    assert parsed.message_identifier == "Entrée_avec_groupe_d_objet"
    assert len(parsed.objects) == 4
    first = parsed.objects[0]
    assert first.id == "ID011"
    assert first.digest_algorithm == "SHA-512"
    assert first.uri.startswith("content/e726e114")
    assert first.fingerprint == Fingerprint("sha512", first.digest)
    assert first.sha512 is None
    assert first.sha512_fingerprint == first.fingerprint
    assert first.size == 100646
    assert first.puid == "fmt/293"
    assert first.group_id == "ID006"


@pytest.mark.reference
def test_foreign_manifest_with_unsupported_algorithm() -> None:
    with zipfile.ZipFile(seda_examples_dir() / "2.2" / "WARNING_SIP_mail_Seda2.2.zip") as z:
        parsed = read_manifest(z.read("manifest.xml"))
    (obj,) = parsed.objects
    assert obj.digest_algorithm == "MD5"
    assert obj.fingerprint is None


def test_base64_digest_is_understood() -> None:
    obj = data_objects()[0]
    raw = bytes.fromhex(obj.fingerprints.sha256.digest)

    def to_base64(root: etree._Element) -> None:
        digest = find(root, "//s:BinaryDataObject[@id='obj-01']/s:MessageDigest")
        digest.text = base64.b64encode(raw).decode()

    parsed = read_manifest(mutate(build_archive_transfer(sample_manifest()), to_base64))
    assert parsed.by_uri()["content/obj-01"].fingerprint == obj.fingerprints.sha256


@pytest.mark.parametrize("missing", ["s:Uri", "s:MessageDigest"])
def test_object_that_cannot_be_verified_is_refused(missing: str) -> None:
    broken = mutate(
        build_archive_transfer(sample_manifest()),
        lambda r: remove(r, f"//s:BinaryDataObject[@id='obj-05']/{missing}"),
    )
    with pytest.raises(SedaInvalid) as excinfo:
        read_manifest(broken)
    (issue,) = excinfo.value.issues
    assert issue.code == "seda-missing-element"
    assert issue.location is not None
    assert issue.location.startswith("line ")
    assert issue.location.endswith("/BinaryDataObject[@id='obj-05']")


def test_reply_is_not_a_manifest() -> None:
    reply = build_transfer_reply(
        TransferReplyInput(
            message_identifier="atr-1",
            message_request_identifier="tr-1",
            date=datetime(2024, 6, 3, tzinfo=UTC),
            reply_code=ReplyCode.OK,
            archival_agency="A",
            transferring_agency="T",
        )
    )
    with pytest.raises(SedaInvalid) as excinfo:
        read_manifest(reply)
    assert excinfo.value.issues[0].code == "seda-not-a-transfer"


def test_xxe_is_refused_and_nothing_is_read() -> None:
    hostile = b"""<?xml version="1.0"?>
<!DOCTYPE ArchiveTransfer [<!ENTITY x SYSTEM "file:///etc/hostname">]>
<ArchiveTransfer xmlns="fr:gouv:culture:archivesdefrance:seda:v2.3">
<MessageIdentifier>&x;</MessageIdentifier></ArchiveTransfer>"""
    with pytest.raises(SedaInvalid) as excinfo:
        read_manifest(hostile)
    assert excinfo.value.issues[0].code == "seda-dtd-forbidden"


def test_unknown_version_is_refused() -> None:
    xml = build_archive_transfer(sample_manifest()).replace(b"seda:v2.3", b"seda:v2.1")
    with pytest.raises(SedaInvalid) as excinfo:
        read_manifest(xml)
    assert excinfo.value.issues[0].code == "seda-unsupported-version"
