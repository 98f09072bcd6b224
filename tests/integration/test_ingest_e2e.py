"""A procurement platform pushes a realistic dossier over HTTP; an archivist gets it back and
anyone can check it with standard tools (openssl ts -verify, sha256)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import jsonschema
from lxml import etree

from tests.fixtures.dossier import make_dossier
from tests.integration.conftest import Env
from tests.reference import decp_schema_path, official_schema

SEDA23 = "fr:gouv:culture:archivesdefrance:seda:v2.3"
NS = {"s": SEDA23}


def test_dossier_end_to_end(env: Env, tmp_path: Path) -> None:
    metadata, _files = make_dossier(tmp_path / "dossier")
    phases = {f["category"].split(".")[0] for f in metadata["files"]}
    assert len(phases) >= 4
    suffixes = {Path(f["path"]).suffix for f in metadata["files"]}
    assert {".pdf", ".docx", ".xlsx", ".zip", ".xml", ".csv"} <= suffixes

    r = env.post_transfer(metadata, tmp_path / "dossier")
    assert r.status_code == 202, r.text
    transfer_id = r.json()["id"]
    assert r.headers["location"] == f"/v1/transfers/{transfer_id}"
    done = env.wait(transfer_id)
    assert done["status"] == "accepted", done
    unit_id = done["archive_unit_id"]

    # The unit: metadata, tree (dossier → phases → documents), objects with digests and formats.
    r = env.http.get(f"/v1/archive-units/{unit_id}", headers=env.auth("archivist"))
    assert r.status_code == 200, r.text
    unit = r.json()
    assert unit["title"] == metadata["title"]
    assert unit["tree"]["level"] == "RecordGrp"
    # The sender's phases, plus the DECP record the service archives as its own document.
    assert len(unit["tree"]["children"]) == len(phases) + 1
    decp_path = "donnees-essentielles/decp.json"
    assert {o["path"] for o in unit["objects"]} == {f["path"] for f in metadata["files"]} | {
        decp_path
    }
    assert unit["pending_rules"], "contract pieces wait for paiement_solde"

    # The manifest validates against the official SEDA 2.3 XSD.
    r = env.http.get(f"/v1/archive-units/{unit_id}/manifest", headers=env.auth("archivist"))
    assert r.status_code == 200
    manifest = r.content
    (tmp_path / "manifest.xml").write_bytes(manifest)
    schema = official_schema("2.3")
    doc = etree.fromstring(manifest)
    assert schema.validate(doc), schema.error_log
    assert hashlib.sha256(manifest).hexdigest() == unit["manifest"]["sha256"]

    # PRONOM ids and MIME types are in the manifest.
    formats = {
        bdo.findtext("s:FileInfo/s:Filename", namespaces=NS): (
            bdo.findtext("s:FormatIdentification/s:MimeType", namespaces=NS),
            bdo.findtext("s:FormatIdentification/s:FormatId", namespaces=NS),
        )
        for bdo in doc.iterfind(".//s:BinaryDataObject", NS)
    }
    assert formats["RC.pdf"][0] == "application/pdf"
    assert formats["RC.pdf"][1] and formats["RC.pdf"][1].startswith("fmt/")
    docx = next(v for k, v in formats.items() if k.endswith(".docx"))
    assert docx == (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "fmt/412",
    )
    xlsx = next(v for k, v in formats.items() if k.endswith(".xlsx"))
    assert xlsx[1] == "fmt/214"

    # The token verifies with the real openssl against the TSA chain the API publishes.
    r = env.http.get(f"/v1/archive-units/{unit_id}/timestamp", headers=env.auth("archivist"))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/timestamp-reply"
    (tmp_path / "token.tsr").write_bytes(r.content)
    r = env.http.get("/v1/tsa/certificates", headers=env.auth("archivist"))
    assert r.status_code == 200
    (tmp_path / "chain.pem").write_bytes(r.content)
    out = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-data",
            str(tmp_path / "manifest.xml"),
            "-in",
            str(tmp_path / "token.tsr"),
            "-CAfile",
            str(tmp_path / "chain.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "Verification: OK" in out.stdout, out.stdout + out.stderr

    # Every downloaded object's SHA-256 equals the manifest's.
    digests = {
        bdo.findtext("s:Uri", namespaces=NS): bdo.findtext("s:MessageDigest", namespaces=NS)
        for bdo in doc.iterfind(".//s:BinaryDataObject", NS)
    }
    for algo in doc.iterfind(".//s:BinaryDataObject/s:MessageDigest", NS):
        assert algo.get("algorithm") == "SHA-256"
    # The producer's platform reads every piece of its own dossier (offers stay closed to the
    # archivist until 25 years after the signature: tests/integration/test_communicability.py).
    for obj in unit["objects"]:
        r = env.http.get(f"/v1/objects/{obj['id']}/content", headers=env.auth("platform"))
        assert r.status_code == 200
        got = hashlib.sha256(r.content).hexdigest()
        assert got == digests[obj["uri"]] == obj["sha256"]
        if obj["path"] == decp_path:
            # A complete DECP 2.0.3 document that keeps the sender's block as sent.
            record = json.loads(r.content)
            assert record == {"marches": {"marche": [metadata["decp"]]}}
            jsonschema.Draft7Validator(json.loads(decp_schema_path().read_text())).validate(record)
            continue
        original = (tmp_path / "dossier" / obj["path"]).read_bytes()
        assert r.content == original
        assert r.headers["etag"] == f'"sha256:{got}"'

    # The reply is a SEDA ArchiveTransferReply, OK, valid against the official XSD.
    r = env.http.get(f"/v1/transfers/{transfer_id}/reply", headers=env.auth())
    assert r.status_code == 200
    reply = etree.fromstring(r.content)
    assert schema.validate(reply), schema.error_log
    assert reply.findtext("s:ReplyCode", namespaces=NS) == "OK"


def test_range_requests_and_search(env: Env, tmp_path: Path) -> None:
    metadata, _ = make_dossier(tmp_path / "d")
    r = env.post_transfer(metadata, tmp_path / "d")
    done = env.wait(r.json()["id"])
    unit_id = done["archive_unit_id"]
    unit = env.http.get(f"/v1/archive-units/{unit_id}", headers=env.auth("archivist")).json()
    obj = next(o for o in unit["objects"] if o["path"].endswith("RC.pdf"))
    data = (tmp_path / "d" / obj["path"]).read_bytes()
    url = f"/v1/objects/{obj['id']}/content"
    r = env.http.get(url, headers={**env.auth("archivist"), "Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.content == data[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(data)}"
    r = env.http.get(url, headers={**env.auth("archivist"), "Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]
    r = env.http.get(url, headers={**env.auth("archivist"), "Range": f"bytes={len(data)}-"})
    assert r.status_code == 416

    word = metadata["title"].split()[-1]
    r = env.http.get("/v1/archive-units", params={"q": word}, headers=env.auth("archivist"))
    assert r.status_code == 200
    assert [i["id"] for i in r.json()["items"]] == [unit_id]
    r = env.http.get(
        "/v1/archive-units", params={"q": "introuvablexyz"}, headers=env.auth("archivist")
    )
    assert r.json()["items"] == []
    cpv = metadata["decp"]["codeCPV"]
    r = env.http.get("/v1/archive-units", params={"cpv": cpv[:2]}, headers=env.auth("archivist"))
    assert [i["id"] for i in r.json()["items"]] == [unit_id]
    notified = metadata["decp"]["dateNotification"]
    r = env.http.get(
        "/v1/archive-units",
        params={
            "notified_from": notified,
            "notified_to": notified,
            "buyer": metadata["organization"],
        },
        headers=env.auth("archivist"),
    )
    assert [i["id"] for i in r.json()["items"]] == [unit_id]
    r = env.http.get(
        "/v1/archive-units", params={"notified_to": "2000-01-01"}, headers=env.auth("archivist")
    )
    assert r.json()["items"] == []
    # Another tenant sees nothing of it.
    r = env.http.get(
        "/v1/archive-units", params={"q": word}, headers=env.auth("archivist", other_tenant=True)
    )
    assert r.json()["items"] == []
    r = env.http.get(
        f"/v1/archive-units/{unit_id}", headers=env.auth("archivist", other_tenant=True)
    )
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


def test_search_paginates_with_a_cursor(env: Env, tmp_path: Path) -> None:
    ids = []
    for n in range(3):
        metadata, _ = make_dossier(tmp_path / f"d{n}", seed=n, message_identifier=f"PAGE-{n}")
        r = env.post_transfer(metadata, tmp_path / f"d{n}")
        ids.append(env.wait(r.json()["id"])["archive_unit_id"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = env.http.get(
            "/v1/archive-units", params=params, headers=env.auth("archivist")
        ).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 3


def test_replay_returns_first_transfer(env: Env, tmp_path: Path) -> None:
    metadata, _ = make_dossier(tmp_path / "d")
    first = env.post_transfer(metadata, tmp_path / "d")
    assert first.status_code == 202
    env.wait(first.json()["id"])
    again = env.post_transfer(metadata, tmp_path / "d")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
