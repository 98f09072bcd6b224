"""Fault matrix, case 4: the staging disk fills up during an upload. The sender gets a clear
refusal (507 problem+json) and nothing is half-written anywhere; the next transfer that fits
goes through. The staging area is a real 4 MiB tmpfs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.dossier import make_dossier, make_large_file, sha256_file
from tests.integration.conftest import Env
from tests.integration.test_ingest_bad_input import snapshot
from tests.reference import in_ci


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mountpoint = tmp_path / "staging-tmpfs"
    mountpoint.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs here: {done.stderr.strip()}"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_a_full_staging_disk_refuses_clearly_and_keeps_nothing(
    env: Env, tmp_path: Path, small_disk: Path
) -> None:
    env.services.staging.root = small_disk
    metadata, _ = make_dossier(tmp_path / "d")
    big = metadata["files"][0]
    path = tmp_path / "d" / big["path"]
    make_large_file(path, 16 * 1024 * 1024)
    big["sha256"] = sha256_file(path)
    before = snapshot(env)

    r = env.post_transfer(metadata, tmp_path / "d")
    assert r.status_code == 507, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["issues"][0]["code"] == "staging-full"
    assert snapshot(env) == before
    assert list(small_disk.iterdir()) == []  # the partial upload was removed

    # Space is back: a transfer that fits is archived.
    small, _ = make_dossier(tmp_path / "small", message_identifier="MAXI-2026-SMALL")
    r = env.post_transfer(small, tmp_path / "small")
    assert r.status_code == 202, r.text
    assert env.wait(r.json()["id"])["status"] == "accepted"
