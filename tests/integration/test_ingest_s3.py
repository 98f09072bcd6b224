"""The step-1 end-to-end scenario on two S3 offers (two gateways of a real Ceph RGW), with
Object Lock: every copy on both offers, locked in COMPLIANCE mode, reads falling back to the
second offer when the first is gone."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from archive_service.config import Settings
from archive_service.db import tables as t
from tests.fixtures.dossier import make_dossier
from tests.integration.conftest import Env, open_env, s3_offers, unavailable
from tests.integration.test_s3 import raw_client
from tests.reference import official_schema

MIN_RETENTION_DAYS = 30


@pytest.fixture
def s3_env(settings: Settings) -> Iterator[tuple[Env, list[dict[str, Any]]]]:
    offers = [
        dict(offer, min_retention_days=MIN_RETENTION_DAYS) for offer in s3_offers("archive-e2e")
    ]
    with open_env(settings.model_copy(update={"storage_offers": offers})) as env:
        yield env, offers


def cluster_operator(*args: str) -> None:
    """``radosgw-admin`` on the test S3 server's cluster (``ARCHIVE_TEST_CEPH_DIR``)."""
    directory = Path(os.environ.get("ARCHIVE_TEST_CEPH_DIR", "/tmp/ceph-dev"))
    if not (directory / "ceph.conf").exists():
        unavailable(f"no Ceph cluster configuration in {directory} (set ARCHIVE_TEST_CEPH_DIR)")
    conf = str(directory / "ceph.conf")
    subprocess.run(["radosgw-admin", "-c", conf, *args], check=True, capture_output=True)


def test_dossier_on_two_locked_s3_offers(
    s3_env: tuple[Env, list[dict[str, Any]]], tmp_path: Path
) -> None:
    env, offers = s3_env
    metadata, _ = make_dossier(tmp_path / "d")
    r = env.post_transfer(metadata, tmp_path / "d")
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    unit = env.http.get(
        f"/v1/archive-units/{done['archive_unit_id']}", headers=env.auth("archivist")
    ).json()

    # Every blob is on both offers; the database records each copy with its version id.
    with env.services.engine.connect() as conn:
        copies = conn.execute(
            select(
                t.StoredCopy.offer, t.StoredCopy.key, t.StoredCopy.version_id, t.StoredCopy.sha256
            )
        ).all()
    by_offer: dict[str, set[str]] = {}
    for offer, key, version, _sha in copies:
        assert version
        by_offer.setdefault(offer, set()).add(key)
    assert set(by_offer) == {"ceph-a", "ceph-b"}
    assert by_offer["ceph-a"] == by_offer["ceph-b"]
    assert len(by_offer["ceph-a"]) == len(metadata["files"]) + 3

    # No orphan: each bucket holds exactly the keys the database names, one version each,
    # every one locked in COMPLIANCE mode at least for the configured minimum.
    floor = datetime.now(UTC) + timedelta(days=MIN_RETENTION_DAYS - 1)
    for spec in offers:
        client = raw_client(spec["endpoint_url"])
        listing = client.list_object_versions(Bucket=spec["bucket"])
        versions = listing.get("Versions", [])
        assert not listing.get("DeleteMarkers")
        assert {v["Key"] for v in versions} == by_offer[spec["name"]]
        assert len(versions) == len(by_offer[spec["name"]])
        for v in versions:
            retention = client.get_object_retention(
                Bucket=spec["bucket"], Key=v["Key"], VersionId=v["VersionId"]
            )["Retention"]
            assert retention["Mode"] == "COMPLIANCE"
            assert retention["RetainUntilDate"] >= floor

    # The manifest still validates against the official XSD and objects come back intact.
    manifest = env.http.get(
        f"/v1/archive-units/{unit['id']}/manifest", headers=env.auth("archivist")
    )
    from lxml import etree

    assert official_schema("2.3").validate(etree.fromstring(manifest.content))
    for obj in unit["objects"]:
        r = env.http.get(f"/v1/objects/{obj['id']}/content", headers=env.auth("platform"))
        assert hashlib.sha256(r.content).hexdigest() == obj["sha256"]

    # A copy lost on the first offer: reads fall back to the second one. The version is
    # locked, so only the cluster's operator can remove it (radosgw-admin bypasses S3).
    obj = unit["objects"][0]
    first = offers[0]
    key = next(k for k in by_offer["ceph-a"] if k.endswith(obj["uri"]))
    version = next(v for o, k, v, _sha in copies if o == "ceph-a" and k == key)
    cluster_operator(
        "object",
        "rm",
        f"--bucket={first['bucket']}",
        f"--object={key}",
        f"--object-version={version}",
    )
    assert (
        not raw_client(first["endpoint_url"])
        .list_object_versions(Bucket=first["bucket"], Prefix=key)
        .get("Versions")
    )
    r = env.http.get(f"/v1/objects/{obj['id']}/content", headers=env.auth("platform"))
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == obj["sha256"]
