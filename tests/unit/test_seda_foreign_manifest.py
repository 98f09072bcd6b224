"""Our manifest for an accepted foreign transfer: it validates against the official XSD (the
bare ``seda-2.3-main.xsd``, and 2.2 too) and keeps the sender's units, rules and descriptive
metadata, element for element."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from archive_service.core.fingerprint import MultiHasher
from archive_service.core.seda import SedaValidator, profile_dir
from archive_service.core.seda.foreign_manifest import SenderManifest, build_foreign_manifest
from archive_service.core.seda.sip import ForeignTransfer, read_sip
from archive_service.core.zipsafe import ZipLimits
from tests.seda_helpers import seda_xsd_dir
from tests.unit.test_seda_sip import example_zips, schema
from tests.unit.test_sip_zipsafe import PDF, SMALL, Sink, build_zip, manifest_for

pytestmark = pytest.mark.reference


def accepted(blob: bytes) -> ForeignTransfer:
    validator = SedaValidator(seda_xsd_dir(), profile_dir())
    check = read_sip(io.BytesIO(blob), validator=validator, limits=ZipLimits(), sink=Sink())
    assert check.accepted, check.issues
    assert check.transfer is not None
    return check.transfer


def ours(transfer: ForeignTransfer, version: str) -> bytes:
    hasher = MultiHasher()
    hasher.update(transfer.manifest)
    return build_foreign_manifest(
        transfer,
        message_identifier="pkg-0001",
        date=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        uris={o.id: f"content/obj-{o.id}" for o in transfer.objects},
        sender_manifest=SenderManifest(
            object_id="sender-manifest",
            group_id="sender-manifest-group",
            unit_id="sender-manifest-unit",
            uri="sender/manifest.xml",
            fingerprints=hasher.result(),
        ),
        version=version,  # type: ignore[arg-type]
    )


def shape(element: etree._Element) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """Local names, texts and attributes of a subtree, namespace-free (2.2 → 2.3)."""
    return [
        (etree.QName(e).localname, (e.text or "").strip(), tuple(sorted(e.attrib.items())))
        for e in element.iter()
        if isinstance(e.tag, str)
    ]


def valid_examples() -> list[Path]:
    out = []
    for path in example_zips():
        with zipfile.ZipFile(path) as archive:
            document = etree.fromstring(archive.read("manifest.xml"))
        if any(schema(v).validate(document) for v in ("2.2", "2.3")):
            out.append(path)
    return out


@pytest.mark.parametrize("path", valid_examples(), ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("target", ["2.3", "own"])
def test_our_manifest_validates_and_keeps_the_description(path: Path, target: str) -> None:
    """In SEDA 2.3 (our default), and in the sender's own version. (2.3 → 2.2 is not offered:
    2.3-only blocks such as SigningInformation have no 2.2 form.)"""
    transfer = accepted(path.read_bytes())
    version = transfer.version if target == "own" else target
    built = ours(transfer, version)
    document = etree.fromstring(built)
    assert schema(version).validate(document), schema(version).error_log
    ns = {"s": f"fr:gouv:culture:archivesdefrance:seda:v{version}"}
    sender = etree.fromstring(transfer.manifest)
    sns = {"s": etree.QName(sender).namespace}
    for unit in sender.iterfind(".//s:ArchiveUnit", sns):
        (again,) = document.iterfind(f".//s:ArchiveUnit[@id='{unit.get('id')}']", ns)
        assert shape(again) == shape(unit)
    for obj in transfer.objects:
        (bdo,) = document.iterfind(f".//s:BinaryDataObject[@id='{obj.id}']", ns)
        assert bdo.findtext("s:Uri", namespaces=ns) == f"content/obj-{obj.id}"
        assert obj.fingerprints is not None
        assert bdo.findtext("s:MessageDigest", namespaces=ns) == obj.fingerprints.sha512.digest
    sender_obj = document.find(".//s:BinaryDataObject[@id='sender-manifest']", ns)
    assert sender_obj is not None
    assert (
        sender_obj.findtext("s:MessageDigest", namespaces=ns)
        == hashlib.sha512(transfer.manifest).hexdigest()
    )


def test_it_is_byte_stable_and_turns_attachments_into_files() -> None:
    inline = manifest_for(PDF).replace(
        b"<Uri>content/a.pdf</Uri>",
        b"<Attachment>" + base64.b64encode(PDF) + b"</Attachment>",
    )
    validator = SedaValidator(seda_xsd_dir(), profile_dir())
    check = read_sip(
        io.BytesIO(build_zip([("manifest.xml", inline)])),
        validator=validator,
        limits=SMALL,
        sink=Sink(),
    )
    assert check.transfer is not None and check.accepted, check.issues
    first, second = ours(check.transfer, "2.3"), ours(check.transfer, "2.3")
    assert first == second
    document = etree.fromstring(first)
    assert schema("2.3").validate(document), schema("2.3").error_log
    assert b"<Attachment" not in first
