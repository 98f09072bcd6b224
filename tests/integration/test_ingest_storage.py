"""How ingest stores objects: the local offer adopts the staged files (no copy), every copy is
verified by reading it back once, and nothing is left writable or in staging afterwards."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from archive_service.errors import Unavailable
from archive_service.ports import StoredBlob
from archive_service.services.ingest import IngestService
from archive_service.storage.local import LocalDirectoryStore
from tests.fixtures.dossier import make_dossier
from tests.integration.conftest import Env, only_stack


@only_stack("default")  # the local directory offer's files
def test_stored_objects_are_read_only_and_staging_is_gone(env: Env, tmp_path: Path) -> None:
    metadata, _ = make_dossier(tmp_path / "dossier")
    r = env.post_transfer(metadata, tmp_path / "dossier")
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    storage = env.settings.resolved_storage_dir
    objects = [p for p in (storage / "tenants").rglob("*") if p.is_file()]
    assert len(objects) == len(metadata["files"]) + 3  # + DECP record, manifest, token
    for path in objects:
        info = path.stat()
        assert info.st_mode & 0o777 == 0o444, path
        assert info.st_nlink == 1, f"{path} still has another name (staging)"
    staging = env.settings.resolved_staging_dir
    assert not staging.exists() or list(staging.iterdir()) == []
    assert list((storage / ".tmp").iterdir()) == []


class CountingOffer:
    """A local offer that counts reads, and can lie about having read back or return other
    bytes than it stored (a corrupted copy)."""

    def __init__(self, root: Path, *, claim_read_back: bool = False, corrupt: bool = False):
        self.name = root.name
        self._store = LocalDirectoryStore(self.name, root)
        self.opened = 0
        self.consumed: list[bool] = []
        self._claim = claim_read_back
        self._corrupt = corrupt

    def put_file(self, key: str, path: Path, *, sha256: str, consume: bool = False) -> StoredBlob:
        self.consumed.append(consume)
        blob = self._store.put_file(key, path, sha256=sha256, consume=False)
        return StoredBlob(blob.offer, blob.key, blob.size, blob.sha256, read_back=self._claim)

    def put_bytes(self, key: str, data: bytes) -> StoredBlob:
        return self._store.put_bytes(key, data)

    def open(self, key: str, *, version_id: str | None = None) -> BinaryIO:
        self.opened += 1
        if self._corrupt:
            import io

            return io.BytesIO(b"not what was stored")
        return self._store.open(key, version_id=version_id)

    def stat(self, key: str, *, version_id: str | None = None) -> StoredBlob | None:
        return self._store.stat(key, version_id=version_id)

    def iter_keys(self, prefix: str = "") -> Any:
        return self._store.iter_keys(prefix)

    def delete(self, key: str) -> None:
        self._store.delete(key)


def _service(*offers: Any) -> IngestService:
    none: Any = None
    return IngestService(
        uow=none,
        staging=none,
        offers=offers,
        tsa=none,
        formats=none,
        validator=none,
        referential=none,
        clock=none,
        runner=none,
    )


def _staged(tmp_path: Path, data: bytes) -> tuple[Path, str]:
    path = tmp_path / "staged.bin"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_every_copy_is_read_back_unless_the_offer_did_it(tmp_path: Path) -> None:
    path, sha = _staged(tmp_path, b"pli de candidature" * 100)
    plain = CountingOffer(tmp_path / "a")
    assert _service(plain)._put(plain, "k/obj", path, sha, consume=False)[:2] == (1800, None)
    assert plain.opened == 1
    assert _service(plain)._put(
        plain, "k/m", b"<xml/>", hashlib.sha256(b"<xml/>").hexdigest(), consume=True
    )[:2] == (6, None)
    assert plain.opened == 2

    read_back = CountingOffer(tmp_path / "b", claim_read_back=True)
    assert _service(read_back)._put(read_back, "k/obj", path, sha, consume=True)[0] == 1800
    assert read_back.opened == 0 and read_back.consumed == [True]
    # A copy found from an earlier attempt is read back: nobody read it in this one.
    assert _service(read_back)._put(read_back, "k/obj", path, sha, consume=True)[0] == 1800
    assert read_back.opened == 1


def test_a_copy_that_reads_back_wrong_is_not_accepted(tmp_path: Path) -> None:
    path, sha = _staged(tmp_path, b"DC4")
    corrupt = CountingOffer(tmp_path / "c", corrupt=True)
    with pytest.raises(Unavailable, match="read-back"):
        _service(corrupt)._put(corrupt, "k/obj", path, sha, consume=False)


def test_only_the_last_offer_may_consume_the_staged_files(env: Env, tmp_path: Path) -> None:
    first, last = CountingOffer(tmp_path / "o1"), CountingOffer(tmp_path / "o2")
    service = env.services.ingest
    service._offers = (first, last)  # type: ignore[attr-defined]
    metadata, _ = make_dossier(tmp_path / "dossier")
    r = env.post_transfer(metadata, tmp_path / "dossier")
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    assert first.consumed and not any(first.consumed)
    assert last.consumed and all(last.consumed)
    assert os.listdir(tmp_path / "o1" / "tenants") == os.listdir(tmp_path / "o2" / "tenants")
