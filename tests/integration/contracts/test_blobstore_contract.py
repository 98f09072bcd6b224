"""The ``BlobStore`` contract: every storage offer passes the same tests.

Write-once keys, digests checked before anything is published, ``NotFound`` for missing keys,
sorted listings, streaming of large objects and the same key rules everywhere (DESIGN §2, §3
step 6). To run the suite against another offer, add a factory to :data:`STORE_FACTORIES`: a
context manager that takes a scratch directory and yields an *empty* store (for S3: a fresh
bucket or a unique key prefix), marked to skip or fail as that offer's tests require.

The last section holds what is specific to :class:`LocalDirectoryStore` (file modes, temporary
files, digest sidecars).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from archive_service.errors import Conflict, FingerprintMismatch, NotFound
from archive_service.ports import BlobStore, StoredBlob
from archive_service.storage.local import DIRECT_CHUNK, DIRECT_READ_SIZE, LocalDirectoryStore
from tests.fixtures.dossier import make_large_file
from tests.integration.test_s3 import fresh_s3_store

StoreFactory = Callable[[Path], AbstractContextManager[BlobStore]]

KEY = "tenants/t1/packages/pkg-01JDQ0000000000000000000AA/content/obj-01JDQ0000000000000000000AB"


@contextlib.contextmanager
def local_store(scratch: Path) -> Iterator[BlobStore]:
    yield LocalDirectoryStore("local-1", scratch / "offer")


@contextlib.contextmanager
def s3_store(scratch: Path) -> Iterator[BlobStore]:
    """A fresh bucket on the test S3 server (skipped without one, failed under CI)."""
    with fresh_s3_store() as store:
        yield store


STORE_FACTORIES = [
    pytest.param(local_store, id="local"),
    pytest.param(s3_store, id="s3"),
]


@pytest.fixture(params=STORE_FACTORIES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    factory: StoreFactory = request.param
    with factory(tmp_path) as instance:
        yield instance


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_all(store: BlobStore, key: str) -> bytes:
    with store.open(key) as stream:
        return stream.read()


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- Round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("consume", [False, True], ids=["copy", "consume"])
def test_put_file_then_read_back(store: BlobStore, tmp_path: Path, consume: bool) -> None:
    """``consume=True`` lets an offer adopt the file instead of copying it: a hint, with the
    same outcome either way."""
    data = "Règlement de la consultation\n".encode() * 1000
    path = _file(tmp_path, "rc.txt", data)
    blob = store.put_file(KEY, path, sha256=_sha256(data), consume=consume)
    assert isinstance(blob, StoredBlob)
    assert (blob.offer, blob.key, blob.size, blob.sha256) == (
        store.name,
        KEY,
        len(data),
        _sha256(data),
    )
    assert _read_all(store, KEY) == data
    stat = store.stat(KEY)
    assert stat is not None
    assert (stat.offer, stat.key, stat.size, stat.sha256) == (
        store.name,
        KEY,
        len(data),
        _sha256(data),
    )


def test_put_file_accepts_an_uppercase_digest(store: BlobStore, tmp_path: Path) -> None:
    data = b"ABC"
    blob = store.put_file(KEY, _file(tmp_path, "f", data), sha256=_sha256(data).upper())
    assert blob.sha256 == _sha256(data)


def test_put_bytes_then_read_back(store: BlobStore) -> None:
    blob = store.put_bytes("a/manifest.xml", b"<ArchiveTransfer/>")
    assert blob.size == 18 and blob.sha256 == _sha256(b"<ArchiveTransfer/>")
    assert _read_all(store, "a/manifest.xml") == b"<ArchiveTransfer/>"


def test_empty_object(store: BlobStore) -> None:
    blob = store.put_bytes("a/empty", b"")
    assert blob.size == 0 and blob.sha256 == _sha256(b"")
    assert _read_all(store, "a/empty") == b""
    assert store.stat("a/empty") == blob


def test_put_file_consume_still_checks_the_digest(store: BlobStore, tmp_path: Path) -> None:
    data = b"contenu du CCAP"
    with pytest.raises(FingerprintMismatch):
        store.put_file(KEY, _file(tmp_path, "f", data), sha256=_sha256(b"autre"), consume=True)
    assert store.stat(KEY) is None
    assert list(store.iter_keys()) == []
    store.put_bytes("taken", b"x")
    with pytest.raises(Conflict):
        store.put_file("taken", _file(tmp_path, "g", b"y"), sha256=_sha256(b"y"), consume=True)
    assert _read_all(store, "taken") == b"x"


# --- Write once ----------------------------------------------------------------------------


def test_existing_key_is_never_overwritten(store: BlobStore, tmp_path: Path) -> None:
    store.put_bytes(KEY, b"first")
    other = b"second version"
    with pytest.raises(Conflict):
        store.put_file(KEY, _file(tmp_path, "f", other), sha256=_sha256(other))
    with pytest.raises(Conflict):
        store.put_bytes(KEY, other)
    with pytest.raises(Conflict):  # even with the same bytes: a key is written once
        store.put_bytes(KEY, b"first")
    assert _read_all(store, KEY) == b"first"
    stat = store.stat(KEY)
    assert stat is not None and stat.sha256 == _sha256(b"first")


def test_racing_writers_one_wins(store: BlobStore) -> None:
    for round_ in range(10):
        key = f"race/{round_}"
        barrier = threading.Barrier(4)
        outcomes: dict[int, str] = {}

        def write(
            index: int,
            key: str = key,
            barrier: threading.Barrier = barrier,
            outcomes: dict[int, str] = outcomes,
        ) -> None:
            barrier.wait()
            try:
                store.put_bytes(key, f"writer {index}".encode())
                outcomes[index] = "stored"
            except Conflict:
                outcomes[index] = "conflict"

        threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [i for i, outcome in outcomes.items() if outcome == "stored"]
        assert len(winners) == 1 and len(outcomes) == 4, outcomes
        expected = f"writer {winners[0]}".encode()
        assert _read_all(store, key) == expected
        stat = store.stat(key)
        assert stat is not None and stat.sha256 == _sha256(expected)


# --- Digest checked before publication -----------------------------------------------------


def test_digest_mismatch_leaves_nothing(store: BlobStore, tmp_path: Path) -> None:
    data = b"contenu du CCAP"
    with pytest.raises(FingerprintMismatch) as caught:
        store.put_file(KEY, _file(tmp_path, "f", data), sha256=_sha256(b"autre chose"))
    assert _sha256(data) in caught.value.message
    assert store.stat(KEY) is None
    assert list(store.iter_keys()) == []
    with pytest.raises(NotFound):
        store.open(KEY)
    # The key is still free for the right bytes.
    assert store.put_file(KEY, tmp_path / "f", sha256=_sha256(data)).sha256 == _sha256(data)


def test_malformed_expected_digest_is_refused(store: BlobStore, tmp_path: Path) -> None:
    path = _file(tmp_path, "f", b"x")
    for bad in ("", "abc", "g" * 64, _sha256(b"x") + "0"):
        with pytest.raises(ValueError):
            store.put_file(KEY, path, sha256=bad)
    assert list(store.iter_keys()) == []


# --- Missing keys, listing, delete ---------------------------------------------------------


def test_missing_key(store: BlobStore) -> None:
    with pytest.raises(NotFound):
        store.open("tenants/t1/nothing")
    assert store.stat("tenants/t1/nothing") is None
    store.put_bytes("tenants/t1/a/b", b"x")
    with pytest.raises(NotFound):
        store.open("tenants/t1/a")  # a prefix is not an object
    assert store.stat("tenants/t1/a") is None


def test_iter_keys_sorted_with_string_prefixes(store: BlobStore) -> None:
    keys = [
        "t/p2/content/obj-2",
        "t/p1/manifest.xml",
        "t/p1/content/obj-1",
        "t/p1-extra/x",
        "t/p10/y",
        "t/p1/content/obj-10",
        "u/other",
        "t/é/accent",
    ]
    for key in keys:
        store.put_bytes(key, key.encode())
    assert list(store.iter_keys()) == sorted(keys)
    assert list(store.iter_keys("t/p1/")) == [
        "t/p1/content/obj-1",
        "t/p1/content/obj-10",
        "t/p1/manifest.xml",
    ]
    # A prefix is a string prefix (as in S3), not a directory name.
    assert list(store.iter_keys("t/p1")) == [
        "t/p1-extra/x",
        "t/p1/content/obj-1",
        "t/p1/content/obj-10",
        "t/p1/manifest.xml",
        "t/p10/y",
    ]
    assert list(store.iter_keys("t/p1/content/obj-1")) == [
        "t/p1/content/obj-1",
        "t/p1/content/obj-10",
    ]
    assert list(store.iter_keys("nothing/")) == []
    assert list(store.iter_keys("t/é")) == ["t/é/accent"]


def test_delete_removes_and_frees_the_key(store: BlobStore) -> None:
    store.put_bytes("t/p/obj", b"written by a transfer that failed")
    store.put_bytes("t/p/keep", b"kept")
    store.delete("t/p/obj")
    assert store.stat("t/p/obj") is None
    assert list(store.iter_keys()) == ["t/p/keep"]
    with pytest.raises(NotFound):
        store.open("t/p/obj")
    store.delete("t/p/obj")  # cleaning up twice is not an error (retries)
    store.put_bytes("t/p/obj", b"the retry")
    assert _read_all(store, "t/p/obj") == b"the retry"
    stat = store.stat("t/p/obj")
    assert stat is not None and stat.sha256 == _sha256(b"the retry")


def test_purge_removes_an_unlocked_archived_key_and_is_idempotent(store: BlobStore) -> None:
    store.put_bytes("t/p/destroyed", b"an offer whose DUA ended, with the visa")
    store.put_bytes("t/p/kept", b"kept")
    store.purge("t/p/destroyed")
    assert store.stat("t/p/destroyed") is None
    assert list(store.iter_keys()) == ["t/p/kept"]
    with pytest.raises(NotFound):
        store.open("t/p/destroyed")
    store.purge("t/p/destroyed")  # a resumed execution purges again: not an error
    store.purge("t/p/never-written")


# --- Large objects are streamed ------------------------------------------------------------


def _peak_traced(action: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_large_file_is_streamed(store: BlobStore, tmp_path: Path) -> None:
    size = 64 * 1024 * 1024 + 12_345
    source = tmp_path / "large.bin"
    digest = make_large_file(source, size, seed=11)
    limit = 16 * 1024 * 1024  # a quarter of the file: it was never held whole in memory

    blobs: list[StoredBlob] = []
    peak_put = _peak_traced(lambda: blobs.append(store.put_file(KEY, source, sha256=digest)))
    assert blobs[0].size == size and blobs[0].sha256 == digest
    assert peak_put < limit, f"put_file allocated {peak_put} bytes at peak"

    read_back = hashlib.sha256()
    chunks: list[int] = []

    def read() -> None:
        with store.open(KEY) as stream:
            while chunk := stream.read(1024 * 1024):
                chunks.append(len(chunk))
                read_back.update(chunk)

    peak_read = _peak_traced(read)
    assert read_back.hexdigest() == digest and sum(chunks) == size
    assert len(chunks) >= 64
    assert peak_read < limit, f"reading allocated {peak_read} bytes at peak"
    stat = store.stat(KEY)
    assert stat is not None and (stat.size, stat.sha256) == (size, digest)


# --- Key rules -----------------------------------------------------------------------------

BAD_KEYS = [
    "",
    "/tenants/t1/obj",
    "../escape",
    "tenants/../../escape",
    "tenants/./obj",
    "..",
    "tenants\\t1\\obj",
    "tenants//obj",
    "tenants/t1/",
    "tenants/t1/obj\x00",
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused(store: BlobStore, tmp_path: Path, key: str) -> None:
    path = _file(tmp_path, "f", b"x")
    with pytest.raises(ValueError):
        store.put_file(key, path, sha256=_sha256(b"x"))
    with pytest.raises(ValueError):
        store.put_bytes(key, b"x")
    with pytest.raises(ValueError):
        store.open(key)
    with pytest.raises(ValueError):
        store.stat(key)
    with pytest.raises(ValueError):
        store.delete(key)
    assert list(store.iter_keys()) == []


@pytest.mark.parametrize("prefix", ["/", "../", "a/../", "a\\"])
def test_bad_prefixes_are_refused(store: BlobStore, prefix: str) -> None:
    with pytest.raises(ValueError):
        list(store.iter_keys(prefix))


# --- LocalDirectoryStore specifics ---------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> LocalDirectoryStore:
    return LocalDirectoryStore("local-1", tmp_path / "offer")


def test_local_objects_are_read_only_files_under_their_key(local: LocalDirectoryStore) -> None:
    local.put_bytes("t/p/obj", b"x")
    path = local.root / "t" / "p" / "obj"
    assert path.read_bytes() == b"x"
    assert path.stat().st_mode & 0o777 == 0o444
    assert list((local.root / ".tmp").iterdir()) == []


def test_local_mismatch_leaves_no_temporary_file_nor_directory(
    local: LocalDirectoryStore, tmp_path: Path
) -> None:
    path = _file(tmp_path, "f", b"data")
    with pytest.raises(FingerprintMismatch):
        local.put_file("t/new/dir/obj", path, sha256=_sha256(b"other"))
    assert list((local.root / ".tmp").iterdir()) == []
    assert not (local.root / "t").exists()


def test_local_stat_uses_the_recorded_digest_and_recomputes_without_it(
    local: LocalDirectoryStore,
) -> None:
    local.put_bytes("t/obj", b"contenu")
    sidecar = local.root / ".sha256" / "t" / "obj"
    assert sidecar.read_text().strip() == _sha256(b"contenu")
    assert "t/obj" in list(local.iter_keys()) and len(list(local.iter_keys())) == 1
    sidecar.unlink()  # as after a crash between publication and the sidecar
    stat = local.stat("t/obj")
    assert stat is not None and stat.sha256 == _sha256(b"contenu")
    assert local.compute_sha256("t/obj") == _sha256(b"contenu")
    local.delete("t/obj")
    assert local.stat("t/obj") is None


def test_local_has_no_versions_so_any_version_id_is_absent(local: LocalDirectoryStore) -> None:
    blob = local.put_bytes("t/obj", b"contenu")
    assert blob.version_id is None
    with local.open("t/obj", version_id=None) as stream:
        assert stream.read() == b"contenu"
    assert local.stat("t/obj", version_id=None) == blob
    with pytest.raises(NotFound):
        local.open("t/obj", version_id="some-version")
    assert local.stat("t/obj", version_id="some-version") is None


def test_local_refuses_dot_segments_and_prefix_collisions(local: LocalDirectoryStore) -> None:
    for key in (".tmp/x", "t/.sha256", ".hidden"):
        with pytest.raises(ValueError):
            local.put_bytes(key, b"x")
    local.put_bytes("t/a", b"x")
    with pytest.raises(Conflict):
        local.put_bytes("t/a/b", b"y")  # "t/a" is an object, it cannot be a directory too
    local.put_bytes("t/c/d", b"y")
    with pytest.raises(Conflict):
        local.put_bytes("t/c", b"z")
    with pytest.raises(ValueError):
        local.delete("t/c")


# Adopting a file instead of copying it (put_file(..., consume=True)).


def test_local_adopts_a_consumed_file_as_a_read_only_inode(
    local: LocalDirectoryStore, tmp_path: Path
) -> None:
    data = b"offre technique\n" * 1000
    source = _file(tmp_path, "staged", data)
    old = time.time() - 3 * 24 * 3600  # uploaded long ago: the object is still dated now
    os.utime(source, (old, old))
    blob = local.put_file("t/p/obj", source, sha256=_sha256(data), consume=True)
    stored = local.root / "t" / "p" / "obj"
    assert blob.read_back, "the offer read the stored inode back"
    assert os.path.samestat(stored.stat(), source.stat()), "one inode, no copy"
    assert stored.stat().st_mode & 0o777 == 0o444
    assert stored.stat().st_nlink == 2  # the key, and the caller's name, left to the caller
    assert stored.stat().st_mtime > time.time() - 3600
    assert list((local.root / ".tmp").iterdir()) == []
    # The caller's name is the same read-only inode: it cannot be used to alter the object.
    assert source.stat().st_mode & 0o222 == 0
    source.unlink()
    assert stored.read_bytes() == data and stored.stat().st_nlink == 1
    stat = local.stat("t/p/obj")
    assert stat is not None and stat.sha256 == _sha256(data) and not stat.read_back


def test_local_copies_a_consumed_file_that_has_other_names(
    local: LocalDirectoryStore, tmp_path: Path
) -> None:
    data = b"pi\xc3\xa8ce jointe"
    source = _file(tmp_path, "staged", data)
    alias = tmp_path / "alias"
    os.link(source, alias)  # a name the offer does not control could alter an adopted inode
    blob = local.put_file("t/obj", source, sha256=_sha256(data), consume=True)
    stored = local.root / "t" / "obj"
    assert not blob.read_back
    assert not os.path.samestat(stored.stat(), source.stat())
    assert source.stat().st_mode & 0o200, "a copied source is left as it was"
    assert stored.read_bytes() == data and stored.stat().st_mode & 0o777 == 0o444


def test_local_copies_what_a_consumed_symbolic_link_points_to(
    local: LocalDirectoryStore, tmp_path: Path
) -> None:
    data = b"x" * 100
    target = _file(tmp_path, "real", data)
    link = tmp_path / "link"
    link.symlink_to(target)
    blob = local.put_file("t/obj", link, sha256=_sha256(data), consume=True)
    stored = local.root / "t" / "obj"
    assert not blob.read_back and not stored.is_symlink()
    assert not os.path.samestat(stored.stat(), target.stat())
    assert stored.read_bytes() == data


def test_local_adoption_refused_for_a_digest_mismatch_publishes_nothing(
    local: LocalDirectoryStore, tmp_path: Path
) -> None:
    source = _file(tmp_path, "staged", b"les octets re\xc3\xa7us")
    with pytest.raises(FingerprintMismatch):
        local.put_file("t/new/obj", source, sha256=_sha256(b"autre"), consume=True)
    assert not (local.root / "t").exists()
    assert list((local.root / ".tmp").iterdir()) == []
    assert source.stat().st_nlink == 1 and source.read_bytes() == b"les octets re\xc3\xa7us"


def test_local_adoption_of_an_existing_key_leaves_the_file_alone(
    local: LocalDirectoryStore, tmp_path: Path
) -> None:
    local.put_bytes("t/obj", b"first")
    source = _file(tmp_path, "staged", b"second")
    with pytest.raises(Conflict):
        local.put_file("t/obj", source, sha256=_sha256(b"second"), consume=True)
    assert source.stat().st_nlink == 1 and source.stat().st_mode & 0o200
    assert (local.root / "t" / "obj").read_bytes() == b"first"


@pytest.mark.slow
def test_local_adopts_a_large_file_reading_it_back_from_disk(
    local: LocalDirectoryStore, tmp_path: Path
) -> None:
    # Larger than DIRECT_READ_SIZE, not a whole number of chunks nor of disk blocks.
    size = DIRECT_READ_SIZE + 3 * DIRECT_CHUNK + 12_345
    source = tmp_path / "large.bin"
    digest = make_large_file(source, size, seed=5)
    peak = _peak_traced(lambda: local.put_file("t/large", source, sha256=digest, consume=True))
    assert peak < 16 * 1024 * 1024
    stat = local.stat("t/large")
    assert stat is not None and (stat.size, stat.sha256) == (size, digest)
    assert os.path.samestat((local.root / "t" / "large").stat(), source.stat())
    with pytest.raises(FingerprintMismatch):
        other = tmp_path / "other.bin"
        make_large_file(other, size, seed=6)
        local.put_file("t/other", other, sha256=digest, consume=True)
    assert local.stat("t/other") is None


def test_local_reads_back_through_the_page_cache_where_o_direct_is_refused(
    local: LocalDirectoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    real_fcntl = fcntl.fcntl

    def refuse_o_direct(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "O_DIRECT not supported")
        return real_fcntl(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", refuse_o_direct)
    source = tmp_path / "large.bin"
    digest = make_large_file(source, DIRECT_READ_SIZE + 1, seed=9)
    blob = local.put_file("t/large", source, sha256=digest, consume=True)
    assert blob.read_back and blob.sha256 == digest


def test_local_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "offer"
    LocalDirectoryStore("local-1", root)
    stale = root / ".tmp" / "123-dead.part"
    fresh = root / ".tmp" / "456-live.part"
    stale.write_bytes(b"left by a crash")
    fresh.write_bytes(b"being written")
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    store = LocalDirectoryStore("local-1", root)
    assert not stale.exists() and fresh.exists()
    assert list(store.iter_keys()) == []
    assert store.clean_stale_temp_files(max_age_seconds=0) == 1
