"""Identifiers: a short type prefix and a ULID (time-ordered, 26 Crockford base32 characters).

``obj-01JDQ…`` is a valid ``xsd:ID`` (starts with a letter), sorts by creation time and is
safe in URLs and file names. Identifiers are inputs to the SEDA builder, so rebuilding a
manifest from the same inputs gives the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime

from archive_service.core.model import require_utc

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_PATTERN = re.compile(r"^[a-z]{2,4}-[0-9A-HJKMNP-TV-Z]{26}$")


def ulid(at: datetime, randomness: bytes | None = None) -> str:
    require_utc(at, "ulid time")
    millis = int(at.timestamp() * 1000)
    rand = randomness if randomness is not None else os.urandom(10)
    if len(rand) != 10:
        msg = "ULID randomness must be 10 bytes"
        raise ValueError(msg)
    value = (millis << 80) | int.from_bytes(rand, "big")
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id(prefix: str, at: datetime) -> str:
    """``prefix-ULID``; ``prefix`` is 2–4 lowercase letters (``tr``, ``au``, ``obj``, ``pkg``)."""
    if not re.fullmatch(r"[a-z]{2,4}", prefix):
        msg = f"bad id prefix {prefix!r}"
        raise ValueError(msg)
    return f"{prefix}-{ulid(at)}"


def derived_id(prefix: str, at: datetime, seed: str) -> str:
    """Like :func:`new_id`, but the random part comes from ``seed``: the same inputs give the
    same identifier. Used where a job that runs again must rebuild byte-identical output
    (the manifest of a transfer resumed after a crash)."""
    if not re.fullmatch(r"[a-z]{2,4}", prefix):
        msg = f"bad id prefix {prefix!r}"
        raise ValueError(msg)
    return f"{prefix}-{ulid(at, hashlib.sha256(seed.encode()).digest()[:10])}"
