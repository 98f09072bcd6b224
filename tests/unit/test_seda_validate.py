"""SEDA validation: the bare official XSD (offline), our RelaxNG profile, hardened parsing,
locations."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from lxml import etree

from archive_service.core.seda import SedaValidator, build_archive_transfer, detect_version
from archive_service.core.seda.validate import profile_dir
from archive_service.errors import ConfigurationError, Issue, SedaInvalid
from tests.seda_helpers import (
    EXT,
    SEDA23,
    find,
    mutate,
    remove,
    sample_manifest,
    seda_examples_dir,
    seda_xsd_dir,
)

LOCATION = re.compile(r"^line \d+: /ArchiveTransfer(/\S+)?$")


@pytest.fixture(scope="module")
def validator() -> SedaValidator:
    return SedaValidator(seda_xsd_dir(), profile_dir())


@pytest.fixture(scope="module")
def profile_only() -> SedaValidator:
    return SedaValidator(None, profile_dir())


@pytest.fixture(scope="module")
def manifest23() -> bytes:
    return build_archive_transfer(sample_manifest(), version="2.3")


@pytest.fixture(scope="module")
def manifest22() -> bytes:
    return build_archive_transfer(sample_manifest(), version="2.2")


def _issues(excinfo: pytest.ExceptionInfo[SedaInvalid]) -> tuple[Issue, ...]:
    issues = excinfo.value.issues
    assert issues, "SedaInvalid must carry at least one issue"
    return issues


def _codes(excinfo: pytest.ExceptionInfo[SedaInvalid]) -> set[str]:
    return {i.code for i in _issues(excinfo)}


# -- our manifests are valid ---------------------------------------------------------------------


@pytest.mark.reference
def test_built_23_manifest_validates_against_official_xsd_and_profile(
    validator: SedaValidator, manifest23: bytes
) -> None:
    assert validator.official_available("2.3")
    validator.validate(manifest23)
    validator.validate(manifest23, version="2.3")


@pytest.mark.reference
def test_built_22_manifest_validates_against_official_xsd_and_profile(
    validator: SedaValidator, manifest22: bytes
) -> None:
    assert validator.official_available("2.2")
    validator.validate(manifest22)


def test_built_manifests_validate_against_profile_without_official_xsd(
    profile_only: SedaValidator, manifest23: bytes, manifest22: bytes
) -> None:
    assert not profile_only.official_available("2.3")
    profile_only.validate(manifest23)
    profile_only.validate(manifest22)


def test_detect_version(manifest23: bytes, manifest22: bytes) -> None:
    assert detect_version(manifest23) == "2.3"
    assert detect_version(manifest22) == "2.2"


# -- official XSD rejects ------------------------------------------------------------------------


@pytest.mark.reference
def test_missing_digest_is_refused_with_location(
    validator: SedaValidator, manifest23: bytes
) -> None:
    broken = mutate(
        manifest23, lambda r: remove(r, "//s:BinaryDataObject[@id='obj-03']/s:MessageDigest")
    )
    with pytest.raises(SedaInvalid) as excinfo:
        validator.validate(broken)
    issues = _issues(excinfo)
    assert {"seda-xsd-invalid", "seda-profile-invalid"} <= _codes(excinfo)
    xsd = [i for i in issues if i.code == "seda-xsd-invalid"]
    assert any("MessageDigest" in i.message for i in xsd)
    for issue in issues:
        assert issue.location is not None and LOCATION.match(issue.location), issue
    assert any("BinaryDataObject[@id='obj-03']" in (i.location or "") for i in xsd)
    assert issues[0].message == "MessageDigest (SHA-256) is required"
    assert (issues[0].location or "").endswith("/BinaryDataObject[@id='obj-03']")


@pytest.mark.reference
def test_wrong_element_order_is_refused(validator: SedaValidator, manifest23: bytes) -> None:
    def swap(root: etree._Element) -> None:
        uri = find(root, "//s:BinaryDataObject[@id='obj-01']/s:Uri")
        digest = find(root, "//s:BinaryDataObject[@id='obj-01']/s:MessageDigest")
        digest.addnext(uri)

    broken = mutate(manifest23, swap)
    with pytest.raises(SedaInvalid) as excinfo:
        validator.validate(broken, profile=False)
    (issue, *_) = _issues(excinfo)
    assert issue.code == "seda-xsd-invalid"
    assert issue.location is not None
    assert issue.location.startswith("line ")
    assert "BinaryDataObject[@id='obj-01']" in issue.location


@pytest.mark.reference
def test_bad_value_type_is_refused(validator: SedaValidator, manifest23: bytes) -> None:
    def bad_date(root: etree._Element) -> None:
        find(root, "s:Date").text = "3 juin 2024"

    with pytest.raises(SedaInvalid) as excinfo:
        validator.validate(mutate(manifest23, bad_date), profile=False)
    assert any(
        i.location and i.location.endswith("/ArchiveTransfer/Date") for i in _issues(excinfo)
    )


@pytest.mark.reference
def test_foreign_element_in_content_is_refused(validator: SedaValidator, manifest23: bytes) -> None:
    """Content has no ##other wildcard, and no schema of ours adds substitutes to it."""

    def add(root: etree._Element) -> None:
        content = find(root, "//s:ArchiveUnit[@id='au-11']/s:Content")
        etree.SubElement(content, f"{{{EXT}}}Undeclared").text = "x"

    with pytest.raises(SedaInvalid) as excinfo:
        validator.validate(mutate(manifest23, add), profile=False)
    assert any("ase:Undeclared" in i.message for i in _issues(excinfo))


# -- profile rejects what the official XSD accepts -------------------------------------------------


def _profile_refuses(
    validator: SedaValidator, xml: bytes, *, official_ok: bool = True
) -> tuple[Issue, ...]:
    if official_ok and validator.official_available("2.3"):
        validator.validate(xml, profile=False)
    with pytest.raises(SedaInvalid) as excinfo:
        validator.validate(xml)
    issues = _issues(excinfo)
    assert {i.code for i in issues} == {"seda-profile-invalid"}
    for issue in issues:
        assert issue.location is not None and LOCATION.match(issue.location), issue
    return issues


@pytest.mark.reference
def test_document_without_appraisal_rule_is_refused(
    validator: SedaValidator, manifest23: bytes
) -> None:
    broken = mutate(manifest23, lambda r: remove(r, "//s:ArchiveUnit[@id='au-22']/s:Management"))
    issues = _profile_refuses(validator, broken)
    first = issues[0]
    assert first.message == "a document's Management/AppraisalRule is required"
    assert first.location is not None
    assert first.location.endswith("/ArchiveUnit[@id='au-20']/ArchiveUnit[@id='au-22']")


@pytest.mark.reference
def test_dossier_without_originating_agency_is_refused(
    validator: SedaValidator, manifest23: bytes
) -> None:
    broken = mutate(
        manifest23,
        lambda r: remove(r, "//s:ArchiveUnit[@id='au-01']/s:Content/s:OriginatingAgency"),
    )
    issues = _profile_refuses(validator, broken)
    assert "OriginatingAgency" in issues[0].message
    assert issues[0].location is not None
    assert issues[0].location.endswith("/DescriptiveMetadata/ArchiveUnit[@id='au-01']")


@pytest.mark.reference
def test_message_without_archival_profile_is_refused(
    validator: SedaValidator, manifest23: bytes
) -> None:
    broken = mutate(manifest23, lambda r: remove(r, "//s:ManagementMetadata/s:ArchivalProfile"))
    _profile_refuses(validator, broken)


@pytest.mark.reference
def test_object_without_sha512_is_refused(validator: SedaValidator, manifest23: bytes) -> None:
    broken = mutate(
        manifest23,
        lambda r: remove(r, "//s:BinaryDataObject[@id='obj-02']/s:OtherMetadata/ase:MessageDigest"),
    )
    issues = _profile_refuses(validator, broken)
    assert issues[0].message == "OtherMetadata/ase:MessageDigest algorithm=SHA-512 is required"
    assert (issues[0].location or "").endswith("/BinaryDataObject[@id='obj-02']")


@pytest.mark.reference
def test_md5_digest_is_refused_by_profile(validator: SedaValidator, manifest23: bytes) -> None:
    def md5(root: etree._Element) -> None:
        digest = find(root, "//s:BinaryDataObject[@id='obj-01']/s:MessageDigest")
        digest.set("algorithm", "MD5")
        digest.text = "75f15b08faeea8695b605898aef99095"

    _profile_refuses(validator, mutate(manifest23, md5))


def _set_start(root: etree._Element, unit: str, rule: str, day: str) -> None:
    """Give ``unit``'s ``rule`` (AppraisalRule, AccessRule) the StartDate ``day``."""
    element = find(root, f"//s:ArchiveUnit[@id='{unit}']/s:Management/s:{rule}")
    start = element.find(f"{{{SEDA23}}}StartDate")
    if start is None:
        start = etree.Element(f"{{{SEDA23}}}StartDate")
        find(element, "s:Rule").addnext(start)
    start.text = day


@pytest.mark.reference
def test_rule_pending_in_one_unit_and_started_in_another_is_refused(
    validator: SedaValidator, manifest23: bytes
) -> None:
    """One rule of one dossier awaits one event: pending everywhere, or started everywhere."""
    broken = mutate(manifest23, lambda r: _set_start(r, "au-31", "AppraisalRule", "2024-05-02"))
    issues = _profile_refuses(validator, broken)
    (issue,) = issues
    assert issue.message.startswith(
        "AppraisalRule 'APP-AE-TRI' starts on 2024-05-02 here but is pending at "
    )
    assert (issue.location or "").endswith("/ArchiveUnit[@id='au-31']/Management/AppraisalRule")


@pytest.mark.reference
def test_rule_with_two_start_dates_is_refused(validator: SedaValidator, manifest23: bytes) -> None:
    broken = mutate(manifest23, lambda r: _set_start(r, "au-12", "AppraisalRule", "2024-03-16"))
    (issue,) = _profile_refuses(validator, broken)
    assert "'APP-DCE-10' starts on 2024-03-16 here but starts on 2024-03-15 at " in issue.message


@pytest.mark.reference
def test_rule_starting_after_the_transfer_is_refused(
    validator: SedaValidator, manifest23: bytes
) -> None:
    """A StartDate is a start event that has happened; one not yet happened is pending."""
    broken = mutate(manifest23, lambda r: _set_start(r, "au-41", "AppraisalRule", "2024-06-05"))
    (issue,) = _profile_refuses(validator, broken)
    assert "after the transfer (2024-06-03)" in issue.message
    assert "pending" in issue.message
    # the next day is accepted: a date has no time zone, the message Date is UTC
    validator.validate(
        mutate(manifest23, lambda r: _set_start(r, "au-41", "AppraisalRule", "2024-06-04"))
    )


def test_unreferenced_object_is_refused(profile_only: SedaValidator, manifest23: bytes) -> None:
    broken = mutate(
        manifest23,
        lambda r: remove(r, "//s:ArchiveUnit[@id='au-41']/s:DataObjectReference"),
    )
    with pytest.raises(SedaInvalid) as excinfo:
        profile_only.validate(broken)
    assert "seda-profile-invalid" in _codes(excinfo)


@pytest.mark.reference
def test_need_authorization_with_destroy_is_refused(
    validator: SedaValidator, manifest23: bytes
) -> None:
    """Tri is Keep + NeedAuthorization: a reviewed unit is kept until an archivist selects."""

    def destroy(root: etree._Element) -> None:
        path = "//s:ArchiveUnit[@id='au-31']/s:Management/s:AppraisalRule/s:FinalAction"
        find(root, path).text = "Destroy"

    (issue,) = _profile_refuses(validator, mutate(manifest23, destroy))
    assert "NeedAuthorization needs FinalAction Keep, not 'Destroy'" in issue.message
    assert (issue.location or "").endswith("/ArchiveUnit[@id='au-31']/Management/AppraisalRule")


def test_need_authorization_without_appraisal_rule_is_refused(
    profile_only: SedaValidator, manifest23: bytes
) -> None:
    def move(root: etree._Element) -> None:
        management = find(root, "//s:ArchiveUnit[@id='au-20']/s:Management")
        etree.SubElement(management, f"{{{SEDA23}}}NeedAuthorization").text = "true"

    with pytest.raises(SedaInvalid) as excinfo:
        profile_only.validate(mutate(manifest23, move))
    assert any(
        i.message == "NeedAuthorization without an AppraisalRule to review"
        for i in _issues(excinfo)
    )


@pytest.mark.reference
def test_category_keyword_must_agree_with_document_type(
    validator: SedaValidator, manifest23: bytes
) -> None:
    def relabel(root: etree._Element) -> None:
        find(root, "//s:ArchiveUnit[@id='au-22']/s:Content/s:DocumentType").text = "Candidature"

    (issue,) = _profile_refuses(validator, mutate(manifest23, relabel))
    assert issue.message == (
        "the category keyword's KeywordContent 'Offre' differs from DocumentType 'Candidature'"
    )


@pytest.mark.reference
def test_end_before_start_is_refused(validator: SedaValidator, manifest23: bytes) -> None:
    def swap(root: etree._Element) -> None:
        find(root, "//s:ArchiveUnit[@id='au-01']/s:Content/s:EndDate").text = "2023-12-31"

    (issue,) = _profile_refuses(validator, mutate(manifest23, swap))
    assert issue.message == "EndDate 2023-12-31 is before StartDate 2024-01-08"


# -- version handling ---------------------------------------------------------------------------


def test_unknown_namespace_version_is_refused(validator: SedaValidator, manifest23: bytes) -> None:
    unknown = manifest23.replace(SEDA23.encode(), b"fr:gouv:culture:archivesdefrance:seda:v9.99")
    with pytest.raises(SedaInvalid) as excinfo:
        validator.validate(unknown)
    (issue,) = _issues(excinfo)
    assert issue.code == "seda-unsupported-version"
    assert issue.location == "line 2: /ArchiveTransfer"
    with pytest.raises(SedaInvalid):
        detect_version(unknown)


def test_version_mismatch_is_refused(profile_only: SedaValidator, manifest23: bytes) -> None:
    with pytest.raises(SedaInvalid) as excinfo:
        profile_only.validate(manifest23, version="2.2")
    assert _codes(excinfo) == {"seda-version-mismatch"}


# -- hostile XML ---------------------------------------------------------------------------------


XXE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE ArchiveTransfer [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<ArchiveTransfer xmlns="fr:gouv:culture:archivesdefrance:seda:v2.3">
  <Comment>&secret;</Comment>
</ArchiveTransfer>
"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<ArchiveTransfer xmlns="fr:gouv:culture:archivesdefrance:seda:v2.3">
<Comment>&lol3;</Comment></ArchiveTransfer>
"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE ArchiveTransfer SYSTEM "http://example.invalid/seda.dtd">
<ArchiveTransfer xmlns="fr:gouv:culture:archivesdefrance:seda:v2.3"/>
"""


@pytest.mark.parametrize(
    "hostile", [XXE, BILLION_LAUGHS, EXTERNAL_DTD], ids=["xxe", "laughs", "dtd"]
)
def test_dtd_and_entities_are_refused(profile_only: SedaValidator, hostile: bytes) -> None:
    with pytest.raises(SedaInvalid) as excinfo:
        profile_only.validate(hostile)
    assert _codes(excinfo) == {"seda-dtd-forbidden"}
    assert "root:" not in str(excinfo.value.issues)
    with pytest.raises(SedaInvalid):
        detect_version(hostile)


def test_malformed_xml_is_refused_with_line(profile_only: SedaValidator) -> None:
    with pytest.raises(SedaInvalid) as excinfo:
        profile_only.validate(b"<?xml version='1.0'?>\n<ArchiveTransfer>\n<Date>")
    (issue,) = _issues(excinfo)
    assert issue.code == "seda-xml-malformed"
    assert issue.location is not None and issue.location.startswith("line ")


# -- official examples ---------------------------------------------------------------------------


def _zip_manifest(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read("manifest.xml")


@pytest.mark.reference
@pytest.mark.parametrize("name", ["2.3/sip2_3.xml", "2.2/sip2_2.xml"])
def test_official_example_manifests_validate(validator: SedaValidator, name: str) -> None:
    xml = (seda_examples_dir() / name).read_bytes()
    validator.validate(xml, profile=False)


@pytest.mark.reference
@pytest.mark.parametrize(
    "name",
    [
        "2.3/WARNING_SIP_mail_Seda2.3.zip",
        "2.3/cookbook-signinginformation-1/SIP.zip",
        "2.3/cookbook-signinginformation-4/SIP.zip",
        "2.2/WARNING_SIP_mail_Seda2.2.zip",
    ],
)
def test_official_example_sips_validate(validator: SedaValidator, name: str) -> None:
    validator.validate(_zip_manifest(seda_examples_dir() / name), profile=False)


@pytest.mark.reference
def test_full_sip_23_is_invalid_as_documented(validator: SedaValidator) -> None:
    """Vitam's OK_SIP_FULL uses SigningInformation/Extended, whose type (OpenType) is abstract.

    The shared README records it INVALID at line 341 against the official XSD; so do we.
    """
    xml = _zip_manifest(seda_examples_dir() / "2.3/OK_SIP_FULL_SEDA2.3.zip")
    with pytest.raises(SedaInvalid) as excinfo:
        validator.validate(xml, profile=False)
    (issue, *_) = _issues(excinfo)
    assert issue.code == "seda-xsd-invalid"
    assert issue.location is not None and issue.location.startswith("line 341: ")
    assert issue.location.endswith("/SigningInformation/Extended")
    assert "abstract" in issue.message


@pytest.mark.reference
@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("2.3/KO_SEDA_2.3_Signature.zip", 75),
        ("2.2/KO_SEDA_2.2_SigningInformationAsExtensionWithGps.zip", 75),
        ("2.2/OK_SIP_FULL_SEDA2.2.zip", 263),
    ],
)
def test_known_invalid_examples_are_refused(validator: SedaValidator, name: str, line: int) -> None:
    with pytest.raises(SedaInvalid) as excinfo:
        validator.validate(_zip_manifest(seda_examples_dir() / name), profile=False)
    assert _issues(excinfo)[0].location.startswith(f"line {line}: ")  # type: ignore[union-attr]


@pytest.mark.reference
def test_foreign_transfer_is_not_held_to_our_profile(validator: SedaValidator) -> None:
    xml = (seda_examples_dir() / "2.3/sip2_3.xml").read_bytes()
    with pytest.raises(SedaInvalid) as excinfo:
        validator.validate(xml)
    assert _codes(excinfo) == {"seda-profile-invalid"}


# -- locating and compiling the schemas ----------------------------------------------------------


@pytest.mark.reference
def test_xsd_dir_may_point_at_one_version(manifest23: bytes, manifest22: bytes) -> None:
    one = SedaValidator(seda_xsd_dir() / "2.3", profile_dir())
    assert one.official_available("2.3")
    assert not one.official_available("2.2")
    one.validate(manifest23)
    one.validate(manifest22)  # profile only for 2.2
    with pytest.raises(ConfigurationError, match="not installed"):
        one.validate(manifest22, profile=False)


@pytest.mark.reference
def test_each_schema_is_compiled_once(manifest23: bytes) -> None:
    fresh = SedaValidator(seda_xsd_dir(), profile_dir())
    fresh.validate(manifest23)
    compiled = (fresh._official["2.3"], fresh._profiles["2.3"])
    fresh.validate(manifest23)
    assert (fresh._official["2.3"], fresh._profiles["2.3"]) == compiled
    assert "2.2" not in fresh._official


def test_schema_imports_outside_the_schema_directory_are_refused(
    tmp_path: Path, manifest23: bytes
) -> None:
    """Compilation never fetches anything: a remote import fails instead of being downloaded."""
    (tmp_path / "xml.xsd").write_text("<x/>")
    (tmp_path / "xlink.xsd").write_text("<x/>")
    (tmp_path / "seda-2.3-main.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        f'targetNamespace="{SEDA23}">'
        '<xs:import namespace="urn:elsewhere" schemaLocation="http://example.invalid/evil.xsd"/>'
        '<xs:include schemaLocation="/etc/passwd"/>'
        "</xs:schema>"
    )
    hostile = SedaValidator(tmp_path, profile_dir())
    assert hostile.official_available("2.3")
    with pytest.raises(ConfigurationError, match="cannot compile"):
        hostile.validate(manifest23)


def test_missing_w3c_copies_is_a_configuration_error(tmp_path: Path, manifest23: bytes) -> None:
    (tmp_path / "seda-2.3-main.xsd").write_text("<x/>")
    with pytest.raises(ConfigurationError, match=r"xml\.xsd"):
        SedaValidator(tmp_path, profile_dir()).validate(manifest23)


def test_no_schema_at_all_is_a_configuration_error(manifest23: bytes) -> None:
    with pytest.raises(ConfigurationError):
        SedaValidator(None, profile_dir()).validate(manifest23, profile=False)


def test_profile_files_are_shipped_and_22_is_derived_from_23() -> None:
    directory = profile_dir()
    v23 = (directory / "procurement-profile-2.3.rng").read_text(encoding="utf-8")
    v22 = (directory / "procurement-profile-2.2.rng").read_text(encoding="utf-8")
    assert v22 == v23.replace("2.3", "2.2"), "procurement-profile-2.2.rng is out of date"


def test_no_extension_schema_is_shipped_or_needed() -> None:
    """The manifests validate against the bare official XSD: there is no XSD of ours."""
    assert sorted(p.name for p in profile_dir().glob("*.xsd")) == []
