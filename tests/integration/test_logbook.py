"""The Merkle logbook of the real service, on both stacks: entries integrated and checkpointed,
inclusion and consistency proofs that verify with the core's independent checks, checkpoints
that ``openssl`` verifies, who may read what, and every tampering case named by ``logbook
verify`` (an entry edited, deleted, the log truncated or rewritten, a checkpoint edited or
signed by another key)."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import create_engine, delete, select, text, update
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from archive_service.cli.main import app as cli
from archive_service.config import Settings
from archive_service.core.logbook.checkpoint import (
    Checkpoint,
    parse_signed_note,
    sign_checkpoint,
    verify_checkpoint,
)
from archive_service.core.logbook.merkle import leaf_hash, verify_consistency, verify_inclusion
from archive_service.db import tables as t
from archive_service.db.migrate import alembic_config
from archive_service.ports import LogEvent
from archive_service.services.logbook import checkpoint_keys
from archive_service.storage.s3 import S3BlobStore
from archive_service.tasks.celery_app import LOGBOOK_CHECKPOINT_TASK, make_celery
from tests.fixtures.dossier import make_small_dossier
from tests.integration.conftest import Env, only_stack, open_env
from tests.tsa_helpers import openssl


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Checkpoints locked on the shared test S3 server for a day, not for 30 years.
    return settings.model_copy(update={"logbook_checkpoint_retention_days": 1})


def tenant_of(env: Env) -> str:
    return env.services.tenancy.authenticate(env.keys["admin"]).tenant_id


def ingest(env: Env, tmp_path: Path, name: str = "d") -> str:
    metadata, _ = make_small_dossier(
        tmp_path / name, 2, sizes=(2_000, 4_000), message_identifier=f"LOGBOOK-{name}"
    )
    r = env.post_transfer(metadata, tmp_path / name)
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    unit_id: str = done["archive_unit_id"]
    return unit_id


def make_checkpoint(env: Env, *, expect: int = 201) -> dict[str, Any]:
    r = env.http.post("/v1/logbook/checkpoints", headers=env.auth("admin"))
    assert r.status_code == expect, r.text
    body: dict[str, Any] = r.json()
    return body


def append(env: Env, tenant_id: str, count: int, kind: str = "test.event") -> list[int]:
    """Entries appended as an operation does, in its own transaction."""
    ids = []
    with env.services.logbook._uow() as uow:
        for n in range(count):
            ids.append(
                uow.logbook.append(
                    LogEvent(
                        tenant_id=tenant_id,
                        at=env.services.logbook._clock.now(),
                        event_type=kind,
                        outcome="OK",
                        subject_type="test",
                        subject_id=f"subject-{n}",
                        details={"n": n, "texte": "journal des opérations"},
                    )
                )
            )
        uow.commit()
    return ids


def verify(env: Env, tenant_id: str) -> tuple[int, dict[str, Any]]:
    """``archive-service logbook verify --tenant … --json`` as an operator runs it."""
    values = {
        "ARCHIVE_DATA_DIR": str(env.settings.data_dir),
        "ARCHIVE_STORAGE_OFFERS": json.dumps(env.settings.storage_offers),
        "ARCHIVE_DATABASE_URL": env.settings.database_url,
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    try:
        result = CliRunner().invoke(
            cli, ["logbook", "verify", "--tenant", tenant_id, "--json"], catch_exceptions=False
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out = result.stdout
    tenants = json.loads(out[out.index("{") :])["tenants"]
    assert len(tenants) == 1
    report: dict[str, Any] = tenants[0]
    return result.exit_code, report


def codes(report: dict[str, Any]) -> list[str]:
    return sorted({p["code"] for p in report["problems"]})


def sql(env: Env, statement: Any) -> None:
    with env.services.engine.begin() as conn:
        conn.execute(statement)


# --- proofs --------------------------------------------------------------------------------


def test_lifecycle_entries_are_included_in_the_signed_checkpoint(env: Env, tmp_path: Path) -> None:
    unit_id = ingest(env, tmp_path)
    r = env.http.get(f"/v1/archive-units/{unit_id}/manifest", headers=env.auth("archivist"))
    assert r.status_code == 200

    created = make_checkpoint(env)
    assert created["status"] == "created"
    assert make_checkpoint(env, expect=200)["status"] == "unchanged"  # nothing new

    r = env.http.get("/v1/logbook/checkpoints/latest", headers=env.auth("auditor"))
    assert r.status_code == 200, r.text
    latest = r.json()
    assert latest == created["checkpoint"]
    public = serialization.load_pem_public_key(latest["public_key"].encode())
    assert isinstance(public, Ed25519PublicKey)
    cp = verify_checkpoint(latest["note"].encode(), public, latest["key_name"])
    assert cp.origin == f"archive-service/{tenant_of(env)}"
    assert (cp.size, cp.root.hex()) == (latest["size"], latest["root"])
    assert len(latest["copies"]) == len(env.services.offers)

    r = env.http.get(f"/v1/archive-units/{unit_id}/lifecycle", headers=env.auth("auditor"))
    assert r.status_code == 200, r.text
    entries = r.json()["entries"]
    types = {e["entry"]["type"] for e in entries}
    assert {"transfer.received", "package.timestamped", "transfer.accepted", "manifest.read"} <= (
        types
    )
    assert any(t.endswith(".stored") for t in types)
    for e in entries:
        canonical = base64.b64decode(e["canonical"])
        assert json.loads(canonical) == e["entry"]
        r = env.http.get(
            f"/v1/logbook/proofs/inclusion?entry={e['id']}&tree_size={cp.size}",
            headers=env.auth("auditor"),
        )
        assert r.status_code == 200, r.text
        proof = r.json()
        assert proof["leaf_index"] == e["leaf_index"]
        assert proof["root"] == cp.root.hex()
        verify_inclusion(
            leaf_hash(canonical),
            proof["leaf_index"],
            cp.size,
            [bytes.fromhex(h) for h in proof["proof"]],
            cp.root,
        )

    # The same entries, a page at a time, by unit; and by date.
    seen, cursor = [], None
    while True:
        query = f"/v1/logbook/entries?unit={unit_id}&limit=2" + (
            f"&cursor={cursor}" if cursor else ""
        )
        r = env.http.get(query, headers=env.auth("archivist"))
        assert r.status_code == 200, r.text
        seen += [e["id"] for e in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [e["id"] for e in entries]
    r = env.http.get(
        "/v1/logbook/entries",
        params={"from": entries[0]["entry"]["at"], "to": "2999-01-01T00:00:00Z", "limit": 1000},
        headers=env.auth("admin"),
    )
    assert {e["id"] for e in entries} <= {e["id"] for e in r.json()["items"]}


def test_consistency_between_two_checkpoints(env: Env, tmp_path: Path) -> None:
    first = make_checkpoint(env)["checkpoint"]
    ingest(env, tmp_path)
    second = make_checkpoint(env)["checkpoint"]
    assert second["size"] > first["size"]
    r = env.http.get(
        f"/v1/logbook/proofs/consistency?from={first['size']}&to={second['size']}",
        headers=env.auth("auditor"),
    )
    assert r.status_code == 200, r.text
    proof = r.json()
    assert (proof["root_from"], proof["root_to"]) == (first["root"], second["root"])
    verify_consistency(
        first["size"],
        second["size"],
        bytes.fromhex(first["root"]),
        bytes.fromhex(second["root"]),
        [bytes.fromhex(h) for h in proof["proof"]],
    )
    # Without "to": up to the latest checkpoint.
    r = env.http.get(f"/v1/logbook/proofs/consistency?from={first['size']}", headers=env.auth())
    assert r.status_code == 403  # a platform may not read the logbook


def test_readers_roles_tenants_and_bad_sizes(env: Env, tmp_path: Path) -> None:
    unit_id = ingest(env, tmp_path)
    size = make_checkpoint(env)["checkpoint"]["size"]
    entry = env.http.get(
        f"/v1/archive-units/{unit_id}/lifecycle", headers=env.auth("auditor")
    ).json()["entries"][0]

    for role in ("archivist", "auditor", "admin"):
        r = env.http.get(
            f"/v1/logbook/proofs/inclusion?entry={entry['id']}", headers=env.auth(role)
        )
        assert r.status_code == 200, (role, r.text)
        assert r.json()["tree_size"] == size
    r = env.http.get(f"/v1/archive-units/{unit_id}/lifecycle", headers=env.auth("platform"))
    assert r.status_code == 403
    r = env.http.post("/v1/logbook/checkpoints", headers=env.auth("auditor"))
    assert r.status_code == 403

    other = env.auth("auditor", other_tenant=True)
    assert env.http.get(f"/v1/archive-units/{unit_id}/lifecycle", headers=other).status_code == 404
    r = env.http.get(f"/v1/logbook/proofs/inclusion?entry={entry['id']}&tree_size=1", headers=other)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    r = env.http.get(f"/v1/logbook/entries?unit={unit_id}", headers=other)
    assert r.status_code == 404

    r = env.http.get(
        f"/v1/logbook/proofs/inclusion?entry={entry['id']}&tree_size={size + 1000}",
        headers=env.auth("auditor"),
    )
    assert r.status_code == 409, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert (
        f"tree_size {size + 1000} is beyond the integrated log (size {size})" in r.json()["detail"]
    )
    r = env.http.get(
        f"/v1/logbook/proofs/inclusion?entry={entry['id']}&tree_size={entry['leaf_index']}",
        headers=env.auth("auditor"),
    )
    assert r.status_code == 400, r.text
    assert "is not in the tree of size" in r.json()["detail"]
    r = env.http.get(f"/v1/logbook/proofs/consistency?from={size}&to=1", headers=env.auth("admin"))
    assert r.status_code == 400, r.text
    r = env.http.get(
        f"/v1/logbook/proofs/consistency?from=1&to={size + 5}", headers=env.auth("admin")
    )
    assert r.status_code == 409, r.text


def test_openssl_verifies_the_stored_note_and_its_token(env: Env, tmp_path: Path) -> None:
    cp = make_checkpoint(env)["checkpoint"]
    note_key, token_key = checkpoint_keys(tenant_of(env), cp["size"])
    for offer in env.services.offers:
        with offer.open(note_key) as f:
            note = f.read()
        with offer.open(token_key) as f:
            token = f.read()
        assert note == cp["note"].encode()
        body, signatures = parse_signed_note(note)
        d = tmp_path / offer.name
        d.mkdir()
        (d / "note").write_bytes(note)
        (d / "body").write_bytes(body)
        (d / "sig").write_bytes(signatures[0].signature)
        (d / "pub.pem").write_text(cp["public_key"])
        (d / "token.tsr").write_bytes(token)
        (d / "chain.pem").write_bytes(env.services.tsa.certificate_chain_pem())
        out = openssl(d, "pkeyutl -verify -pubin -inkey pub.pem -rawin -in body -sigfile sig")
        assert "Signature Verified Successfully" in out.stdout
        out = openssl(d, "ts -verify -data note -in token.tsr -CAfile chain.pem")
        assert "Verification: OK" in out.stdout


# --- detection -------------------------------------------------------------------------------


def two_checkpoints(env: Env) -> tuple[str, int, int]:
    tenant = tenant_of(env)
    first = make_checkpoint(env)["checkpoint"]["size"]
    append(env, tenant, 7)
    second = make_checkpoint(env)["checkpoint"]["size"]
    code, report = verify(env, tenant)
    assert code == 0, report
    assert report["checkpoints"] == [first, second]
    assert not report["problems"]
    return tenant, first, second


def leaf_row(env: Env, tenant: str, leaf: int) -> Any:
    with env.services.engine.connect() as conn:
        return conn.execute(
            select(t.LogbookEntry).where(
                t.LogbookEntry.tenant_id == tenant, t.LogbookEntry.leaf_index == leaf
            )
        ).one()


def test_an_entry_edited_in_the_database_is_named(env: Env) -> None:
    tenant, _, _ = two_checkpoints(env)
    row = leaf_row(env, tenant, 3)
    sql(env, update(t.LogbookEntry).where(t.LogbookEntry.id == row.id).values(outcome="KO"))
    code, report = verify(env, tenant)
    assert code == 1
    assert codes(report) == ["entry-edited"]
    assert (
        f"entry {row.id}: its columns no longer give its canonical bytes (changed: outcome)"
        in (report["problems"][0]["message"])
    )


def test_an_entry_rewritten_consistently_in_the_database_is_found_by_the_checkpoints(
    env: Env,
) -> None:
    tenant, first, second = two_checkpoints(env)
    row = leaf_row(env, tenant, first + 2)
    forged = LogEvent(
        tenant_id=tenant,
        at=row.at,
        event_type=row.event_type,
        outcome="KO",
        subject_type=row.subject_type,
        subject_id=row.subject_id,
        actor=row.actor,
        details=row.details,
    )
    canonical = forged.canonical(row.id)
    sql(
        env,
        update(t.LogbookEntry)
        .where(t.LogbookEntry.id == row.id)
        .values(outcome="KO", canonical=canonical, leaf_hash=leaf_hash(canonical)),
    )
    code, report = verify(env, tenant)
    assert code == 1
    assert "log-rewritten" in codes(report)
    rewritten = next(p for p in report["problems"] if p["code"] == "log-rewritten")
    assert f"checkpoint {second}" in rewritten["message"]
    assert f"among leaves {first} to {second - 1}" in rewritten["message"]
    assert f"checkpoint {first}: the root of the entries in the database" in report["checks"]


def test_an_entry_deleted_is_named(env: Env) -> None:
    tenant, _, _ = two_checkpoints(env)
    row = leaf_row(env, tenant, 4)
    sql(env, delete(t.LogbookEntry).where(t.LogbookEntry.id == row.id))
    code, report = verify(env, tenant)
    assert code == 1
    assert "entry-deleted" in codes(report)
    deleted = next(p for p in report["problems"] if p["code"] == "entry-deleted")
    assert "leaves 4 to 4 are missing: 1 entries deleted" in deleted["message"]


def test_a_truncated_log_is_named_against_the_checkpoints_in_storage(env: Env) -> None:
    tenant, first, second = two_checkpoints(env)
    # A thorough forger: entries, tree, head and the database's checkpoints all cut back.
    sql(
        env,
        delete(t.LogbookEntry).where(
            t.LogbookEntry.tenant_id == tenant, t.LogbookEntry.leaf_index >= first
        ),
    )
    sql(env, delete(t.MerkleNode).where(t.MerkleNode.tenant_id == tenant))
    sql(
        env,
        delete(t.Checkpoint).where(t.Checkpoint.tenant_id == tenant, t.Checkpoint.size == second),
    )
    sql(env, update(t.LogHead).where(t.LogHead.tenant_id == tenant).values(size=first))
    code, report = verify(env, tenant)
    assert code == 1
    assert "log-truncated" in codes(report)
    truncated = next(p for p in report["problems"] if p["code"] == "log-truncated")
    assert (
        f"checkpoint {second} covers {second} entries; the database holds {first}"
        in (truncated["message"])
    )


def test_a_log_deleted_whole_is_named(env: Env) -> None:
    tenant, _, second = two_checkpoints(env)
    for table in (t.LogbookEntry, t.MerkleNode, t.Checkpoint, t.LogHead):
        sql(env, delete(table).where(table.tenant_id == tenant))
    code, report = verify(env, tenant)
    assert code == 1
    # The tree is gone too: no consistency proof between the checkpoints in storage.
    assert codes(report) == ["checkpoints-inconsistent", "log-truncated"]
    assert report["entries"] == 0
    messages = " | ".join(p["message"] for p in report["problems"])
    assert f"checkpoint {second} covers {second} entries; the database holds 0" in messages


def test_a_checkpoint_edited_in_the_database_is_named_and_blocks_the_next(env: Env) -> None:
    tenant, _first, second = two_checkpoints(env)
    with env.services.engine.connect() as conn:
        note = conn.scalar(select(t.Checkpoint.note).where(t.Checkpoint.size == second))
    lines = note.split(b"\n")
    lines[1] = str(second + 1).encode()
    sql(env, update(t.Checkpoint).where(t.Checkpoint.size == second).values(note=b"\n".join(lines)))
    code, report = verify(env, tenant)
    assert code == 1
    assert codes(report) == ["checkpoint-edited"]
    messages = " | ".join(p["message"] for p in report["problems"])
    assert f"checkpoint {second} in database does not verify" in messages
    assert f"checkpoint {second}: the database copy differs from" in messages

    # The next checkpoint refuses to build on it, and says why.
    append(env, tenant, 1)
    r = env.http.post("/v1/logbook/checkpoints", headers=env.auth("admin"))
    assert r.status_code == 500, r.text
    assert r.json()["type"] == "urn:archive-service:problem:integrity-failure"
    assert f"checkpoint of {tenant} at size {second + 1} refused" in r.json()["detail"]


def test_a_checkpoint_signed_by_another_key_is_named(env: Env) -> None:
    tenant, _first, second = two_checkpoints(env)
    with env.services.engine.connect() as conn:
        root = conn.scalar(select(t.Checkpoint.root).where(t.Checkpoint.size == second))
    forged = sign_checkpoint(
        Checkpoint(f"archive-service/{tenant}", second, bytes(root)),
        Ed25519PrivateKey.generate(),
        "archive-service",
    )
    sql(env, update(t.Checkpoint).where(t.Checkpoint.size == second).values(note=forged))
    code, report = verify(env, tenant)
    assert code == 1
    assert "checkpoint-wrong-key" in codes(report)
    wrong = next(p for p in report["problems"] if p["code"] == "checkpoint-wrong-key")
    assert f"checkpoint {second} in database is signed by another key" == wrong["message"]


@only_stack("default")
def test_a_checkpoint_object_edited_in_the_local_offer_is_named(env: Env) -> None:
    tenant, first, _second = two_checkpoints(env)
    note_key, _ = checkpoint_keys(tenant, first)
    path = env.settings.resolved_storage_dir / note_key
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes().replace(b"\n\n", b"\nextra line\n\n", 1))
    code, report = verify(env, tenant)
    assert code == 1
    assert codes(report) == ["checkpoint-edited"]
    messages = " | ".join(p["message"] for p in report["problems"])
    assert f"checkpoint {first} in local does not verify" in messages
    assert f"checkpoint {first}: the database copy differs from local's" in messages


@only_stack("production")
def test_a_locked_checkpoint_on_s3_can_be_neither_replaced_nor_removed(env: Env) -> None:
    """On S3 the checkpoint objects are locked (COMPLIANCE): a new version written around
    the service is not what it reads (the first version of a key is the object), and the
    locked version cannot be deleted."""
    from botocore.exceptions import ClientError

    from tests.integration.test_s3 import raw_client

    tenant, first, _ = two_checkpoints(env)
    note_key, _ = checkpoint_keys(tenant, first)
    offer = env.services.offers[0]
    inner = getattr(offer, "inner", offer)
    assert isinstance(inner, S3BlobStore)
    client = raw_client(inner._s3.meta.endpoint_url)
    versions = client.list_object_versions(Bucket=inner.bucket, Prefix=note_key)["Versions"]
    assert len(versions) == 1
    locked = client.get_object_retention(
        Bucket=inner.bucket, Key=note_key, VersionId=versions[0]["VersionId"]
    )["Retention"]
    assert locked["Mode"] == "COMPLIANCE"
    client.put_object(Bucket=inner.bucket, Key=note_key, Body=b"forged checkpoint\n")
    with pytest.raises(ClientError):
        client.delete_object(Bucket=inner.bucket, Key=note_key, VersionId=versions[0]["VersionId"])
    code, report = verify(env, tenant)
    assert code == 0, report


# --- schedule, migration -------------------------------------------------------------------


@only_stack("default")
def test_the_api_makes_checkpoints_periodically(settings: Settings) -> None:
    with open_env(settings.model_copy(update={"logbook_checkpoint_every_seconds": 0.2})) as env:
        (job,) = env.http.app.state.periodic  # type: ignore[attr-defined]
        assert job.name == "logbook.checkpoint"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = env.http.get("/v1/logbook/checkpoints/latest", headers=env.auth("auditor"))
            if r.status_code == 200:
                break
            time.sleep(0.1)
        assert r.status_code == 200, r.text
    runs = job.runs
    assert runs >= 1
    time.sleep(0.5)
    assert job.runs == runs  # stopped with the app


@only_stack("production")
def test_the_beat_job_checkpoints_every_tenant(env: Env) -> None:
    app = make_celery(env.settings)
    schedule = app.conf.beat_schedule[LOGBOOK_CHECKPOINT_TASK]
    assert schedule["schedule"] == env.settings.logbook_checkpoint_every_seconds == 3600
    app._services, app._services_pid = env.services, os.getpid()
    assert app.tasks[LOGBOOK_CHECKPOINT_TASK].apply().get() == {"created": 2, "tenants": 2}
    assert app.tasks[LOGBOOK_CHECKPOINT_TASK].apply().get() == {"created": 0, "tenants": 2}


def test_migration_gives_earlier_entries_their_canonical_bytes(settings: Settings) -> None:
    url = settings.resolved_database_url
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    cfg = alembic_config(url)
    command.upgrade(cfg, "0004")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO tenants (id, name, archival_agency_identifier, created_at) "
                    "VALUES ('tn-1', 'T', 'A', :at)"
                ),
                {"at": "2026-01-02 03:04:05.123456+00:00"},
            )
            conn.execute(
                text(
                    "INSERT INTO logbook_entries (tenant_id, at, event_type, outcome, actor, "
                    "subject_type, subject_id, details) VALUES ('tn-1', :at, 'apikey.created', "
                    "'OK', NULL, 'client', 'cl-1', :details)"
                ),
                {
                    "at": "2026-01-02 03:04:05.123456+00:00",
                    "details": '{"role": "admin", "é": 1.0}',
                },
            )
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            row = conn.execute(select(t.LogbookEntry)).one()
    finally:
        engine.dispose()
    event = LogEvent(
        tenant_id="tn-1",
        at=row.at,
        event_type="apikey.created",
        outcome="OK",
        subject_type="client",
        subject_id="cl-1",
        details={"role": "admin", "é": 1.0},
    )
    assert bytes(row.canonical) == event.canonical(row.id)
    assert json.loads(row.canonical)["at"] == "2026-01-02T03:04:05.123456Z"
    assert row.leaf_index is None


def test_production_refuses_a_generated_signing_key(tmp_path: Path) -> None:
    from archive_service.errors import ConfigurationError
    from archive_service.tsa.logbook_key import generated_signing_key, load_signing_key
    from archive_service.wiring import check_production

    production: dict[str, Any] = {
        "environment": "production",
        "tsa_url": "https://tsa.example.org/rfc3161",
        "storage_offers": [{"name": "a", "kind": "s3"}],
        "api_key_pepper": "a-long-random-secret-for-this-test",
        "data_dir": tmp_path,
    }
    with pytest.raises(ConfigurationError, match="a generated logbook signing key"):
        check_production(Settings(**production))
    key = Ed25519PrivateKey.generate()
    pem = tmp_path / "logbook.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    check_production(Settings(**production, logbook_signing_key=pem))
    assert load_signing_key(pem).public_key() == key.public_key()
    made = generated_signing_key(tmp_path / "logbook")
    assert generated_signing_key(tmp_path / "logbook").public_key() == made.public_key()
    assert (tmp_path / "logbook" / "signing-key.pem").stat().st_mode & 0o777 == 0o600
    other = tmp_path / "ec.pem"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigurationError, match="not an Ed25519 key"):
        load_signing_key(other)
