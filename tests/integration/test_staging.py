"""The staging area keeps what was uploaded, byte for byte, with its fingerprints: small parts
through the page cache, large ones partly with O_DIRECT, in slices of any size."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from archive_service.core.fingerprint import fingerprint_bytes
from archive_service.errors import PayloadTooLarge
from archive_service.storage.staging import DIRECT_AFTER, DIRECT_BUFFER, LocalStaging


@pytest.fixture
def staging(tmp_path: Path) -> LocalStaging:
    return LocalStaging(tmp_path / "staging", max_file_size=1 << 30, max_files=10)


def _stage(staging: LocalStaging, data: bytes, slices: list[int]) -> Path:
    upload = staging.new_upload()
    sink = upload.begin_file("piece.bin", "application/octet-stream")
    offset = 0
    view = memoryview(data)
    for size in slices:
        sink.write(view[offset : offset + size])
        offset += size
    sink.write(view[offset:])
    staged = sink.finish()
    assert staged.fingerprints == fingerprint_bytes(data)
    path = staging.path_of(upload.name, staged.staged_name)
    assert path.read_bytes() == data
    return path


def test_small_part(staging: LocalStaging) -> None:
    _stage(staging, b"offre de prix\n" * 100, [3, 5])


@pytest.mark.parametrize(
    "extra",
    [0, 1, 4095, 4096, DIRECT_BUFFER, DIRECT_BUFFER + 4097],
    ids=["exact", "1", "block-1", "block", "buffer", "buffer+block+1"],
)
def test_large_part_crossing_to_direct_writes(staging: LocalStaging, extra: int) -> None:
    data = random.Random(extra).randbytes(DIRECT_AFTER + DIRECT_BUFFER + extra)
    # Slices that straddle the switch and the buffer boundaries.
    _stage(staging, data, [1000, DIRECT_AFTER - 1500, 3000, DIRECT_BUFFER - 7, 9])


def test_one_huge_slice(staging: LocalStaging) -> None:
    data = random.Random(1).randbytes(DIRECT_AFTER + 2 * DIRECT_BUFFER + 123)
    _stage(staging, data, [])


def test_size_limit_and_abort(tmp_path: Path) -> None:
    staging = LocalStaging(tmp_path / "staging", max_file_size=DIRECT_AFTER + 10, max_files=2)
    upload = staging.new_upload()
    sink = upload.begin_file("big.bin", None)
    sink.write(b"x" * (DIRECT_AFTER + 5))
    with pytest.raises(PayloadTooLarge):
        sink.write(b"y" * 6)
    sink.abort()
    upload.discard()
    assert staging.leftovers() == []


def test_without_o_direct_everything_goes_through_the_page_cache(
    staging: LocalStaging, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archive_service.storage import staging as module

    monkeypatch.setattr(module, "_set_direct", lambda fd, on: False)  # as tmpfs on old kernels
    data = random.Random(2).randbytes(DIRECT_AFTER + DIRECT_BUFFER + 99)
    _stage(staging, data, [DIRECT_AFTER - 1, 2])
