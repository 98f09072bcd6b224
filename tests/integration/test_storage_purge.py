"""Purging an archived key (disposal with a visa) on the real S3 server and on a local
directory, and the test-only lock floor in seconds.

S3: ``purge`` refuses, removing nothing, while any version is retained or under legal hold;
once the retention has lapsed in real time it removes every version and every delete marker.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from archive_service.errors import ConfigurationError
from archive_service.storage.local import LocalDirectoryStore
from archive_service.storage.s3 import ObjectLocked, S3BlobStore, S3OfferConfig
from tests.integration.test_s3 import fresh_s3_store, raw_client

FLOOR_SECONDS = 3


def _entries(store: S3BlobStore, key: str) -> list[tuple[str, bool]]:
    return store._version_entries(key)


def _wait_lapsed(store: S3BlobStore, key: str, version_id: str) -> None:
    retention = store.retention(key, version_id=version_id)
    assert retention is not None and retention.retain_until is not None
    delay = (retention.retain_until - datetime.now(UTC)).total_seconds()
    time.sleep(max(0.0, delay) + 1.2)


def test_seconds_floor_then_purge_every_version_and_marker() -> None:
    with fresh_s3_store(object_lock_seconds_default=FLOOR_SECONDS) as store:
        key = "tenants/t/packages/p/content/obj-1"
        blob = store.put_bytes(key, b"offre non retenue")
        assert blob.version_id is not None
        before = datetime.now(UTC)
        until = store.lock(key, version_id=blob.version_id, retain_until=before)
        # The floor is seconds, not days: the lock ends within moments, in real time.
        assert 0 < (until - before).total_seconds() <= FLOOR_SECONDS + 2
        # A second version and a delete marker, as a repair and a stray delete leave them.
        client = raw_client(store.endpoint_url)
        client.put_object(Bucket=store.bucket, Key=key, Body=b"repaired copy")
        client.delete_object(Bucket=store.bucket, Key=key)
        entries = _entries(store, key)
        assert sorted(marker for _, marker in entries) == [False, False, True]

        with pytest.raises(ObjectLocked) as refused:
            store.purge(key)
        assert blob.version_id in refused.value.message
        assert _entries(store, key) == entries  # nothing removed

        store.set_legal_hold(key, version_id=blob.version_id, on=True)
        _wait_lapsed(store, key, blob.version_id)
        with pytest.raises(ObjectLocked, match="legal hold"):
            store.purge(key)
        assert _entries(store, key) == entries

        store.set_legal_hold(key, version_id=blob.version_id, on=False)
        store.purge(key)
        assert _entries(store, key) == []
        listed = client.list_object_versions(Bucket=store.bucket, Prefix=key)
        assert not listed.get("Versions") and not listed.get("DeleteMarkers")
        store.purge(key)  # absent: a resumed purge is not an error


def test_local_purge_removes_object_and_sidecar(tmp_path: Path) -> None:
    store = LocalDirectoryStore("local", tmp_path / "offer")
    key = "tenants/t/packages/p/content/obj-1"
    store.put_bytes(key, b"offre non retenue")
    assert store.stat(key) is not None
    store.purge(key)
    assert store.stat(key) is None
    assert list(store.iter_keys()) == []
    assert not (tmp_path / "offer" / ".sha256" / key).exists()
    store.purge(key)


def test_offer_config_seconds_floor() -> None:
    base = {
        "name": "ceph-a",
        "endpoint_url": "http://127.0.0.1:7480",
        "bucket": "archive-a",
        "access_key": "k",
        "secret_key": "s",
    }
    config = S3OfferConfig.from_mapping({**base, "min_retention_seconds": "5"})
    assert config.min_retention_seconds == 5
    assert config.store().object_lock_seconds_default == 5
    assert S3OfferConfig.from_mapping(base).store().object_lock_seconds_default is None
    with pytest.raises(ConfigurationError, match="not both"):
        S3OfferConfig.from_mapping({**base, "min_retention_seconds": 5, "min_retention_days": 1})
    with pytest.raises(ConfigurationError, match="whole number"):
        S3OfferConfig.from_mapping({**base, "min_retention_seconds": "soon"})
    with pytest.raises(ConfigurationError, match=">= 1"):
        S3OfferConfig.from_mapping({**base, "min_retention_seconds": 0})
