"""Streaming fingerprints equal hashlib's over the same bytes, whatever the chunking."""

from __future__ import annotations

import hashlib
import io
import random

import pytest

from archive_service.core.fingerprint import (
    MultiHasher,
    fingerprint_bytes,
    fingerprint_chunks,
    fingerprint_stream,
    sha256_stream,
)

DATA = random.Random(7).randbytes(3 * 1024 * 1024 + 17)


def test_multi_hasher_takes_bytes_bytearrays_and_views() -> None:
    hasher = MultiHasher()
    hasher.update(DATA[:10])
    hasher.update(bytearray(DATA[10:1000]))
    hasher.update(memoryview(DATA)[1000:])
    result = hasher.result()
    assert result.size == len(DATA) == hasher.size
    assert result.sha256.digest == hashlib.sha256(DATA).hexdigest()
    assert result.sha512.digest == hashlib.sha512(DATA).hexdigest()
    assert fingerprint_bytes(DATA) == result
    assert fingerprint_chunks([DATA[:5], DATA[5:]]) == result


@pytest.mark.parametrize("chunk_size", [1, 4096, 1024 * 1024, 8 * 1024 * 1024])
def test_streams_whatever_the_chunk_size(chunk_size: int) -> None:
    data = DATA if chunk_size > 1 else DATA[:5000]
    prints = fingerprint_stream(io.BytesIO(data), chunk_size=chunk_size)
    assert prints == fingerprint_bytes(data)
    assert sha256_stream(io.BytesIO(data), chunk_size=chunk_size) == (
        len(data),
        hashlib.sha256(data).hexdigest(),
    )


def test_empty_stream() -> None:
    assert fingerprint_stream(io.BytesIO(b"")) == fingerprint_bytes(b"")
    assert sha256_stream(io.BytesIO(b"")) == (0, hashlib.sha256(b"").hexdigest())
