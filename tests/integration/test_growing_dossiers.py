"""Growing dossiers (issue 5 item 2), on both stacks: a dossier archived once, then added to
(an avenant, a DGD) through ``POST /v1/transfers`` with ``"dossier"`` in the metadata, keeps
one identity with a version per package; each version has its own manifest (valid against the
official XSD) and its own token over it; refused additions leave nothing behind."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

from lxml import etree
from sqlalchemy import text, update

from archive_service.db import tables as t
from tests.fixtures.dossier import BUYER_SIRET, make_small_dossier, pdf_bytes
from tests.integration.conftest import OTHER_SIRET, Env, post_transfer
from tests.integration.test_cli_verify import LiveApi, live_api  # noqa: F401 (fixture)
from tests.integration.test_ingest_bad_input import snapshot
from tests.reference import official_schema

SEDA = {"2.3": "fr:gouv:culture:archivesdefrance:seda:v2.3"}
NS = {"s": SEDA["2.3"]}


def archive_first(env: Env, tmp_path: Path, n_files: int = 5, name: str = "d") -> str:
    """A dossier of ``n_files`` documents (5: no execution phase; 14: one), archived."""
    metadata, _ = make_small_dossier(
        tmp_path / name, n_files, sizes=(2_000, 4_000), message_identifier=f"GROW-{name}"
    )
    r = env.post_transfer(metadata, tmp_path / name)
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    unit_id: str = done["archive_unit_id"]
    return unit_id


def addition(
    tmp_path: Path,
    dossier: str,
    name: str,
    documents: list[tuple[str, str, str]],
    **extra: Any,
) -> tuple[dict[str, Any], Path]:
    """Metadata and files of an addition: ``documents`` are (path, category, title), each a
    real PDF."""
    root = tmp_path / name
    files = []
    for path, category, title in documents:
        data = pdf_bytes(title=title, paragraphs=[f"{title} — pièce ajoutée au dossier."])
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
        files.append(
            {
                "path": path,
                "category": category,
                "title": title,
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    return {"dossier": dossier, "message_identifier": f"ADD-{name}", "files": files, **extra}, root


def add(env: Env, metadata: dict[str, Any], root: Path) -> dict[str, Any]:
    r = env.post_transfer(metadata, root)
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    return done


def get(env: Env, path: str, role: str = "archivist", **kw: Any) -> Any:
    r = env.http.get(path, headers=env.auth(role), **kw)
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r


def verify_token(tmp_path: Path, manifest: bytes, token: bytes, chain: bytes, tag: str) -> None:
    (tmp_path / f"{tag}.xml").write_bytes(manifest)
    (tmp_path / f"{tag}.tsr").write_bytes(token)
    (tmp_path / "chain.pem").write_bytes(chain)
    out = subprocess.run(
        ["openssl", "ts", "-verify", "-data", str(tmp_path / f"{tag}.xml"), "-in",
         str(tmp_path / f"{tag}.tsr"), "-CAfile", str(tmp_path / "chain.pem")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0 and "Verification: OK" in out.stdout, out.stdout + out.stderr


def tree_titles(node: dict[str, Any]) -> dict[str, Any]:
    return {c["title"]: c for c in node["children"]}


def test_a_dossier_grows_by_additions_with_one_identity(env: Env, tmp_path: Path) -> None:
    root_id = archive_first(env, tmp_path)
    first = get(env, f"/v1/archive-units/{root_id}").json()
    assert "Exécution" not in tree_titles(first["tree"])
    phase_id = first["tree"]["children"][0]["id"]

    # 1. An avenant, naming the dossier by one of its phases: a new execution phase under it.
    meta1, dir1 = addition(
        tmp_path,
        phase_id,
        "avenant",
        [("8-Execution/avenant-1.pdf", "execution.avenant", "Avenant n°1 bleuet")],
    )
    done1 = add(env, meta1, dir1)
    assert done1["archive_unit_id"] == root_id
    # 2. The DGD, with the events of the end of the contract: under that same phase.
    meta2, dir2 = addition(
        tmp_path,
        root_id,
        "dgd",
        [("8-Execution/dgd.pdf", "execution.dgd", "Décompte général définitif coquelicot")],
        events={"reception": "2025-03-01", "paiement_solde": "2025-06-30"},
    )
    done2 = add(env, meta2, dir2)
    assert done2["archive_unit_id"] == root_id

    # One identity: the whole tree under the same root, one execution phase holding both.
    whole = get(env, f"/v1/archive-units/{root_id}").json()
    phases = tree_titles(whole["tree"])
    execution = phases["Exécution"]
    assert {c["title"] for c in execution["children"]} == {
        "Avenant n°1 bleuet",
        "Décompte général définitif coquelicot",
    }
    paths = {o["path"] for o in whole["objects"]}
    assert {"8-Execution/avenant-1.pdf", "8-Execution/dgd.pdf"} <= paths
    assert {o["path"] for o in first["objects"]} <= paths
    dgd = next(c for c in execution["children"] if c["title"].startswith("Décompte"))
    assert dgd["category"] == "execution.dgd"

    # Versions 1..3, each its own package, manifest and token.
    history = get(env, f"/v1/archive-units/{dgd['id']}/versions").json()
    assert history["dossier_id"] == root_id
    versions = history["versions"]
    assert [v["sequence"] for v in versions] == [1, 2, 3]
    assert len({v["package_id"] for v in versions}) == 3
    assert [v["message_identifier"] for v in versions] == ["GROW-d", "ADD-avenant", "ADD-dgd"]
    assert [v["transfer_id"] for v in versions[1:]] == [done1["id"], done2["id"]]
    assert {o["path"] for o in versions[1]["objects"]} == {"8-Execution/avenant-1.pdf"}
    assert {u["title"] for u in versions[1]["units"]} == {"Exécution", "Avenant n°1 bleuet"}
    assert {u["title"] for u in versions[2]["units"]} == {"Décompte général définitif coquelicot"}
    assert {o["path"] for o in versions[2]["objects"]} == {"8-Execution/dgd.pdf"}

    chain = get(env, "/v1/tsa/certificates").content
    schema = official_schema("2.3")
    for v in versions:
        n = v["sequence"]
        manifest = get(env, f"/v1/archive-units/{root_id}/versions/{n}/manifest").content
        assert hashlib.sha256(manifest).hexdigest() == v["manifest_sha256"]
        doc = etree.fromstring(manifest)
        assert schema.validate(doc), schema.error_log
        token = get(env, f"/v1/archive-units/{root_id}/versions/{n}/timestamp").content
        verify_token(tmp_path, manifest, token, chain, f"v{n}")
        top = doc.find("s:DataObjectPackage/s:DescriptiveMetadata/s:ArchiveUnit", NS)
        assert top is not None and top.get("id") == root_id
        if n > 1:
            # The existing dossier is referred to by its SystemId, not described again.
            assert top.findtext("s:Content/s:SystemId", namespaces=NS) == root_id
            assert top.find("s:Management", NS) is None
    v3 = etree.fromstring(get(env, f"/v1/archive-units/{root_id}/versions/3/manifest").content)
    phase = v3.find(".//s:DescriptiveMetadata/s:ArchiveUnit/s:ArchiveUnit", NS)
    assert phase is not None and phase.get("id") == execution["id"]
    assert phase.findtext("s:Content/s:SystemId", namespaces=NS) == execution["id"]
    # The unit's own manifest stays its package's (GET …/manifest unchanged).
    own = get(env, f"/v1/archive-units/{dgd['id']}/manifest").content
    assert hashlib.sha256(own).hexdigest() == versions[2]["manifest_sha256"]

    # Search finds the dossier by the title of an added document.
    hits = get(env, "/v1/archive-units", params={"q": "coquelicot"}).json()["items"]
    assert [h["id"] for h in hits] == [root_id]

    # The logbook ties each addition to the dossier and its sequence.
    with env.services.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT details FROM logbook_entries WHERE event_type = 'transfer.accepted' "
                "AND subject_id = :root ORDER BY id"
            ),
            {"root": root_id},
        ).all()
    details = [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]
    assert [d.get("sequence") for d in details] == [None, 2, 3]
    assert all(d.get("dossier_id") == root_id for d in details[1:])

    # A platform of another tenant does not see the versions.
    r = env.http.get(f"/v1/archive-units/{root_id}/versions", headers=env.auth(other_tenant=True))
    assert r.status_code == 404
    r = env.http.get(f"/v1/archive-units/{root_id}/versions/4/manifest", headers=env.auth())
    assert r.status_code == 404
    # Nor does a platform of the same tenant transferring for another buyer (logged refused).
    stranger = {"Authorization": f"Bearer {stranger_platform(env)}"}
    for path in ("versions", "versions/2/manifest", "versions/2/timestamp"):
        r = env.http.get(f"/v1/archive-units/{dgd['id']}/{path}", headers=stranger)
        assert r.status_code == 404, (path, r.text)
    with env.services.engine.connect() as conn:
        refused = conn.execute(
            text(
                "SELECT event_type FROM logbook_entries WHERE outcome = 'REFUSED' "
                "AND subject_id = :unit ORDER BY id"
            ),
            {"unit": dgd["id"]},
        ).all()
    assert [r[0] for r in refused] == ["dossier_versions.read", "manifest.read", "timestamp.read"]


def stranger_platform(env: Env) -> str:
    """The key of a platform of the same tenant that transfers for the other buyer only."""
    keys = env.services.tenancy.bootstrap("GIP Test", [f"{OTHER_SIRET}:Autre acheteur"]).keys
    return next(k.key for k in keys if k.role.value == "platform")


def settled(env: Env) -> dict[str, Any]:
    """The snapshot once the last job is done: a transfer is answered accepted at its commit,
    and its job then empties its staging directory (and runs the dossier listeners)."""
    previous = snapshot(env)
    for _ in range(100):
        time.sleep(0.1)
        current = snapshot(env)
        if current == previous:
            return current
        previous = current
    raise AssertionError("the service never settled")


def test_refused_additions_change_nothing(env: Env, tmp_path: Path) -> None:
    root_id = archive_first(env, tmp_path, n_files=14)
    first = get(env, f"/v1/archive-units/{root_id}").json()
    existing = sorted(o["path"] for o in first["objects"])[0]

    def refused(
        metadata: dict[str, Any], files: Path, code: str, *, other_tenant: bool = False
    ) -> None:
        before = settled(env)
        r = post_transfer(env.http, metadata, files, headers=env.auth(other_tenant=other_tenant))
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert code in {i["code"] for i in r.json().get("issues", [])}, r.text
        assert snapshot(env) == before

    doc = [("8-Execution/avenant-2.pdf", "execution.avenant", "Avenant n°2")]
    meta, files = addition(tmp_path, "au-does-not-exist", "unknown", doc)
    refused(meta, files, "dossier-unknown")
    # Another tenant's dossier is unknown, exactly like a missing one (nothing leaks).
    meta, files = addition(tmp_path, root_id, "tenant", doc)
    refused(meta, files, "dossier-unknown", other_tenant=True)
    # A platform transferring for another buyer does not see the dossier: unknown to it.
    before = settled(env)
    r = post_transfer(
        env.http, meta, files, headers={"Authorization": f"Bearer {stranger_platform(env)}"}
    )
    assert r.status_code == 422 and "dossier-unknown" in r.text, r.text
    after = snapshot(env)
    # (bootstrapping its key wrote its own rows; nothing else changed)
    assert after["storage"] == before["storage"] and after["staging"] == before["staging"]
    for table in ("transfers", "packages", "archive_units", "data_objects", "stored_copies"):
        assert after["rows"][table] == before["rows"][table], table
    meta, files = addition(tmp_path, root_id, "org", doc, organization=OTHER_SIRET)
    refused(meta, files, "organization-mismatch")
    meta, files = addition(
        tmp_path, root_id, "dup", [(existing, "execution.avenant", "Même chemin")]
    )
    refused(meta, files, "path-exists")
    meta, files = addition(tmp_path, root_id, "title", doc, title="Un autre dossier")
    refused(meta, files, "not-allowed-in-addition")
    meta, files = addition(tmp_path, root_id, "event", doc, events={"notification": "1999-01-01"})
    refused(meta, files, "event-conflict")
    # A date recorded through the events API binds later transfers as much as the first
    # transfer's: an addition dating the réception otherwise is refused, not a silent change.
    r = env.http.post(
        f"/v1/archive-units/{root_id}/events",
        json={"event": "reception", "date": "2024-06-03"},
        headers=env.auth("archivist"),
    )
    assert r.status_code == 201, r.text
    meta, files = addition(tmp_path, root_id, "recep", doc, events={"reception": "2024-07-01"})
    refused(meta, files, "event-conflict")
    # A destroyed dossier takes nothing more.
    with env.services.engine.begin() as conn:
        conn.execute(
            update(t.ArchiveUnit).where(t.ArchiveUnit.id == root_id).values(status="destroyed")
        )
    meta, files = addition(tmp_path, root_id, "closed", doc)
    refused(meta, files, "dossier-not-active")
    with env.services.engine.begin() as conn:
        conn.execute(
            update(t.ArchiveUnit).where(t.ArchiveUnit.id == root_id).values(status="active")
        )
    # The same addition, now acceptable, goes in under the existing execution phase.
    meta, files = addition(tmp_path, root_id, "ok", doc)
    add(env, meta, files)
    whole = get(env, f"/v1/archive-units/{root_id}").json()
    execution = tree_titles(whole["tree"])["Exécution"]
    assert "Avenant n°2" in {c["title"] for c in execution["children"]}
    assert len([c for c in whole["tree"]["children"] if c["title"] == "Exécution"]) == 1


def test_evidence_of_a_grown_dossier_covers_every_package(env: Env, tmp_path: Path) -> None:
    from tests.integration.test_evidence import archive_verify, failed, fetch

    root_id = archive_first(env, tmp_path, n_files=14)
    meta1, dir1 = addition(
        tmp_path,
        root_id,
        "avenant",
        [("8-Execution/avenant-1.pdf", "execution.avenant", "Avenant n°1")],
    )
    add(env, meta1, dir1)
    meta2, dir2 = addition(
        tmp_path, root_id, "dgd", [("8-Execution/dgd.pdf", "execution.dgd", "DGD")]
    )
    add(env, meta2, dir2)
    r = post_zip(env, sip_addition(root_id, "Ordre de service n°2", "SIP-EVIDENCE"))
    assert r.status_code == 202, r.text
    assert env.wait(r.json()["id"])["status"] == "accepted"
    versions = get(env, f"/v1/archive-units/{root_id}/versions").json()["versions"]
    assert len(versions) == 4
    all_objects = {o["sha256"] for v in versions for o in v["objects"]}

    data = fetch(env, root_id)
    bundle = tmp_path / "evidence.zip"
    bundle.write_bytes(data)
    code, report, text_out = archive_verify(bundle)
    assert code == 0, text_out
    assert not failed(report)
    names = {c["name"] for c in report["checks"]}
    # Each later package is checked on its own: token over its manifest, its logbook entries.
    assert any(n.startswith("v2 ") for n in names) and any(n.startswith("v3 9.5") for n in names)

    with zipfile.ZipFile(bundle) as zf:
        index = json.loads(zf.read("bundle.json"))
        assert [p["sequence"] for p in index["packages"]] == [1, 2, 3, 4]
        html = zf.read("report.html").decode()
        assert "Versions du dossier (4 paquets)" in html
        assert all(p["manifest_sha256"] in html for p in index["packages"])
        sums = {line.split()[0] for line in zf.read("SHA256SUMS").decode().splitlines()}
        assert sums == all_objects
        for p in index["packages"]:
            manifest = zf.read(p["manifest"])
            assert hashlib.sha256(manifest).hexdigest() == p["manifest_sha256"]
            zf.read(p["timestamp"])

    # A document destroyed since (disposal with a visa): listed apart, out of the sums; the
    # bundle still verifies.
    avenant = versions[1]["objects"][0]
    with env.services.engine.begin() as conn:
        conn.execute(
            update(t.ArchiveUnit)
            .where(t.ArchiveUnit.id == avenant["archive_unit_id"])
            .values(status="destroyed")
        )
    after = tmp_path / "after.zip"
    after.write_bytes(fetch(env, root_id))
    code, report, text_out = archive_verify(after)
    assert code == 0, text_out
    with zipfile.ZipFile(after) as zf:
        index = json.loads(zf.read("bundle.json"))
        assert [(d["sha256"], d["status"]) for d in index["destroyed"]] == [
            (avenant["sha256"], "destroyed")
        ]
        sums = {line.split()[0] for line in zf.read("SHA256SUMS").decode().splitlines()}
        assert sums == all_objects - {avenant["sha256"]}

    # A bundle whose later package's token was swapped for the first's fails, naming it.
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(forged, "w") as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename == "packages/3/timestamp.tsr":
                body = src.read("timestamp.tsr")
            dst.writestr(item.filename, body)
    code, report, _ = archive_verify(forged)
    assert code != 0
    assert any(name.startswith("v3 ") for name, _subject in failed(report)), failed(report)


SIP_ADDITION = """<?xml version="1.0" encoding="UTF-8"?>
<ArchiveTransfer xmlns="fr:gouv:culture:archivesdefrance:seda:v2.3">
  <Comment>Pièces d'exécution envoyées par le profil acheteur</Comment>
  <Date>2025-07-01T10:00:00</Date>
  <MessageIdentifier>{message}</MessageIdentifier>
  <CodeListVersions/>
  <DataObjectPackage>
    <DataObjectGroup id="og1">
      <BinaryDataObject id="bdo1">
        <Uri>content/os-2.pdf</Uri>
        <MessageDigest algorithm="SHA-256">{digest}</MessageDigest>
        <Size>{size}</Size>
        <FileInfo><Filename>os-2.pdf</Filename></FileInfo>
      </BinaryDataObject>
    </DataObjectGroup>
    <DescriptiveMetadata>
      <ArchiveUnit id="existing">
        {management}<Content>
          <DescriptionLevel>SubGrp</DescriptionLevel>
          <Title>Exécution</Title>
          {system_id}
        </Content>
        <ArchiveUnit id="os2">
          <Content>
            <DescriptionLevel>Item</DescriptionLevel>
            <Title>{title}</Title>
          </Content>
          <DataObjectReference><DataObjectGroupReferenceId>og1</DataObjectGroupReferenceId></DataObjectReference>
        </ArchiveUnit>
      </ArchiveUnit>
    </DescriptiveMetadata>
    <ManagementMetadata/>
  </DataObjectPackage>
  <ArchivalAgency><Identifier>GIP</Identifier></ArchivalAgency>
  <TransferringAgency><Identifier>PROFIL-ACHETEUR</Identifier></TransferringAgency>
</ArchiveTransfer>
"""


def sip_addition(
    unit_id: str | None, title: str, message: str, *, update_operation: bool = False
) -> bytes:
    """A SEDA 2.3 zip adding one real PDF under our unit ``unit_id``: named by
    ``Content/SystemId`` (what the official XSD allows), or by Vitam's
    ``Management/UpdateOperation/SystemId`` (which the bare official XSD refuses)."""
    data = pdf_bytes(title=title, paragraphs=[f"{title} — envoyé par SEDA."])
    if update_operation:
        operation = f"<UpdateOperation><SystemId>{unit_id}</SystemId></UpdateOperation>"
        management = f"<Management>{operation}</Management>"
        system_id = ""
    else:
        management = ""
        system_id = f"<SystemId>{unit_id}</SystemId>" if unit_id is not None else ""
    manifest = SIP_ADDITION.format(
        message=message,
        digest=hashlib.sha256(data).hexdigest(),
        size=len(data),
        management=management,
        system_id=system_id,
        title=title,
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.xml", manifest.encode())
        archive.writestr("content/os-2.pdf", data)
    return buffer.getvalue()


def post_zip(env: Env, blob: bytes, **auth: Any) -> Any:
    return env.http.post(
        "/v1/transfers",
        content=blob,
        headers={**env.auth(**auth), "Content-Type": "application/zip"},
        params={"organization": BUYER_SIRET},
    )


def test_a_seda_zip_naming_an_archived_unit_by_systemid_adds_to_its_dossier(
    env: Env, tmp_path: Path
) -> None:
    root_id = archive_first(env, tmp_path, n_files=14)
    first = get(env, f"/v1/archive-units/{root_id}").json()
    execution = tree_titles(first["tree"])["Exécution"]

    r = post_zip(env, sip_addition(execution["id"], "Ordre de service n°2 pivoine", "SIP-ADD-1"))
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    assert done["archive_unit_id"] == root_id

    whole = get(env, f"/v1/archive-units/{root_id}").json()
    phases = [c for c in whole["tree"]["children"] if c["title"] == "Exécution"]
    assert len(phases) == 1
    titles = {c["title"] for c in phases[0]["children"]}
    assert "Ordre de service n°2 pivoine" in titles
    assert {o["path"] for o in whole["objects"]} >= {"content/os-2.pdf"}
    versions = get(env, f"/v1/archive-units/{root_id}/versions").json()["versions"]
    assert [v["sequence"] for v in versions] == [1, 2]
    added = versions[1]
    assert {o["path"] for o in added["objects"]} == {"content/os-2.pdf", "manifest.xml"}
    manifest = get(env, f"/v1/archive-units/{root_id}/versions/2/manifest").content
    schema = official_schema("2.3")
    assert schema.validate(etree.fromstring(manifest)), schema.error_log
    token = get(env, f"/v1/archive-units/{root_id}/versions/2/timestamp").content
    verify_token(tmp_path, manifest, token, get(env, "/v1/tsa/certificates").content, "sip")
    hits = get(env, "/v1/archive-units", params={"q": "pivoine"}).json()["items"]
    assert [h["id"] for h in hits] == [root_id]

    # Refused with nothing written: a unit unknown here, another tenant's, a closed dossier.
    for blob, auth, code in (
        (sip_addition("au-nowhere", "X", "SIP-ADD-2"), {}, "dossier-unknown"),
        (sip_addition(root_id, "X", "SIP-ADD-3"), {"other_tenant": True}, "dossier-unknown"),
    ):
        before = settled(env)
        r = post_zip(env, blob, **auth)
        assert r.status_code == 422, r.text
        assert code in {i["code"] for i in r.json()["issues"]}
        assert snapshot(env) == before
    with env.services.engine.begin() as conn:
        conn.execute(
            update(t.ArchiveUnit)
            .where(t.ArchiveUnit.id == execution["id"])
            .values(status="destroyed")
        )
    before = settled(env)
    r = post_zip(env, sip_addition(execution["id"], "X", "SIP-ADD-4"))
    assert r.status_code == 422 and "dossier-not-active" in r.text, r.text
    assert snapshot(env) == before

    # A dossier that came from a foreign transfer takes additions by SEDA only: its first
    # transfer has no procurement metadata for the référentiel to work with.
    r = post_zip(env, sip_addition(None, "Pièce", "SIP-NEW-DOSSIER"))
    assert r.status_code == 202, r.text
    foreign = env.wait(r.json()["id"])
    assert foreign["status"] == "accepted"
    meta, files = addition(
        tmp_path,
        foreign["archive_unit_id"],
        "onto-foreign",
        [("8-Execution/x.pdf", "execution.avenant", "X")],
    )
    before = settled(env)
    r = env.post_transfer(meta, files)
    assert r.status_code == 422 and "dossier-not-extendable" in r.text, r.text
    assert snapshot(env) == before

    # Vitam's Management/UpdateOperation is not in the official 2.3 XSD: judged as it judges.
    r = post_zip(env, sip_addition(root_id, "Y", "SIP-ADD-5", update_operation=True))
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "rejected"
    assert "UpdateOperation" in json.dumps(done["reasons"])


def test_additions_sent_together_get_their_own_sequence(env: Env, tmp_path: Path) -> None:
    root_id = archive_first(env, tmp_path)
    ids = []
    for n in range(3):
        meta, files = addition(
            tmp_path,
            root_id,
            f"together-{n}",
            [(f"8-Execution/acompte-{n}.pdf", "execution.acompte", f"État d'acompte n°{n}")],
        )
        r = env.post_transfer(meta, files)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    assert all(env.wait(i)["status"] == "accepted" for i in ids)
    versions = get(env, f"/v1/archive-units/{root_id}/versions").json()["versions"]
    assert [v["sequence"] for v in versions] == [1, 2, 3, 4]
    assert sorted(v["transfer_id"] for v in versions[1:]) == sorted(ids)
    whole = get(env, f"/v1/archive-units/{root_id}").json()
    assert len([c for c in whole["tree"]["children"] if c["title"] == "Exécution"]) == 1


def test_the_cli_adds_to_a_dossier_against_a_live_server(
    live_api: LiveApi,  # noqa: F811 (the fixture of test_cli_verify)
    tmp_path: Path,
) -> None:
    metadata, _ = make_small_dossier(
        tmp_path / "first", 3, sizes=(2_000, 4_000), message_identifier="CLI-GROW-1"
    )
    (tmp_path / "first.json").write_text(json.dumps(metadata), encoding="utf-8")
    run = live_api.run("ingest", tmp_path / "first", "-m", tmp_path / "first.json", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    root_id = json.loads(run.stdout)["archive_unit_id"]

    meta, files = addition(
        tmp_path, "ignored", "cli", [("8-Execution/dgd.pdf", "execution.dgd", "DGD")]
    )
    del meta["dossier"]
    (tmp_path / "add.json").write_text(json.dumps(meta), encoding="utf-8")
    run = live_api.run("ingest", files, "-m", tmp_path / "add.json", "--dossier", root_id, "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    transfer = json.loads(run.stdout)
    assert transfer["status"] == "accepted" and transfer["archive_unit_id"] == root_id

    (tmp_path / "other.json").write_text(
        json.dumps({**meta, "message_identifier": "ADD-cli-2"}), encoding="utf-8"
    )
    refused = live_api.run(
        "ingest", files, "-m", tmp_path / "other.json", "--dossier", "au-nowhere"
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "dossier-unknown" in refused.stdout + refused.stderr
    clash = live_api.run(
        "ingest",
        files,
        "-m",
        tmp_path / "other.json",
        "--dossier",
        root_id,
    )
    assert clash.returncode == 2, clash.stdout + clash.stderr
    assert "path-exists" in clash.stdout + clash.stderr
