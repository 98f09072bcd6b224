"""The auditor's view: our messages against the bare official SEDA XSD, nothing of ours.

An auditor runs ``xmllint --schema seda-2.3-main.xsd manifest.xml`` (or lxml with the official
main XSD). These tests do the same, *without* :class:`SedaValidator`: the unmodified
``seda-<v>-main.xsd`` is compiled with a resolver that only redirects the two W3C imports
(``xml.xsd``, ``xlink.xsd``) to the local copies next to it, the way ``catalog.xml`` does, and
the built manifests and transfer replies must pass it as they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import shutil
import subprocess
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path

import pytest
from lxml import etree

from archive_service.core.model import (
    DataObject,
    FileFingerprints,
    Fingerprint,
    FormatInfo,
    ReplyCode,
    TransferManifestInput,
    TransferReplyInput,
)
from archive_service.core.procurement import build_dossier_tree, parse_metadata
from archive_service.core.retention import Referential
from archive_service.core.seda import (
    SedaValidator,
    SedaVersion,
    build_archive_transfer,
    build_transfer_reply,
    profile_dir,
)
from tests.fixtures.dossier import make_small_dossier
from tests.reference import in_ci
from tests.seda_helpers import sample_manifest, seda_xsd_dir

pytestmark = pytest.mark.reference

VERSIONS: tuple[SedaVersion, ...] = ("2.3", "2.2")

#: The only redirections an auditor needs (what the shared ``catalog.xml`` maps).
W3C = {
    "http://www.w3.org/2001/xml.xsd": "xml.xsd",
    "http://www.w3.org/1999/xlink.xsd": "xlink.xsd",
}


class _W3COffline(etree.Resolver):
    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory

    def resolve(  # type: ignore[override]
        self, system_url: str | None, public_id: str | None, context: object
    ) -> etree._InputDocument | None:
        local = W3C.get(system_url or "")
        if local is None:
            return None  # the SEDA files include each other by relative path: default loading
        path = self.directory / local
        return self.resolve_string(path.read_bytes(), context, base_url=str(path))


@cache
def bare_official_schema(version: SedaVersion) -> etree.XMLSchema:
    """``seda-<version>-main.xsd`` exactly as published, compiled offline."""
    directory = seda_xsd_dir() / version
    parser = etree.XMLParser(no_network=True, load_dtd=False, resolve_entities=False)
    parser.resolvers.add(_W3COffline(directory))
    return etree.XMLSchema(etree.parse(str(directory / f"seda-{version}-main.xsd"), parser))


def assert_bare_xsd_valid(xml: bytes, version: SedaVersion) -> None:
    schema = bare_official_schema(version)
    ok = schema.validate(etree.fromstring(xml))
    errors = [f"line {e.line}: {e.message}" for e in schema.error_log]  # type: ignore[attr-defined]
    assert ok, "\n".join(errors)


# -- manifests -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_sample_manifest_is_valid_against_the_bare_official_xsd(version: SedaVersion) -> None:
    assert_bare_xsd_valid(build_archive_transfer(sample_manifest(), version=version), version)


@pytest.mark.parametrize("version", VERSIONS)
def test_minimal_manifest_is_valid_against_the_bare_official_xsd(version: SedaVersion) -> None:
    manifest = dataclasses.replace(
        sample_manifest(extension=()),
        comment=None,
        archival_agreement=None,
        originating_agency=None,
    )
    xml = build_archive_transfer(manifest, version=version, rule_code_list="referential:v7")
    assert_bare_xsd_valid(xml, version)


def _procurement_manifest(tmp_path: Path, version: SedaVersion) -> bytes:
    """The real pipeline: generated dossier → metadata → référentiel → tree → manifest."""
    raw, paths = make_small_dossier(tmp_path, 64, sizes=(600, 1200), seed=3)
    meta = parse_metadata(raw)
    objects: dict[str, DataObject] = {}
    for index, (entry, path) in enumerate(zip(meta.files, paths, strict=True), start=1):
        data = path.read_bytes()
        objects[entry.path] = DataObject(
            id=f"obj-{index:03d}",
            path=entry.path,
            fingerprints=FileFingerprints(
                size=len(data),
                sha256=Fingerprint("sha256", hashlib.sha256(data).hexdigest()),
                sha512=Fingerprint("sha512", hashlib.sha512(data).hexdigest()),
            ),
            format=FormatInfo(mime_type=entry.mime_type or "application/octet-stream"),
            uri=f"content/obj-{index:03d}",
        )
    text = resources.files("archive_service.data").joinpath("retention_referential.json")
    referential = Referential.from_json(text.read_text(encoding="utf-8"))
    counter = itertools.count(1)
    root = build_dossier_tree(meta, objects, referential, new_id=lambda p: f"{p}-{next(counter)}")
    return build_archive_transfer(
        TransferManifestInput(
            message_identifier=raw["message_identifier"],
            date=datetime(2026, 11, 30, 8, 0, tzinfo=UTC),
            archival_agency="GIP-ARCHIVES",
            transferring_agency="PLATEFORME",
            objects=tuple(objects[e.path] for e in meta.files),
            root=root,
            originating_agency=meta.organization,
            comment=meta.title,
        ),
        version=version,
        rule_code_list=f"archive-service:retention-referential:{referential.version}",
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_procurement_dossier_manifest_is_valid_against_the_bare_official_xsd(
    tmp_path: Path, version: SedaVersion
) -> None:
    xml = _procurement_manifest(tmp_path, version)
    assert_bare_xsd_valid(xml, version)
    # and against everything we check ourselves
    SedaValidator(seda_xsd_dir(), profile_dir()).validate(xml, version=version)
    root = etree.fromstring(xml)
    ns = {"s": etree.QName(root).namespace or ""}
    assert root.xpath("//s:Content/s:Event/s:EventTypeCode/text()", namespaces=ns) == [
        "signature",
        "notification",
    ]
    codes = root.xpath(
        "//s:Keyword/s:KeywordReference[@schemeID='archive-service:document-categories']/text()",
        namespaces=ns,
    )
    assert isinstance(codes, list)
    assert "offres.non_retenue" in codes


# -- replies ---------------------------------------------------------------------------------


def _replies() -> list[TransferReplyInput]:
    when = datetime(2024, 6, 3, 9, 31, tzinfo=UTC)
    ok = TransferReplyInput(
        message_identifier="atr-ok",
        message_request_identifier="tr-1",
        date=when,
        reply_code=ReplyCode.OK,
        archival_agency="GIP-ARCHIVES-35",
        transferring_agency="PLACE",
        archive_unit_id="pkg-01JDQ4ZKX9Q8YB6V3T2N1M0P7T",
        grant_date=when,
    )
    ko = TransferReplyInput(
        message_identifier="atr-ko",
        message_request_identifier="tr-1",
        date=when,
        reply_code=ReplyCode.KO,
        archival_agency="GIP-ARCHIVES-35",
        transferring_agency="PLACE",
        reasons=("digest mismatch for offre.pdf", "missing metadata: dateNotification"),
    )
    return [ok, ko]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("index", [0, 1], ids=["ok", "ko"])
def test_replies_are_valid_against_the_bare_official_xsd(version: SedaVersion, index: int) -> None:
    assert_bare_xsd_valid(build_transfer_reply(_replies()[index], version=version), version)


# -- the auditor's command line --------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_xmllint_with_the_official_catalog_passes(tmp_path: Path, version: SedaVersion) -> None:
    """``xmllint --schema seda-<v>-main.xsd``, offline through the shared ``catalog.xml``."""
    xmllint = shutil.which("xmllint")
    if xmllint is None:
        reason = "xmllint not installed (Debian: libxml2-utils)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    directory = seda_xsd_dir() / version
    documents = {
        "manifest.xml": build_archive_transfer(sample_manifest(), version=version),
        "reply-ok.xml": build_transfer_reply(_replies()[0], version=version),
        "reply-ko.xml": build_transfer_reply(_replies()[1], version=version),
    }
    for name, xml in documents.items():
        (tmp_path / name).write_bytes(xml)
    env = {**os.environ, "XML_CATALOG_FILES": str(directory / "catalog.xml")}
    result = subprocess.run(
        [
            xmllint,
            "--nonet",
            "--noout",
            "--schema",
            str(directory / f"seda-{version}-main.xsd"),
            *(str(tmp_path / name) for name in documents),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for name in documents:
        assert f"{tmp_path / name} validates" in result.stderr
