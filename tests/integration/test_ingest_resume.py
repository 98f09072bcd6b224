"""One job at a time per transfer, and a job that runs again after a crash completes what the
first one wrote, byte for byte, without a second package."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from archive_service.config import Settings
from archive_service.db import tables as t
from archive_service.errors import ConfigurationError, Unavailable
from archive_service.ports import TransferStatus
from archive_service.storage.local import LocalDirectoryStore
from archive_service.wiring import build_services
from tests.fixtures.dossier import make_dossier
from tests.integration.conftest import Env, stored_objects


def holdings(env: Env) -> dict[tuple[str, str], tuple[object, str]]:
    """(offer, key) → (what a rewrite would change: the file's inode on a local offer, the
    version id on S3; the SHA-256 of the bytes read back now)."""
    found: dict[tuple[str, str], tuple[object, str]] = {}
    for offer in env.services.offers:
        for key in offer.iter_keys():
            blob = offer.stat(key)
            assert blob is not None
            if isinstance(offer, LocalDirectoryStore):
                identity: object = offer._object_path(key).stat().st_ino
            else:
                identity = blob.version_id
            with offer.open(key) as stream:
                digest = hashlib.file_digest(stream, "sha256").hexdigest()
            found[(offer.name, key)] = (identity, digest)
    return found


def _register_without_running(env: Env, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """Post a dossier while the job runner is paused, so the test drives the job itself."""
    submitted: list[str] = []
    runner = env.services.ingest._runner
    env.services.ingest._runner = type(
        "Hold", (), {"submit": lambda _s, _j, i: submitted.append(i)}
    )()
    try:
        metadata, _ = make_dossier(tmp_path / "d")
        r = env.post_transfer(metadata, tmp_path / "d")
        assert r.status_code == 202
    finally:
        env.services.ingest._runner = runner
    return submitted[0], metadata


def test_a_second_job_on_the_same_transfer_waits_for_the_lease(env: Env, tmp_path: Path) -> None:
    transfer_id, _ = _register_without_running(env, tmp_path)
    ingest = env.services.ingest
    now = env.services.ingest._clock.now()
    with ingest._uow() as uow:
        assert uow.transfers.claim(transfer_id, now=now, until=now + timedelta(minutes=5))
        uow.commit()
    with pytest.raises(Unavailable, match="another job"):
        ingest.process(transfer_id)
    with ingest._uow() as uow:
        # The lease ends; a later job may take over.
        assert uow.transfers.claim(
            transfer_id, now=now + timedelta(minutes=6), until=now + timedelta(minutes=10)
        )
        assert not uow.transfers.claim(
            transfer_id, now=now + timedelta(minutes=7), until=now + timedelta(minutes=12)
        )
        uow.transfers.release(transfer_id)
        uow.commit()
    assert ingest.process(transfer_id) is TransferStatus.ACCEPTED
    # Finished transfers cannot be claimed any more.
    with ingest._uow() as uow:
        assert not uow.transfers.claim(transfer_id, now=now, until=now + timedelta(minutes=5))


def test_a_job_that_crashed_before_the_commit_completes_with_the_same_bytes(
    env: Env, tmp_path: Path
) -> None:
    transfer_id, metadata = _register_without_running(env, tmp_path)
    ingest = env.services.ingest
    real_commit = ingest._commit_package

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("power cut just before the commit")

    ingest._commit_package = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        ingest.process(transfer_id)
    written = holdings(env)
    manifests = [k for k in written if k[1].endswith("/manifest.xml")]
    assert len(manifests) == len(env.services.offers)
    with env.services.engine.connect() as conn:
        assert conn.execute(select(t.Package.id)).all() == []

    ingest._commit_package = real_commit  # type: ignore[method-assign]
    assert ingest.process(transfer_id) is TransferStatus.ACCEPTED
    after = holdings(env)
    # Nothing the first run wrote was removed or rewritten: same objects, same files or
    # versions, same bytes (the manifest is rebuilt identically, the stored token is reused),
    # and no other version beside them.
    for key, state in written.items():
        assert after[key] == state, key
    assert len(stored_objects(env.services)) == len(after)
    with env.services.engine.connect() as conn:
        assert len(conn.execute(select(t.Package.id)).all()) == 1
        keys = conn.execute(select(t.StoredCopy.key)).scalars().all()
    assert len(keys) == (len(metadata["files"]) + 3) * len(env.services.offers)
    body = env.http.get(f"/v1/transfers/{transfer_id}", headers=env.auth()).json()
    assert body["status"] == "accepted"


def test_production_refuses_development_defaults(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var", environment="production")
    with pytest.raises(ConfigurationError) as caught:
        build_services(settings)
    message = caught.value.message
    assert "built-in TSA" in message
    assert "local-directory storage" in message
    assert "ARCHIVE_API_KEY_PEPPER" in message
    allowed = Settings(data_dir=tmp_path / "var", environment="production", allow_dev_defaults=True)
    build_services(allowed).close()
