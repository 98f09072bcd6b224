"""ArchiveTransferReply (accusé de réception): OK and KO, valid against the official XSD."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lxml import etree

from archive_service.core.model import ReplyCode, TransferReplyInput
from archive_service.core.seda import SedaValidator, build_transfer_reply, detect_version
from archive_service.core.seda.validate import profile_dir
from tests.seda_helpers import SEDA22, SEDA23, seda_xsd_dir

WHEN = datetime(2024, 6, 3, 9, 31, 0, tzinfo=UTC)


def _ok() -> TransferReplyInput:
    return TransferReplyInput(
        message_identifier="atr-01JDQ4ZKX9Q8YB6V3T2N1M0P7S",
        message_request_identifier="tr-01JDQ4ZKX9Q8YB6V3T2N1M0P7R",
        date=WHEN,
        reply_code=ReplyCode.OK,
        archival_agency="GIP-ARCHIVES-35",
        transferring_agency="PLACE",
        archive_unit_id="pkg-01JDQ4ZKX9Q8YB6V3T2N1M0P7T",
        grant_date=WHEN,
    )


def _ko() -> TransferReplyInput:
    return TransferReplyInput(
        message_identifier="atr-01JDQ4ZKX9Q8YB6V3T2N1M0P7U",
        message_request_identifier="tr-01JDQ4ZKX9Q8YB6V3T2N1M0P7R",
        date=WHEN,
        reply_code=ReplyCode.KO,
        archival_agency="GIP-ARCHIVES-35",
        transferring_agency="PLACE",
        reasons=(
            "digest mismatch for 02 Offres/offre.pdf: expected sha256:ab12…, found sha256:cd34…",
            "missing metadata: dateNotification",
        ),
    )


@pytest.fixture(scope="module")
def validator() -> SedaValidator:
    return SedaValidator(seda_xsd_dir(), profile_dir())


def _xp(xml: bytes, path: str, ns: str = SEDA23) -> list[str]:
    found = etree.fromstring(xml).xpath(path, namespaces={"s": ns})
    assert isinstance(found, list)
    return [e.text or "" if isinstance(e, etree._Element) else str(e) for e in found]


@pytest.mark.reference
@pytest.mark.parametrize("version", ["2.3", "2.2"])
@pytest.mark.parametrize("make", [_ok, _ko], ids=["ok", "ko"])
def test_reply_validates_against_official_xsd(
    validator: SedaValidator, version: str, make: object
) -> None:
    assert callable(make)
    xml = build_transfer_reply(make(), version=version)  # type: ignore[arg-type]
    assert detect_version(xml) == version
    validator.validate(xml, profile=False)


def test_ok_reply_content() -> None:
    xml = build_transfer_reply(_ok())
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<ArchiveTransferReply ")
    assert _xp(xml, "/s:ArchiveTransferReply/s:ReplyCode") == ["OK"]
    assert _xp(xml, "s:MessageRequestIdentifier") == ["tr-01JDQ4ZKX9Q8YB6V3T2N1M0P7R"]
    assert _xp(xml, "s:GrantDate") == ["2024-06-03T09:31:00Z"]
    assert _xp(
        xml, "s:DataObjectPackage/s:DescriptiveMetadata/s:ArchiveUnit/s:Content/s:SystemId"
    ) == ["pkg-01JDQ4ZKX9Q8YB6V3T2N1M0P7T"]
    assert _xp(xml, "s:Operation/s:Event/s:Outcome") == ["OK"]
    assert _xp(xml, "s:ArchivalAgency/s:Identifier") == ["GIP-ARCHIVES-35"]
    assert _xp(xml, "s:TransferringAgency/s:Identifier") == ["PLACE"]


def test_ko_reply_has_one_event_per_reason() -> None:
    reply = _ko()
    xml = build_transfer_reply(reply)
    assert _xp(xml, "s:ReplyCode") == ["KO"]
    assert _xp(xml, "s:Operation/s:Event/s:EventTypeCode") == [
        "ARCHIVE_TRANSFER",
        "ARCHIVE_TRANSFER_CHECK",
        "ARCHIVE_TRANSFER_CHECK",
    ]
    assert _xp(xml, "s:Operation/s:Event/s:Outcome") == ["KO", "KO", "KO"]
    assert _xp(xml, "s:Operation/s:Event/s:EventDetail") == list(reply.reasons)
    assert _xp(xml, "s:DataObjectPackage") == []
    assert _xp(xml, "s:GrantDate") == []


def test_reply_children_follow_xsd_order() -> None:
    root = etree.fromstring(build_transfer_reply(_ok()))
    assert [etree.QName(c).localname for c in root] == [
        "Date",
        "MessageIdentifier",
        "CodeListVersions",
        "DataObjectPackage",
        "ReplyCode",
        "Operation",
        "MessageRequestIdentifier",
        "GrantDate",
        "ArchivalAgency",
        "TransferringAgency",
    ]


def test_reply_is_byte_stable_and_versioned() -> None:
    assert build_transfer_reply(_ko()) == build_transfer_reply(_ko())
    v22 = build_transfer_reply(_ko(), version="2.2")
    assert v22 == build_transfer_reply(_ko()).replace(SEDA23.encode(), SEDA22.encode())
