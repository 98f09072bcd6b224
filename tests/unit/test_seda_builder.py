"""SEDA ArchiveTransfer builder: byte stability and where each piece of information is written."""

from __future__ import annotations

import dataclasses

import pytest
from lxml import etree

from archive_service.core.model import Description, DescriptionLevel
from archive_service.core.seda import (
    CATEGORY_SCHEME,
    REFERENTIAL_CODE_LIST,
    build_archive_transfer,
)
from tests.seda_helpers import (
    DOSSIER_FIELDS,
    EXT,
    FILES,
    SEDA22,
    SEDA23,
    data_objects,
    dossier_tree,
    sample_manifest,
)

NS = {"s": SEDA23, "ase": EXT}


def _root(xml: bytes) -> etree._Element:
    return etree.fromstring(xml)


def _xp(root: etree._Element, path: str, ns: dict[str, str] | None = None) -> list[etree._Element]:
    found = root.xpath(path, namespaces=ns or NS)
    assert isinstance(found, list)
    return [e for e in found if isinstance(e, etree._Element)]


def _texts(root: etree._Element, path: str) -> list[str]:
    return [e.text or "" for e in _xp(root, path)]


def _unit(root: etree._Element, unit_id: str) -> etree._Element:
    (unit,) = _xp(root, f"//s:ArchiveUnit[@id='{unit_id}']")
    return unit


def _children(element: etree._Element) -> list[str]:
    return [etree.QName(c).localname for c in element if isinstance(c.tag, str)]


# -- byte stability ----------------------------------------------------------------------------


def test_same_input_gives_identical_bytes() -> None:
    first = build_archive_transfer(sample_manifest())
    second = build_archive_transfer(sample_manifest())
    assert first == second


def test_output_is_utf8_with_declaration_and_fixed_prefixes() -> None:
    xml = build_archive_transfer(sample_manifest())
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<ArchiveTransfer ")
    root = _root(xml)
    assert root.nsmap == {None: SEDA23, "ase": EXT}
    assert "Réfection".encode() in xml


def test_stable_against_order_of_objects_and_extension_fields() -> None:
    """Inputs assembled from dicts in another order give the same bytes."""
    fields = (
        ("event_signature", "2024-03-08"),
        ("procedure_type", "AOO"),
        ("event_notification", "2024-03-15"),
        ("contract_number", "M2024-015"),
        ("event_reception", "2024-03-15"),
        ("decp_montant", "125000.0"),
    )
    reference = build_archive_transfer(sample_manifest(extension=fields))
    shuffled = build_archive_transfer(
        sample_manifest(
            objects=tuple(reversed(data_objects())),
            extension=tuple(reversed(fields)),
        )
    )
    assert shuffled == reference


def test_different_input_gives_different_bytes() -> None:
    reference = build_archive_transfer(sample_manifest())
    other = build_archive_transfer(sample_manifest(message_identifier="tr-other"))
    assert other != reference


def test_version_22_differs_only_by_namespace() -> None:
    v23 = build_archive_transfer(sample_manifest(), version="2.3")
    v22 = build_archive_transfer(sample_manifest(), version="2.2")
    assert v22 == v23.replace(SEDA23.encode(), SEDA22.encode())
    for absent in (b"DataObjectUse", b"DataObjectNumber", b"PersistentIdentifier"):
        assert absent not in v22


def test_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported SEDA version"):
        build_archive_transfer(sample_manifest(), version="2.1")  # type: ignore[arg-type]


# -- message and package ----------------------------------------------------------------------


def test_message_header_order() -> None:
    root = _root(build_archive_transfer(sample_manifest()))
    assert _children(root) == [
        "Comment",
        "Date",
        "MessageIdentifier",
        "ArchivalAgreement",
        "CodeListVersions",
        "DataObjectPackage",
        "ArchivalAgency",
        "TransferringAgency",
    ]
    assert _texts(root, "s:Date") == ["2024-06-03T09:30:12Z"]
    assert _texts(root, "s:MessageIdentifier") == ["tr-01JDQ4ZKX9Q8YB6V3T2N1M0P7R"]
    assert _texts(root, "s:ArchivalAgreement") == ["CONV-2024-PROC"]
    assert _texts(root, "s:ArchivalAgency/s:Identifier") == ["GIP-ARCHIVES-35"]
    assert _texts(root, "s:TransferringAgency/s:Identifier") == ["PLACE"]
    assert _texts(root, "s:DataObjectPackage/s:ManagementMetadata/s:ArchivalProfile") == [
        "archive-service:procurement-profile:1"
    ]


def test_one_group_per_object_with_digests_size_format_and_name() -> None:
    root = _root(build_archive_transfer(sample_manifest()))
    groups = _xp(root, "s:DataObjectPackage/s:DataObjectGroup")
    assert [g.get("id") for g in groups] == [f"og-{i}" for i in sorted(FILES)]
    for obj in data_objects():
        (bdo,) = _xp(root, f"//s:DataObjectGroup/s:BinaryDataObject[@id='{obj.id}']")
        assert _texts(bdo, "s:DataObjectVersion") == ["BinaryMaster_1"]
        assert _texts(bdo, "s:Uri") == [obj.uri]
        (digest,) = _xp(bdo, "s:MessageDigest")
        assert digest.get("algorithm") == "SHA-256"
        assert digest.text == obj.fingerprints.sha256.digest
        (sha512,) = _xp(bdo, "s:OtherMetadata/ase:MessageDigest")
        assert sha512.get("algorithm") == "SHA-512"
        assert sha512.text == obj.fingerprints.sha512.digest
        assert _texts(bdo, "s:FileInfo/s:Filename") == [obj.filename]
        assert _texts(bdo, "s:OtherMetadata/ase:OriginalPath") == [obj.path]
        assert _texts(bdo, "s:FormatIdentification/s:MimeType") == [obj.format.mime_type]
        assert _texts(bdo, "s:FormatIdentification/s:FormatId") == (
            [obj.format.puid] if obj.format.puid else []
        )


def test_binary_data_object_children_follow_xsd_order() -> None:
    root = _root(build_archive_transfer(sample_manifest()))
    (bdo,) = _xp(root, "//s:BinaryDataObject[@id='obj-01']")
    assert _children(bdo) == [
        "DataObjectVersion",
        "Uri",
        "MessageDigest",
        "Size",
        "FormatIdentification",
        "FileInfo",
        "OtherMetadata",
    ]
    assert _texts(bdo, "s:Size") == [str(len(FILES["obj-01"]))]
    assert _texts(bdo, "s:FormatIdentification/s:FormatLitteral") == [
        "Acrobat PDF 1.7 - Portable Document Format"
    ]


def test_empty_file_size_goes_to_extension() -> None:
    """SEDA Size is a positiveInteger: an empty file's size is ase:Size 0."""
    root = _root(build_archive_transfer(sample_manifest()))
    (bdo,) = _xp(root, "//s:BinaryDataObject[@id='obj-07']")
    assert _xp(bdo, "s:Size") == []
    assert _texts(bdo, "s:OtherMetadata/ase:Size") == ["0"]


def test_declared_mime_is_recorded_with_its_disagreement() -> None:
    root = _root(build_archive_transfer(sample_manifest()))
    (mismatch,) = _xp(
        root, "//s:BinaryDataObject[@id='obj-05']/s:OtherMetadata/ase:DeclaredMimeType"
    )
    assert mismatch.text == "application/pdf"
    assert mismatch.get("mismatch") == "true"
    (agrees,) = _xp(root, "//s:BinaryDataObject[@id='obj-06']/s:OtherMetadata/ase:DeclaredMimeType")
    assert agrees.get("mismatch") == "false"
    assert (
        _xp(root, "//s:BinaryDataObject[@id='obj-01']/s:OtherMetadata/ase:DeclaredMimeType") == []
    )


# -- archive units ----------------------------------------------------------------------------


def test_tree_dossier_phases_documents_with_object_references() -> None:
    root = _root(build_archive_transfer(sample_manifest()))
    (dossier,) = _xp(root, "s:DataObjectPackage/s:DescriptiveMetadata/s:ArchiveUnit")
    assert dossier.get("id") == "au-01"
    assert _texts(dossier, "s:Content/s:DescriptionLevel") == ["RecordGrp"]
    assert [u.get("id") for u in _xp(dossier, "s:ArchiveUnit")] == [
        "au-10",
        "au-20",
        "au-30",
        "au-40",
    ]
    assert _texts(dossier, "s:ArchiveUnit/s:Content/s:DescriptionLevel") == ["SubGrp"] * 4
    offer = _unit(root, "au-21")
    assert _texts(offer, "s:Content/s:DescriptionLevel") == ["Item"]
    assert _texts(offer, "s:DataObjectReference/s:DataObjectGroupReferenceId") == [
        "og-obj-03",
        "og-obj-04",
    ]
    assert _children(offer) == [
        "Management",
        "Content",
        "DataObjectReference",
        "DataObjectReference",
    ]


def test_content_elements_follow_xsd_order() -> None:
    root = _root(build_archive_transfer(sample_manifest()))
    (content,) = _xp(_unit(root, "au-01"), "s:Content")
    assert _children(content) == [
        "DescriptionLevel",
        "Title",
        "OriginatingSystemId",
        "OriginatingSystemId",
        "OriginatingAgencyArchiveUnitIdentifier",
        "Description",
        "Keyword",
        "Keyword",
        "Keyword",
        "OriginatingAgency",
        "StartDate",
        "EndDate",
        "Event",
    ]
    (document,) = _xp(_unit(root, "au-22"), "s:Content")
    assert _children(document) == ["DescriptionLevel", "Title", "DocumentType", "Keyword"]
    assert _texts(content, "s:OriginatingAgency/s:Identifier") == ["21350238800019"]
    assert _texts(content, "s:StartDate") == ["2024-01-08"]
    assert _texts(content, "s:EndDate") == ["2024-03-15"]


def test_keywords_with_cpv_reference() -> None:
    root = _root(build_archive_transfer(sample_manifest()))
    (cpv,) = _xp(_unit(root, "au-01"), "s:Content/s:Keyword[s:KeywordReference='45261000-4']")
    assert _children(cpv) == ["KeywordContent", "KeywordReference", "KeywordType"]
    assert _texts(cpv, "s:KeywordContent") == ["Travaux de couverture de toits"]
    assert _texts(cpv, "s:KeywordType") == ["subject"]


def test_our_namespace_appears_only_in_other_metadata() -> None:
    """Content uses standard SEDA elements only: nothing needs a schema of ours."""
    root = _root(build_archive_transfer(sample_manifest()))
    foreign = [
        e for e in root.iter() if isinstance(e.tag, str) and etree.QName(e).namespace != SEDA23
    ]
    assert foreign
    for element in foreign:
        assert etree.QName(element).namespace == EXT
        parent = element.getparent()
        assert parent is not None
        assert etree.QName(parent).localname == "OtherMetadata", element.tag
    assert _xp(root, "//s:Content//ase:*") == []


def test_document_category_is_document_type_and_genreform_keyword() -> None:
    root = _root(build_archive_transfer(sample_manifest()))
    content = _unit(root, "au-22").find(f"{{{SEDA23}}}Content")
    assert content is not None
    assert _texts(content, "s:DocumentType") == ["Offre"]
    (keyword,) = _xp(content, "s:Keyword")
    assert _children(keyword) == ["KeywordContent", "KeywordReference", "KeywordType"]
    assert _texts(keyword, "s:KeywordContent") == ["Offre"]
    assert _texts(keyword, "s:KeywordType") == ["genreform"]
    (reference,) = _xp(keyword, "s:KeywordReference")
    assert reference.text == "offres.non_retenue"
    assert reference.get("schemeID") == CATEGORY_SCHEME == "archive-service:document-categories"


def test_category_keyword_comes_first_and_uses_the_code_without_a_label() -> None:
    manifest = sample_manifest()
    bare = dataclasses.replace(
        manifest.root,
        category="dossier.marche",
        description=dataclasses.replace(manifest.root.description, document_type=None),
    )
    root = _root(build_archive_transfer(dataclasses.replace(manifest, root=bare)))
    keywords = _xp(_unit(root, "au-01"), "s:Content/s:Keyword")
    assert len(keywords) == 4
    assert _texts(keywords[0], "s:KeywordContent") == ["dossier.marche"]
    assert _texts(keywords[0], "s:KeywordReference") == ["dossier.marche"]
    assert _texts(keywords[1], "s:KeywordContent") == ["marché public"]


def test_events_are_sorted_by_date_then_name() -> None:
    fields = (
        ("event_reception", "2024-09-30"),
        ("event_notification", "2024-03-15"),
        ("event_signature", "2024-03-08"),
        ("event_attribution", "2024-03-15"),
    )
    root = _root(build_archive_transfer(sample_manifest(extension=fields)))
    events = _xp(_unit(root, "au-01"), "s:Content/s:Event")
    assert [_children(e) for e in events] == [["EventTypeCode", "EventDateTime"]] * 4
    assert [(_texts(e, "s:EventTypeCode")[0], _texts(e, "s:EventDateTime")[0]) for e in events] == [
        ("signature", "2024-03-08"),
        ("attribution", "2024-03-15"),
        ("notification", "2024-03-15"),
        ("reception", "2024-09-30"),
    ]


def test_contract_number_is_the_producers_identifier() -> None:
    root = _root(build_archive_transfer(sample_manifest()))
    assert _texts(_unit(root, "au-01"), "s:Content/s:OriginatingAgencyArchiveUnitIdentifier") == [
        "M2024-015"
    ]


def test_extension_fields_without_a_seda_element_are_dropped() -> None:
    xml = build_archive_transfer(sample_manifest())
    for dropped in (
        b"travaux",  # contract_type
        b"Appel d'offres ouvert",  # procedure_type, decp_procedure
        b"125000.0",  # decp_montant
        b"source_path",
        b"offres.non_retenue/",  # source_path value of a document
        b"Field",
        b"DocumentCategory",
        b"RuleState",
    ):
        assert dropped not in xml, dropped
    # the manifest is the same as if only the rendered pairs had been given
    rendered = tuple(
        (name, value)
        for name, value in DOSSIER_FIELDS
        if name == "contract_number" or name.startswith("event_")
    )
    assert len(rendered) < len(DOSSIER_FIELDS)
    assert build_archive_transfer(sample_manifest(extension=rendered)) == xml


def test_event_that_is_not_a_date_is_refused() -> None:
    with pytest.raises(ValueError, match="event_notification"):
        build_archive_transfer(sample_manifest(extension=(("event_notification", "15/03/2024"),)))


def test_dated_rule_has_start_date_and_started_state() -> None:
    root = _root(build_archive_transfer(sample_manifest()))
    unit = _unit(root, "au-22")
    (rule,) = _xp(unit, "s:Management/s:AppraisalRule")
    assert _children(rule) == ["Rule", "StartDate", "FinalAction"]
    assert _texts(rule, "s:Rule") == ["APP-00002"]
    assert _texts(rule, "s:StartDate") == ["2024-03-15"]
    assert _texts(rule, "s:FinalAction") == ["Destroy"]


def test_pending_rule_has_no_start_date() -> None:
    """SEDA: a rule without StartDate has no computable end; it starts when its event happens."""
    root = _root(build_archive_transfer(sample_manifest()))
    unit = _unit(root, "au-41")
    (rule,) = _xp(unit, "s:Management/s:AppraisalRule")
    assert _children(rule) == ["Rule", "FinalAction"]
    assert _texts(rule, "s:Rule") == ["APP-00003"]
    (access,) = _xp(unit, "s:Management/s:AccessRule")
    assert _children(access) == ["Rule"]
    assert _texts(access, "s:Rule") == ["ACC-25-EXEC"]


def test_rule_ids_name_the_retention_referential() -> None:
    root = _root(build_archive_transfer(sample_manifest()))
    assert _children(_xp(root, "s:CodeListVersions")[0]) == [
        "MessageDigestAlgorithmCodeListVersion",
        "MimeTypeCodeListVersion",
        "FileFormatCodeListVersion",
        "DataObjectVersionCodeListVersion",
        "AppraisalRuleCodeListVersion",
        "AccessRuleCodeListVersion",
    ]
    for name in ("AppraisalRuleCodeListVersion", "AccessRuleCodeListVersion"):
        assert _texts(root, f"s:CodeListVersions/s:{name}") == [REFERENTIAL_CODE_LIST]
    assert REFERENTIAL_CODE_LIST == "archive-service:retention-referential"
    named = _root(
        build_archive_transfer(
            sample_manifest(), rule_code_list="archive-service:retention-referential:2026-11"
        )
    )
    assert _texts(named, "s:CodeListVersions/s:AccessRuleCodeListVersion") == [
        "archive-service:retention-referential:2026-11"
    ]
    with pytest.raises(ValueError, match="rule_code_list"):
        build_archive_transfer(sample_manifest(), rule_code_list=" ")


def test_review_tri_is_keep_with_need_authorization() -> None:
    root = _root(build_archive_transfer(sample_manifest()))
    unit = _unit(root, "au-31")
    (management,) = _xp(unit, "s:Management")
    assert _children(management) == ["AppraisalRule", "AccessRule", "NeedAuthorization"]
    assert _texts(management, "s:AppraisalRule/s:FinalAction") == ["Keep"]
    assert _texts(management, "s:NeedAuthorization") == ["true"]
    not_reviewed = _unit(root, "au-22")
    assert _xp(not_reviewed, "s:Management/s:NeedAuthorization") == []


def test_zero_year_access_rule_starts_at_transfer_date() -> None:
    """SEDA reads a missing StartDate as 'restricted'; a freely communicable unit is not."""
    root = _root(build_archive_transfer(sample_manifest()))
    unit = _unit(root, "au-11")
    assert _texts(unit, "s:Management/s:AccessRule/s:Rule") == ["ACC-00"]
    assert _texts(unit, "s:Management/s:AccessRule/s:StartDate") == ["2024-06-03"]


def test_zero_year_access_rule_awaiting_its_event_is_pending() -> None:
    """Communicable after the signature: restricted (no StartDate) until the signature."""
    root = _root(build_archive_transfer(sample_manifest()))
    (access,) = _xp(_unit(root, "au-12"), "s:Management/s:AccessRule")
    assert _texts(access, "s:Rule") == ["ACC-00-SIGNATURE"]
    assert _children(access) == ["Rule"]


def test_rule_on_phase_is_inherited_not_repeated() -> None:
    root = _root(build_archive_transfer(sample_manifest()))
    assert _texts(_unit(root, "au-20"), "s:Management/s:AccessRule/s:Rule") == [
        "ACC-25-SECRET-AFFAIRES"
    ]
    assert _xp(_unit(root, "au-21"), "s:Management/s:AccessRule") == []
    assert _xp(_unit(root, "au-10"), "s:Management") == []


def test_root_originating_agency_falls_back_to_manifest() -> None:
    manifest = sample_manifest()
    root_node = manifest.root
    bare = dataclasses.replace(
        root_node, description=dataclasses.replace(root_node.description, originating_agency=None)
    )
    xml = build_archive_transfer(dataclasses.replace(manifest, root=bare))
    root = _root(xml)
    assert _texts(_unit(root, "au-01"), "s:Content/s:OriginatingAgency/s:Identifier") == [
        "21350238800019"
    ]
    assert _texts(root, "//s:ManagementMetadata/s:OriginatingAgencyIdentifier") == [
        "21350238800019"
    ]


def test_optional_parts_absent_when_input_has_none() -> None:
    manifest = dataclasses.replace(
        sample_manifest(), comment=None, archival_agreement=None, originating_agency=None
    )
    root = _root(build_archive_transfer(manifest))
    assert _xp(root, "s:Comment") == []
    assert _xp(root, "s:ArchivalAgreement") == []
    assert _xp(root, "//s:ManagementMetadata/s:OriginatingAgencyIdentifier") == []


def test_text_that_xml_cannot_hold_is_refused() -> None:
    root = dossier_tree(extension=(("contract_number", "bell \x07 character"),))
    manifest = dataclasses.replace(sample_manifest(), root=root)
    with pytest.raises(ValueError, match="OriginatingAgencyArchiveUnitIdentifier"):
        build_archive_transfer(manifest)
    title = dataclasses.replace(
        manifest.root,
        description=Description(level=DescriptionLevel.RECORD_GROUP, title="bell \x07"),
    )
    with pytest.raises(ValueError, match="Title"):
        build_archive_transfer(dataclasses.replace(manifest, root=title))
