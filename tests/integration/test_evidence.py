"""Evidence bundles and ``archive-verify`` (issue 4 items 5 and 6), on both stacks.

A bundle made by the real service verifies with ``archive-verify`` (a subprocess, no
ARCHIVE_* setting), with ``openssl ts -verify`` / ``openssl pkeyutl`` and with ``python3 -I
verify_proofs.py`` in the extracted bundle; and each corruption of the matrix is detected and
named — by ``archive-verify`` (in the bundle, or in the objects it is given), by ``audit``
(an object in one offer) and by ``logbook verify`` (the database), where the service refuses to
build a bundle from a logbook it finds tampered with.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select, update

from archive_service.config import Settings
from archive_service.core.logbook.checkpoint import Checkpoint, parse_signed_note, sign_checkpoint
from archive_service.core.logbook.proofcheck import parse_note
from archive_service.db import tables as t
from tests.fixtures.dossier import make_small_dossier
from tests.integration.conftest import Env
from tests.integration.test_audit import flip_one_byte, local_env, two_local  # noqa: F401
from tests.integration.test_cli_verify import LiveApi, live_api  # noqa: F401 (fixture)
from tests.integration.test_logbook import codes, ingest, sql, tenant_of
from tests.integration.test_logbook import verify as logbook_verify
from tests.integration.test_storage_admin import run
from tests.tsa_helpers import openssl

REPO = Path(__file__).parents[2]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Checkpoints locked on the shared test S3 server for a day, not for 30 years.
    return settings.model_copy(update={"logbook_checkpoint_retention_days": 1})


def fetch(env: Env, unit_id: str, role: str = "archivist", **params: Any) -> bytes:
    r = env.http.get(f"/v1/archive-units/{unit_id}/evidence", params=params, headers=env.auth(role))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    return r.content


def archive_verify(bundle: Path, *args: str | Path) -> tuple[int, dict[str, Any], str]:
    """The real console script's code, as an auditor runs it: no ARCHIVE_* setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    text = subprocess.run(
        [sys.executable, "-m", "archive_service.cli.archive_verify", str(bundle), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=False,
    )
    as_json = subprocess.run(
        [sys.executable, "-m", "archive_service.cli.archive_verify", str(bundle), "--json"]
        + [str(a) for a in args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert as_json.returncode == text.returncode, (text.stdout, as_json.stdout)
    return text.returncode, json.loads(as_json.stdout), text.stdout


def failed(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["name"], c["subject"]) for c in report["checks"] if not c["ok"]]


def rewrite(bundle: bytes, target: Path, changes: dict[str, bytes | None]) -> Path:
    """A copy of the zip with some members replaced (``None``: removed)."""
    with zipfile.ZipFile(io.BytesIO(bundle)) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            if info.filename in changes:
                data = changes[info.filename]
                if data is not None:
                    dst.writestr(info.filename, data)
            else:
                dst.writestr(info, src.read(info))
    return target


def members(bundle: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle)) as z:
        return {n: z.read(n) for n in z.namelist()}


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


# --- a good bundle --------------------------------------------------------------------------


def test_a_bundle_verifies_with_archive_verify_openssl_and_python3(
    env: Env, tmp_path: Path
) -> None:
    unit_id = ingest(env, tmp_path)
    bundle = fetch(env, unit_id, with_objects="true")
    path = tmp_path / "evidence.zip"
    path.write_bytes(bundle)
    files = members(bundle)
    for name in (
        "VERIFY.md", "report.html", "report.pdf", "bundle.json", "manifest.xml", "timestamp.tsr",
        "tsa-chain.pem", "SHA256SUMS", "SHA512SUMS", "logbook/checkpoint.note",
        "logbook/checkpoint.tsr", "logbook/checkpoint.body", "logbook/checkpoint.sig",
        "logbook/public-key.pem", "logbook/key-name.txt", "logbook/proofs.json",
        "verify_proofs.py", "merkle.py", "canonical.py",
    ):  # fmt: skip
        assert name in files, name
    assert files["report.pdf"].startswith(b"%PDF")
    assert "Relevé de valeur probante" in files["report.html"].decode()
    objects = json.loads(files["bundle.json"])["objects"]
    assert objects
    assert sorted(n for n in files if n.startswith("content/")) == sorted(o["uri"] for o in objects)

    code, report, text = archive_verify(path)
    assert code == 0, text
    names = [c["name"] for c in report["checks"]]
    for expected in (
        "2.3 token signed by the TSA chain",
        "7.3 checkpoint signed by the logbook key",
        "7.6.3 token signed by the TSA chain",
        "9.3 package.timestamped entry = this manifest and token",
    ):
        assert expected in names
    assert any(n.startswith("3.3 SHA-256") for n in names)
    assert "expected:" in text and "found:" in text

    out = tmp_path / "x"
    with zipfile.ZipFile(path) as z:
        z.extractall(out)
    # the objects, with sha256sum -c
    subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, check=True, capture_output=True)
    subprocess.run(["sha512sum", "-c", "SHA512SUMS"], cwd=out, check=True, capture_output=True)
    # tokens with the real openssl ts -verify, the checkpoint with openssl pkeyutl
    openssl(out, "ts -verify -data manifest.xml -in timestamp.tsr -CAfile tsa-chain.pem")
    openssl(
        out,
        "ts -verify -data logbook/checkpoint.note -in logbook/checkpoint.tsr -CAfile tsa-chain.pem",
    )
    openssl(
        out,
        "pkeyutl -verify -pubin -inkey logbook/public-key.pem -rawin"
        " -in logbook/checkpoint.body -sigfile logbook/checkpoint.sig",
    )
    # the proofs with python3 alone, isolated from this project
    ok = subprocess.run(
        ["python3", "-I", "verify_proofs.py"], cwd=out, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "inclusion proof" in ok.stdout
    entry = next(out.glob("logbook/entries/*.json"))
    entry.write_bytes(entry.read_bytes().replace(b'"outcome":"OK"', b'"outcome":"KO"'))
    bad = subprocess.run(
        ["python3", "-I", "verify_proofs.py"], cwd=out, capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert f"[FAILED] entry {int(entry.stem)}: inclusion proof" in bad.stdout


# --- the corruption matrix ------------------------------------------------------------------


@pytest.fixture
def bundle(env: Env, tmp_path: Path) -> tuple[str, bytes]:
    unit_id = ingest(env, tmp_path)
    return unit_id, fetch(env, unit_id)


def test_one_byte_of_an_object_in_one_offer_is_named_by_audit_and_archive_verify(
    local_env: Env,  # noqa: F811 (the fixture of test_audit)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = local_env
    unit_id = ingest(env, tmp_path)
    evidence = tmp_path / "evidence.zip"
    evidence.write_bytes(fetch(env, unit_id))
    objects = json.loads(members(evidence.read_bytes())["bundle.json"])["objects"]
    victim = objects[0]
    with env.services.engine.connect() as conn:
        key = conn.scalar(select(t.DataObject.storage_key).where(t.DataObject.id == victim["id"]))
    flip_one_byte(tmp_path / "offer-a" / key)

    code, out = run(env.settings, monkeypatch, "audit")
    assert code == 1, out
    assert f"corrupt a:{key}: expected sha256:{victim['sha256']}" in out

    # The auditor checks the copy offer a serves, laid out as `archive-service get` writes it.
    copies = tmp_path / "copies"
    for o in objects:
        with env.services.engine.connect() as conn:
            k = conn.scalar(select(t.DataObject.storage_key).where(t.DataObject.id == o["id"]))
        (copies / o["uri"]).parent.mkdir(parents=True, exist_ok=True)
        (copies / o["uri"]).write_bytes((tmp_path / "offer-a" / k).read_bytes())
    code, report, text = archive_verify(evidence, "--objects", copies)
    assert code == 1, text
    assert {s for _n, s in failed(report)} == {victim["uri"]}
    assert any(n.startswith("3.3 SHA-256") for n, _s in failed(report))
    assert f"{victim['uri']}: 3.3 SHA-256" in text
    # sha256sum -c names it too
    result = subprocess.run(
        ["sha256sum", "-c", "-"], input=members(evidence.read_bytes())["SHA256SUMS"],
        cwd=copies, capture_output=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"{victim['uri']}: FAILED".encode() in result.stdout


def test_a_manifest_byte_in_the_bundle_is_named(bundle: tuple[str, bytes], tmp_path: Path) -> None:
    _unit, data = bundle
    manifest = members(data)["manifest.xml"]
    at = manifest.index(b"<MessageIdentifier>") + len(b"<MessageIdentifier>")
    path = rewrite(data, tmp_path / "b.zip", {"manifest.xml": flip(manifest, at)})
    code, report, text = archive_verify(path)
    assert code == 1
    assert ("2.2 token imprint = digest of manifest.xml", "manifest.xml") in failed(report)
    assert "manifest.xml: 2.2 token imprint" in text


def test_a_token_swapped_for_another_units_token_is_named(env: Env, tmp_path: Path) -> None:
    unit_id = ingest(env, tmp_path, "one")
    other = ingest(env, tmp_path, "two")
    data = fetch(env, unit_id)
    foreign = members(fetch(env, other))["timestamp.tsr"]
    path = rewrite(data, tmp_path / "b.zip", {"timestamp.tsr": foreign})
    code, report, _text = archive_verify(path)
    assert code == 1
    names = failed(report)
    assert ("2.2 token imprint = digest of manifest.xml", "manifest.xml") in names
    assert ("9.3 package.timestamped entry = this manifest and token", "logbook/proofs.json") in (
        names
    )


def test_a_checkpoint_edited_in_the_bundle_is_named(
    bundle: tuple[str, bytes], tmp_path: Path
) -> None:
    _unit, data = bundle
    note = members(data)["logbook/checkpoint.note"]
    lines = note.split(b"\n")
    lines[1] = str(int(lines[1]) + 1).encode()  # one more entry than was signed
    path = rewrite(data, tmp_path / "b.zip", {"logbook/checkpoint.note": b"\n".join(lines)})
    code, report, text = archive_verify(path)
    assert code == 1
    names = failed(report)
    assert ("7.3 checkpoint signed by the logbook key", "logbook/checkpoint.note") in names
    assert (
        "7.6.2 token imprint = digest of logbook/checkpoint.note",
        "logbook/checkpoint.note",
    ) in (names)
    assert "does not verify" in text


def test_a_checkpoint_signed_with_another_key_is_named(
    bundle: tuple[str, bytes], tmp_path: Path
) -> None:
    _unit, data = bundle
    files = members(data)
    note = parse_note(files["logbook/checkpoint.note"])
    key_name = files["logbook/key-name.txt"].decode().strip()
    forged = sign_checkpoint(
        Checkpoint(note.origin, note.size, note.root), Ed25519PrivateKey.generate(), key_name
    )
    _body, [sig] = parse_signed_note(forged)
    path = rewrite(
        data,
        tmp_path / "b.zip",
        {"logbook/checkpoint.note": forged, "logbook/checkpoint.sig": sig.signature},
    )
    code, report, _text = archive_verify(path)
    assert code == 1
    check = next(c for c in report["checks"] if c["name"].startswith("7.3"))
    assert not check["ok"]
    assert f"no signature by key {key_name}/" in check["found"]
    assert f"{key_name}/{sig.key_id.hex()}" in check["found"]
    # openssl agrees
    out = tmp_path / "x"
    with zipfile.ZipFile(path) as z:
        z.extractall(out)
    refused = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "logbook/public-key.pem", "-rawin",
         "-in", "logbook/checkpoint.body", "-sigfile", "logbook/checkpoint.sig"],
        cwd=out, capture_output=True, check=False,
    )  # fmt: skip
    assert refused.returncode != 0


def test_an_entry_edited_or_deleted_in_the_bundle_is_named(
    bundle: tuple[str, bytes], tmp_path: Path
) -> None:
    _unit, data = bundle
    files = members(data)
    proofs = json.loads(files["logbook/proofs.json"])
    stamped = next(e for e in proofs["entries"] if e["type"] == "package.timestamped")
    edited = files[stamped["file"]].replace(b'"outcome":"OK"', b'"outcome":"KO"')
    path = rewrite(data, tmp_path / "edited.zip", {stamped["file"]: edited})
    code, report, _text = archive_verify(path)
    assert code == 1
    label = f"entry {stamped['id']}"
    assert (
        f"8. {label}: inclusion proof to the checkpoint root (RFC 9162)",
        stamped["file"],
    ) in failed(report)
    assert (f"8. {label}: leaf hash SHA-256(0x00 || entry)", stamped["file"]) in failed(report)

    # Deleted: the file alone, then the file and its line in proofs.json.
    path = rewrite(data, tmp_path / "deleted.zip", {stamped["file"]: None})
    code, report, _text = archive_verify(path)
    assert code == 1
    assert (f"8. {label}: file present", stamped["file"]) in failed(report)
    proofs["entries"] = [e for e in proofs["entries"] if e["id"] != stamped["id"]]
    path = rewrite(
        data,
        tmp_path / "gone.zip",
        {stamped["file"]: None, "logbook/proofs.json": json.dumps(proofs).encode()},
    )
    code, report, _text = archive_verify(path)
    assert code == 1
    assert [n for n, _s in failed(report)] == [
        "9.3 package.timestamped entry = this manifest and token"
    ]


def entry_of(env: Env, unit_id: str, event_type: str) -> Any:
    with env.services.engine.connect() as conn:
        package = conn.scalar(select(t.ArchiveUnit.package_id).where(t.ArchiveUnit.id == unit_id))
        return conn.execute(
            select(t.LogbookEntry).where(
                t.LogbookEntry.subject_id == package, t.LogbookEntry.event_type == event_type
            )
        ).first()


def test_an_entry_edited_in_the_database_is_named_and_no_bundle_is_made(
    env: Env, tmp_path: Path
) -> None:
    unit_id = ingest(env, tmp_path)
    fetch(env, unit_id)  # a checkpoint covers the lifecycle
    row = entry_of(env, unit_id, "package.timestamped")
    sql(env, update(t.LogbookEntry).where(t.LogbookEntry.id == row.id).values(outcome="KO"))
    code, report = logbook_verify(env, tenant_of(env))
    assert code == 1
    assert codes(report) == ["entry-edited"]
    r = env.http.get(f"/v1/archive-units/{unit_id}/evidence", headers=env.auth("archivist"))
    assert r.status_code == 500, r.text
    assert r.json()["type"].endswith(":integrity-failure")
    assert f"logbook entry {row.id} (package.timestamped) was edited" in r.json()["detail"]
    failures = lifecycle_types(env, unit_id, outcome="FAILED")
    assert failures == ["evidence.read"]


def test_an_entry_deleted_in_the_database_is_named_and_no_bundle_is_made(
    env: Env, tmp_path: Path
) -> None:
    unit_id = ingest(env, tmp_path)
    fetch(env, unit_id)
    row = entry_of(env, unit_id, "package.timestamped")
    sql(env, delete(t.LogbookEntry).where(t.LogbookEntry.id == row.id))
    code, report = logbook_verify(env, tenant_of(env))
    assert code == 1
    assert "entry-deleted" in codes(report)
    r = env.http.get(f"/v1/archive-units/{unit_id}/evidence", headers=env.auth("archivist"))
    assert r.status_code == 500, r.text
    detail = r.json()["detail"]
    # Either the proof of a neighbour needs the deleted leaf, or the lifecycle lacks it.
    assert "9.3 package.timestamped entry" in detail or "lost the Merkle node" in detail, detail


def lifecycle_types(env: Env, unit_id: str, *, outcome: str | None = None) -> list[str]:
    r = env.http.get(f"/v1/archive-units/{unit_id}/lifecycle", headers=env.auth("admin"))
    assert r.status_code == 200, r.text
    return [
        e["entry"]["type"]
        for e in r.json()["entries"]
        if outcome is None or e["entry"]["outcome"] == outcome
    ]


# --- roles, reads and their proofs ----------------------------------------------------------


def test_an_auditor_gets_evidence_but_no_content(env: Env, tmp_path: Path) -> None:
    unit_id = ingest(env, tmp_path)
    unit = env.http.get(f"/v1/archive-units/{unit_id}", headers=env.auth("auditor")).json()
    content = env.http.get(unit["objects"][0]["content_url"], headers=env.auth("auditor"))
    assert content.status_code == 403
    data = fetch(env, unit_id, role="auditor")
    assert not [n for n in members(data) if n.startswith("content/")]
    r = env.http.get(
        f"/v1/archive-units/{unit_id}/evidence",
        params={"with_objects": "true"},
        headers=env.auth("auditor"),
    )
    assert r.status_code == 403
    assert "may not read document content" in r.json()["detail"]
    platform = env.http.get(f"/v1/archive-units/{unit_id}/evidence", headers=env.auth("platform"))
    assert platform.status_code == 403
    other = env.http.get(
        f"/v1/archive-units/{unit_id}/evidence", headers=env.auth("archivist", other_tenant=True)
    )
    assert other.status_code == 404
    assert lifecycle_types(env, unit_id, outcome="REFUSED").count("evidence.read") == 2


def test_an_auditor_may_have_objects_when_the_service_allows_it(
    settings: Settings, tmp_path: Path
) -> None:
    from tests.integration.conftest import open_env

    allowed = settings.model_copy(update={"evidence_auditor_objects": True})
    with open_env(allowed) as env:
        unit_id = ingest(env, tmp_path)
        data = fetch(env, unit_id, role="auditor", with_objects="true")
        assert [n for n in members(data) if n.startswith("content/")]


def test_every_read_by_an_archivist_is_in_the_next_bundle_with_its_proof(
    env: Env, tmp_path: Path
) -> None:
    unit_id = ingest(env, tmp_path)
    unit = env.http.get(f"/v1/archive-units/{unit_id}", headers=env.auth("archivist")).json()
    content = env.http.get(unit["objects"][0]["content_url"], headers=env.auth("archivist"))
    assert content.status_code == 200
    manifest = env.http.get(f"/v1/archive-units/{unit_id}/manifest", headers=env.auth("archivist"))
    assert manifest.status_code == 200
    first = fetch(env, unit_id)
    second = fetch(env, unit_id)
    for data, reads in ((first, 1), (second, 2)):
        files = members(data)
        proofs = json.loads(files["logbook/proofs.json"])
        entries = {
            e["type"]: json.loads(files[e["file"]]) for e in proofs["entries"]
        }  # the last of each type
        types = [e["type"] for e in proofs["entries"]]
        for kind in ("archive_unit.read", "object.read", "manifest.read"):
            assert kind in types
            assert entries[kind]["actor"] is not None
            assert entries[kind]["details"]["actor_role"] == "archivist"
        # the bundle's own read is in it, covered by the checkpoint it carries
        assert types.count("evidence.read") == reads
        path = tmp_path / f"b{reads}.zip"
        path.write_bytes(data)
        code, _report, text = archive_verify(path)
        assert code == 0, text
    assert (
        json.loads(members(second)["logbook/proofs.json"])["tree_size"]
        > json.loads(members(first)["logbook/proofs.json"])["tree_size"]
    )


# --- the verifier stands alone --------------------------------------------------------------


def test_archive_verify_imports_nothing_it_does_not_need(tmp_path: Path) -> None:
    poisoned = (
        "sqlalchemy", "alembic", "boto3", "botocore", "fastapi", "starlette", "celery", "httpx",
        "pydantic", "pydantic_settings", "typer", "rich", "reportlab", "redis", "psycopg",
        "archive_service.config", "archive_service.wiring", "archive_service.services",
        "archive_service.db", "archive_service.storage", "archive_service.tsa",
    )  # fmt: skip
    code = (
        "import sys\n"
        f"for name in {poisoned!r}:\n"
        "    sys.modules[name] = None  # importing it raises ImportError\n"
        "from archive_service.cli.archive_verify import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "missing.zip")],
        capture_output=True, text=True, cwd=REPO, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr  # ran, and refused the missing bundle
    assert "cannot read" in result.stderr
    assert "ImportError" not in result.stderr


def test_a_missing_item_fails_closed(bundle: tuple[str, bytes], tmp_path: Path) -> None:
    _unit, data = bundle
    for name in ("logbook/public-key.pem", "SHA512SUMS", "logbook/checkpoint.tsr", "bundle.json"):
        path = rewrite(data, tmp_path / "m.zip", {name: None})
        code, report, _text = archive_verify(path)
        assert code == 1, name
        assert any(s == name for _n, s in failed(report)), (name, failed(report))


# --- the CLI, against the real API on the loopback ------------------------------------------


def test_cli_evidence_get_and_archive_verify_with_objects_dir(
    live_api: LiveApi,  # noqa: F811 (the fixture of test_cli_verify)
    tmp_path: Path,
) -> None:
    dossier = tmp_path / "dossier"
    metadata, _ = make_small_dossier(dossier, 2, sizes=(2_000, 4_000), message_identifier="EV-CLI")
    metadata_file = tmp_path / "metadata.json"
    metadata_file.write_text(json.dumps(metadata), encoding="utf-8")
    ingested = live_api.run("ingest", dossier, "--metadata", metadata_file, "--json")
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    unit_id = json.loads(ingested.stdout)["archive_unit_id"]

    bundle = tmp_path / "evidence.zip"
    made = live_api.run("evidence", unit_id, "-o", bundle, role="auditor")
    assert made.returncode == 0, made.stdout + made.stderr
    assert f"archive-verify {bundle}" in made.stdout
    refused = live_api.run("evidence", unit_id, "-o", tmp_path / "x.zip", "--with-objects",
                           role="auditor")  # fmt: skip
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert not (tmp_path / "x.zip").exists()

    got = live_api.run("get", unit_id, "-o", tmp_path / "au", role="archivist")
    assert got.returncode == 0, got.stdout + got.stderr
    code, report, text = archive_verify(bundle, "--objects", tmp_path / "au")
    assert code == 0, text
    assert any(c["name"].startswith("3.3 SHA-256") for c in report["checks"])
    code, _report, text = archive_verify(bundle)
    assert code == 0, text
    assert "Objects not checked" in text
