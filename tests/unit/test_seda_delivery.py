"""The DIP manifest (core/seda/delivery.py): ``ArchiveDeliveryRequestReply`` carrying the units,
objects, rules and ``HoldRule`` of a delivery, valid against the bare official XSDs."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from archive_service.core.seda.delivery import DeliveryInput, build_delivery_reply
from archive_service.core.seda.names import SEDA_NS, SedaVersion
from tests.reference import official_schema
from tests.seda_helpers import sample_manifest
from tests.unit.test_seda_lifecycle import xmllint_check

WHEN = datetime(2032, 6, 1, 8, 0, tzinfo=UTC)
HOLD = {
    "id": "hold-07",
    "reason": "enquête pénale",
    "reference": None,
    "placed_by": "archiviste",
    "placed_at": "2031-12-24T17:00:00+00:00",
}


def delivery(**kw: Any) -> DeliveryInput:
    package = sample_manifest()
    values: dict[str, Any] = {
        "message_identifier": "dip-01",
        "request_identifier": "export-root",
        "date": WHEN,
        "requester": "client-platform",
        "package": package,
        "holds": {package.root.children[0].id: (HOLD,)},
        "notes": ("Contenu non communiqué : unité x — délai de 25 ans.",),
    }
    values.update(kw)
    return DeliveryInput(**values)


@pytest.mark.parametrize("version", ["2.2", "2.3"])
def test_the_delivery_reply_validates_and_carries_the_hold(version: SedaVersion) -> None:
    d = delivery()
    xml = build_delivery_reply(d, version=version)
    doc = etree.fromstring(xml)
    schema: Any = official_schema(version)
    assert schema.validate(doc.getroottree()), schema.error_log
    ns = {"s": SEDA_NS[version]}
    assert etree.QName(doc).localname == "ArchiveDeliveryRequestReply"
    assert doc.findtext("s:Comment", namespaces=ns) == d.notes[0]
    assert doc.findtext("s:UnitIdentifier", namespaces=ns) == d.package.root.id
    assert doc.findtext("s:MessageRequestIdentifier", namespaces=ns) == "export-root"
    assert doc.findtext("s:Requester/s:Identifier", namespaces=ns) == "client-platform"
    held = doc.find(f".//s:ArchiveUnit[@id='{d.package.root.children[0].id}']", ns)
    assert held is not None
    hold = held.find("s:Management/s:HoldRule", ns)
    assert hold is not None
    assert [c.text for c in hold] == ["hold-07", "2031-12-24", "archiviste", "enquête pénale"]
    assert len(doc.findall(".//s:HoldRule", ns)) == 1
    assert doc.findtext(".//s:HoldRuleCodeListVersion", namespaces=ns)
    objects = doc.findall(".//s:BinaryDataObject", ns)
    assert {o.get("id") for o in objects} == {o.id for o in d.package.objects}


@pytest.mark.parametrize("version", ["2.2", "2.3"])
def test_xmllint_agrees(tmp_path: Path, version: SedaVersion) -> None:
    xmllint_check(
        tmp_path,
        version,
        {
            "held.xml": build_delivery_reply(delivery(), version=version),
            "plain.xml": build_delivery_reply(delivery(holds={}, notes=()), version=version),
        },
    )


def test_byte_stable_and_without_holds_no_hold_rule() -> None:
    assert build_delivery_reply(delivery()) == build_delivery_reply(delivery())
    plain = etree.fromstring(build_delivery_reply(delivery(holds={}, notes=())))
    ns = {"s": SEDA_NS["2.3"]}
    assert plain.find(".//s:HoldRule", ns) is None
    assert plain.find(".//s:HoldRuleCodeListVersion", ns) is None
    assert plain.find("s:Comment", ns) is None


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="requester"):
        delivery(requester=" ")
    with pytest.raises(ValueError, match="timezone"):
        dataclasses.replace(delivery(), date=datetime(2032, 1, 1))
    with pytest.raises(ValueError, match="version"):
        build_delivery_reply(delivery(), version="3.0")  # type: ignore[arg-type]
