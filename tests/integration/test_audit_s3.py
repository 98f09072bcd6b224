"""`archive-service audit` on two S3 offers with Object Lock (a private Ceph cluster, as in
test_storage_repair_s3.py): a locked version removed by the cluster's operator is reported
missing, and a locked version whose bytes rotted is reported corrupt; ``--repair`` restores
either as a new version, the lost or bad one recorded as superseded (a bad one stays in the
bucket); reads follow the recorded version; the next audit is clean."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from archive_service.db import tables as t
from tests.integration.ceph_cluster import PrivateCeph
from tests.integration.conftest import Env
from tests.integration.test_audit import entries, ingest
from tests.integration.test_evidence import archive_verify, fetch
from tests.integration.test_storage_admin import repaired_entries, run
from tests.integration.test_storage_repair_s3 import ceph, copies_of, env, versions

__all__ = ["ceph", "env"]  # fixtures


def superseded(env: Env) -> list[tuple[Any, ...]]:
    """(offer, key, version id, expected, found, reason, superseded by) of each superseded copy."""
    with env.services.engine.connect() as conn:
        rows = conn.execute(
            select(
                t.SupersededCopy.offer,
                t.SupersededCopy.key,
                t.SupersededCopy.version_id,
                t.SupersededCopy.sha256,
                t.SupersededCopy.found_sha256,
                t.SupersededCopy.reason,
                t.SupersededCopy.superseded_by,
            ).order_by(t.SupersededCopy.id)
        ).all()
    return [tuple(r) for r in rows]


def test_a_lost_s3_version_is_reported_then_restored_as_a_new_version(
    env: Env, ceph: PrivateCeph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(env, tmp_path / "d")
    bucket_b = env.settings.storage_offers[1]["bucket"]
    before = copies_of(env)
    lost = sorted(key for offer, key in before if offer == "ceph-b" and "/content/" in key)[0]
    lost_version, lost_sha = before[("ceph-b", lost)]
    ceph.admin(
        "object",
        "rm",
        f"--bucket={bucket_b}",
        f"--object={lost}",
        f"--object-version={lost_version}",
    )

    code, out = run(env.settings, monkeypatch, "audit", "--json")
    assert code == 1, out
    [problem] = json.loads(out)["problems"]
    assert (problem["kind"], problem["offer"], problem["key"], problem["expected"]) == (
        "missing",
        "ceph-b",
        lost,
        f"sha256:{lost_sha}",
    )

    code, out = run(env.settings, monkeypatch, "audit", "--repair", "--json")
    assert code == 0, out
    client_b = ceph.client(1)
    [restored] = versions(client_b, bucket_b, lost)
    assert restored["VersionId"] != lost_version
    assert copies_of(env)[("ceph-b", lost)] == (restored["VersionId"], lost_sha)
    assert [r[:3] + r[5:] for r in superseded(env)] == [
        ("ceph-b", lost, lost_version, "missing", restored["VersionId"])
    ]

    code, out = run(env.settings, monkeypatch, "audit", "--json")
    assert code == 0, out
    assert json.loads(out)["clean"]


def test_bit_rot_in_a_locked_s3_version_is_repaired_as_a_new_version_the_bad_one_kept(
    env: Env, ceph: PrivateCeph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bit rot of the recorded version itself: one bit of the stored data of an object's
    locked version on offer a (the offer reads are served from first) is flipped in RADOS,
    under the gateway (``PrivateCeph.rot``), as a failing disk would. The version id, its
    metadata (with the digest written at ingest) and its COMPLIANCE lock are unchanged, and
    S3 serves the flipped bytes: only re-reading the bytes finds it. That version is the
    key's first and, locked, cannot be deleted: the repair must add a new version and every
    read must then be pinned to it."""
    done = ingest(env, tmp_path / "d")
    bucket_a = env.settings.storage_offers[0]["bucket"]
    client_a = ceph.client(0)
    before = copies_of(env)
    rotten = sorted(key for offer, key in before if offer == "ceph-a" and "/content/" in key)[0]
    bad_version, sha = before[("ceph-a", rotten)]
    ceph.rot(bucket_a, rotten, bad_version, offset=100)
    bad = client_a.get_object(Bucket=bucket_a, Key=rotten, VersionId=bad_version)["Body"].read()
    found = hashlib.sha256(bad).hexdigest()
    assert found != sha

    code, out = run(env.settings, monkeypatch, "audit", "--json")
    assert code == 1, out
    [problem] = json.loads(out)["problems"]
    assert (
        problem["kind"],
        problem["offer"],
        problem["key"],
        problem["expected"],
        problem["found"],
    ) == ("corrupt", "ceph-a", rotten, f"sha256:{sha}", f"sha256:{found}")
    assert bad_version in problem["detail"]

    code, out = run(env.settings, monkeypatch, "audit", "--repair", "--json")
    assert code == 0, out
    [problem] = json.loads(out)["problems"]
    assert problem["repaired"], problem
    assert problem["repair_detail"] == "restored from ceph-b"

    # A new version; the bad one is still in the bucket, still locked, and recorded.
    listed = {v["VersionId"] for v in versions(client_a, bucket_a, rotten)}
    [new_version] = listed - {bad_version}
    assert listed == {bad_version, new_version}
    kept = client_a.get_object_retention(Bucket=bucket_a, Key=rotten, VersionId=bad_version)
    fresh = client_a.get_object_retention(Bucket=bucket_a, Key=rotten, VersionId=new_version)
    assert kept["Retention"]["Mode"] == fresh["Retention"]["Mode"] == "COMPLIANCE"
    assert fresh["Retention"]["RetainUntilDate"] >= kept["Retention"]["RetainUntilDate"]
    body = client_a.get_object(Bucket=bucket_a, Key=rotten, VersionId=new_version)["Body"]
    assert hashlib.sha256(body.read()).hexdigest() == sha
    after = copies_of(env)
    assert after[("ceph-a", rotten)] == (new_version, sha)
    assert {k: v for k, v in after.items() if k != ("ceph-a", rotten)} == {
        k: v for k, v in before.items() if k != ("ceph-a", rotten)
    }
    assert superseded(env) == [("ceph-a", rotten, bad_version, sha, found, "corrupt", new_version)]
    [entry] = repaired_entries(env)
    assert (entry["offer"], entry["key"], entry["was"], entry["source"]) == (
        "ceph-a",
        rotten,
        "corrupt",
        "ceph-b",
    )
    assert (entry["version_id"], entry["superseded_version_id"]) == (new_version, bad_version)

    # Reads follow the record: the content comes from offer a, at the new version.
    unit = env.http.get(
        f"/v1/archive-units/{done['archive_unit_id']}", headers=env.auth("archivist")
    ).json()
    [obj] = [o for o in unit["objects"] if o["sha256"] == sha]
    r = env.http.get(f"/v1/objects/{obj['id']}/content", headers=env.auth("archivist"))
    assert r.status_code == 200, r.text
    assert hashlib.sha256(r.content).hexdigest() == sha
    assert entries(env, "object.read")[-1]["offer"] == "ceph-a"

    # An evidence bundle with the objects ships the repaired version, and verifies offline.
    bundle = tmp_path / "evidence.zip"
    bundle.write_bytes(fetch(env, done["archive_unit_id"], with_objects="true"))
    code, _report, text = archive_verify(bundle)
    assert code == 0, text

    code, out = run(env.settings, monkeypatch, "audit", "--json")
    assert code == 0, out
    assert json.loads(out)["clean"]
    assert len(versions(client_a, bucket_a, rotten)) == 2
