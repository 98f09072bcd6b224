"""Legal holds, disposal with the authority's visa, and transfer to the definitive archives,
through the HTTP API on both stacks (production: two Ceph S3 offers with Object Lock).

Dossiers are ingested with a notification in 2015: the 5-year rules (DCE, publicity, offers
not retained, rejection letters) ended in 2020, in the real past, while the contract pieces
wait for the final payment. The S3 offers lock with a floor of a few seconds, so that their
retention lapses in real time within the test, as it would after years in production.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from archive_service.config import Settings
from archive_service.core.model import ReplyCode, TransferReplyInput
from archive_service.core.seda.lifecycle import build_authorization_reply
from archive_service.core.seda.reply import build_transfer_reply
from archive_service.core.timestamp import verify_timestamp
from archive_service.errors import Unavailable
from archive_service.ports import SupersededRecord
from archive_service.services.audit import AuditScope
from archive_service.storage.s3 import S3BlobStore
from tests.fixtures.dossier import make_dossier, pdf_bytes
from tests.integration.conftest import (
    Env,
    invoke_cli,
    only_stack,
    open_env,
    s3_offers,
    stored_keys,
    stored_objects,
)

FLOOR_SECONDS = 3
DESTROY_CATEGORIES = {
    "dce.ccap",
    "dce.cctp",
    "dce.prix",
    "dce.rc",
    "publicite.avis",
    "offres.non_retenue",
    "attribution.rejet",
}


@pytest.fixture
def disposal_env(settings: Settings) -> Iterator[Env]:
    if settings.storage_offers:
        settings = settings.model_copy(
            update={"storage_offers": s3_offers(min_retention_seconds=FLOOR_SECONDS)}
        )
    with open_env(settings) as env:
        yield env


def ingest(env: Env, tmp: Path, *, seed: int, notification: str, message: str) -> str:
    meta, _ = make_dossier(tmp / message, seed=seed, message_identifier=message)
    signature = (datetime.fromisoformat(notification) - timedelta(days=9)).date().isoformat()
    meta["events"] = {"signature": signature, "notification": notification}
    meta["decp"]["dateNotification"] = notification
    meta["decp"]["datePublicationDonnees"] = notification
    r = env.post_transfer(meta, tmp / message)
    assert r.status_code == 202, r.text
    body = env.wait(r.json()["id"])
    assert body["status"] == "accepted", body
    root: str = body["archive_unit_id"]
    return root


def units(env: Env, root: str) -> list[Any]:
    tenant = env.services.tenancy.authenticate(env.keys["archivist"]).tenant_id
    with env.services.ingest._uow() as uow:
        return uow.archive.units_of_root(tenant, root)


def tenant_of(env: Env) -> str:
    return env.services.tenancy.authenticate(env.keys["archivist"]).tenant_id


def object_keys(env: Env, unit_ids: set[str]) -> set[str]:
    tenant = tenant_of(env)
    with env.services.ingest._uow() as uow:
        roots = {uow.archive.get_unit(tenant, u).root_id for u in unit_ids}  # type: ignore[union-attr]
        return {
            o.storage_key
            for root in roots
            for o in uow.archive.objects_of_root(tenant, root)
            if o.archive_unit_id in unit_ids
        }


def wait_locks_lapsed(env: Env, root: str) -> None:
    """Sleep until every copy of the dossier's packages is past its S3 retention, read again
    after each wait: the jobs that follow a package's commit (retention recomputation) may
    lock a copy again, from their own now, a moment after the transfer was accepted."""
    tenant = tenant_of(env)
    offers = {o.name: o for o in env.services.offers}
    deadline = time.monotonic() + 120
    while True:
        with env.services.ingest._uow() as uow:
            packages = {u.package_id for u in uow.archive.units_of_root(tenant, root)}
            copies = [c for p in packages for c in uow.archive.copies_of_package(tenant, p)]
        latest: datetime | None = None
        for copy in copies:
            offer = offers[copy.offer]
            if copy.version_id is None or not hasattr(offer, "retention"):
                continue
            retention = offer.retention(copy.key, version_id=copy.version_id)
            if retention is not None and retention.retain_until is not None:
                if latest is None or retention.retain_until > latest:
                    latest = retention.retain_until
        now = datetime.now(UTC)
        if latest is None or latest < now - timedelta(seconds=1):
            return
        assert time.monotonic() < deadline, f"retention still runs until {latest}"
        time.sleep((latest - now).total_seconds() + 1.5)


def raw_s3(env: Env) -> list[S3BlobStore]:
    out = []
    for offer in env.services.offers:
        inner = getattr(offer, "inner", offer)
        if isinstance(inner, S3BlobStore):
            out.append(inner)
    return out


def legal_hold_on(store: S3BlobStore, key: str) -> bool:
    versions = store._version_entries(key)
    assert versions, key
    statuses = []
    for version_id, marker in versions:
        if marker:
            continue
        try:
            got = store._s3.get_object_legal_hold(
                Bucket=store.bucket, Key=key, VersionId=version_id
            )
        except ClientError as exc:  # Ceph: never held
            assert exc.response["Error"]["Code"] == "ObjectLockConfigurationNotFoundError"
            statuses.append(False)
            continue
        statuses.append(got["LegalHold"]["Status"] == "ON")
    return all(statuses)


def post_visa(env: Env, request_id: str, role: str, **body: Any) -> Any:
    return env.http.post(
        f"/v1/disposal-requests/{request_id}/visa", json=body, headers=env.auth(role)
    )


def entries_of(env: Env, subject: str) -> list[str]:
    with env.services.ingest._uow() as uow:
        return [e.event_type for e in uow.logbook.for_subject(tenant_of(env), subject)]


def test_hold_blocks_disposal_until_lifted_then_destroyed_with_certificate(
    disposal_env: Env, tmp_path: Path
) -> None:
    env = disposal_env
    root = ingest(env, tmp_path, seed=3, notification="2015-03-10", message="DSP-2015-1")
    family = units(env, root)
    by_category = {u.category: u for u in family if u.category}
    due = env.http.get("/v1/disposal-requests/due?kind=destroy", headers=env.auth("archivist"))
    assert due.status_code == 200, due.text
    due_units = due.json()["units"]
    items = {u["category"] for u in due_units if u["level"] == "Item"}
    assert items == DESTROY_CATEGORIES
    # The DCE and publicity phases go whole; the offers and attribution phases keep their
    # contract pieces, so those nodes stay, as do the dossier and everything Keep.
    phases = {u["id"] for u in due_units if u["level"] == "SubGrp"}
    assert phases == {by_category["dce.rc"].parent_id, by_category["publicite.avis"].parent_id}
    assert root not in {u["id"] for u in due_units}

    # A hold on the offers phase keeps the unsuccessful offer out of any proposal.
    offers_phase = by_category["offres.non_retenue"].parent_id
    assert offers_phase is not None
    r = env.http.post(
        f"/v1/archive-units/{offers_phase}/holds",
        json={"reason": "Recours en annulation", "reference": "TA Orléans 2401234"},
        headers=env.auth("archivist"),
    )
    assert r.status_code == 201, r.text
    hold = r.json()
    assert hold["active"] and hold["placed_by"] and hold["reference"] == "TA Orléans 2401234"
    unsuccessful = by_category["offres.non_retenue"].id
    held_keys = object_keys(env, {u.id for u in family if u.parent_id == offers_phase})
    for store in raw_s3(env):
        for key in held_keys:
            assert legal_hold_on(store, key), key
    view = env.http.get(f"/v1/archive-units/{unsuccessful}/holds", headers=env.auth("auditor"))
    assert view.status_code == 200 and view.json()["held"] is True
    assert [h["id"] for h in view.json()["inherited"]] == [hold["id"]]
    due = env.http.get("/v1/disposal-requests/due?kind=destroy", headers=env.auth("archivist"))
    assert unsuccessful not in {u["id"] for u in due.json()["units"]}
    refused = env.http.post(
        "/v1/disposal-requests",
        json={"kind": "destroy", "unit_ids": [unsuccessful]},
        headers=env.auth("archivist"),
    )
    assert refused.status_code == 422, refused.text
    assert "legal hold" in refused.text
    # A platform may neither hold nor propose.
    assert (
        env.http.post(
            f"/v1/archive-units/{root}/holds", json={"reason": "x"}, headers=env.auth()
        ).status_code
        == 403
    )

    # Lift: the copies lose their S3 legal hold; the offer becomes due again.
    r = env.http.post(
        f"/v1/holds/{hold['id']}/lift",
        json={"reason": "Recours rejeté"},
        headers=env.auth("admin"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False and r.json()["lift_reason"] == "Recours rejeté"
    for store in raw_s3(env):
        for key in held_keys:
            assert not legal_hold_on(store, key), key
    again = env.http.post(
        f"/v1/holds/{hold['id']}/lift", json={"reason": "again"}, headers=env.auth("admin")
    )
    assert again.status_code == 409

    r = env.http.post(
        "/v1/disposal-requests",
        json={"kind": "destroy", "comment": "DUA échue"},
        headers=env.auth("archivist"),
    )
    assert r.status_code == 201, r.text
    request = r.json()
    request_id = request["id"]
    assert request["status"] == "proposed"
    proposed = set(request["unit_ids"])
    assert unsuccessful in proposed
    assert {by_category[c].id for c in DESTROY_CATEGORIES} <= proposed
    assert set(request["documents"]) == {"request.xml", "bordereau.pdf", "bordereau.csv"}
    xml = env.http.get(
        f"/v1/disposal-requests/{request_id}/documents/request.xml", headers=env.auth("auditor")
    )
    assert xml.status_code == 200 and b"AuthorizationControlAuthorityRequest" in xml.content
    env.services.validator.validate(xml.content, profile=False)
    pdf = env.http.get(
        f"/v1/disposal-requests/{request_id}/documents/bordereau.pdf", headers=env.auth("auditor")
    )
    assert pdf.content.startswith(b"%PDF")
    csv_doc = env.http.get(
        f"/v1/disposal-requests/{request_id}/documents/bordereau.csv", headers=env.auth("auditor")
    )
    assert by_category["offres.non_retenue"].id.encode() in csv_doc.content
    # Units in an open request are not proposed twice.
    twice = env.http.post(
        "/v1/disposal-requests", json={"kind": "destroy"}, headers=env.auth("admin")
    )
    assert twice.status_code == 409, twice.text

    # The proposer cannot record the visa; an admin can.
    r = post_visa(env, request_id, "archivist", decision="approved", reference="AD45-2026-17")
    assert r.status_code == 403, r.text
    assert r.json()["rule"] == "proposer-cannot-approve"
    assert env.http.get(f"/v1/disposal-requests/{request_id}", headers=env.auth("admin")).json()[
        "status"
    ] == ("proposed")
    r = post_visa(env, request_id, "admin", decision="approved", reference="AD45-2026-17")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved" and r.json()["visa"]["reference"] == "AD45-2026-17"

    # A hold placed after the visa blocks the execution: nothing deleted.
    r = env.http.post(
        f"/v1/archive-units/{unsuccessful}/holds",
        json={"reason": "Contrôle de la chambre régionale des comptes"},
        headers=env.auth("archivist"),
    )
    assert r.status_code == 201, r.text
    second_hold = r.json()["id"]
    before = stored_objects(env.services)
    r = env.http.post(f"/v1/disposal-requests/{request_id}/execute", headers=env.auth("admin"))
    assert r.status_code == 409, r.text
    blocking = r.json()["blocking"]
    assert any(b["kind"] == "hold" and b["hold_id"] == second_hold for b in blocking)
    if raw_s3(env):
        assert any(b["kind"] == "legal-hold" for b in blocking)
    assert stored_objects(env.services) == before
    r = env.http.post(
        f"/v1/holds/{second_hold}/lift", json={"reason": "Contrôle clos"}, headers=env.auth("admin")
    )
    assert r.status_code == 200

    def search(word: str) -> list[str]:
        got = env.http.get(f"/v1/archive-units?q={word}", headers=env.auth("archivist"))
        assert got.status_code == 200, got.text
        return [u["id"] for u in got.json()["items"]]

    assert search("Règlement") == [root] and search("ATTRI1") == [root]
    wait_locks_lapsed(env, root)
    purged_keys = object_keys(env, proposed)
    r = env.http.post(f"/v1/disposal-requests/{request_id}/execute", headers=env.auth("admin"))
    assert r.status_code == 200, r.text
    done = r.json()
    # The dossier stays findable by what it keeps, no longer by the titles destroyed.
    assert search("Règlement") == [] and search("ATTRI1") == [root]
    assert done["status"] == "executed"
    assert done["executed_by"]
    assert done["certificate"]["message_identifier"] == f"{request_id}-ADN"
    # No version, no delete marker of any purged key is left on any offer.
    left = stored_objects(env.services)
    for offer, entry in left:
        assert entry.split("@", 1)[0] not in purged_keys, (offer, entry)
    # The contract pieces are still there.
    kept = object_keys(env, {by_category["attribution.acte_engagement"].id})
    assert kept and {k for _, k in stored_keys(env.services)} >= kept

    tenant = tenant_of(env)
    with env.services.ingest._uow() as uow:
        stone = uow.disposal.tombstone(tenant, unsuccessful)
        unit = uow.archive.get_unit(tenant, unsuccessful)
        copies = [
            c
            for p in {u.package_id for u in family}
            for c in uow.archive.copies_of_package(tenant, p)
        ]
    assert unit is not None and unit.status == "destroyed"
    assert stone is not None and stone.outcome == "destroyed"
    assert stone.record["visa"]["reference"] == "AD45-2026-17"
    assert stone.record["objects"] and all(len(o["sha512"]) == 128 for o in stone.record["objects"])
    assert stone.record["appraisal"]["rule_id"] == "MP-NR-5A"
    # Reading a destroyed object answers 410 Gone with what the tombstone says.
    gone = env.http.get(
        f"/v1/objects/{stone.record['objects'][0]['id']}/content", headers=env.auth("admin")
    )
    assert gone.status_code == 410, gone.text
    assert "AD45-2026-17" in gone.text
    assert not {c.key for c in copies} & purged_keys  # audits will not look for them
    audit = env.services.audit.run(AuditScope(trigger="test"))
    assert audit.checked > 0 and not audit.problems, [p.message() for p in audit.problems]
    events = entries_of(env, request_id)
    for step in (
        "disposal.proposed",
        "disposal.visa_recorded",
        "disposal.execution_started",
        "disposal.executed",
        "disposal.certificate_issued",
    ):
        assert step in events
    assert "archive_unit.destroyed" in entries_of(env, unsuccessful)
    assert "hold.placed" in entries_of(env, offers_phase)

    # The certificate: SEDA notification signed by the service's key, timestamped.
    def doc(name: str) -> bytes:
        got = env.http.get(
            f"/v1/disposal-requests/{request_id}/documents/{name}", headers=env.auth("auditor")
        )
        assert got.status_code == 200, (name, got.text)
        return got.content

    certificate = doc("certificate.xml")
    assert b"ArchiveDestructionNotification" in certificate and b"AD45-2026-17" in certificate
    env.services.validator.validate(certificate, profile=False)
    public = load_pem_public_key(doc("signing-key.pem"))
    assert doc("signing-key.pem") == env.services.logbook.public_key_pem()
    public.verify(doc("certificate.xml.sig"), certificate)  # type: ignore[union-attr,call-arg]
    verify_timestamp(
        doc("certificate.xml.tsr"),
        message=certificate,
        chain_pem=env.services.tsa.certificate_chain_pem(),
    )
    pdf_bytes = doc("certificate.pdf")
    public.verify(doc("certificate.pdf.sig"), pdf_bytes)  # type: ignore[union-attr,call-arg]
    verify_timestamp(
        doc("certificate.pdf.tsr"),
        message=pdf_bytes,
        chain_pem=env.services.tsa.certificate_chain_pem(),
    )
    signature = base64.b64decode(done["certificate"]["signature"]["signature"])
    assert signature == doc("certificate.xml.sig")
    # Executed once: a second execution is refused.
    r = env.http.post(f"/v1/disposal-requests/{request_id}/execute", headers=env.auth("admin"))
    assert r.status_code == 409


def test_transfer_to_definitive_archives_end_to_end(disposal_env: Env, tmp_path: Path) -> None:
    env = disposal_env
    root = ingest(env, tmp_path, seed=4, notification="2015-06-01", message="TRF-2015-1")
    family = units(env, root)
    analyse = {u.id for u in family if u.category and u.category.startswith("analyse.")}
    preparation = {u.id for u in family if u.category == "preparation.besoin"}
    assert analyse and preparation

    # Keep units are proposed; Keep + review ("tri") only where the archivist selects them.
    r = env.http.post(
        "/v1/disposal-requests", json={"kind": "transfer"}, headers=env.auth("archivist")
    )
    assert r.status_code == 201, r.text
    request = r.json()
    request_id = request["id"]
    assert analyse <= set(request["unit_ids"])
    assert not preparation & set(request["unit_ids"])
    # The rest of the tri may be destroyed: the archivist selects it for a destroy request.
    r = env.http.post(
        "/v1/disposal-requests",
        json={"kind": "destroy", "unit_ids": sorted(preparation)},
        headers=env.auth("archivist"),
    )
    assert r.status_code == 201, r.text
    assert preparation <= set(r.json()["unit_ids"])

    # The visa as the authority's XML reply; bad replies change nothing.
    before = env.http.get(f"/v1/disposal-requests/{request_id}", headers=env.auth("admin")).json()
    for bad in (
        b"<not-xml",
        b'<?xml version="1.0"?><Other xmlns="fr:gouv:culture:archivesdefrance:seda:v2.3"/>',
        build_authorization_reply("another-request", "OK", "AD45-VISA-9", datetime.now(UTC)),
    ):
        r = env.http.post(
            f"/v1/disposal-requests/{request_id}/visa",
            content=bad,
            headers={**env.auth("admin"), "Content-Type": "application/xml"},
        )
        assert r.status_code == 422, (bad[:40], r.text)
    assert (
        env.http.get(f"/v1/disposal-requests/{request_id}", headers=env.auth("admin")).json()
        == before
    )
    reply = build_authorization_reply(request_id, "OK", "AD45-VISA-9", datetime.now(UTC))
    r = env.http.post(
        f"/v1/disposal-requests/{request_id}/visa",
        content=reply,
        headers={**env.auth("admin"), "Content-Type": "application/xml"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    assert r.json()["visa"]["reference"] == "AD45-VISA-9"
    assert r.json()["visa"]["source"] == "reply"
    assert "visa-reply.xml" in r.json()["documents"]

    # Confirming before the archives accepted is refused.
    r = env.http.post(f"/v1/disposal-requests/{request_id}/confirm", headers=env.auth("admin"))
    assert r.status_code == 409

    r = env.http.get(
        f"/v1/disposal-requests/{request_id}/transfer.zip", headers=env.auth("archivist")
    )
    assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        names = archive.namelist()
        manifest_name = next(n for n in names if n.endswith(".xml"))
        manifest = archive.read(manifest_name)
    assert b"ArchiveTransfer" in manifest
    transfer_id = f"{request_id}-AT"
    assert transfer_id.encode() in manifest

    def atr(code: ReplyCode, request_identifier: str) -> bytes:
        return build_transfer_reply(
            TransferReplyInput(
                message_identifier="AD45-ATR-1",
                message_request_identifier=request_identifier,
                date=datetime.now(UTC),
                reply_code=code,
                archival_agency="AD45",
                transferring_agency="GIP",
            )
        )

    for bad in (b"garbage", atr(ReplyCode.OK, "someone-else")):
        r = env.http.post(
            f"/v1/disposal-requests/{request_id}/reply",
            content=bad,
            headers={**env.auth("archivist"), "Content-Type": "application/xml"},
        )
        assert r.status_code == 422, r.text
    assert (
        env.http.get(f"/v1/disposal-requests/{request_id}", headers=env.auth("admin")).json()[
            "status"
        ]
        == "approved"
    )
    r = env.http.post(
        f"/v1/disposal-requests/{request_id}/reply",
        content=atr(ReplyCode.OK, transfer_id),
        headers={**env.auth("archivist"), "Content-Type": "application/xml"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "accepted-by-archives"

    wait_locks_lapsed(env, root)
    purged = object_keys(env, set(r.json()["unit_ids"]))
    r = env.http.post(f"/v1/disposal-requests/{request_id}/confirm", headers=env.auth("archivist"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "executed"
    for _offer, entry in stored_objects(env.services):
        assert entry.split("@", 1)[0] not in purged
    tenant = tenant_of(env)
    with env.services.ingest._uow() as uow:
        gone = [uow.archive.get_unit(tenant, u) for u in analyse]
        stone = uow.disposal.tombstone(tenant, next(iter(analyse)))
    assert all(u is not None and u.status == "transferred" for u in gone)
    assert stone is not None and stone.outcome == "transferred"
    certificate = env.http.get(
        f"/v1/disposal-requests/{request_id}/documents/certificate.xml",
        headers=env.auth("auditor"),
    )
    assert certificate.status_code == 200 and b"AD45-VISA-9" in certificate.content
    assert "disposal.transfer_reply_recorded" in entries_of(env, request_id)


@only_stack("production")
def test_execution_refused_while_a_lock_remains_nothing_deleted(
    disposal_env: Env, tmp_path: Path
) -> None:
    env = disposal_env
    root = ingest(env, tmp_path, seed=5, notification="2015-09-01", message="LCK-2015-1")
    r = env.http.post(
        "/v1/disposal-requests", json={"kind": "destroy"}, headers=env.auth("archivist")
    )
    assert r.status_code == 201, r.text
    request_id = r.json()["id"]
    assert (
        post_visa(env, request_id, "admin", decision="approved", reference="V-1").status_code == 200
    )
    wait_locks_lapsed(env, root)
    # One copy is retained a little longer (as an event extending the DUA would).
    target = next(iter(sorted(object_keys(env, set(r.json()["unit_ids"])))))
    offer = next(o for o in env.services.offers if o.name == "ceph-b")
    version = offer.stat(target)
    assert version is not None and version.version_id
    until = offer.lock(  # type: ignore[attr-defined]
        target,
        version_id=version.version_id,
        retain_until=datetime.now(UTC) + timedelta(seconds=12),
    )
    before = stored_objects(env.services)
    r = env.http.post(f"/v1/disposal-requests/{request_id}/execute", headers=env.auth("admin"))
    assert r.status_code == 409, r.text
    blocking = r.json()["blocking"]
    assert [(b["kind"], b["offer"], b["key"]) for b in blocking] == [
        ("retention", "ceph-b", target)
    ]
    assert stored_objects(env.services) == before
    state = env.http.get(f"/v1/disposal-requests/{request_id}", headers=env.auth("admin")).json()
    assert state["status"] == "approved" and state["execution"] is None
    assert "disposal.execution_started" not in entries_of(env, request_id)

    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 1.5)
    r = env.http.post(f"/v1/disposal-requests/{request_id}/execute", headers=env.auth("admin"))
    assert r.status_code == 200, r.text
    assert not any(e.split("@", 1)[0] == target for _, e in stored_objects(env.services))


def test_an_offer_failing_midway_leaves_the_request_executing_and_a_rerun_resumes(
    disposal_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = disposal_env
    root = ingest(env, tmp_path, seed=6, notification="2015-10-01", message="RES-2015-1")
    r = env.http.post(
        "/v1/disposal-requests", json={"kind": "destroy"}, headers=env.auth("archivist")
    )
    assert r.status_code == 201, r.text
    request_id = r.json()["id"]
    unit_ids = set(r.json()["unit_ids"])
    assert (
        post_visa(env, request_id, "admin", decision="approved", reference="V-2").status_code == 200
    )
    wait_locks_lapsed(env, root)
    offer = env.services.offers[-1]
    real_purge = offer.purge
    calls = {"n": 0}

    def flaky(key: str) -> None:
        calls["n"] += 1
        if calls["n"] > 2:
            raise Unavailable(f"offer {offer.name}: connection reset while purging {key}")
        real_purge(key)

    monkeypatch.setattr(offer, "purge", flaky)
    r = env.http.post(f"/v1/disposal-requests/{request_id}/execute", headers=env.auth("admin"))
    assert r.status_code == 503, r.text
    state = env.http.get(f"/v1/disposal-requests/{request_id}", headers=env.auth("admin")).json()
    assert state["status"] == "executing"
    tenant = tenant_of(env)
    with env.services.ingest._uow() as uow:
        # Nothing in the database claims a destruction storage has not confirmed.
        assert all(uow.archive.get_unit(tenant, u).status == "active" for u in unit_ids)  # type: ignore[union-attr]
        assert all(uow.disposal.tombstone(tenant, u) is None for u in unit_ids)
    assert "disposal.execution_interrupted" in entries_of(env, request_id)

    monkeypatch.setattr(offer, "purge", real_purge)
    r = env.http.post(f"/v1/disposal-requests/{request_id}/execute", headers=env.auth("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "executed" and r.json()["certificate"]
    purged = object_keys(env, unit_ids)
    assert not any(e.split("@", 1)[0] in purged for _, e in stored_objects(env.services))


@only_stack("default")
def test_what_is_due_follows_the_clock_and_bad_requests_change_nothing(
    disposal_env: Env, tmp_path: Path
) -> None:
    env = disposal_env
    root = ingest(env, tmp_path, seed=7, notification="2023-05-02", message="CLK-2023-1")
    family = units(env, root)
    offer_unit = next(u for u in family if u.category == "offres.non_retenue")

    def due_ids() -> set[str]:
        got = env.http.get("/v1/disposal-requests/due", headers=env.auth("archivist"))
        assert got.status_code == 200, got.text
        return {u["id"] for u in got.json()["units"]}

    assert offer_unit.id not in due_ids()
    nothing = env.http.post(
        "/v1/disposal-requests", json={"kind": "destroy"}, headers=env.auth("archivist")
    )
    assert nothing.status_code == 409 and "no unit is due" in nothing.json()["detail"]
    not_due = env.http.post(
        "/v1/disposal-requests",
        json={"kind": "destroy", "unit_ids": [offer_unit.id]},
        headers=env.auth("archivist"),
    )
    assert not_due.status_code == 422
    assert "2028-05-02" in not_due.text
    for role, body, status in (
        ("auditor", {"kind": "destroy"}, 403),
        ("archivist", {"kind": "shred"}, 422),
        ("archivist", {"kind": "destroy", "unit_ids": "all"}, 400),
        ("archivist", {"kind": "destroy", "unit_ids": ["au-nope"]}, 422),
    ):
        got = env.http.post("/v1/disposal-requests", json=body, headers=env.auth(role))
        assert got.status_code == status, (role, body, got.text)
    assert env.http.get("/v1/disposal-requests", headers=env.auth()).status_code == 403
    assert env.http.get("/v1/disposal-requests", headers=env.auth("archivist")).json() == {
        "requests": []
    }

    env.clock.advance(years=5, days=1)
    assert offer_unit.id in due_ids()
    contract = next(u for u in family if u.category == "attribution.acte_engagement")
    assert contract.id not in due_ids()  # its DUA waits for the final payment


def test_cli_hold_propose_visa_execute(
    disposal_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = disposal_env
    root = ingest(env, tmp_path, seed=8, notification="2015-11-02", message="CLI-2015-1")
    t = ("--tenant", "GIP Test")
    dce = next(u for u in units(env, root) if u.category == "dce.rc")

    code, out = invoke_cli(
        env,
        monkeypatch,
        "hold",
        "place",
        dce.id,
        "--reason",
        "Enquête",
        "--as",
        "Marie Curie",
        "--json",
        *t,
    )
    assert code == 0, out
    hold_id = json.loads(out)["id"]
    code, out = invoke_cli(env, monkeypatch, "hold", "list", dce.id, "--json", *t)
    assert code == 0 and json.loads(out)["held"] is True
    code, out = invoke_cli(env, monkeypatch, "disposal", "due", "--json", *t)
    assert code == 0 and dce.id not in {u["id"] for u in json.loads(out)["units"]}
    code, out = invoke_cli(
        env, monkeypatch, "hold", "lift", hold_id, "--reason", "Close", "--as", "Paul Langevin", *t
    )
    assert code == 0, out

    code, out = invoke_cli(
        env, monkeypatch, "disposal", "propose", "--as", "Marie Curie", "--json", *t
    )
    assert code == 0, out
    request = json.loads(out)
    assert dce.id in request["unit_ids"]
    code, out = invoke_cli(
        env,
        monkeypatch,
        "disposal",
        "visa",
        request["id"],
        "--reference",
        "V-3",
        "--as",
        "marie  curie",
        *t,
    )
    assert code == 4, out
    assert "proposer-cannot-approve" in out
    reply = tmp_path / "reply.xml"
    reply.write_bytes(build_authorization_reply(request["id"], "OK", "AD45-V-3", datetime.now(UTC)))
    code, out = invoke_cli(
        env,
        monkeypatch,
        "disposal",
        "visa",
        request["id"],
        "--reply",
        str(reply),
        "--as",
        "Paul Langevin",
        *t,
    )
    assert code == 0, out
    assert "approved" in out
    code, out = invoke_cli(
        env,
        monkeypatch,
        "hold",
        "place",
        dce.id,
        "--reason",
        "Audit",
        "--as",
        "Irène",
        "--json",
        *t,
    )
    assert code == 0, out
    second = json.loads(out)["id"]
    code, out = invoke_cli(
        env, monkeypatch, "disposal", "execute", request["id"], "--as", "Paul Langevin", *t
    )
    assert code == 1, out
    assert f"under legal hold {second}" in out
    code, out = invoke_cli(
        env, monkeypatch, "hold", "lift", second, "--reason", "Audit clos", "--as", "Irène", *t
    )
    assert code == 0, out
    wait_locks_lapsed(env, root)
    code, out = invoke_cli(
        env, monkeypatch, "disposal", "execute", request["id"], "--as", "Paul Langevin", *t
    )
    assert code == 0, out
    assert "executed" in out
    certificate = tmp_path / "certificate.pdf"
    code, out = invoke_cli(
        env,
        monkeypatch,
        "disposal",
        "document",
        request["id"],
        "certificate.pdf",
        "-o",
        str(certificate),
        *t,
    )
    assert code == 0, out
    assert certificate.read_bytes().startswith(b"%PDF")
    code, out = invoke_cli(
        env, monkeypatch, "disposal", "execute", request["id"], "--as", "Paul Langevin", *t
    )
    assert code == 1, out


def test_a_dossier_destroyed_whole_loses_its_manifest_token_and_search_entry(
    disposal_env: Env, tmp_path: Path
) -> None:
    env = disposal_env
    meta, _ = make_dossier(tmp_path / "whole", seed=9, message_identifier="WHL-2015-1")
    meta["files"] = [f for f in meta["files"] if f["category"] in DESTROY_CATEGORIES]
    # A procedure declared sans suite: no DECP, every piece on a 5-year Destroy rule.
    meta.pop("decp", None)
    meta["sans_suite"] = True
    meta["events"] = {"sans_suite": "2015-02-10"}
    meta["title"] = "Fourniture de xylophones municipaux"
    r = env.post_transfer(meta, tmp_path / "whole")
    assert r.status_code == 202, r.text
    body = env.wait(r.json()["id"])
    assert body["status"] == "accepted", body
    root = body["archive_unit_id"]

    def found() -> list[str]:
        got = env.http.get("/v1/archive-units?q=xylophones", headers=env.auth("archivist"))
        assert got.status_code == 200, got.text
        return [u["id"] for u in got.json()["items"]]

    assert found() == [root]
    tenant = tenant_of(env)
    with env.services.ingest._uow() as uow:
        package = uow.archive.get_package(tenant, uow.archive.get_unit(tenant, root).package_id)  # type: ignore[union-attr]
    assert package is not None
    r = env.http.post(
        "/v1/disposal-requests", json={"kind": "destroy"}, headers=env.auth("archivist")
    )
    assert r.status_code == 201, r.text
    request_id = r.json()["id"]
    assert root in r.json()["unit_ids"]  # everything under it goes: the dossier node too
    assert (
        post_visa(env, request_id, "admin", decision="approved", reference="V-4").status_code == 200
    )
    wait_locks_lapsed(env, root)
    r = env.http.post(f"/v1/disposal-requests/{request_id}/execute", headers=env.auth("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["execution"]["packages_purged"] == [package.id]
    left = {e.split("@", 1)[0] for _, e in stored_objects(env.services)}
    assert package.manifest_key not in left and package.timestamp_key not in left
    assert not any(k.startswith(f"tenants/{tenant}/packages/{package.id}/") for k in left)
    assert any(k.startswith(f"tenants/{tenant}/disposal/{request_id}/") for k in left)
    assert found() == []
    with env.services.ingest._uow() as uow:
        assert uow.archive.copies_of_package(tenant, package.id) == []
        assert uow.disposal.tombstone(tenant, root) is not None
    # Its manifest and token answer 410 with the tombstone, logged REFUSED, like its content.
    for what, event in (
        ("manifest", "manifest.read"),
        ("timestamp", "timestamp.read"),
        ("versions/1/manifest", "manifest.read"),
        ("versions/1/timestamp", "timestamp.read"),
    ):
        got = env.http.get(f"/v1/archive-units/{root}/{what}", headers=env.auth("auditor"))
        assert got.status_code == 410, (what, got.text)
        assert got.json()["unit_status"] == "destroyed" and "V-4" in got.text, got.text
        with env.services.ingest._uow() as uow:
            last = uow.logbook.for_subject(tenant, root)[-1]
        assert (last.event_type, last.outcome) == (event, "REFUSED"), last


@only_stack("production")
def test_a_hold_covers_documents_added_to_the_dossier_later(
    disposal_env: Env, tmp_path: Path
) -> None:
    env = disposal_env
    root = ingest(env, tmp_path, seed=10, notification="2024-03-01", message="GRW-2024-1")
    r = env.http.post(
        f"/v1/archive-units/{root}/holds",
        json={"reason": "Litige sur l'exécution", "reference": "TA-2026-77"},
        headers=env.auth("archivist"),
    )
    assert r.status_code == 201, r.text
    data = pdf_bytes(title="Avenant n° 1", paragraphs=["Avenant au marché."])
    folder = tmp_path / "avenant"
    (folder / "6-Execution").mkdir(parents=True)
    (folder / "6-Execution/avenant-1.pdf").write_bytes(data)
    metadata = {
        "dossier": root,
        "message_identifier": "GRW-2024-1-ADD",
        "files": [
            {
                "path": "6-Execution/avenant-1.pdf",
                "category": "execution.avenant",
                "title": "Avenant n° 1",
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        ],
    }
    r = env.post_transfer(metadata, folder)
    assert r.status_code == 202, r.text
    assert env.wait(r.json()["id"])["status"] == "accepted"
    tenant = tenant_of(env)
    with env.services.ingest._uow() as uow:
        added = [u for u in uow.archive.units_of_root(tenant, root) if u.title == "Avenant n° 1"]
        package = uow.archive.get_package(tenant, added[0].package_id)
    assert added and package is not None and package.sequence == 2
    keys = object_keys(env, {added[0].id}) | {package.manifest_key, package.timestamp_key}
    # The holds are applied after the package's commit, by the job that stored it.
    deadline = time.monotonic() + 60
    while "hold.storage_applied" not in entries_of(env, root):
        assert time.monotonic() < deadline, entries_of(env, root)
        time.sleep(0.1)
    for store in raw_s3(env):
        for key in keys:
            assert legal_hold_on(store, key), (store.name, key)


@only_stack("default")
def test_a_refused_visa_frees_the_units_and_a_ko_reply_rejects_the_transfer(
    disposal_env: Env, tmp_path: Path
) -> None:
    env = disposal_env
    ingest(env, tmp_path, seed=11, notification="2015-04-01", message="REF-2015-1")
    r = env.http.post(
        "/v1/disposal-requests", json={"kind": "destroy"}, headers=env.auth("archivist")
    )
    assert r.status_code == 201, r.text
    first = r.json()
    refusal = build_authorization_reply(first["id"], "KO", "AD45-REFUS-1", datetime.now(UTC))
    r = env.http.post(
        f"/v1/disposal-requests/{first['id']}/visa",
        content=refusal,
        headers={**env.auth("admin"), "Content-Type": "application/xml"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "refused" and r.json()["visa"]["decision"] == "refused"
    assert (
        env.http.post(
            f"/v1/disposal-requests/{first['id']}/execute", headers=env.auth("admin")
        ).status_code
        == 409
    )
    # A second visa is refused; the units may be proposed again.
    assert (
        post_visa(env, first["id"], "admin", decision="approved", reference="X").status_code == 409
    )
    r = env.http.post(
        "/v1/disposal-requests", json={"kind": "destroy"}, headers=env.auth("archivist")
    )
    assert r.status_code == 201 and set(r.json()["unit_ids"]) == set(first["unit_ids"])
    listed = env.http.get("/v1/disposal-requests?status=refused", headers=env.auth("auditor"))
    assert [x["id"] for x in listed.json()["requests"]] == [first["id"]]

    r = env.http.post(
        "/v1/disposal-requests", json={"kind": "transfer"}, headers=env.auth("archivist")
    )
    assert r.status_code == 201, r.text
    transfer = r.json()["id"]
    assert (
        post_visa(env, transfer, "admin", decision="approved", reference="V-T").status_code == 200
    )
    # A reply before the transfer was exported is out of order.
    ko = build_transfer_reply(
        TransferReplyInput(
            message_identifier="AD45-ATR-KO",
            message_request_identifier=f"{transfer}-AT",
            date=datetime.now(UTC),
            reply_code=ReplyCode.KO,
            archival_agency="AD45",
            transferring_agency="GIP",
            reasons=("Bordereau incomplet",),
        )
    )
    headers = {**env.auth("archivist"), "Content-Type": "application/xml"}
    r = env.http.post(f"/v1/disposal-requests/{transfer}/reply", content=ko, headers=headers)
    assert r.status_code == 409, r.text
    assert (
        env.http.get(
            f"/v1/disposal-requests/{transfer}/transfer.zip", headers=env.auth("archivist")
        ).status_code
        == 200
    )
    r = env.http.post(f"/v1/disposal-requests/{transfer}/reply", content=ko, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rejected-by-archives"
    assert r.json()["transfer"]["reply"]["reply_code"] == "KO"
    r = env.http.post(f"/v1/disposal-requests/{transfer}/confirm", headers=env.auth("admin"))
    assert r.status_code == 409
    # Rejected is closed: its units may go to a new transfer request.
    r = env.http.post(
        "/v1/disposal-requests", json={"kind": "transfer"}, headers=env.auth("archivist")
    )
    assert r.status_code == 201, r.text


@only_stack("production")
def test_a_locked_version_a_repair_superseded_also_blocks_the_execution(
    disposal_env: Env, tmp_path: Path
) -> None:
    env = disposal_env
    root = ingest(env, tmp_path, seed=12, notification="2015-12-01", message="SUP-2015-1")
    r = env.http.post(
        "/v1/disposal-requests", json={"kind": "destroy"}, headers=env.auth("archivist")
    )
    assert r.status_code == 201, r.text
    request_id = r.json()["id"]
    visa = post_visa(env, request_id, "admin", decision="approved", reference="V-5")
    assert visa.status_code == 200
    wait_locks_lapsed(env, root)
    # A repair left an older version of one copy, still retained, recorded as superseded.
    key = sorted(object_keys(env, set(r.json()["unit_ids"])))[0]
    offer = next(o for o in env.services.offers if o.name == "ceph-a")
    scratch = tmp_path / "bad-copy"
    scratch.write_bytes(b"bit rot")
    extra = offer.put_version(  # type: ignore[attr-defined]
        key, scratch, sha256=hashlib.sha256(b"bit rot").hexdigest()
    )
    until = offer.lock(  # type: ignore[attr-defined]
        key, version_id=extra.version_id, retain_until=datetime.now(UTC) + timedelta(seconds=12)
    )
    tenant = tenant_of(env)
    with env.services.ingest._uow() as uow:
        unit = uow.archive.get_unit(tenant, root)
        assert unit is not None
        package_id = unit.package_id
        uow.audit.add_superseded(
            SupersededRecord(
                tenant_id=tenant,
                package_id=package_id,
                offer="ceph-a",
                key=key,
                version_id=extra.version_id,
                sha256=hashlib.sha256(b"bit rot").hexdigest(),
                found_sha256=None,
                reason="corrupt",
                superseded_by=None,
                superseded_at=datetime.now(UTC),
            )
        )
        uow.commit()
    before = stored_objects(env.services)
    r = env.http.post(f"/v1/disposal-requests/{request_id}/execute", headers=env.auth("admin"))
    assert r.status_code == 409, r.text
    assert [(b["kind"], b["key"], b["version_id"]) for b in r.json()["blocking"]] == [
        ("retention", key, extra.version_id)
    ]
    assert stored_objects(env.services) == before
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 1.5)
    r = env.http.post(f"/v1/disposal-requests/{request_id}/execute", headers=env.auth("admin"))
    assert r.status_code == 200, r.text
    assert not any(e.split("@", 1)[0] == key for _, e in stored_objects(env.services))
