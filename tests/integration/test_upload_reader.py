"""The multipart reader stages every part byte for byte, however the body is cut into chunks,
including boundaries that straddle its feed slices; a failure stops it cleanly."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from archive_service.api.upload import FEED_SIZE, read_transfer
from archive_service.core.fingerprint import fingerprint_bytes
from archive_service.errors import BadRequest, PayloadTooLarge
from archive_service.storage.staging import LocalStaging

BOUNDARY = "----archive-test-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def _body(metadata: dict[str, object], files: dict[str, bytes]) -> bytes:
    out = [
        f"--{BOUNDARY}\r\n".encode(),
        b'Content-Disposition: form-data; name="metadata"\r\n\r\n',
        json.dumps(metadata).encode(),
        b"\r\n",
    ]
    for name, data in files.items():
        out += [
            f"--{BOUNDARY}\r\n".encode(),
            f'Content-Disposition: form-data; name="{name}"; filename="{name}"\r\n'.encode(),
            b"Content-Type: application/octet-stream\r\n\r\n",
            data,
            b"\r\n",
        ]
    out.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(out)


async def _chunks(
    body: bytes, sizes: list[int], fail_after: int | None = None
) -> AsyncIterator[bytes]:
    offset, index = 0, 0
    while offset < len(body):
        if fail_after is not None and offset >= fail_after:
            raise ConnectionResetError("client went away")
        size = sizes[index % len(sizes)]
        yield body[offset : offset + size]
        offset += size
        index += 1


@pytest.fixture
def staging(tmp_path: Path) -> LocalStaging:
    return LocalStaging(tmp_path / "staging", max_file_size=64 * 1024 * 1024, max_files=10)


@pytest.mark.parametrize(
    "sizes", [[65536], [1], [FEED_SIZE], [FEED_SIZE - 3, 7, 262144], [3 * FEED_SIZE]]
)
def test_parts_are_staged_whatever_the_chunking(staging: LocalStaging, sizes: list[int]) -> None:
    rng = random.Random(len(sizes))
    files = {
        "a.pdf": rng.randbytes(1000),
        "b.bin": rng.randbytes(2 * FEED_SIZE + 5),
        "c.txt": b"",
        "d.bin": rng.randbytes(FEED_SIZE - 40),  # its end boundary straddles a slice
    }
    if sizes == [1]:  # byte by byte: keep it short
        files = {"a.pdf": files["a.pdf"], "c.txt": b""}
    body = _body({"title": "Dossier"}, files)
    upload = staging.new_upload()
    metadata = asyncio.run(read_transfer(_chunks(body, sizes), CONTENT_TYPE, upload))
    assert metadata == {"title": "Dossier"}
    assert [f.part_name for f in upload.files] == list(files)
    for staged, data in zip(upload.files, files.values(), strict=True):
        assert staged.fingerprints == fingerprint_bytes(data)
        assert staging.path_of(upload.name, staged.staged_name).read_bytes() == data


def test_a_refused_part_stops_the_reader(tmp_path: Path) -> None:
    staging = LocalStaging(tmp_path / "staging", max_file_size=FEED_SIZE, max_files=10)
    body = _body({}, {"big.bin": b"x" * (3 * FEED_SIZE)})
    upload = staging.new_upload()
    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_transfer(_chunks(body, [65536]), CONTENT_TYPE, upload))


def test_a_body_cut_short_waits_for_the_slice_in_flight(staging: LocalStaging) -> None:
    body = _body({}, {"big.bin": random.Random(3).randbytes(4 * FEED_SIZE)})
    upload = staging.new_upload()
    with pytest.raises(ConnectionResetError):
        asyncio.run(
            read_transfer(_chunks(body, [262144], fail_after=2 * FEED_SIZE), CONTENT_TYPE, upload)
        )
    upload.discard()
    assert staging.leftovers() == []


def test_a_body_without_its_closing_boundary_is_refused(staging: LocalStaging) -> None:
    body = _body({}, {"a.bin": b"abc"})
    with pytest.raises(BadRequest):
        asyncio.run(read_transfer(_chunks(body[:-20], [100]), CONTENT_TYPE, staging.new_upload()))
