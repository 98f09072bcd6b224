"""Offline package verification (core/package_check.py): a checklist that fails closed.

The package is built in memory the way the service builds it: a SEDA manifest from the real
builder, an RFC 3161 token over the manifest's SHA-256 from the built-in TSA, and the objects'
bytes under ``content/<id>``.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import BinaryIO

import pytest

from archive_service.core.fingerprint import fingerprint_bytes
from archive_service.core.ids import ulid
from archive_service.core.model import (
    ArchiveUnitNode,
    CheckResult,
    DataObject,
    Description,
    DescriptionLevel,
    FormatInfo,
    TransferManifestInput,
    VerificationReport,
)
from archive_service.core.package_check import (
    CHAIN_FILE,
    MANIFEST_FILE,
    TOKEN_FILE,
    check_package,
    safe_object_path,
)
from archive_service.core.seda.builder import build_archive_transfer
from archive_service.tsa.builtin import BuiltinTimestampAuthority

AT = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return AT


def object_id(n: int) -> str:
    return "obj-" + ulid(AT, bytes([n]) * 10)


@dataclass
class Package:
    """An exported package held in memory: what ``get`` would write to a directory."""

    manifest: bytes | None
    token: bytes | None
    chain: bytes | None
    files: dict[str, bytes] = field(default_factory=dict)
    filenames: dict[str, str] = field(default_factory=dict)

    def open_object(self, uri: str) -> BinaryIO | None:
        data = self.files.get(uri)
        return io.BytesIO(data) if data is not None else None

    def check(
        self, open_object: Callable[[str], BinaryIO | None] | None = None
    ) -> VerificationReport:
        return check_package(
            self.manifest,
            self.token,
            self.chain,
            open_object or self.open_object,
            content_listing=list(self.files),
        )

    def with_file(self, uri: str, data: bytes) -> Package:
        return replace(self, files={**self.files, uri: data})


DOCUMENTS = {
    "01-consultation/reglement.pdf": b"%PDF-1.7\nReglement de la consultation\n" * 40,
    "03-offres/Entreprise A/offre.txt": "Offre de l'entreprise A, montant 12 345,00 € HT\n".encode()
    * 25,
}


def manifest_input(objects: tuple[DataObject, ...]) -> TransferManifestInput:
    children = tuple(
        ArchiveUnitNode(
            id=f"au-doc-{index}",
            description=Description(level=DescriptionLevel.ITEM, title=obj.filename),
            data_object_ids=(obj.id,),
        )
        for index, obj in enumerate(objects)
    )
    root = ArchiveUnitNode(
        id="au-dossier",
        description=Description(level=DescriptionLevel.RECORD_GROUP, title="Marché 2025-T-017"),
        children=children,
    )
    return TransferManifestInput(
        message_identifier="MSG-2025-0001",
        date=AT,
        archival_agency="ARCHIVES-GIP",
        transferring_agency="PLATEFORME",
        objects=objects,
        root=root,
    )


def make_objects(
    documents: dict[str, bytes], *, uri: Callable[[str], str] | None = None
) -> tuple[DataObject, ...]:
    objects = []
    for n, (path, data) in enumerate(sorted(documents.items()), start=1):
        oid = object_id(n)
        objects.append(
            DataObject(
                id=oid,
                path=path,
                fingerprints=fingerprint_bytes(data),
                format=FormatInfo(mime_type="application/octet-stream"),
                uri=uri(oid) if uri else f"content/{oid}",
            )
        )
    return tuple(objects)


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> BuiltinTimestampAuthority:
    return BuiltinTimestampAuthority(tmp_path_factory.mktemp("tsa"), clock=FixedClock())


@pytest.fixture(scope="module")
def other_tsa(tmp_path_factory: pytest.TempPathFactory) -> BuiltinTimestampAuthority:
    return BuiltinTimestampAuthority(tmp_path_factory.mktemp("other-tsa"), clock=FixedClock())


def build_package(
    tsa: BuiltinTimestampAuthority, documents: dict[str, bytes] = DOCUMENTS
) -> Package:
    objects = make_objects(documents)
    manifest = build_archive_transfer(manifest_input(objects))
    token = tsa.timestamp(hashlib.sha256(manifest).digest())
    by_path = dict(documents)
    return Package(
        manifest=manifest,
        token=token,
        chain=tsa.certificate_chain_pem(),
        files={o.uri: by_path[o.path] for o in objects},
        filenames={o.uri: o.filename for o in objects},
    )


@pytest.fixture(scope="module")
def package(tsa: BuiltinTimestampAuthority) -> Package:
    return build_package(tsa)


def failed(report: VerificationReport) -> list[CheckResult]:
    assert not report.ok
    return list(report.failures)


def names(checks: list[CheckResult]) -> list[str]:
    return [c.name.split(" ", 1)[0] for c in checks]


# --- the good package --------------------------------------------------------------------------


def test_intact_package_passes_every_numbered_check(package: Package) -> None:
    report = package.check()

    assert report.ok, [c for c in report.checks if not c.ok]
    numbers = names(list(report.checks))
    assert numbers[:4] == ["1.", "2.1", "2.2", "2.3"]
    for uri in package.files:
        about = [c for c in report.checks if c.subject == uri]
        assert [c.name.split(" ", 1)[0] for c in about] == ["3.1", "3.2", "3.3", "3.4"]
    assert numbers[-1] == "4."
    manifest_check = report.checks[0]
    assert "SEDA 2.3" in manifest_check.found
    assert "MSG-2025-0001" in manifest_check.found
    assert "2 binary object(s)" in manifest_check.found


def test_every_check_names_expected_and_found(package: Package) -> None:
    for check in package.check().checks:
        assert check.expected and check.found, check


def test_object_checks_name_the_original_file(package: Package) -> None:
    report = package.check()
    for uri, filename in package.filenames.items():
        sha = next(c for c in report.checks if c.subject == uri and c.name.startswith("3.3"))
        assert filename in sha.name
        assert sha.expected == hashlib.sha256(package.files[uri]).hexdigest()


# --- objects -----------------------------------------------------------------------------------


def test_one_changed_byte_fails_naming_that_file(package: Package) -> None:
    uri = sorted(package.files)[0]
    data = bytearray(package.files[uri])
    data[len(data) // 2] ^= 0x01
    report = package.with_file(uri, bytes(data)).check()

    failures = failed(report)
    assert {c.subject for c in failures} == {uri}
    assert names(failures) == ["3.3", "3.4"]  # SHA-256 and SHA-512; same size
    sha256 = failures[0]
    assert sha256.expected == hashlib.sha256(package.files[uri]).hexdigest()
    assert sha256.found == hashlib.sha256(bytes(data)).hexdigest()
    assert package.filenames[uri] in sha256.name


def test_appended_byte_fails_size_and_digests(package: Package) -> None:
    uri = sorted(package.files)[1]
    report = package.with_file(uri, package.files[uri] + b"\n").check()

    failures = failed(report)
    assert names(failures) == ["3.2", "3.3", "3.4"]
    size = failures[0]
    assert size.expected == f"{len(package.files[uri])} B"
    assert size.found == f"{len(package.files[uri]) + 1} B"


def test_missing_object_fails(package: Package) -> None:
    uri = sorted(package.files)[0]
    files = {u: d for u, d in package.files.items() if u != uri}
    report = replace(package, files=files).check()

    failures = failed(report)
    assert [(c.name.split(" ", 1)[0], c.subject, c.found) for c in failures] == [
        ("3.1", uri, "missing")
    ]


def test_unreadable_object_fails(package: Package) -> None:
    def broken(uri: str) -> BinaryIO | None:
        raise PermissionError(13, "Permission denied", uri)

    failures = failed(package.check(broken))
    assert {c.name.split(" ", 1)[0] for c in failures} == {"3.1"}
    assert all("Permission denied" in c.found for c in failures)


def test_extra_object_fails(package: Package) -> None:
    report = package.with_file("content/obj-intrus", b"not archived").check()

    failures = failed(report)
    assert [(c.name.split(" ", 1)[0], c.subject) for c in failures] == [
        ("4.", "content/obj-intrus")
    ]


def test_without_a_listing_the_unlisted_check_is_not_run(package: Package) -> None:
    report = check_package(package.manifest, package.token, package.chain, package.open_object)
    assert report.ok
    assert not any(c.name.startswith("4.") for c in report.checks)


# --- manifest and token ------------------------------------------------------------------------


def test_changed_manifest_byte_fails_the_token_imprint(package: Package) -> None:
    assert package.manifest is not None
    tampered = package.manifest.replace(b"MSG-2025-0001", b"MSG-2025-0002")
    report = replace(package, manifest=tampered).check()

    failures = failed(report)
    assert [(c.name.split(" ", 1)[0], c.subject) for c in failures] == [("2.2", MANIFEST_FILE)]
    imprint = failures[0]
    assert imprint.expected == "sha256:" + hashlib.sha256(tampered).hexdigest()
    assert imprint.found == "sha256:" + hashlib.sha256(package.manifest).hexdigest()


def test_changed_digest_in_manifest_is_caught_by_the_token(package: Package) -> None:
    """Rewriting an object's digest in the manifest to match a forged file breaks the seal."""
    assert package.manifest is not None
    uri = sorted(package.files)[0]
    forged = b"forged content"
    manifest = package.manifest.replace(
        hashlib.sha256(package.files[uri]).hexdigest().encode(),
        hashlib.sha256(forged).hexdigest().encode(),
    )
    report = replace(package, manifest=manifest).with_file(uri, forged).check()

    assert "2.2" in names(failed(report))


def test_unparseable_manifest_fails_closed(package: Package) -> None:
    assert package.manifest is not None
    report = replace(package, manifest=package.manifest[:-40]).check()

    failures = failed(report)
    assert names(failures)[0] == "1."
    assert failures[0].subject == MANIFEST_FILE
    # Without a manifest the objects cannot be vouched for: the extra-file check fails too.
    assert "4." in names(failures)


def test_missing_manifest_fails_closed(package: Package) -> None:
    failures = failed(replace(package, manifest=None).check())
    assert (failures[0].name.split(" ", 1)[0], failures[0].subject) == ("1.", MANIFEST_FILE)


def test_no_token_fails_closed(package: Package) -> None:
    report = replace(package, token=None).check()

    failures = failed(report)
    assert [(c.name.split(" ", 1)[0], c.subject) for c in failures] == [("2.1", TOKEN_FILE)]
    assert not any(c.name.startswith(("2.2", "2.3")) for c in report.checks)


def test_no_chain_fails_closed(package: Package) -> None:
    failures = failed(replace(package, chain=None).check())
    assert [(c.name.split(" ", 1)[0], c.subject) for c in failures] == [("2.1", CHAIN_FILE)]


def test_garbage_token_fails(package: Package) -> None:
    failures = failed(replace(package, token=b"\x30\x03\x02\x01\x00").check())
    assert [(c.name.split(" ", 1)[0], c.subject) for c in failures] == [("2.1", TOKEN_FILE)]


def test_wrong_chain_fails(package: Package, other_tsa: BuiltinTimestampAuthority) -> None:
    report = replace(package, chain=other_tsa.certificate_chain_pem()).check()

    failures = failed(report)
    assert [(c.name.split(" ", 1)[0], c.subject) for c in failures] == [("2.3", TOKEN_FILE)]


def test_token_of_another_manifest_fails(package: Package, tsa: BuiltinTimestampAuthority) -> None:
    other = build_package(tsa, {"autre.txt": b"un autre dossier\n"})
    report = replace(package, token=other.token).check()

    assert names(failed(report)) == ["2.2"]


# --- hostile uris ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "../outside",
        "/etc/passwd",
        "content/../manifest.xml",
        "content//x",
        "manifest.xml",
        "content",
        "content/a\\..\\b",
        "content/./x",
        "",
    ],
)
def test_unsafe_uris_are_refused(uri: str) -> None:
    assert safe_object_path(uri) is None


@pytest.mark.parametrize("uri", ["content/obj-01JDQ", "content/sub/dossier é.pdf"])
def test_safe_uris_are_kept(uri: str) -> None:
    assert safe_object_path(uri) == uri


def test_unsafe_uri_in_manifest_fails_without_opening_anything(
    tsa: BuiltinTimestampAuthority,
) -> None:
    objects = make_objects({"a.txt": b"a"}, uri=lambda oid: f"../../{oid}")
    manifest = build_archive_transfer(manifest_input(objects))
    opened: list[str] = []

    def spy(uri: str) -> BinaryIO | None:
        opened.append(uri)
        return io.BytesIO(b"a")

    report = check_package(
        manifest,
        tsa.timestamp(hashlib.sha256(manifest).digest()),
        tsa.certificate_chain_pem(),
        spy,
        content_listing=[],
    )

    failures = failed(report)
    assert names(failures) == ["3.1"]
    assert "unsafe" in failures[0].found
    assert opened == []


def test_empty_report_is_not_a_success() -> None:
    assert not VerificationReport().ok
