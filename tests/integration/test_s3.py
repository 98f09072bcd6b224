"""The S3 offer on a real server (Ceph RGW, started by deploy/ceph/start-rgw.sh).

Server: ``ARCHIVE_TEST_S3_ENDPOINT`` (default http://127.0.0.1:7480), keys
``ARCHIVE_TEST_S3_ACCESS_KEY`` / ``ARCHIVE_TEST_S3_SECRET_KEY`` (defaults: the user the script
creates). Every test works in a bucket of its own. Without a server these tests are skipped,
except under CI (``CI=true``), where they fail.

The Object Lock checks go around the adapter on purpose: with the service's own credentials and
a plain boto3 client, the *server* must refuse to delete, overwrite or weaken a locked version.

The gateway restart test also needs ``ARCHIVE_TEST_CEPH_DIR`` (the start script's DIR) and
``ARCHIVE_TEST_S3_ENDPOINT_2`` (a second gateway of that cluster, which it stops and restarts).

The general ``BlobStore`` behaviour is checked by tests/integration/contracts/, which uses
:func:`fresh_s3_store` from here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from archive_service.errors import (
    ConfigurationError,
    Conflict,
    FingerprintMismatch,
    NotFound,
    Unavailable,
)
from archive_service.ports import LockingBlobStore, NullMetrics, VersionedBlobStore
from archive_service.storage.instrumented import instrument
from archive_service.storage.s3 import ObjectLocked, S3BlobStore, S3OfferConfig
from tests.fixtures.dossier import make_large_file

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def s3_endpoint() -> str:
    return os.environ.get("ARCHIVE_TEST_S3_ENDPOINT", "http://127.0.0.1:7480")


def s3_keys() -> tuple[str, str]:
    return (
        os.environ.get("ARCHIVE_TEST_S3_ACCESS_KEY", "ARCHIVETESTACCESSKEY"),
        os.environ.get("ARCHIVE_TEST_S3_SECRET_KEY", "archive-test-secret"),
    )


def raw_client(endpoint: str | None = None) -> Any:
    """A plain boto3 client with the service's credentials, to act around the adapter."""
    access, secret = s3_keys()
    return boto3.client(
        "s3",
        endpoint_url=endpoint or s3_endpoint(),
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 1},
            connect_timeout=2,
        ),
    )


@cache
def _server_problem() -> str | None:
    """Why the test server cannot be used, or ``None``; asked once per session."""
    try:
        raw_client().list_buckets()
    except ClientError as exc:
        return f"S3 server at {s3_endpoint()} refused the test keys: {exc}"
    except BotoCoreError as exc:
        return (
            f"no S3 server at {s3_endpoint()} ({exc}); start one with "
            "`deploy/ceph/start-rgw.sh /tmp/ceph-dev` or set ARCHIVE_TEST_S3_ENDPOINT"
        )
    return None


def require_s3() -> None:
    """Skip without a server; fail under CI, where .ci/run starts one."""
    problem = _server_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(problem)
    pytest.skip(problem)


def new_bucket_name() -> str:
    return f"t-{uuid.uuid4().hex[:24]}"


def empty_bucket(client: Any, bucket: str) -> None:
    """Remove what can be removed (locked versions stay until their date) and the bucket."""
    with contextlib.suppress(ClientError):
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                with contextlib.suppress(ClientError):
                    client.delete_object(
                        Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"]
                    )
        client.delete_bucket(Bucket=bucket)


@contextlib.contextmanager
def fresh_s3_store(**options: Any) -> Iterator[S3BlobStore]:
    """An S3 offer over a new, empty bucket (created with Object Lock), removed afterwards."""
    require_s3()
    access, secret = s3_keys()
    store = S3BlobStore(
        "s3-test",
        endpoint_url=s3_endpoint(),
        bucket=new_bucket_name(),
        access_key=access,
        secret_key=secret,
        **options,
    )
    store.ensure_bucket()
    try:
        yield store
    finally:
        empty_bucket(raw_client(), store.bucket)


@pytest.fixture(scope="session")
def s3_server() -> str:
    require_s3()
    return s3_endpoint()


@pytest.fixture
def store(s3_server: str) -> Iterator[S3BlobStore]:
    with fresh_s3_store(multipart_threshold=5 * MiB, part_size=5 * MiB) as instance:
        yield instance


@pytest.fixture
def s3(s3_server: str) -> Any:
    return raw_client()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _refused(action: Any) -> str:
    """Run a raw S3 call that must be refused; return the server's error code."""
    with pytest.raises(ClientError) as caught:
        action()
    return str(caught.value.response["Error"]["Code"])


def _versions(s3: Any, bucket: str) -> dict[str, list[Any]]:
    listing = s3.list_object_versions(Bucket=bucket)
    return {
        "versions": listing.get("Versions", []),
        "markers": listing.get("DeleteMarkers", []),
        "uploads": s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []),
    }


def _in(days: float = 0, *, minutes: float = 0) -> datetime:
    return datetime.now(UTC) + timedelta(days=days, minutes=minutes)


# --- The bucket ------------------------------------------------------------------------------


def test_the_bucket_is_created_versioned_with_object_lock(s3: Any, s3_server: str) -> None:
    access, secret = s3_keys()
    bucket = new_bucket_name()
    store = S3BlobStore(
        "s3-a", endpoint_url=s3_server, bucket=bucket, access_key=access, secret_key=secret
    )
    try:
        assert isinstance(store, LockingBlobStore)
        store.put_bytes("t/first", b"x")  # the first write checks or creates the bucket
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        config = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        assert config["ObjectLockEnabled"] == "Enabled" and "Rule" not in config
        store.ensure_bucket()  # an existing, suitable bucket is accepted as it is
    finally:
        empty_bucket(s3, bucket)


def test_a_bucket_that_cannot_lock_is_refused(s3: Any, s3_server: str) -> None:
    access, secret = s3_keys()
    plain, with_default, absent = new_bucket_name(), new_bucket_name(), new_bucket_name()
    s3.create_bucket(Bucket=plain)
    s3.put_bucket_versioning(Bucket=plain, VersioningConfiguration={"Status": "Enabled"})
    s3.create_bucket(Bucket=with_default, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=with_default,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    try:
        for bucket, why in ((plain, "Object Lock"), (with_default, "default retention")):
            store = S3BlobStore(
                "s3-a", endpoint_url=s3_server, bucket=bucket, access_key=access, secret_key=secret
            )
            with pytest.raises(ConfigurationError, match=why):
                store.put_bytes("t/x", b"x")
            assert _versions(s3, bucket)["versions"] == []
        missing = S3BlobStore(
            "s3-a",
            endpoint_url=s3_server,
            bucket=absent,
            access_key=access,
            secret_key=secret,
            create_bucket=False,
        )
        with pytest.raises(ConfigurationError, match="does not exist"):
            missing.ensure_bucket()
        with pytest.raises(ConfigurationError, match="does not exist"):
            list(missing.iter_keys())
    finally:
        empty_bucket(s3, plain)
        empty_bucket(s3, with_default)


def test_wrong_credentials_are_a_configuration_error(s3_server: str) -> None:
    store = S3BlobStore(
        "s3-a",
        endpoint_url=s3_server,
        bucket=new_bucket_name(),
        access_key="NOSUCHKEY",
        secret_key="wrong",
        max_attempts=1,
    )
    with pytest.raises(ConfigurationError, match="credentials"):
        store.ensure_bucket()


# --- Object Lock, enforced by the server -----------------------------------------------------


def test_a_locked_version_cannot_be_deleted_overwritten_nor_weakened(
    store: S3BlobStore, s3: Any
) -> None:
    key = "t/p/content/obj-1"
    blob = store.put_bytes(key, b"acte d'engagement")
    assert blob.version_id
    until = store.lock(key, version_id=blob.version_id, retain_until=_in(1))
    assert until.microsecond == 0 and until >= _in(1) - timedelta(seconds=5)
    bucket, version = store.bucket, blob.version_id

    def delete(**extra: Any) -> Any:
        return s3.delete_object(Bucket=bucket, Key=key, VersionId=version, **extra)

    def retain(mode: str, when: datetime, **extra: Any) -> Any:
        return s3.put_object_retention(
            Bucket=bucket,
            Key=key,
            VersionId=version,
            Retention={"Mode": mode, "RetainUntilDate": when},
            **extra,
        )

    # The server itself refuses, with the service's own credentials.
    assert _refused(delete) == "AccessDenied"
    assert _refused(lambda: delete(BypassGovernanceRetention=True)) == "AccessDenied"
    assert _refused(lambda: retain("COMPLIANCE", until - timedelta(hours=1))) == "AccessDenied"
    assert _refused(lambda: retain("GOVERNANCE", until)) == "AccessDenied"
    assert (
        _refused(lambda: retain("GOVERNANCE", until, BypassGovernanceRetention=True))
        == "AccessDenied"
    )
    # Overwriting: the adapter refuses the key; a raw PUT only adds a version beside it.
    with pytest.raises(Conflict):
        store.put_bytes(key, b"autre contenu")
    s3.put_object(Bucket=bucket, Key=key, Body=b"autre contenu")
    with store.open(key) as stream:
        assert stream.read() == b"acte d'engagement"
    stat = store.stat(key)
    assert stat is not None and stat.version_id == version
    # Cleaning up removes what is not locked, and says clearly what the server kept.
    with pytest.raises(ObjectLocked, match=f"{version}.*COMPLIANCE until"):
        store.delete(key)
    assert [v["VersionId"] for v in _versions(s3, bucket)["versions"]] == [version]
    retention = s3.get_object_retention(Bucket=bucket, Key=key, VersionId=version)["Retention"]
    assert retention["Mode"] == "COMPLIANCE" and retention["RetainUntilDate"] == until


def test_lock_only_ever_extends(store: S3BlobStore, s3: Any) -> None:
    blob = store.put_bytes("t/obj", b"x")
    assert blob.version_id
    first = store.lock("t/obj", version_id=blob.version_id, retain_until=_in(2))
    # Earlier date, or GOVERNANCE: what is in force stays (no error: the caller's floor holds).
    assert store.lock("t/obj", version_id=blob.version_id, retain_until=_in(1)) == first
    assert (
        store.lock("t/obj", version_id=blob.version_id, retain_until=_in(1), mode="GOVERNANCE")
        == first
    )
    later = store.lock("t/obj", version_id=blob.version_id, retain_until=_in(3))
    assert later > first
    retention = store.retention("t/obj", version_id=blob.version_id)
    assert retention is not None
    assert (retention.mode, retention.retain_until, retention.legal_hold) == (
        "COMPLIANCE",
        later,
        False,
    )
    with pytest.raises(ValueError, match="timezone"):
        store.lock("t/obj", version_id=blob.version_id, retain_until=datetime(2030, 1, 1))
    with pytest.raises(NotFound):
        store.lock("t/obj", version_id="no-such-version", retain_until=_in(1))


def test_lock_applies_the_configured_minimum(s3_server: str) -> None:
    with fresh_s3_store(object_lock_days_default=30) as store:
        blob = store.put_bytes("t/obj", b"x")
        assert blob.version_id
        until = store.lock("t/obj", version_id=blob.version_id, retain_until=_in(minutes=1))
        assert _in(30) - timedelta(minutes=1) <= until <= _in(30) + timedelta(seconds=2)


def test_legal_hold_blocks_deletion_until_lifted(store: S3BlobStore, s3: Any) -> None:
    blob = store.put_bytes("t/held", "pièce sous gel".encode())
    assert blob.version_id
    store.set_legal_hold("t/held", version_id=blob.version_id, on=True)
    hold = s3.get_object_legal_hold(Bucket=store.bucket, Key="t/held", VersionId=blob.version_id)
    assert hold["LegalHold"]["Status"] == "ON"
    refused = _refused(
        lambda: s3.delete_object(
            Bucket=store.bucket,
            Key="t/held",
            VersionId=blob.version_id,
            BypassGovernanceRetention=True,
        )
    )
    assert refused == "AccessDenied"
    with pytest.raises(ObjectLocked, match="legal hold"):
        store.delete("t/held")
    store.set_legal_hold("t/held", version_id=blob.version_id, on=False)
    store.delete("t/held")  # no retention: deletable once the hold is lifted
    assert store.stat("t/held") is None
    assert _versions(s3, store.bucket) == {"versions": [], "markers": [], "uploads": []}


# --- Multipart, digests, clean-up ------------------------------------------------------------


def test_multipart_round_trip_then_lock_after_completion(
    store: S3BlobStore, s3: Any, tmp_path: Path
) -> None:
    source = tmp_path / "offre.bin"
    size = 12 * MiB + 4321
    digest = make_large_file(source, size, seed=3)
    blob = store.put_file("t/offre", source, sha256=digest)
    assert (blob.size, blob.sha256) == (size, digest) and blob.version_id
    head = s3.head_object(Bucket=store.bucket, Key="t/offre", VersionId=blob.version_id)
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # 5 + 5 + 2 MiB parts
    assert head["Metadata"]["sha256"] == digest
    assert "ObjectLockMode" not in head  # written unlocked: lock at commit
    with store.open("t/offre") as stream:
        assert _sha256(stream.read()) == digest
    until = store.lock("t/offre", version_id=blob.version_id, retain_until=_in(minutes=10))
    retention = s3.get_object_retention(
        Bucket=store.bucket, Key="t/offre", VersionId=blob.version_id
    )["Retention"]
    assert retention == {"Mode": "COMPLIANCE", "RetainUntilDate": until}
    stat = store.stat("t/offre")
    assert stat == blob


@pytest.mark.parametrize("size", [100, 11 * MiB], ids=["single-put", "multipart"])
def test_a_wrong_digest_leaves_nothing_in_the_bucket(
    store: S3BlobStore, s3: Any, tmp_path: Path, size: int
) -> None:
    source = tmp_path / "f"
    digest = make_large_file(source, size, seed=9)
    with pytest.raises(FingerprintMismatch, match=digest):
        store.put_file("t/f", source, sha256=_sha256(b"something else"))
    assert _versions(s3, store.bucket) == {"versions": [], "markers": [], "uploads": []}
    assert store.put_file("t/f", source, sha256=digest).sha256 == digest


def test_delete_removes_every_version_and_unfinished_upload(store: S3BlobStore, s3: Any) -> None:
    store.put_bytes("t/obj", b"mine")
    s3.put_object(Bucket=store.bucket, Key="t/obj", Body=b"a version beside it")
    s3.delete_object(Bucket=store.bucket, Key="t/obj")  # and a delete marker
    s3.create_multipart_upload(Bucket=store.bucket, Key="t/obj")  # a crashed upload
    store.put_bytes("t/obj-2", b"kept")
    store.delete("t/obj")
    left = _versions(s3, store.bucket)
    assert [v["Key"] for v in left["versions"]] == ["t/obj-2"]
    assert left["markers"] == [] and left["uploads"] == []


def test_ranged_reads(store: S3BlobStore) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    store.put_bytes("t/r", data)
    with store.open("t/r") as stream:
        assert stream.seekable()
        stream.seek(1000)
        assert stream.read(100) == data[1000:1100]
        assert stream.tell() == 1100
        stream.seek(-10, os.SEEK_END)
        assert stream.read() == data[-10:]
        stream.seek(0)
        assert stream.read(5) == data[:5]
        assert stream.read() == data[5:]
        assert stream.read(10) == b""


# --- Versions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [100, 6 * MiB], ids=["single-put", "multipart"])
def test_reads_pinned_to_a_version_and_a_repair_version(
    store: S3BlobStore, s3: Any, tmp_path: Path, size: int
) -> None:
    key = "t/pinned"
    first = store.put_bytes(key, b"the first version")
    second_bytes = os.urandom(size)
    path = tmp_path / "second"
    path.write_bytes(second_bytes)
    with pytest.raises(Conflict):  # write-once stays: put_file refuses the key
        store.put_file(key, path, sha256=_sha256(second_bytes))
    with pytest.raises(FingerprintMismatch):
        store.put_version(key, path, sha256=_sha256(b"other bytes"))
    second = store.put_version(key, path, sha256=_sha256(second_bytes))
    assert second.version_id not in (None, first.version_id)
    assert (second.size, second.sha256) == (size, _sha256(second_bytes))
    assert {v["VersionId"] for v in _versions(s3, store.bucket)["versions"]} == {
        first.version_id,
        second.version_id,
    }

    # Without a version id: the key's first version, as before.
    with store.open(key) as stream:
        assert stream.read() == b"the first version"
    assert store.stat(key) == first
    # Pinned: exactly that version, whichever it is.
    with store.open(key, version_id=second.version_id) as stream:
        assert stream.read() == second_bytes
        stream.seek(size - 10)
        assert stream.read() == second_bytes[-10:]
    with store.open(key, version_id=first.version_id) as stream:
        assert stream.read() == b"the first version"
    assert store.stat(key, version_id=second.version_id) == second
    assert store.compute_sha256(key, version_id=second.version_id) == _sha256(second_bytes)

    # An unknown version, or a version of another key: absent.
    for missing_key, version in ((key, "no-such-version"), ("t/other", first.version_id)):
        with pytest.raises(NotFound):
            store.open(missing_key, version_id=version)
        assert store.stat(missing_key, version_id=version) is None


def test_an_instrumented_offer_passes_the_version_and_counts_no_absent_one(
    store: S3BlobStore,
) -> None:
    errors: list[tuple[str, str]] = []

    class Recorder(NullMetrics):
        def storage_error(self, offer: str, operation: str) -> None:
            errors.append((offer, operation))

    offer = instrument(store, Recorder())
    assert isinstance(offer, VersionedBlobStore)
    blob = store.put_bytes("t/i", b"instrumented")
    with offer.open("t/i", version_id=blob.version_id) as stream:
        assert stream.read() == b"instrumented"
    assert offer.stat("t/i", version_id=blob.version_id) == blob
    with pytest.raises(NotFound):
        offer.open("t/i", version_id="no-such-version")
    assert offer.stat("t/i", version_id="no-such-version") is None
    assert errors == []


# --- Unreachable server ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_unavailable(tmp_path: Path) -> None:
    store = S3BlobStore(
        "s3-down",
        endpoint_url=f"http://127.0.0.1:{_free_port()}",
        bucket="anything",
        access_key="a",
        secret_key="b",
        max_attempts=1,
        connect_timeout=1,
    )
    source = tmp_path / "f"
    source.write_bytes(b"x")
    calls = [
        lambda: store.put_bytes("t/x", b"x"),
        lambda: store.put_file("t/x", source, sha256=_sha256(b"x")),
        lambda: store.stat("t/x"),
        lambda: store.open("t/x"),
        lambda: list(store.iter_keys()),
        lambda: store.delete("t/x"),
        lambda: store.lock("t/x", version_id="v", retain_until=_in(1)),
        lambda: store.set_legal_hold("t/x", version_id="v", on=True),
        store.ensure_bucket,
    ]
    for call in calls:
        with pytest.raises(Unavailable, match="cannot reach"):
            call()


def test_a_gateway_stopped_then_restarted(tmp_path: Path) -> None:
    """Two gateways of one cluster are two offers that fail apart (fault tests build on it)."""
    ceph_dir = os.environ.get("ARCHIVE_TEST_CEPH_DIR")
    second = os.environ.get("ARCHIVE_TEST_S3_ENDPOINT_2")
    if not (ceph_dir and second):
        pytest.skip("needs ARCHIVE_TEST_CEPH_DIR and ARCHIVE_TEST_S3_ENDPOINT_2")
    require_s3()
    port = str(urlsplit(second).port)
    access, secret = s3_keys()
    bucket = new_bucket_name()
    offer_b = S3BlobStore(
        "s3-b",
        endpoint_url=second,
        bucket=bucket,
        access_key=access,
        secret_key=secret,
        max_attempts=1,
        connect_timeout=1,
    )
    offer_b.put_bytes("t/before", b"1")
    try:
        subprocess.run([REPO / "deploy/ceph/stop-rgw.sh", ceph_dir, "--rgw", port], check=True)
        with pytest.raises(Unavailable):
            offer_b.put_bytes("t/during", b"2")
        with fresh_s3_store() as offer_a:  # the other gateway still serves
            assert offer_a.put_bytes("t/during", b"2").size == 1
    finally:
        started = subprocess.run(
            [REPO / "deploy/ceph/start-rgw.sh", ceph_dir, port],
            check=True,
            capture_output=True,
            text=True,
        )
    assert started.stdout.strip() == second.rstrip("/")
    assert offer_b.stat("t/before") is not None
    assert offer_b.put_bytes("t/after", b"3").size == 1
    empty_bucket(raw_client(second), bucket)


# --- Settings --------------------------------------------------------------------------------


def test_offer_config_from_settings() -> None:
    config = S3OfferConfig.from_mapping(
        {
            "name": "ceph-a",
            "endpoint_url": "http://127.0.0.1:7480",
            "bucket": "archives-gip",
            "access_key": "AK",
            "secret_key": "SK",
            "path_style": "false",
            "min_retention_days": "3650",
        }
    )
    assert (config.region, config.path_style, config.min_retention_days) == (
        "us-east-1",
        False,
        3650,
    )
    assert "SK" not in repr(config)
    store = config.store(max_attempts=1)
    assert (store.name, store.bucket, store.object_lock_days_default) == (
        "ceph-a",
        "archives-gip",
        3650,
    )
    base = {"name": "a", "endpoint_url": "http://h:1", "bucket": "bkt", "access_key": "k"}
    for bad, match in [
        ({**base}, "missing settings secret_key"),
        ({**base, "secret_key": "s", "sekret": "x"}, "unknown settings sekret"),
        ({**base, "secret_key": "s", "bucket": "Bad_Bucket"}, "invalid bucket"),
        ({**base, "secret_key": "s", "endpoint_url": "127.0.0.1:7480"}, "endpoint_url"),
        ({**base, "secret_key": "s", "path_style": "maybe"}, "path_style"),
        ({**base, "secret_key": "s", "min_retention_days": "ten"}, "whole number"),
        ({**base, "secret_key": "s", "min_retention_days": 0}, ">= 1"),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            S3OfferConfig.from_mapping(bad)
