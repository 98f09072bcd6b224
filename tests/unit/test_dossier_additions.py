"""Growing dossiers, pure core: the metadata of an addition, the events of a dossier taken
together, the addition's ArchiveUnit tree (existing dossier and phase by id, new documents
with the référentiel's rules over the dossier's events) and its manifest, valid against the
bare official XSD and our profile in SEDA 2.3 and 2.2."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from archive_service.core.model import DescriptionLevel, TransferManifestInput
from archive_service.core.procurement import (
    ExistingUnit,
    build_addition_tree,
    merged_events,
    metadata_for_addition,
    parse_addition,
    parse_metadata,
)
from archive_service.core.retention import Referential
from archive_service.core.seda.builder import build_archive_transfer
from archive_service.core.seda.names import SEDA_NS
from archive_service.core.seda.validate import SedaValidator, profile_dir
from archive_service.errors import InvalidInput
from tests.seda_helpers import seda_xsd_dir
from tests.unit import test_procurement as proc
from tests.unit.test_procurement import _counter, _objects, metadata

pytestmark = pytest.mark.reference


@pytest.fixture(scope="module")
def dossier_decp() -> dict[str, Any]:
    """The official example marché the procurement tests use ("TEST2022Bis")."""
    schema = proc._reference(Path(os.environ.get("ARCHIVE_DECP_SCHEMA", proc.DEFAULT_SCHEMA)))
    path = proc._reference(schema.parent / "exemples" / "marches_avec_modifications.json")
    marches = json.loads(path.read_text("utf-8"))["marches"]["marche"]
    return dict(next(m for m in marches if m["id"] == "TEST2022Bis"))


@pytest.fixture(scope="module")
def rules() -> Referential:
    text = resources.files("archive_service.data").joinpath("retention_referential.json")
    return Referential.from_json(text.read_text(encoding="utf-8"))


ADDITION: dict[str, Any] = {
    "dossier": "au-dossier",
    "message_identifier": "ADD-1",
    "events": {"reception": "2025-03-01", "paiement_solde": "2025-06-30"},
    "files": [
        {"path": "7-Execution/avenant-1.pdf", "category": "execution.avenant"},
        {"path": "7-Execution/dgd.pdf", "category": "execution.dgd", "title": "DGD"},
    ],
}


def codes(exc: InvalidInput) -> set[str]:
    return {i.code for i in exc.issues}


def test_an_addition_brings_files_and_events_only() -> None:
    add = parse_addition(ADDITION)
    assert add.dossier == "au-dossier"
    assert add.events.paiement_solde == date(2025, 6, 30)
    assert [f.category for f in add.files] == ["execution.avenant", "execution.dgd"]
    with pytest.raises(InvalidInput) as caught:
        parse_addition({**ADDITION, "title": "Autre", "contract_type": "T", "colour": "x"})
    assert codes(caught.value) == {"not-allowed-in-addition", "unknown-field"}
    with pytest.raises(InvalidInput) as caught:
        parse_addition({k: v for k, v in ADDITION.items() if k != "files"} | {"dossier": ""})
    assert {"missing-field"} <= codes(caught.value)


def test_events_of_a_dossier_are_merged_and_conflicts_named(dossier_decp: dict[str, Any]) -> None:
    first = parse_metadata(metadata(dossier_decp))
    add = parse_addition(ADDITION)
    merged, issues = merged_events([first.events, add.events])
    assert issues == []
    assert merged.signature == first.events.signature
    assert merged.notification == first.events.notification
    assert merged.reception == date(2025, 3, 1)
    other = parse_addition({**ADDITION, "events": {"signature": "1999-01-01"}})
    _, issues = merged_events([first.events, other.events])
    assert [i.code for i in issues] == ["event-conflict"]
    assert issues[0].location == "/events/signature"


@pytest.mark.parametrize("version", ["2.3", "2.2"])
def test_the_addition_manifest_names_existing_units_and_validates(
    dossier_decp: dict[str, Any], rules: Referential, version: str
) -> None:
    first = parse_metadata(metadata(dossier_decp))
    add = parse_addition(ADDITION)
    merged, _ = merged_events([first.events, add.events])
    meta = metadata_for_addition(replace(first, events=merged), add)
    objects = _objects(meta)
    dossier = ExistingUnit(id="au-dossier", title=first.title, level=DescriptionLevel.RECORD_GROUP)
    phase = ExistingUnit(id="au-phase-exe", title="Exécution", level=DescriptionLevel.SUB_GROUP)
    new_id, _ = _counter()
    root = build_addition_tree(
        meta, objects, rules, dossier=dossier, phases={"execution": phase}, new_id=new_id
    )
    assert root.id == "au-dossier"
    assert [c.id for c in root.children] == ["au-phase-exe"]
    documents = root.children[0].children
    assert [d.category for d in documents] == ["execution.avenant", "execution.dgd"]
    # The DGD's rule starts with the dossier's paiement du solde, sent with the addition.
    dgd = documents[1]
    assert dgd.appraisal is not None and not dgd.appraisal.pending
    assert dgd.appraisal.start_date == date(2025, 6, 30)

    xml = build_archive_transfer(
        TransferManifestInput(
            message_identifier="ADD-1",
            date=datetime(2025, 7, 1, tzinfo=UTC),
            archival_agency="GIP",
            transferring_agency="client",
            originating_agency=meta.organization,
            objects=tuple(objects.values()),
            root=root,
        ),
        version=version,  # type: ignore[arg-type]
        existing_ids=frozenset({"au-dossier", "au-phase-exe"}),
    )
    validator = SedaValidator(seda_xsd_dir(), profile_dir())
    validator.validate(xml, version=version)  # type: ignore[arg-type]
    ns = {"s": SEDA_NS[version]}  # type: ignore[index]
    doc = etree.fromstring(xml)
    top = doc.find("s:DataObjectPackage/s:DescriptiveMetadata/s:ArchiveUnit", ns)
    assert top is not None and top.get("id") == "au-dossier"
    assert top.find("s:Management", ns) is None
    assert top.findtext("s:Content/s:SystemId", namespaces=ns) == "au-dossier"
    assert top.findtext("s:Content/s:OriginatingAgency/s:Identifier", namespaces=ns)
    phase_el = top.find("s:ArchiveUnit", ns)
    assert phase_el is not None
    assert phase_el.findtext("s:Content/s:SystemId", namespaces=ns) == "au-phase-exe"
    items = phase_el.findall("s:ArchiveUnit", ns)
    assert len(items) == 2
    assert all(i.find("s:Management/s:AppraisalRule", ns) is not None for i in items)
    assert all(i.find("s:Content/s:SystemId", ns) is None for i in items)


def test_a_new_phase_is_created_when_the_dossier_has_none(
    dossier_decp: dict[str, Any], rules: Referential
) -> None:
    first = parse_metadata(metadata(dossier_decp))
    meta = metadata_for_addition(first, parse_addition(ADDITION))
    dossier = ExistingUnit(id="au-dossier", title=first.title, level=DescriptionLevel.RECORD_GROUP)
    new_id, _ = _counter()
    root = build_addition_tree(
        meta, _objects(meta), rules, dossier=dossier, phases={}, new_id=new_id
    )
    phase = root.children[0]
    assert phase.id != "au-dossier" and phase.description.title == "Exécution"
    assert dict(phase.description.extension) == {"phase": "execution"}
