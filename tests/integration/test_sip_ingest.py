"""Foreign SEDA transfers over HTTP (``POST /v1/transfers``, ``application/zip``), on both stacks.

Each example transfer is accepted or rejected as the bare official XSD judges it (the oracle
of ``tests/unit/test_seda_sip.py``); an accepted one round-trips: our manifest revalidates and
keeps every unit's titles, rule ids and descriptive fields, the sender's manifest is an
object of the package. Hostile zips are refused at the door with nothing written; a wrong
digest is a registered transfer answered KO, with nothing stored.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from archive_service.ports import TransferStatus
from tests.fixtures.dossier import BUYER_SIRET
from tests.integration.conftest import OTHER_SIRET, Env, stored_objects
from tests.integration.test_cli_verify import LiveApi, live_api  # noqa: F401 (fixture)
from tests.integration.test_ingest_bad_input import snapshot
from tests.integration.test_ingest_resume import holdings
from tests.reference import seda_examples_dir
from tests.unit.test_seda_sip import oracle_valid
from tests.unit.test_sip_zipsafe import MANIFEST, PDF, build_zip, manifest_for, sip_zip

pytestmark = pytest.mark.reference

ZIP = {"Content-Type": "application/zip"}


def example_zips() -> list[Path]:
    try:
        directory = seda_examples_dir()
    except pytest.skip.Exception:
        return []
    return sorted(directory.rglob("*.zip"))


def post_zip(env: Env, blob: bytes, *, organization: str | None = BUYER_SIRET, **kw: Any) -> Any:
    params = {"organization": organization} if organization else {}
    headers = {**env.auth(**kw), **ZIP}
    return env.http.post("/v1/transfers", content=blob, headers=headers, params=params)


def manifest_of(blob: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return archive.read("manifest.xml")


def units_by_id(xml: bytes) -> dict[str, etree._Element]:
    root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, huge_tree=True))
    return {u.get("id"): u for u in root.iter("{*}ArchiveUnit") if u.get("id")}


def described(unit: etree._Element) -> dict[str, Any]:
    """What must survive: titles, descriptive fields of Content, rule ids of Management."""
    content = unit.find("{*}Content")
    management = unit.find("{*}Management")
    return {
        "content": sorted(
            (etree.QName(e).localname, (e.text or "").strip())
            for e in (content.iter() if content is not None else [])
            if isinstance(e.tag, str) and (e.text or "").strip()
        ),
        "rules": sorted(
            (e.text or "").strip()
            for e in (management.iter("{*}Rule") if management is not None else [])
        ),
    }


@pytest.mark.parametrize("path", example_zips(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_an_example_is_judged_as_the_xsd_judges_it(env: Env, path: Path) -> None:
    blob = path.read_bytes()
    sent = manifest_of(blob)
    expected = oracle_valid(sent)
    r = post_zip(env, blob)
    assert r.status_code == 202, r.text
    transfer = env.wait(r.json()["id"])
    reply = env.http.get(f"/v1/transfers/{transfer['id']}/reply", headers=env.auth())
    assert reply.status_code == 200
    if not expected:
        assert transfer["status"] == "rejected", transfer
        assert transfer["reasons"], transfer
        assert b"KO" in reply.content
        assert any("line " in str(r.get("location")) for r in transfer["reasons"]), transfer
        return
    assert transfer["status"] == "accepted", transfer
    assert b"<ReplyCode>OK</ReplyCode>" in reply.content
    unit_id = transfer["archive_unit_id"]
    ours = env.http.get(f"/v1/archive-units/{unit_id}/manifest", headers=env.auth())
    assert ours.status_code == 200
    assert oracle_valid(ours.content)
    theirs, kept = units_by_id(sent), units_by_id(ours.content)
    for sender_id, unit in theirs.items():
        assert sender_id in kept, sender_id
        assert described(kept[sender_id]) == described(unit), sender_id
    # The sender's manifest, byte for byte, is an object of the package.
    tree = env.http.get(f"/v1/archive-units/{unit_id}", headers=env.auth()).json()
    (received,) = [o for o in tree["objects"] if o["path"] == "manifest.xml"]
    got = env.http.get(received["content_url"], headers=env.auth())
    assert got.status_code == 200
    assert got.content == sent
    # Every file of the zip is an object of the package, byte for byte.
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        files = {i.filename: i for i in archive.infolist() if not i.is_dir()}
        by_path = {o["path"]: o for o in tree["objects"]}
        assert set(files) == set(by_path)
        for name, obj in by_path.items():
            content = env.http.get(obj["content_url"], headers=env.auth())
            assert content.content == archive.read(files[name]), name
    assert snapshot(env)["staging"] == []
    # Titles of the sender's units are searchable.
    title = next((u.findtext("{*}Content/{*}Title") for u in theirs.values()), None)
    if title:
        word = max(title.split(), key=len)
        found = env.http.get("/v1/archive-units", params={"q": word}, headers=env.auth())
        assert found.status_code == 200, found.text
        assert unit_id in {u["id"] for u in found.json()["items"]}, word
    # A replay gives the first transfer back.
    again = post_zip(env, blob)
    assert again.status_code == 200
    assert again.json()["id"] == transfer["id"]


def _encrypted() -> bytes:
    blob = bytearray(sip_zip(("content/secret.bin", b"\x00" * 12 + b"ciphertext")))
    central = blob.rfind(b"PK\x01\x02")
    struct.pack_into("<H", blob, central + 8, struct.unpack_from("<H", blob, central + 8)[0] | 1)
    local = struct.unpack_from("<I", blob, central + 42)[0]
    struct.pack_into("<H", blob, local + 6, struct.unpack_from("<H", blob, local + 6)[0] | 1)
    return bytes(blob)


def _symlink() -> bytes:
    link = zipfile.ZipInfo("content/link")
    link.external_attr = (0o120777 << 16) | 0
    return sip_zip((link, b"/etc/passwd"))


HOSTILE = {
    "traversal": (lambda: sip_zip(("../evil.txt", b"x")), 422),
    "absolute": (lambda: sip_zip(("/etc/evil", b"x")), 422),
    "symlink": (_symlink, 422),
    "duplicate": (lambda: sip_zip(("content/A.PDF", b"x")), 422),
    "encrypted": (_encrypted, 422),
    "bomb": (lambda: sip_zip(("content/zeros.bin", b"\x00" * (8 * 1024**2))), 422),
    "not-a-zip": (lambda: b"PK\x03\x04 this is not a zip", 422),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_zip_is_refused_with_nothing_written(env: Env, case: str) -> None:
    make, status = HOSTILE[case]
    before = snapshot(env)
    r = post_zip(env, make())
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["issues"], r.json()
    assert snapshot(env) == before


def test_a_zip_beyond_the_size_limit_is_413(env: Env) -> None:
    env.settings.__dict__["sip_max_zip_size"] = 1024
    before = snapshot(env)
    r = post_zip(env, sip_zip(("content/big.bin", bytes(range(256)) * 16)))
    assert r.status_code == 413, r.text
    assert snapshot(env) == before


def test_a_wrong_digest_is_a_ko_listing_it_with_nothing_stored(env: Env) -> None:
    wrong = manifest_for(PDF).replace(b"HOSTILE-1", b"DIGEST-1")
    digest_at = wrong.index(b'algorithm="SHA-256">') + len(b'algorithm="SHA-256">')
    wrong = wrong[:digest_at] + b"0" * 64 + wrong[digest_at + 64 :]
    blob = build_zip([("manifest.xml", wrong), ("content/a.pdf", PDF)])
    before = snapshot(env)
    r = post_zip(env, blob)
    assert r.status_code == 202, r.text
    transfer = env.wait(r.json()["id"])
    assert transfer["status"] == "rejected"
    assert [x["code"] for x in transfer["reasons"]] == ["sip-digest-mismatch"]
    assert "line " in transfer["reasons"][0]["location"]
    reply = env.http.get(f"/v1/transfers/{transfer['id']}/reply", headers=env.auth())
    assert b"KO" in reply.content
    assert b"sip-digest-mismatch" in reply.content
    after = snapshot(env)
    assert after["storage"] == before["storage"]
    assert after["staging"] == before["staging"]


def test_an_organization_the_client_does_not_serve_is_refused(env: Env) -> None:
    sent = MANIFEST.replace("HOSTILE-1", "ORG-1")
    blob = build_zip([("manifest.xml", sent.format(digest="0" * 64, size=1).encode())])
    before = snapshot(env)
    # That tenant has no such organization.
    r = post_zip(env, blob, organization=OTHER_SIRET, other_tenant=True)
    assert r.status_code == 403, r.text
    r = post_zip(env, blob, organization=None)  # names none at all
    assert r.status_code == 403, r.text
    assert snapshot(env) == before


def _example(name: str) -> Path:
    found = [p for p in example_zips() if p.name == name]
    if not found:
        pytest.skip(f"no example {name}")
    return found[0]


def test_the_cli_ingests_a_sip_against_a_live_server(
    live_api: LiveApi,  # noqa: F811 (the fixture of test_cli_verify)
    tmp_path: Path,
) -> None:
    example = _example("WARNING_SIP_mail_Seda2.3.zip")
    run = live_api.run("ingest-sip", example, "--organization", BUYER_SIRET, "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    transfer = json.loads(run.stdout)
    assert transfer["status"] == "accepted", transfer
    assert transfer["archive_unit_id"]
    replay = live_api.run("ingest-sip", example, "--organization", BUYER_SIRET, "--json")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert json.loads(replay.stdout)["id"] == transfer["id"]

    wrong = manifest_for(PDF).replace(b"HOSTILE-1", b"CLI-DIGEST-1")
    at = wrong.index(b'algorithm="SHA-256">') + len(b'algorithm="SHA-256">')
    bad = tmp_path / "bad.zip"
    bad.write_bytes(
        build_zip(
            [("manifest.xml", wrong[:at] + b"0" * 64 + wrong[at + 64 :]), ("content/a.pdf", PDF)]
        )
    )
    ko = live_api.run("ingest-sip", bad, "--organization", BUYER_SIRET, "--json")
    assert ko.returncode == 1, ko.stdout + ko.stderr
    assert json.loads(ko.stdout)["status"] == "rejected"
    assert "sip-digest-mismatch" in ko.stderr

    hostile = tmp_path / "hostile.zip"
    hostile.write_bytes(sip_zip(("../evil.txt", b"x")))
    refused = live_api.run("ingest-sip", hostile, "--organization", BUYER_SIRET)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "zip-" in refused.stdout + refused.stderr


def test_a_job_that_crashed_before_the_commit_reads_the_staged_zip_again(env: Env) -> None:
    """The job takes the transfer id only: after a crash, the next run re-reads the staged zip,
    re-extracts its files and completes with the bytes the first run stored."""
    example = _example("WARNING_SIP_mail_Seda2.3.zip")
    sip, ingest = env.services.sip, env.services.ingest
    submitted: list[str] = []
    runner = sip._runner
    sip._runner = type("Hold", (), {"submit": lambda _s, _j, i: submitted.append(i)})()
    try:
        r = post_zip(env, example.read_bytes())
        assert r.status_code == 202, r.text
    finally:
        sip._runner = runner
    (transfer_id,) = submitted
    real_commit = ingest.commit_records

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("power cut just before the commit")

    ingest.commit_records = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        ingest.process(transfer_id)
    written = holdings(env)
    assert any(key.endswith("/manifest.xml") for _offer, key in written)
    ingest.commit_records = real_commit  # type: ignore[method-assign]
    assert ingest.process(transfer_id) is TransferStatus.ACCEPTED
    after = holdings(env)
    for key, state in written.items():
        assert after[key] == state, key
    assert len(stored_objects(env.services)) == len(after)
    body = env.http.get(f"/v1/transfers/{transfer_id}", headers=env.auth()).json()
    assert body["status"] == "accepted"
    assert snapshot(env)["staging"] == []


def test_a_message_identifier_reused_with_another_zip_is_409(env: Env) -> None:
    first = post_zip(env, sip_zip())
    assert first.status_code == 202, first.text
    assert env.wait(first.json()["id"])["status"] == "accepted"
    before = snapshot(env)
    other = post_zip(env, sip_zip(data=PDF + b"another version\n"))
    assert other.status_code == 409, other.text
    assert other.json()["issues"][0]["code"] == "message-identifier-reused"
    refused = post_zip(env, sip_zip(), role="auditor")
    assert refused.status_code == 403, refused.text
    assert snapshot(env) == before
