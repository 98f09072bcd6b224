"""One job at a time per transfer, and a job that runs again after a crash completes what the
first one wrote, byte for byte, without a second package."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from archive_service.config import Settings
from archive_service.db import tables as t
from archive_service.errors import ConfigurationError, Unavailable
from archive_service.ports import TransferStatus
from archive_service.wiring import build_services
from tests.fixtures.dossier import make_dossier
from tests.integration.conftest import Env


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
    storage = env.settings.resolved_storage_dir
    written = {p: (p.stat().st_ino, p.read_bytes()) for p in storage.rglob("*") if p.is_file()}
    manifests = [p for p in written if p.name == "manifest.xml" and ".sha256" not in p.parts]
    assert len(manifests) == 1
    with env.services.engine.connect() as conn:
        assert conn.execute(select(t.Package.id)).all() == []

    ingest._commit_package = real_commit  # type: ignore[method-assign]
    assert ingest.process(transfer_id) is TransferStatus.ACCEPTED
    after = {p: (p.stat().st_ino, p.read_bytes()) for p in storage.rglob("*") if p.is_file()}
    # Nothing the first run wrote was removed or rewritten: same files, same inodes, same bytes
    # (the manifest is rebuilt identically, the stored token is reused).
    for path, state in written.items():
        assert after[path] == state, path
    with env.services.engine.connect() as conn:
        assert len(conn.execute(select(t.Package.id)).all()) == 1
        keys = conn.execute(select(t.StoredCopy.key)).scalars().all()
    assert len(keys) == len(metadata["files"]) + 3
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
