"""The SEDA messages of disposal and transfer (core/seda/lifecycle.py), judged by the bare
official XSD of each version (lxml, and xmllint as a second oracle), read back by their
parsers, and refused when they are not what they claim to be."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from archive_service.core.seda import SedaValidator, profile_dir
from archive_service.core.seda.lifecycle import (
    AuthorizationRequestInput,
    DestructionNotificationInput,
    LifecycleObject,
    LifecycleUnit,
    build_authorization_reply,
    build_authorization_request,
    build_destruction_notification,
    parse_authorization_reply,
    parse_transfer_reply,
)
from archive_service.core.seda.names import SEDA_NS, SedaVersion
from archive_service.errors import SedaInvalid
from tests.reference import in_ci, official_schema, seda_xsd_dir

VERSIONS: tuple[SedaVersion, ...] = ("2.2", "2.3")
WHEN = datetime(2031, 3, 4, 10, 30, tzinfo=UTC)


def rule(rule_id: str, years: int, start: str | None, final: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rule_id": rule_id,
        "duration_years": years,
        "start_event": "notification",
        "start_date": start,
        "end_date": None,
        "pending": start is None,
        "label": "",
    }
    if final is not None:
        out.update(final_action=final, review=False)
    return out


def obj(n: int, size: int = 1000) -> LifecycleObject:
    return LifecycleObject(
        f"obj-{n:02d}",
        f"offres/offre-{n}.pdf",
        size,
        f"{n:064x}",
        f"{n:0128x}",
        "application/pdf",
        "fmt/276",
    )


def unit(n: int, *, holds: tuple[dict[str, Any], ...] = (), objects: int = 2) -> LifecycleUnit:
    return LifecycleUnit(
        f"au-{n:02d}",
        f"Offre non retenue n° {n} — « Société Génie »",
        "Item",
        "offres.non_retenue",
        "au-00",
        "Marché de travaux — école élémentaire",
        "21130055300016",
        rule("DUA-OFFRES-5", 5, "2026-01-10", "Destroy"),
        rule("COM-OFFRES", 0, "2026-01-10"),
        tuple(obj(n * 10 + k, 1000 * (k + 1)) for k in range(objects)),
        holds,
    )


def request(kind: str = "destroy", **kw: Any) -> AuthorizationRequestInput:
    values: dict[str, Any] = {
        "message_identifier": "DEM-2031-0001",
        "date": WHEN,
        "archival_agency": "GIP-ARCHIVES",
        "control_authority": "AD13",
        "requester": "archiviste@gip",
        "comment": "DUA échue, sort final : élimination",
        "kind": kind,
        "units": (unit(1), unit(2)),
    }
    values.update(kw)
    return AuthorizationRequestInput(**values)


def notification(outcome: str = "destroyed") -> DestructionNotificationInput:
    return DestructionNotificationInput(
        "CERT-2031-0001",
        WHEN + timedelta(days=40),
        "GIP-ARCHIVES",
        "21130055300016",
        "DEM-2031-0001",
        "AD13-VISA-2031-17",
        (unit(1), unit(2)),
        outcome,  # type: ignore[arg-type]
    )


HOLD = {
    "id": "hold-01",
    "reason": "contentieux en cours",
    "reference": "TA Marseille 2030-1234",
    "placed_by": "juriste",
    "placed_at": datetime(2030, 5, 6, 8, 0, tzinfo=UTC),
}


def messages(version: SedaVersion) -> dict[str, bytes]:
    return {
        "request-destroy.xml": build_authorization_request(request(), version=version),
        "request-transfer.xml": build_authorization_request(
            request("transfer", units=(unit(3, holds=(HOLD,)),)), version=version
        ),
        "reply-ok.xml": build_authorization_reply(
            "DEM-2031-0001",
            "OK",
            "AD13-VISA-2031-17",
            WHEN,
            comment="Visa accordé",
            version=version,
        ),
        "reply-ko.xml": build_authorization_reply(
            "DEM-2031-0001", "KO", "AD13-REFUS-2031-2", WHEN, version=version
        ),
        "notification-destroyed.xml": build_destruction_notification(
            notification(), version=version
        ),
        "notification-transferred.xml": build_destruction_notification(
            notification("transferred"), version=version
        ),
    }


def ns(version: SedaVersion) -> dict[str, str]:
    return {"s": SEDA_NS[version]}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_message_validates_against_the_bare_official_xsd(version: SedaVersion) -> None:
    schema: Any = official_schema(version)
    validator = SedaValidator(seda_xsd_dir(), profile_dir())
    for name, xml in messages(version).items():
        doc = etree.fromstring(xml)
        assert etree.QName(doc).namespace == SEDA_NS[version], name
        assert schema.validate(doc.getroottree()), (name, schema.error_log)
        validator.validate(xml, version=version, profile=False)


def xmllint_check(tmp_path: Path, version: SedaVersion, documents: dict[str, bytes]) -> None:
    """``xmllint --schema seda-<v>-main.xsd`` on each document, offline (shared catalog)."""
    xmllint = shutil.which("xmllint")
    if xmllint is None:
        reason = "xmllint not installed (Debian: libxml2-utils)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    directory = seda_xsd_dir() / version
    names = []
    for name, xml in documents.items():
        (tmp_path / name).write_bytes(xml)
        names.append(str(tmp_path / name))
    schema = str(directory / f"seda-{version}-main.xsd")
    result = subprocess.run(
        [xmllint, "--nonet", "--noout", "--schema", schema, *names],
        capture_output=True,
        text=True,
        env={**os.environ, "XML_CATALOG_FILES": str(directory / "catalog.xml")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("validates") == len(names), result.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_xmllint_agrees(tmp_path: Path, version: SedaVersion) -> None:
    xmllint_check(tmp_path, version, messages(version))


def test_an_element_out_of_place_is_refused_by_the_xsd() -> None:
    """The oracle can fail: the same request with ControlAuthority before ArchivalAgency."""
    schema: Any = official_schema("2.3")
    doc = etree.fromstring(build_authorization_request(request()))
    agency, authority = doc[-2], doc[-1]
    doc.remove(agency)
    authority.addnext(agency)
    assert not schema.validate(doc.getroottree())


def test_the_request_carries_units_rules_objects_and_reason() -> None:
    doc = etree.fromstring(build_authorization_request(request()))
    n = ns("2.3")
    content = doc.find("s:AuthorizationRequestContent", n)
    assert content is not None
    assert content.findtext("s:AuthorizationReason", namespaces=n) == "ArchiveDestruction"
    assert content.findtext("s:Comment", namespaces=n) == "DUA échue, sort final : élimination"
    assert content.findtext("s:RequestDate", namespaces=n) == "2031-03-04"
    assert [u.text for u in content.findall("s:UnitIdentifier", n)] == ["au-01", "au-02"]
    assert content.findtext("s:Requester/s:Identifier", namespaces=n) == "archiviste@gip"
    assert doc.findtext("s:ControlAuthority/s:Identifier", namespaces=n) == "AD13"
    units = doc.findall("s:DataObjectPackage/s:DescriptiveMetadata/s:ArchiveUnit", n)
    assert [u.get("id") for u in units] == ["au-01", "au-02"]
    appraisal = units[0].find("s:Management/s:AppraisalRule", n)
    assert appraisal is not None
    assert appraisal.findtext("s:Rule", namespaces=n) == "DUA-OFFRES-5"
    assert appraisal.findtext("s:StartDate", namespaces=n) == "2026-01-10"
    assert appraisal.findtext("s:FinalAction", namespaces=n) == "Destroy"
    assert units[0].findtext("s:Content/s:Title", namespaces=n) == (
        "Offre non retenue n° 1 — « Société Génie »"
    )
    digests = {
        b.get("id"): b.findtext("s:MessageDigest", namespaces=n)
        for b in doc.iterfind(".//s:BinaryDataObject", n)
    }
    assert digests == {o.object_id: o.sha256 for u in (unit(1), unit(2)) for o in u.objects}
    refs = units[0].findall("s:DataObjectReference/s:DataObjectGroupReferenceId", n)
    assert [r.text for r in refs] == ["og-obj-10", "og-obj-11"]
    transfer = etree.fromstring(build_authorization_request(request("transfer")))
    assert transfer.findtext(".//s:AuthorizationReason", namespaces=n) == "ArchiveTransfer"


def test_holds_become_hold_rules() -> None:
    doc = etree.fromstring(build_authorization_request(request(units=(unit(3, holds=(HOLD,)),))))
    n = ns("2.3")
    hold = doc.find(".//s:ArchiveUnit/s:Management/s:HoldRule", n)
    assert hold is not None
    assert hold.findtext("s:Rule", namespaces=n) == "hold-01"
    assert hold.findtext("s:StartDate", namespaces=n) == "2030-05-06"
    assert hold.findtext("s:HoldOwner", namespaces=n) == "juriste"
    assert hold.findtext("s:HoldReason", namespaces=n) == (
        "contentieux en cours (réf. TA Marseille 2030-1234)"
    )
    assert doc.findtext(".//s:HoldRuleCodeListVersion", namespaces=n)


def test_the_notification_names_the_visa_units_and_digests() -> None:
    n = ns("2.3")
    for outcome, word in (("destroyed", "Élimination"), ("transferred", "Transfert")):
        doc = etree.fromstring(build_destruction_notification(notification(outcome)))
        assert doc.findtext("s:AuthorizationRequestReplyIdentifier", namespaces=n) == (
            "AD13-VISA-2031-17"
        )
        assert [u.text for u in doc.findall("s:UnitIdentifier", n)] == ["au-01", "au-02"]
        assert doc.findtext("s:OriginatingAgency/s:Identifier", namespaces=n) == "21130055300016"
        comments = [c.text or "" for c in doc.findall("s:Comment", n)]
        assert comments[0].startswith(word)
        assert "DEM-2031-0001" in comments[1]
        assert len(doc.findall(".//s:BinaryDataObject/s:MessageDigest", n)) == 4


def test_byte_stable_whatever_the_input_order() -> None:
    first = build_authorization_request(request())
    again = build_authorization_request(request())
    swapped = build_authorization_request(request(units=(unit(2), unit(1))))
    assert first == again == swapped
    note = notification()
    reordered = dataclasses.replace(note, units=tuple(reversed(note.units)))
    assert build_destruction_notification(note) == build_destruction_notification(reordered)
    assert build_authorization_request(request(comment="autre")) != first


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        request("archive")
    with pytest.raises(ValueError, match="at least one unit"):
        request(units=())
    with pytest.raises(ValueError, match="unique"):
        request(units=(unit(1), unit(1)))
    with pytest.raises(ValueError, match="timezone"):
        request(date=datetime(2031, 1, 1))
    with pytest.raises(ValueError, match="LevelType"):
        dataclasses.replace(unit(1), level="Dossier")
    with pytest.raises(ValueError, match="sha256"):
        dataclasses.replace(obj(1), sha256="XYZ")
    with pytest.raises(ValueError, match="outcome"):
        dataclasses.replace(notification(), outcome="lost")
    with pytest.raises(ValueError, match="version"):
        build_authorization_request(request(), version="2.1")  # type: ignore[arg-type]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_reply_round_trips(version: SedaVersion) -> None:
    xml = build_authorization_reply(
        "DEM-2031-0001", "OK", "AD13-VISA-2031-17", WHEN, comment="Visa accordé", version=version
    )
    reply = parse_authorization_reply(xml)
    assert reply.message_identifier == "AD13-VISA-2031-17"
    assert reply.request_identifier == "DEM-2031-0001"
    assert reply.reply_code == "OK"
    assert reply.date == WHEN
    assert reply.comment == "Visa accordé"


def transfer_reply(version: SedaVersion = "2.3", code: str = "OK") -> bytes:
    s = SEDA_NS[version]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ArchiveTransferReply xmlns="{s}">
  <Date>2031-05-01T12:00:00+02:00</Date>
  <MessageIdentifier>AD13-ATR-77</MessageIdentifier>
  <CodeListVersions/>
  <DataObjectPackage>
    <DescriptiveMetadata>
      <ArchiveUnit id="au-01"><Content><SystemId>aeaqaaaaaa-1</SystemId></Content></ArchiveUnit>
      <ArchiveUnit id="au-02"><Content><SystemId>aeaqaaaaaa-2</SystemId></Content></ArchiveUnit>
    </DescriptiveMetadata>
    <ManagementMetadata/>
  </DataObjectPackage>
  <ReplyCode>{code}</ReplyCode>
  <MessageRequestIdentifier>TRF-2031-0001</MessageRequestIdentifier>
  <ArchivalAgency><Identifier>AD13</Identifier></ArchivalAgency>
  <TransferringAgency><Identifier>GIP-ARCHIVES</Identifier></TransferringAgency>
</ArchiveTransferReply>
""".encode()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_transfer_reply_is_read(version: SedaVersion) -> None:
    xml = transfer_reply(version)
    schema: Any = official_schema(version)
    assert schema.validate(etree.fromstring(xml).getroottree()), schema.error_log
    info = parse_transfer_reply(xml)
    assert info.message_identifier == "AD13-ATR-77"
    assert info.request_identifier == "TRF-2031-0001"
    assert info.reply_code == "OK"
    assert info.date == datetime(2031, 5, 1, 10, 0, tzinfo=UTC)
    assert info.archive_unit_ids == ("au-01", "au-02")
    assert info.system_ids == ("aeaqaaaaaa-1", "aeaqaaaaaa-2")
    assert parse_transfer_reply(transfer_reply(version, "KO")).reply_code == "KO"


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<AuthorizationControlAuthorityRequestReply xmlns="fr:gouv:culture:archivesdefrance:seda:v2.3">
<Date>2031-01-01T00:00:00Z</Date><MessageIdentifier>&x;</MessageIdentifier>
<CodeListVersions/><ReplyCode>OK</ReplyCode><MessageRequestIdentifier>R</MessageRequestIdentifier>
</AuthorizationControlAuthorityRequestReply>"""


def test_parsers_refuse_what_is_not_the_expected_seda_message() -> None:
    request_xml = build_authorization_request(request())
    reply_xml = build_authorization_reply("DEM-1", "OK", "VISA-1", WHEN)
    cases: list[tuple[Any, bytes, str]] = [
        (parse_authorization_reply, request_xml, "seda-unexpected-message"),
        (parse_authorization_reply, transfer_reply(), "seda-unexpected-message"),
        (parse_transfer_reply, reply_xml, "seda-unexpected-message"),
        (parse_authorization_reply, XXE, "seda-dtd-forbidden"),
        (parse_transfer_reply, b"<ArchiveTransferReply/>", "seda-unsupported-version"),
        (parse_authorization_reply, b"<not-xml", "seda-xml-malformed"),
        (
            parse_authorization_reply,
            reply_xml.replace(b"<ReplyCode>OK</ReplyCode>", b""),
            "seda-missing-element",
        ),
    ]
    for parse, xml, code in cases:
        with pytest.raises(SedaInvalid) as caught:
            parse(xml)
        assert [i.code for i in caught.value.issues] == [code], (parse.__name__, xml[:80])
