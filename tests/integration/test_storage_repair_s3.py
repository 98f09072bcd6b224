"""`archive-service storage repair` on two S3 offers with Object Lock (Ceph RGW, a cluster of
this module's own: the test removes a locked version as the cluster's operator would, with
``radosgw-admin``, which S3 clients cannot do).

A copy lost on one offer is restored from the other as a new version, locked in COMPLIANCE mode
at least as long as its sibling, recorded with its new version id, and logged. A delete
marker in front of an archived version hides nothing from the service (it reads the version
that is the object), so repair finds that copy healthy and leaves it alone.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from archive_service.api.app import create_app
from archive_service.config import Settings
from archive_service.db import tables as t
from archive_service.wiring import build_services
from tests.fixtures.dossier import BUYER_NAME, BUYER_SIRET, make_small_dossier
from tests.integration.ceph_cluster import PrivateCeph, private_ceph
from tests.integration.conftest import Env
from tests.integration.test_s3 import s3_keys
from tests.integration.test_storage_admin import repaired_entries, run
from tests.reference import decp_schema_path, seda_xsd_dir

MIN_RETENTION_DAYS = 30


@pytest.fixture(scope="module")
def ceph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCeph]:
    with private_ceph(tmp_path_factory.mktemp("ceph")) as cluster:
        yield cluster


@pytest.fixture
def env(ceph: PrivateCeph, tmp_path: Path) -> Iterator[Env]:
    """The one-machine service (SQLite, jobs in process) on two S3 offers of ``ceph``: the
    repair logic does not depend on the database or the task runner."""
    access, secret = s3_keys()
    suffix = uuid.uuid4().hex[:10]
    offers = [
        {
            "name": f"ceph-{n}",
            "kind": "s3",
            "endpoint_url": endpoint,
            "bucket": f"archive-repair-{n}-{suffix}",
            "access_key": access,
            "secret_key": secret,
            "min_retention_days": MIN_RETENTION_DAYS,
        }
        for n, endpoint in zip("ab", ceph.endpoints, strict=True)
    ]
    settings = Settings(
        data_dir=tmp_path / "var",
        seda_xsd_dir=seda_xsd_dir(),
        decp_schema_path=decp_schema_path(),
        storage_offers=offers,
    )
    services = build_services(settings)
    result = services.tenancy.bootstrap("GIP S3", [f"{BUYER_SIRET}:{BUYER_NAME}"])
    keys = {k.role.value: k.key for k in result.keys}
    try:
        with TestClient(create_app(settings, services=services)) as http:
            yield Env(http, services, keys, {}, settings)
    finally:
        services.close()


def copies_of(env: Env) -> dict[tuple[str, str], tuple[str, str]]:
    """(offer, key) → (version id, SHA-256), as the database records them."""
    with env.services.engine.connect() as conn:
        rows = conn.execute(
            select(
                t.StoredCopy.offer, t.StoredCopy.key, t.StoredCopy.version_id, t.StoredCopy.sha256
            )
        ).all()
    return {(offer, key): (version, sha) for offer, key, version, sha in rows}


def versions(client: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    listing = client.list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in listing.get("Versions", []) if v["Key"] == key]


def test_a_copy_lost_on_an_s3_offer_is_restored_as_a_new_locked_version(
    env: Env, ceph: PrivateCeph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metadata, _ = make_small_dossier(tmp_path / "d", 3, sizes=(2_000, 8_000), seed=7)
    r = env.post_transfer(metadata, tmp_path / "d")
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    offers = env.settings.storage_offers
    bucket_a, bucket_b = offers[0]["bucket"], offers[1]["bucket"]
    client_a, client_b = ceph.client(0), ceph.client(1)
    before = copies_of(env)
    objects = sorted(key for offer, key in before if offer == "ceph-a" and "/content/" in key)
    lost, hidden = objects[0], objects[1]
    lost_version, lost_sha = before[("ceph-b", lost)]

    # Lost on offer b: the cluster's operator removed the locked version; the bucket lacks it.
    ceph.admin(
        "object",
        "rm",
        f"--bucket={bucket_b}",
        f"--object={lost}",
        f"--object-version={lost_version}",
    )
    assert versions(client_b, bucket_b, lost) == []
    # Hidden on offer a: a delete marker in front of the locked version (a careless client).
    client_a.delete_object(Bucket=bucket_a, Key=hidden)

    code, out = run(env.settings, monkeypatch, "storage", "repair", "--all")
    assert code == 0, out
    assert f"repaired ceph-b:{lost} from ceph-a" in out
    assert "1 repaired, 0 not repairable" in out

    # The restored copy: a new version, the right bytes, locked like its sibling on offer a.
    restored = versions(client_b, bucket_b, lost)
    assert len(restored) == 1
    new_version = restored[0]["VersionId"]
    assert new_version != lost_version
    body = client_b.get_object(Bucket=bucket_b, Key=lost, VersionId=new_version)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == lost_sha
    sibling_version, _ = before[("ceph-a", lost)]
    retention = client_b.get_object_retention(Bucket=bucket_b, Key=lost, VersionId=new_version)
    sibling = client_a.get_object_retention(Bucket=bucket_a, Key=lost, VersionId=sibling_version)
    assert retention["Retention"]["Mode"] == "COMPLIANCE"
    # At least as long as its sibling (while the DUA's start is pending, the offer's minimum
    # counts from the lock, so the repaired copy may be held a little longer).
    assert retention["Retention"]["RetainUntilDate"] >= sibling["Retention"]["RetainUntilDate"]
    after = copies_of(env)
    assert after[("ceph-b", lost)] == (new_version, lost_sha)
    assert {k: v for k, v in after.items() if k != ("ceph-b", lost)} == {
        k: v for k, v in before.items() if k != ("ceph-b", lost)
    }
    [entry] = repaired_entries(env)
    assert (entry["offer"], entry["key"], entry["was"], entry["source"]) == (
        "ceph-b",
        lost,
        "missing",
        "ceph-a",
    )
    assert entry["version_id"] == new_version

    # The hidden copy was the object all along: untouched, and still what reads return.
    assert [v["VersionId"] for v in versions(client_a, bucket_a, hidden)] == [
        before[("ceph-a", hidden)][0]
    ]
    unit = env.http.get(
        f"/v1/archive-units/{done['archive_unit_id']}", headers=env.auth("archivist")
    ).json()
    for obj in unit["objects"]:
        r = env.http.get(f"/v1/objects/{obj['id']}/content", headers=env.auth("archivist"))
        assert hashlib.sha256(r.content).hexdigest() == obj["sha256"]

    # Nothing left to do.
    code, out = run(env.settings, monkeypatch, "storage", "repair", "--all")
    assert code == 0, out
    assert "0 repaired, 0 not repairable" in out
    assert len(repaired_entries(env)) == 1
