"""Exports on both stacks: the DIP of a unit (``GET /v1/archive-units/{id}/export``) and the
outgoing ``ArchiveTransfer`` to the definitive archives (``ExportService.outgoing_transfer``).

Each zip is opened as a receiving system would: the manifest validates against the bare
official XSD of its version, every ``BinaryDataObject`` has its file at its ``Uri`` and the
file's SHA-256 is the manifest's ``MessageDigest``; holds appear as ``HoldRule``; what the
caller may not read (communicability, role) or what was destroyed is left out and said so.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import select, update

from archive_service.core.seda.names import SEDA_NS
from archive_service.db import tables as t
from archive_service.errors import Conflict, FingerprintMismatch, NotFound
from tests.fixtures.dossier import make_small_dossier
from tests.integration.conftest import Env, only_stack
from tests.integration.test_audit import flip_one_byte
from tests.reference import official_schema

N_FILES = 6


def ingest(env: Env, tmp_path: Path, name: str = "d", seed: int = 0) -> str:
    metadata, _ = make_small_dossier(
        tmp_path / name, N_FILES, sizes=(2_000, 5_000), seed=seed, message_identifier=f"EXP-{name}"
    )
    r = env.post_transfer(metadata, tmp_path / name)
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    unit_id: str = done["archive_unit_id"]
    return unit_id


def tenant_of(env: Env) -> str:
    return env.services.tenancy.authenticate(env.keys["admin"]).tenant_id


def units_of(env: Env, root_id: str) -> list[Any]:
    with env.services.engine.connect() as conn:
        return list(conn.execute(select(t.ArchiveUnit).where(t.ArchiveUnit.root_id == root_id)))


def objects_of(env: Env, root_id: str) -> dict[str, Any]:
    """Object id → row, for every object of the dossier."""
    ids = {u.id for u in units_of(env, root_id)}
    with env.services.engine.connect() as conn:
        rows = conn.execute(select(t.DataObject)).all()
    return {r.id: r for r in rows if r.archive_unit_id in ids}


def export_events(env: Env, unit_id: str) -> list[tuple[str, dict[str, Any]]]:
    with env.services.engine.connect() as conn:
        rows = conn.execute(
            select(t.LogbookEntry.outcome, t.LogbookEntry.details)
            .where(
                t.LogbookEntry.event_type == "archive_unit.export",
                t.LogbookEntry.subject_id == unit_id,
            )
            .order_by(t.LogbookEntry.id)
        ).all()
    return [(r.outcome, r.details) for r in rows]


def opened(data: bytes, version: str, root: str) -> tuple[etree._Element, dict[str, bytes]]:
    """The zip's manifest (checked against the official XSD) and its members."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = {n: z.read(n) for n in z.namelist()}
    manifest = etree.fromstring(members["manifest.xml"])
    schema: Any = official_schema(version)
    assert schema.validate(manifest.getroottree()), schema.error_log
    assert etree.QName(manifest) == etree.QName(SEDA_NS[version], root)
    return manifest, members


def delivered_objects(
    manifest: etree._Element, members: dict[str, bytes], version: str
) -> set[str]:
    """Ids of the manifest's objects, each checked against its file in the zip."""
    ns = {"s": SEDA_NS[version]}
    found = set()
    for bdo in manifest.iterfind(".//s:BinaryDataObject", ns):
        uri = bdo.findtext("s:Uri", namespaces=ns)
        digest = bdo.find("s:MessageDigest", ns)
        assert uri in members, uri
        assert digest is not None and digest.get("algorithm") == "SHA-256"
        assert hashlib.sha256(members[uri]).hexdigest() == digest.text
        found.add(bdo.get("id"))
    assert set(members) == {"manifest.xml"} | {f"content/{i}" for i in found}
    return found


def export(
    env: Env, unit_id: str, role: str = "platform", *, other_tenant: bool = False, **params: Any
) -> Any:
    return env.http.get(
        f"/v1/archive-units/{unit_id}/export",
        params=params,
        headers=env.auth(role, other_tenant=other_tenant),
    )


@pytest.mark.parametrize("version", ["2.3", "2.2"])
def test_the_producer_gets_the_whole_dossier_valid_and_verified(
    env: Env, tmp_path: Path, version: str
) -> None:
    root_id = ingest(env, tmp_path)
    r = export(env, root_id, seda=version)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert f"seda{version}" in r.headers["content-disposition"]
    manifest, members = opened(r.content, version, "ArchiveDeliveryRequestReply")
    ns = {"s": SEDA_NS[version]}
    assert set(delivered_objects(manifest, members, version)) == set(objects_of(env, root_id))
    assert manifest.findtext("s:UnitIdentifier", namespaces=ns) == root_id
    assert manifest.findtext("s:ReplyCode", namespaces=ns) == "OK"
    units = {u.get("id") for u in manifest.iterfind(".//s:ArchiveUnit", ns)}
    assert units == {u.id for u in units_of(env, root_id)}
    # current rules: every document carries its AppraisalRule from the database
    for row in units_of(env, root_id):
        if row.appraisal:
            rule = manifest.find(
                f".//s:ArchiveUnit[@id='{row.id}']/s:Management/s:AppraisalRule", ns
            )
            assert rule is not None, row.id
            assert rule.findtext("s:Rule", namespaces=ns) == row.appraisal["rule_id"]
    assert manifest.find(".//s:HoldRule", ns) is None
    events = export_events(env, root_id)
    assert [o for o, _ in events] == ["OK"]
    assert (
        events[0][1]["objects"] == len(objects_of(env, root_id))
        and events[0][1]["seda_version"] == version
    )
    assert not list((env.settings.data_dir / "exports").glob("*.zip")), "temporary zip left"


def test_an_active_hold_is_a_hold_rule(env: Env, tmp_path: Path) -> None:
    root_id = ingest(env, tmp_path)
    phase = next(u for u in units_of(env, root_id) if u.parent_id == root_id)
    placed = datetime(2027, 2, 3, 9, 0, tzinfo=UTC)
    with env.services.engine.begin() as conn:
        # Written as the hold service records one (H3's API places it the same way).
        conn.execute(
            t.LegalHold.__table__.insert().values(
                id="hold-export-1",
                tenant_id=tenant_of(env),
                unit_id=phase.id,
                root_id=root_id,
                reason="recours en annulation",
                reference="TA Lyon 2027-0042",
                placed_by="juriste@gip",
                placed_at=placed,
            )
        )
        conn.execute(
            t.LegalHold.__table__.insert().values(
                id="hold-export-old",
                tenant_id=tenant_of(env),
                unit_id=root_id,
                root_id=root_id,
                reason="levé",
                reference=None,
                placed_by="x",
                placed_at=placed,
                lifted_by="x",
                lifted_at=placed,
                lift_reason="fin",
            )
        )
    for version in ("2.3", "2.2"):
        r = export(env, root_id, seda=version)
        assert r.status_code == 200, r.text
        manifest, _ = opened(r.content, version, "ArchiveDeliveryRequestReply")
        ns = {"s": SEDA_NS[version]}
        holds = manifest.findall(".//s:HoldRule", ns)
        assert len(holds) == 1
        owner = holds[0].getparent().getparent()  # Management → ArchiveUnit
        assert owner.get("id") == phase.id
        assert holds[0].findtext("s:Rule", namespaces=ns) == "hold-export-1"
        assert holds[0].findtext("s:StartDate", namespaces=ns) == "2027-02-03"
        assert holds[0].findtext("s:HoldOwner", namespaces=ns) == "juriste@gip"
        assert holds[0].findtext("s:HoldReason", namespaces=ns) == (
            "recours en annulation (réf. TA Lyon 2027-0042)"
        )
    # exporting a document under the held phase: the hold is written on the export's root
    document = next(u for u in units_of(env, root_id) if u.parent_id == phase.id)
    r = export(env, document.id)
    manifest, _ = opened(r.content, "2.3", "ArchiveDeliveryRequestReply")
    ns = {"s": SEDA_NS["2.3"]}
    assert (
        manifest.find(
            f"s:DataObjectPackage/s:DescriptiveMetadata/s:ArchiveUnit[@id='{document.id}']/s:Management/s:HoldRule",
            ns,
        )
        is not None
    )


def test_content_the_caller_may_not_read_is_left_out_and_said_so(env: Env, tmp_path: Path) -> None:
    root_id = ingest(env, tmp_path)
    everything = objects_of(env, root_id)
    # one document under the trade-secret delay (L213-2: 25 years from today)
    secret = next(iter(everything.values())).archive_unit_id
    today = env.clock.now().date()
    rule = {
        "rule_id": "COM-SECRET-AFFAIRES",
        "duration_years": 25,
        "start_event": "signature",
        "start_date": today.isoformat(),
        "end_date": today.replace(year=today.year + 25).isoformat(),
        "pending": False,
        "label": "secret des affaires",
    }
    with env.services.engine.begin() as conn:
        conn.execute(
            update(t.ArchiveUnit)
            .where(t.ArchiveUnit.id == secret)
            .values(access=rule, access_end=today.replace(year=today.year + 25))
        )
    r = export(env, root_id, role="archivist")
    assert r.status_code == 200, r.text
    manifest, members = opened(r.content, "2.3", "ArchiveDeliveryRequestReply")
    ns = {"s": SEDA_NS["2.3"]}
    delivered = delivered_objects(manifest, members, "2.3")
    notes = [c.text or "" for c in manifest.findall("s:Comment", ns)]
    assert delivered and set(everything) - delivered, (delivered, set(everything))
    assert any(secret in n and "COM-SECRET-AFFAIRES" in n for n in notes), notes
    # the export withholds exactly what the content endpoint refuses to the same caller
    for object_id, row in everything.items():
        content = env.http.get(f"/v1/objects/{object_id}/content", headers=env.auth("archivist"))
        if object_id in delivered:
            assert content.status_code == 200, content.text
            assert hashlib.sha256(content.content).hexdigest() == row.sha256
        else:
            assert content.status_code == 403, content.text
            assert any(row.archive_unit_id in n and "non communiqué" in n for n in notes), notes
    # every unit is still described, withheld or not
    units = {u.get("id") for u in manifest.iterfind(".//s:ArchiveUnit", ns)}
    assert units == {u.id for u in units_of(env, root_id)}
    # an auditor reads no content at all: metadata only, every unit with objects noted
    r = export(env, root_id, role="auditor")
    assert r.status_code == 200, r.text
    manifest, members = opened(r.content, "2.3", "ArchiveDeliveryRequestReply")
    assert set(members) == {"manifest.xml"}
    notes = [c.text or "" for c in manifest.findall("s:Comment", ns)]
    holders = {row.archive_unit_id for row in everything.values()}
    assert len([n for n in notes if "auditor" in n]) == len(holders)
    outcome, details = export_events(env, root_id)[-1]
    assert outcome == "OK" and sorted(details["withheld_units"]) == sorted(holders)


def test_visibility_follows_the_unit_endpoint(env: Env, tmp_path: Path) -> None:
    root_id = ingest(env, tmp_path)
    other = export(env, root_id, role="platform", other_tenant=True)
    mine = env.http.get(
        f"/v1/archive-units/{root_id}", headers=env.auth("platform", other_tenant=True)
    )
    assert other.status_code == mine.status_code == 404
    assert other.headers["content-type"] == "application/problem+json"
    assert export(env, "au-01JDQZZZZZZZZZZZZZZZZZZZZZ").status_code == 404
    bad = export(env, root_id, seda="2.1")
    assert bad.status_code == 400, bad.text
    assert export_events(env, root_id) == []


def test_destroyed_units_are_not_exported(env: Env, tmp_path: Path) -> None:
    root_id = ingest(env, tmp_path)
    everything = objects_of(env, root_id)
    document = next(
        u
        for u in units_of(env, root_id)
        if u.id in {o.archive_unit_id for o in everything.values()}
    )
    with env.services.engine.begin() as conn:
        conn.execute(
            update(t.ArchiveUnit).where(t.ArchiveUnit.id == document.id).values(status="destroyed")
        )
    r = export(env, root_id)
    assert r.status_code == 200, r.text
    manifest, members = opened(r.content, "2.3", "ArchiveDeliveryRequestReply")
    ns = {"s": SEDA_NS["2.3"]}
    delivered = delivered_objects(manifest, members, "2.3")
    gone = {i for i, o in everything.items() if o.archive_unit_id == document.id}
    assert gone and not gone & delivered
    assert delivered == set(everything) - gone
    assert manifest.find(f".//s:ArchiveUnit[@id='{document.id}']", ns) is None
    assert any(document.id in (c.text or "") for c in manifest.findall("s:Comment", ns))
    gone = export(env, document.id)
    assert gone.status_code == 410, gone.text
    assert gone.json()["unit_status"] == "destroyed"
    assert [o for o, _ in export_events(env, document.id)] == ["REFUSED"]


def open_zip(path: Path) -> bytes:
    """The zip's bytes; the temporary file removed as the caller must."""
    data = path.read_bytes()
    path.unlink()
    return data


def test_outgoing_transfer_rebuilds_a_valid_transfer_with_every_object(
    env: Env, tmp_path: Path
) -> None:
    tenant = tenant_of(env)
    first = ingest(env, tmp_path, "a", seed=1)
    second = ingest(env, tmp_path, "b", seed=2)
    service = env.services.export
    for version in ("2.3", "2.2"):
        path = service.outgoing_transfer(
            tenant, [first], message_identifier="TRF-1", version=version
        )
        manifest, members = opened(open_zip(path), version, "ArchiveTransfer")
        ns = {"s": SEDA_NS[version]}
        assert delivered_objects(manifest, members, version) == set(objects_of(env, first))
        assert manifest.findtext("s:MessageIdentifier", namespaces=ns) == "TRF-1"
        top = manifest.find("s:DataObjectPackage/s:DescriptiveMetadata/s:ArchiveUnit", ns)
        assert top is not None and top.get("id") == first
        env.services.validator.validate(members["manifest.xml"], version=version, profile=True)
    path = service.outgoing_transfer(tenant, [first, second], message_identifier="TRF-2")
    manifest, members = opened(open_zip(path), "2.3", "ArchiveTransfer")
    ns = {"s": SEDA_NS["2.3"]}
    expected = set(objects_of(env, first)) | set(objects_of(env, second))
    assert delivered_objects(manifest, members, "2.3") == expected
    top = manifest.find("s:DataObjectPackage/s:DescriptiveMetadata/s:ArchiveUnit", ns)
    assert top is not None
    assert [u.get("id") for u in top.findall("s:ArchiveUnit", ns)] == [first, second]
    # current rules: a rule changed in the database is the rule exported
    phase = next(u for u in units_of(env, first) if u.parent_id == first)
    document = next(u for u in units_of(env, first) if u.parent_id == phase.id and u.appraisal)
    changed = {**document.appraisal, "rule_id": "DUA-CHANGED", "start_date": "2030-01-01"}
    with env.services.engine.begin() as conn:
        conn.execute(
            update(t.ArchiveUnit).where(t.ArchiveUnit.id == document.id).values(appraisal=changed)
        )
    manifest, _ = opened(
        open_zip(service.outgoing_transfer(tenant, [first], message_identifier="TRF-3")),
        "2.3",
        "ArchiveTransfer",
    )
    rule = manifest.find(f".//s:ArchiveUnit[@id='{document.id}']/s:Management/s:AppraisalRule", ns)
    assert rule is not None
    assert rule.findtext("s:Rule", namespaces=ns) == "DUA-CHANGED"
    assert rule.findtext("s:StartDate", namespaces=ns) == "2030-01-01"


def test_outgoing_transfer_refuses_before_writing(env: Env, tmp_path: Path) -> None:
    tenant = tenant_of(env)
    root_id = ingest(env, tmp_path)
    service = env.services.export
    exports = env.settings.data_dir / "exports"
    with pytest.raises(NotFound):
        service.outgoing_transfer(tenant, ["au-nothing"], message_identifier="TRF-X")
    with pytest.raises(NotFound):
        service.outgoing_transfer("another-tenant", [root_id], message_identifier="TRF-X")
    document = next(u for u in units_of(env, root_id) if u.parent_id and u.appraisal)
    with env.services.engine.begin() as conn:
        conn.execute(
            t.LegalHold.__table__.insert().values(
                id="hold-trf",
                tenant_id=tenant,
                unit_id=document.id,
                root_id=root_id,
                reason="contentieux",
                reference=None,
                placed_by="juriste",
                placed_at=datetime(2027, 1, 1, tzinfo=UTC),
            )
        )
    with pytest.raises(Conflict) as caught:
        service.outgoing_transfer(tenant, [root_id], message_identifier="TRF-X")
    assert caught.value.extra == {"holds": ["hold-trf"]}
    with env.services.engine.begin() as conn:
        conn.execute(
            update(t.ArchiveUnit).where(t.ArchiveUnit.id == root_id).values(status="transferred")
        )
    with pytest.raises(Conflict, match="transferred"):
        service.outgoing_transfer(tenant, [root_id], message_identifier="TRF-X")
    assert not exports.exists() or not list(exports.iterdir())


@only_stack("default")
def test_a_corrupt_copy_fails_the_export_and_leaves_nothing(env: Env, tmp_path: Path) -> None:
    root_id = ingest(env, tmp_path)
    row = next(iter(objects_of(env, root_id).values()))
    flip_one_byte(env.settings.resolved_storage_dir / row.storage_key)
    with pytest.raises(FingerprintMismatch, match=row.id):
        env.services.export.outgoing_transfer(tenant_of(env), [root_id], message_identifier="TRF-C")
    r = export(env, root_id)
    assert r.status_code == 500, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert row.id in r.text and row.sha256 in r.text
    assert [o for o, _ in export_events(env, root_id)] == ["FAILED"]
    assert not list((env.settings.data_dir / "exports").glob("*"))


def test_a_grown_dossier_is_exported_whole_from_every_package(env: Env, tmp_path: Path) -> None:
    """Objects added by later packages are read from their own package's copies."""
    from tests.integration.test_growing_dossiers import add, addition

    root_id = ingest(env, tmp_path)
    meta, directory = addition(
        tmp_path,
        root_id,
        "dgd",
        [("8-Execution/dgd.pdf", "execution.dgd", "Décompte général définitif")],
        events={"reception": "2025-03-01", "paiement_solde": "2025-06-30"},
    )
    add(env, meta, directory)
    everything = objects_of(env, root_id)
    assert len({o.package_id for o in everything.values()}) == 2
    r = export(env, root_id)
    assert r.status_code == 200, r.text
    manifest, members = opened(r.content, "2.3", "ArchiveDeliveryRequestReply")
    assert delivered_objects(manifest, members, "2.3") == set(everything)
    path = env.services.export.outgoing_transfer(
        tenant_of(env), [root_id], message_identifier="TRF-GROWN"
    )
    manifest, members = opened(open_zip(path), "2.3", "ArchiveTransfer")
    assert delivered_objects(manifest, members, "2.3") == set(everything)
    titles = {t.text for t in manifest.iterfind(".//{*}ArchiveUnit/{*}Content/{*}Title")}
    assert "Décompte général définitif" in titles
