"""What the benchmarks share: a free port, and a transfer sent to the API the way a platform
sends it (multipart/form-data, the files streamed with ``sendfile``)."""

from __future__ import annotations

import http.client
import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def multipart_body(
    metadata: dict[str, Any], root: Path, boundary: str
) -> tuple[int, list[bytes | Path]]:
    """Content-Length and the pieces of the multipart/form-data body: bytes, and files to send
    with ``sendfile`` (from the page cache to the socket, never through this process), since
    the client shares the CPU with the server it measures and should cost it little."""
    delimiter = f"--{boundary}\r\n".encode()
    pieces: list[bytes | Path] = [
        delimiter
        + b'Content-Disposition: form-data; name="metadata"\r\n'
        + b"Content-Type: application/json\r\n\r\n"
        + json.dumps(metadata).encode()
        + b"\r\n"
    ]
    for entry in metadata["files"]:
        name, filename = entry["path"], Path(entry["path"]).name
        if any(c in name for c in '"\\\r\n'):
            raise ValueError(f"cannot quote {name!r} in a Content-Disposition header")
        pieces += [
            delimiter
            + f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode()
            + b"Content-Type: application/octet-stream\r\n\r\n",
            root / entry["path"],
            b"\r\n",
        ]
    pieces.append(f"--{boundary}--\r\n".encode())
    length = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in pieces)
    return length, pieces


def upload(url: str, key: str, metadata: dict[str, Any], root: Path) -> str:
    """``POST /v1/transfers`` with the files under ``root``; return the transfer id."""
    boundary = f"bench-{os.urandom(12).hex()}"
    length, body = multipart_body(metadata, root, boundary)
    parsed = urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=600)
    try:
        conn.putrequest("POST", "/v1/transfers", skip_accept_encoding=True)
        for name, value in {
            "Authorization": f"Bearer {key}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(length),
        }.items():
            conn.putheader(name, value)
        conn.endheaders()
        for piece in body:
            if isinstance(piece, Path):
                with piece.open("rb") as fh:
                    conn.sock.sendfile(fh)
            else:
                conn.sock.sendall(piece)
        response = conn.getresponse()
        answer = response.read()
    finally:
        conn.close()
    if response.status >= 300:
        raise RuntimeError(f"upload refused: {response.status} {answer.decode(errors='replace')}")
    return str(json.loads(answer)["id"])
