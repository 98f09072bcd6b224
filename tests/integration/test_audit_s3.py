"""`archive-service audit` on two S3 offers with Object Lock (a private Ceph cluster, as in
test_storage_repair_s3.py): a locked version removed by the cluster's operator is reported
missing; ``--repair`` restores it as a new version, the lost one recorded as superseded; the
next audit is clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from archive_service.db import tables as t
from tests.integration.ceph_cluster import PrivateCeph
from tests.integration.conftest import Env
from tests.integration.test_audit import ingest
from tests.integration.test_storage_admin import run
from tests.integration.test_storage_repair_s3 import ceph, copies_of, env, versions

__all__ = ["ceph", "env"]  # fixtures


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
    with env.services.engine.connect() as conn:
        superseded = conn.execute(
            select(
                t.SupersededCopy.offer,
                t.SupersededCopy.key,
                t.SupersededCopy.version_id,
                t.SupersededCopy.reason,
                t.SupersededCopy.superseded_by,
            )
        ).all()
    assert [tuple(r) for r in superseded] == [
        ("ceph-b", lost, lost_version, "missing", restored["VersionId"])
    ]

    code, out = run(env.settings, monkeypatch, "audit", "--json")
    assert code == 0, out
    assert json.loads(out)["clean"]
