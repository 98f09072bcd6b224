"""A private Ceph cluster for the tests that stop parts of it or act on it as its operator.

The fault-matrix and repair tests stop a gateway, or remove an object version with
``radosgw-admin`` or flip a bit of its data with ``rados``, behind the service's back. They
never do that to the shared cluster other tests (and other people) use
(``ARCHIVE_TEST_S3_ENDPOINT``, ``ARCHIVE_TEST_CEPH_DIR``): each test module starts one of its
own with ``deploy/ceph/start-rgw.sh`` in a temporary directory, on free ports (mon and
gateways), and stops it afterwards. Startup takes about 2 s.

Without ``radosgw`` these tests skip, and fail under CI (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.test_s3 import raw_client, s3_keys
from tests.reference import in_ci

REPO = Path(__file__).resolve().parents[2]
START = REPO / "deploy/ceph/start-rgw.sh"
STOP = REPO / "deploy/ceph/stop-rgw.sh"
TOOLS = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "rados", "curl")
#: The pool where radosgw keeps object data (the zone's defaults).
DATA_POOL = "default.rgw.buckets.data"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_ceph() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not missing:
        return
    reason = (
        f"{', '.join(missing)} not installed: apt-get install -y --no-install-recommends "
        "ceph-mon ceph-osd radosgw curl (.ci/run does)"
    )
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class PrivateCeph:
    """One cluster started in ``directory``; ``endpoints[i]`` is the gateway on ``ports[i]``."""

    directory: Path
    ports: tuple[int, ...]
    endpoints: tuple[str, ...]

    def client(self, index: int) -> Any:
        return raw_client(self.endpoints[index])

    def stop_gateway(self, endpoint: str) -> None:
        port = str(urlsplit(endpoint).port)
        subprocess.run([STOP, self.directory, "--rgw", port], check=True, capture_output=True)

    def start_gateways(self) -> None:
        """Start whichever gateway is stopped (those running are left alone)."""
        subprocess.run(
            [START, self.directory, *map(str, self.ports)], check=True, capture_output=True
        )

    def admin(self, *args: str) -> str:
        """``radosgw-admin`` as the cluster's operator: it bypasses S3 and Object Lock."""
        done = subprocess.run(
            ["radosgw-admin", "-c", str(self.directory / "ceph.conf"), *args],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def rot(self, bucket: str, key: str, version_id: str, *, offset: int = 0) -> None:
        """Bit rot under the gateway: flip one bit of the stored data of one version of a
        small object (its RADOS head object, ``<marker>__:<version>_<key>``, rewritten with
        ``rados``). Its version id, metadata and Object Lock are untouched; S3 serves the
        flipped bytes."""

        def rados(*args: str, data: bytes | None = None) -> bytes:
            return subprocess.run(
                ["rados", "-c", str(self.directory / "ceph.conf"), "-p", DATA_POOL, *args],
                input=data,
                capture_output=True,
                check=True,
            ).stdout

        suffix = f"__:{version_id}_{key}"
        [oid] = [o for o in rados("ls").decode().splitlines() if o.endswith(suffix)]
        data = bytearray(rados("get", oid, "-"))
        data[offset] ^= 0x01
        rados("put", oid, "-", data=bytes(data))


@contextmanager
def private_ceph(directory: Path, gateways: int = 2) -> Iterator[PrivateCeph]:
    require_ceph()
    ports = tuple(free_port() for _ in range(gateways))
    access, secret = s3_keys()  # the user raw_client and the tests' offers sign with
    started = subprocess.run(
        [START, directory, *map(str, ports)],
        env={
            **os.environ,
            "CEPH_MON_PORT": str(free_port()),
            "RGW_ACCESS_KEY": access,
            "RGW_SECRET_KEY": secret,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        assert started.returncode == 0, started.stderr
        yield PrivateCeph(directory, ports, tuple(started.stdout.split()))
    finally:
        kill_cluster(directory)
        shutil.rmtree(directory, ignore_errors=True)


def kill_cluster(directory: Path) -> None:
    """Kill the cluster's daemons at once, by their pid files: its data goes with it anyway,
    and ``stop-rgw.sh`` lets each daemon stop cleanly, which takes about 8 s."""
    pids = []
    conf = str(directory / "ceph.conf")
    for pidfile in (directory / "run").glob("*.pid"):
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if conf.encode() in cmdline:  # that daemon, not a process that reused its pid
            os.kill(pid, signal.SIGKILL)
            pids.append(pid)
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True
