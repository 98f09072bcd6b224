"""`archive-service audit` (run through the real CLI), `GET /v1/audit/status`, the metric
``archive_audit_verified_fraction`` and the beat job, on both stacks.

Corruption is made behind the service's back: a byte flipped in a local offer's file, a file
removed, a digest edited in the database. On S3 (locked versions cannot be altered through the
S3 API) a lost version is made with ``radosgw-admin`` on a private cluster, as
test_storage_repair_s3.py does.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from archive_service.config import Settings
from archive_service.db import tables as t
from archive_service.tasks.celery_app import AUDIT_TASK, make_celery, run_audit
from tests.fixtures.dossier import make_small_dossier
from tests.integration.conftest import Env
from tests.integration.test_storage_admin import rewrite, run


def ingest(env: Env, root: Path, *, seed: int = 3, files: int = 3) -> dict[str, Any]:
    metadata, _ = make_small_dossier(root, files, sizes=(2_000, 9_000), seed=seed)
    r = env.post_transfer(metadata, root)
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    return done


def audit(env: Env, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, dict[str, Any]]:
    code, out = run(env.settings, monkeypatch, "audit", "--json", *args)
    return code, json.loads(out)


def copies(env: Env) -> list[Any]:
    with env.services.engine.connect() as conn:
        return list(conn.execute(select(t.StoredCopy).order_by(t.StoredCopy.id)).all())


def entries(env: Env, event_type: str) -> list[dict[str, Any]]:
    with env.services.engine.connect() as conn:
        return list(
            conn.execute(
                select(t.LogbookEntry.details)
                .where(t.LogbookEntry.event_type == event_type)
                .order_by(t.LogbookEntry.id)
            ).scalars()
        )


def gauges(env: Env, name: str) -> dict[str, float]:
    text = env.http.get("/metrics").text
    return {
        s.labels["offer"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def object_keys(env: Env) -> list[tuple[str, str]]:
    """(storage key, SHA-256) of the archived objects, in a stable order."""
    with env.services.engine.connect() as conn:
        rows = conn.execute(
            select(t.DataObject.storage_key, t.DataObject.sha256).order_by(t.DataObject.path)
        ).all()
    return [(k, s) for k, s in rows]


def test_a_clean_archive_is_verified_on_every_offer(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = ingest(env, tmp_path / "d")
    offers = [o.name for o in env.services.offers]
    assert gauges(env, "archive_audit_verified_fraction") == dict.fromkeys(offers, 0.0)

    code, report = audit(env, monkeypatch)
    assert code == 0, report
    assert report["clean"] and report["problems"] == []
    recorded = copies(env)
    assert report["checked"] == report["selected"] == len(recorded)
    assert {c.verified_outcome for c in recorded} == {"ok"}
    assert all(c.verified_at is not None for c in recorded)
    assert report["per_offer"] == {
        name: {"ok": sum(1 for c in recorded if c.offer == name)} for name in offers
    }

    assert gauges(env, "archive_audit_verified_fraction") == dict.fromkeys(offers, 1.0)
    assert gauges(env, "archive_audit_problems_open") == dict.fromkeys(offers, 0.0)
    for role in ("admin", "auditor", "archivist"):
        r = env.http.get("/v1/audit/status", headers=env.auth(role))
        assert r.status_code == 200, r.text
        status = r.json()
        assert status["window_days"] == 30
        assert [
            (o["offer"], o["verified_fraction"], o["problems_open"]) for o in status["offers"]
        ] == [(name, 1.0, 0) for name in sorted(offers)]
        assert status["last_run"]["run_id"] == report["run_id"]
        assert status["last_run"]["problems"] == 0
    assert env.http.get("/v1/audit/status", headers=env.auth("platform")).status_code == 403
    # Another tenant has audited nothing of its own.
    other = env.http.get("/v1/audit/status", headers=env.auth("admin", other_tenant=True)).json()
    assert other["last_run"] is None
    assert all(o["objects"] == 0 for o in other["offers"])

    [run_entry] = entries(env, "audit.run")
    assert (run_entry["copies"], run_entry["problems"], run_entry["repaired"]) == (
        len(recorded),
        0,
        0,
    )
    [unit_entry] = entries(env, "audit.unit")
    assert unit_entry["problems"] == 0 and unit_entry["manifest_checked"] is True
    with env.services.engine.connect() as conn:
        subject = conn.scalar(
            select(t.LogbookEntry.subject_id).where(t.LogbookEntry.event_type == "audit.unit")
        )
    assert subject == done["archive_unit_id"]


@pytest.fixture
def two_local(settings: Settings, tmp_path: Path) -> Settings:
    offers = [
        {"name": "a", "kind": "local", "path": str(tmp_path / "offer-a")},
        {"name": "b", "kind": "local", "path": str(tmp_path / "offer-b")},
    ]
    return settings.model_copy(update={"storage_offers": offers})


@pytest.fixture
def local_env(two_local: Settings) -> Any:
    from tests.integration.conftest import open_env

    with open_env(two_local) as opened:
        yield opened


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    rewrite(path, bytes(data))


def test_corrupt_and_missing_copies_are_named_logged_and_repaired(
    local_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = local_env
    ingest(env, tmp_path / "d")
    (corrupt, corrupt_sha), (missing, missing_sha) = object_keys(env)[:2]
    flip_one_byte(tmp_path / "offer-a" / corrupt)
    (tmp_path / "offer-b" / missing).unlink()
    import hashlib

    found_sha = hashlib.sha256((tmp_path / "offer-a" / corrupt).read_bytes()).hexdigest()

    code, out = run(env.settings, monkeypatch, "audit")
    assert code == 1, out
    assert f"corrupt a:{corrupt}: expected sha256:{corrupt_sha}, found sha256:{found_sha}" in out
    assert f"missing b:{missing}: expected sha256:{missing_sha}, found absent" in out
    assert "2 problems, 0 repaired" in out

    [corrupt_entry] = entries(env, "copy.corrupt")
    assert {k: corrupt_entry[k] for k in ("kind", "offer", "key", "expected", "found")} == {
        "kind": "corrupt",
        "offer": "a",
        "key": corrupt,
        "expected": f"sha256:{corrupt_sha}",
        "found": f"sha256:{found_sha}",
    }
    [missing_entry] = entries(env, "copy.missing")
    assert (missing_entry["offer"], missing_entry["key"]) == ("b", missing)
    outcomes = {(c.offer, c.key): c.verified_outcome for c in copies(env)}
    assert outcomes[("a", corrupt)] == "corrupt"
    assert outcomes[("b", missing)] == "missing"
    fraction = gauges(env, "archive_audit_verified_fraction")
    assert fraction["a"] < 1.0 and fraction["b"] < 1.0
    assert gauges(env, "archive_audit_problems_open") == {"a": 1.0, "b": 1.0}
    status = env.http.get("/v1/audit/status", headers=env.auth("auditor")).json()
    assert {o["offer"]: o["problems_open"] for o in status["offers"]} == {"a": 1, "b": 1}

    code, report = audit(env, monkeypatch, "--repair")
    assert code == 0, report
    assert sorted((p["kind"], p["offer"], p["key"], p["repaired"]) for p in report["problems"]) == [
        ("corrupt", "a", corrupt, True),
        ("missing", "b", missing, True),
    ]
    assert (tmp_path / "offer-a" / corrupt).read_bytes() == (
        tmp_path / "offer-b" / corrupt
    ).read_bytes()
    assert sorted((e["offer"], e["key"], e["was"]) for e in entries(env, "copy.repaired")) == [
        ("a", corrupt, "corrupt"),
        ("b", missing, "missing"),
    ]
    with env.services.engine.connect() as conn:
        superseded = conn.execute(
            select(
                t.SupersededCopy.offer,
                t.SupersededCopy.key,
                t.SupersededCopy.reason,
                t.SupersededCopy.sha256,
                t.SupersededCopy.found_sha256,
            ).order_by(t.SupersededCopy.offer)
        ).all()
    assert [tuple(r) for r in superseded] == [
        ("a", corrupt, "corrupt", corrupt_sha, found_sha),
        ("b", missing, "missing", missing_sha, None),
    ]
    assert gauges(env, "archive_audit_verified_fraction") == {"a": 1.0, "b": 1.0}

    code, report = audit(env, monkeypatch)
    assert code == 0, report
    assert report["clean"]
    assert len(entries(env, "audit.run")) == 3


def test_a_database_digest_that_disagrees_with_the_manifest_is_named(
    local_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = local_env
    ingest(env, tmp_path / "d")
    key, manifest_sha = object_keys(env)[0]
    edited = "0" * 64
    with env.services.engine.begin() as conn:
        conn.execute(
            update(t.DataObject).where(t.DataObject.storage_key == key).values(sha256=edited)
        )

    code, report = audit(env, monkeypatch, "--repair")
    assert code == 1, report
    [problem] = report["problems"]
    assert {k: problem[k] for k in ("kind", "offer", "key", "expected", "found", "repaired")} == {
        "kind": "manifest_mismatch",
        "offer": None,
        "key": key,
        "expected": f"sha256:{manifest_sha}",
        "found": f"sha256:{edited}",
        "repaired": False,
    }
    # The copies agree with the manifest: not called corrupt, and nothing was rewritten.
    assert entries(env, "copy.repaired") == []
    [entry] = entries(env, "manifest.mismatch")
    assert entry["key"] == key
    assert {c.verified_outcome for c in copies(env) if c.key == key} == {"manifest_mismatch"}


def test_sample_offer_and_unit_restrict_the_audit(
    local_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = local_env
    first = ingest(env, tmp_path / "d1", seed=1)
    ingest(env, tmp_path / "d2", seed=2)
    total = len(copies(env))

    code, report = audit(env, monkeypatch, "--sample", "0.5")
    assert code == 0, report
    assert report["selected"] == total
    assert report["checked"] == math.ceil(total / 2)
    first_pass = {c.id: c.verified_at for c in copies(env) if c.verified_at is not None}
    assert len(first_pass) == math.ceil(total / 2)
    # Oldest-verified first: the next run takes every copy never verified.
    code, report = audit(env, monkeypatch, "--sample", "0.5")
    assert code == 0, report
    second_pass = {c.id: c.verified_at for c in copies(env)}
    assert all(at is not None for at in second_pass.values())
    again = {i for i, at in first_pass.items() if second_pass[i] != at}
    assert len(again) == math.ceil(total / 2) - (total - len(first_pass))

    code, report = audit(env, monkeypatch, "--offer", "b")
    assert code == 0, report
    assert report["offers"] == ["b"]
    assert set(report["per_offer"]) == {"b"}
    assert report["checked"] == sum(1 for c in copies(env) if c.offer == "b")

    code, report = audit(env, monkeypatch, "--unit", first["archive_unit_id"])
    assert code == 0, report
    assert report["packages"] == 1
    with env.services.engine.connect() as conn:
        package_id = conn.scalar(
            select(t.Package.id).where(t.Package.root_unit_id == first["archive_unit_id"])
        )
    assert report["checked"] == sum(1 for c in copies(env) if c.package_id == package_id)

    for bad in (["--offer", "nowhere"], ["--sample", "0"], ["--sample", "1.5"], ["--unit", "x"]):
        code, out = run(env.settings, monkeypatch, "audit", *bad)
        assert code == 2, (bad, out)


def test_the_beat_job_audits_a_sample_on_schedule(env: Env, tmp_path: Path) -> None:
    ingest(env, tmp_path / "d")
    settings = env.settings.model_copy(
        update={"audit_sample_fraction": 0.5, "audit_every_seconds": 3600.0}
    )
    app = make_celery(settings)
    assert app.conf.beat_schedule[AUDIT_TASK]["schedule"] == 3600.0
    app._services, app._services_pid = env.services, os.getpid()
    summary = run_audit(app)
    total = len(copies(env))
    assert summary == {"checked": math.ceil(total / 2), "problems": 0, "repaired": 0}
    [entry] = entries(env, "audit.run")
    assert entry["trigger"] == "beat" and entry["sample"] == 0.5
