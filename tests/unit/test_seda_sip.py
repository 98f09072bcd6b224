"""Foreign SEDA transfers: the real example SIPs judged as the official XSD judges them, the
sender's description kept without loss, and content errors reported (element, line) as a KO.

The oracle is not our validator: it is the bare official ``seda-<v>-main.xsd`` compiled with
lxml (``tests.reference.official_schema``) and, when installed, ``xmllint --schema``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import shutil
import subprocess
import zipfile
from functools import cache
from pathlib import Path

import pytest
from lxml import etree

from archive_service.core.seda import SedaValidator, profile_dir
from archive_service.core.seda.sip import read_sip
from archive_service.core.zipsafe import ZipLimits
from tests.reference import official_schema, seda_examples_dir
from tests.seda_helpers import seda_xsd_dir
from tests.unit.test_sip_zipsafe import MANIFEST, PDF, SMALL, Sink, build_zip, manifest_for

pytestmark = pytest.mark.reference

VERSIONS = ("2.2", "2.3")


def example_zips() -> list[Path]:
    try:
        directory = seda_examples_dir()
    except pytest.skip.Exception:
        return []
    return sorted(directory.rglob("*.zip"))


@cache
def schema(version: str) -> etree.XMLSchema:
    compiled = official_schema(version)
    assert isinstance(compiled, etree.XMLSchema)
    return compiled


def oracle_valid(manifest: bytes) -> bool:
    """Valid iff the official XSD of some SEDA version accepts it (a manifest can only match
    the one whose namespace it uses)."""
    document = etree.parse(io.BytesIO(manifest), etree.XMLParser(resolve_entities=False))
    return any(schema(v).validate(document) for v in VERSIONS)


def xmllint_valid(manifest: bytes, tmp_path: Path) -> bool | None:
    if shutil.which("xmllint") is None:
        return None
    target = tmp_path / "manifest.xml"
    target.write_bytes(manifest)
    catalog = seda_xsd_dir() / "2.3" / "catalog.xml"
    results = []
    for version in VERSIONS:
        xsd = seda_xsd_dir() / version / f"seda-{version}-main.xsd"
        run = subprocess.run(
            ["xmllint", "--noout", "--nonet", "--schema", str(xsd), str(target)],
            capture_output=True,
            env={"XML_CATALOG_FILES": str(catalog)},
            check=False,
        )
        results.append(run.returncode == 0)
    return any(results)


@pytest.fixture(scope="module")
def validator() -> SedaValidator:
    return SedaValidator(seda_xsd_dir(), profile_dir())


@pytest.mark.parametrize("path", example_zips(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_example_is_judged_as_the_official_xsd_judges_it(
    path: Path, validator: SedaValidator, tmp_path: Path
) -> None:
    with zipfile.ZipFile(path) as archive:
        manifest = archive.read("manifest.xml")
    expected = oracle_valid(manifest)
    second = xmllint_valid(manifest, tmp_path)
    if second is not None:
        assert second == expected, "lxml and xmllint disagree on the official XSD"
    sink = Sink()
    with path.open("rb") as handle:
        check = read_sip(handle, validator=validator, limits=ZipLimits(), sink=sink)
    assert check.accepted == expected, check.issues
    if expected:
        assert check.transfer is not None
        assert len(sink.calls) == len(check.transfer.objects) > 0
    else:
        assert sink.calls == []
        assert check.issues
        assert all((i.location or "").startswith("line ") for i in check.issues)


def test_the_examples_cover_both_outcomes() -> None:
    paths = example_zips()
    if not paths:
        pytest.skip("no examples")
    outcomes = set()
    for path in paths:
        with zipfile.ZipFile(path) as archive:
            outcomes.add(oracle_valid(archive.read("manifest.xml")))
    assert outcomes == {True, False}


@pytest.mark.parametrize("path", example_zips(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_senders_description_is_kept_without_loss(path: Path, validator: SedaValidator) -> None:
    with path.open("rb") as handle:
        check = read_sip(handle, validator=validator, limits=ZipLimits(), sink=Sink())
    transfer = check.transfer
    if transfer is None:  # not SEDA 2.2/2.3 at all: nothing to keep
        assert check.version is None
        assert {i.code for i in check.issues} == {"seda-unsupported-version"}
        return
    with zipfile.ZipFile(path) as archive:
        manifest = archive.read("manifest.xml")
    assert transfer.manifest == manifest
    root = etree.fromstring(manifest)
    ns = {"s": etree.QName(root).namespace}
    described = [
        u for u in root.iterfind(".//s:ArchiveUnit", ns) if u.find("s:ArchiveUnitRefId", ns) is None
    ]
    assert {u.get("id") for u in described} == {u.id for u in transfer.units}
    for element in described:
        unit = transfer.unit(element.get("id") or "")
        content = element.find("s:Content", ns)
        assert content is not None
        assert unit.content_xml == etree.tostring(
            copy.deepcopy(content), method="c14n2", with_comments=True
        )
        assert unit.title == content.findtext("s:Title", namespaces=ns).strip()
        management = element.find("s:Management", ns)
        declared_rules = (
            [r.text.strip() for r in management.iterfind("./*/s:Rule", ns)]
            if management is not None
            else []
        )
        assert sorted(r.rule_id for r in unit.rules) == sorted(declared_rules)
        # the kept subtree parses back to the same elements and text
        again = etree.fromstring(unit.content_xml or b"")
        assert [(e.tag, (e.text or "").strip()) for e in again.iter()] == [
            (e.tag, (e.text or "").strip()) for e in content.iter()
        ]
    reachable: set[str] = set()
    stack = list(transfer.roots)
    while stack:
        uid = stack.pop()
        reachable.add(uid)
        stack.extend(c.target for c in transfer.unit(uid).children)
    assert reachable == {u.id for u in transfer.units}


# -- content errors: a KO with each reason, nothing staged ----------------------------------------


def ko(blob: bytes, validator: SedaValidator) -> set[str]:
    sink = Sink()
    check = read_sip(io.BytesIO(blob), validator=validator, limits=SMALL, sink=sink)
    assert not check.accepted
    assert sink.calls == []
    return {i.code for i in check.issues}


def test_a_wrong_digest_is_a_ko_with_its_line(validator: SedaValidator) -> None:
    blob = build_zip([("manifest.xml", manifest_for(b"other")), ("content/a.pdf", PDF)])
    check = read_sip(io.BytesIO(blob), validator=validator, limits=SMALL, sink=Sink())
    (issue,) = [i for i in check.issues if i.code == "sip-digest-mismatch"]
    assert issue.location is not None
    assert issue.location.startswith("line 8: ")
    assert "BinaryDataObject[@id='bdo1']" in issue.location


def test_a_missing_file_and_an_undeclared_file_are_a_ko(validator: SedaValidator) -> None:
    blob = build_zip([("manifest.xml", manifest_for(PDF)), ("content/other.pdf", PDF)])
    assert ko(blob, validator) == {"sip-object-missing", "sip-undeclared-file"}


def test_no_manifest_is_a_ko(validator: SedaValidator) -> None:
    blob = build_zip([("content/a.pdf", PDF), ("content/b.xml", b"<x/>")])
    assert ko(blob, validator) == {"sip-manifest-missing"}


def test_a_single_root_xml_is_the_manifest(validator: SedaValidator) -> None:
    blob = build_zip([("bordereau.xml", manifest_for(PDF)), ("content/a.pdf", PDF)])
    check = read_sip(io.BytesIO(blob), validator=validator, limits=SMALL, sink=Sink())
    assert check.accepted, check.issues
    assert check.transfer is not None
    assert check.transfer.manifest_name == "bordereau.xml"


def test_a_malformed_manifest_is_a_ko(validator: SedaValidator) -> None:
    blob = build_zip([("manifest.xml", b"<ArchiveTransfer>"), ("content/a.pdf", PDF)])
    assert ko(blob, validator) == {"seda-xml-malformed"}


def test_a_dtd_in_the_manifest_is_a_ko(validator: SedaValidator) -> None:
    evil = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    blob = build_zip([("manifest.xml", evil), ("content/a.pdf", PDF)])
    assert ko(blob, validator) == {"seda-dtd-forbidden"}


def test_a_wrong_size_is_a_ko(validator: SedaValidator) -> None:
    manifest = manifest_for(PDF).replace(f"<Size>{len(PDF)}<".encode(), b"<Size>1<")
    blob = build_zip([("manifest.xml", manifest), ("content/a.pdf", PDF)])
    assert ko(blob, validator) == {"sip-size-mismatch"}


def test_an_unknown_digest_algorithm_is_a_ko(validator: SedaValidator) -> None:
    manifest = manifest_for(PDF).replace(b'algorithm="SHA-256"', b'algorithm="CRC32"')
    blob = build_zip([("manifest.xml", manifest), ("content/a.pdf", PDF)])
    assert "sip-digest-algorithm" in ko(blob, validator)


def test_base64_digests_filenames_and_attachments(validator: SedaValidator) -> None:
    sha512_b64 = base64.b64encode(hashlib.sha512(PDF).digest()).decode()
    by_filename = (
        MANIFEST.replace("<Uri>content/a.pdf</Uri>", "")
        .replace('algorithm="SHA-256">{digest}', f'algorithm="SHA-512">{sha512_b64}')
        .replace(
            "<Size>{size}</Size>",
            "<Size>{size}</Size><FileInfo><Filename>a.pdf</Filename></FileInfo>",
        )
        .format(size=len(PDF))
    )
    blob = build_zip([("manifest.xml", by_filename.encode()), ("content/a.pdf", PDF)])
    check = read_sip(io.BytesIO(blob), validator=validator, limits=SMALL, sink=Sink())
    assert check.accepted, check.issues
    assert check.transfer is not None
    assert check.transfer.object("bdo1").entry == "content/a.pdf"

    inline = MANIFEST.replace(
        "<Uri>content/a.pdf</Uri>", f"<Attachment>{base64.b64encode(PDF).decode()}</Attachment>"
    ).format(digest=hashlib.sha256(PDF).hexdigest(), size=len(PDF))
    sink = Sink()
    check = read_sip(
        io.BytesIO(build_zip([("manifest.xml", inline.encode())])),
        validator=validator,
        limits=SMALL,
        sink=sink,
    )
    assert check.accepted, check.issues
    assert sink.calls == [("bdo1", len(PDF))]
