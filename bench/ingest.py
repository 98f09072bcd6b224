"""Ingest benchmark: prints a table. Not a test; run it with `make bench` or
`.venv/bin/python bench/ingest.py [--size-mib 1024] [--files 500]`.

In one run:
  (a) baseline: hashlib SHA-256 + SHA-512 over the same bytes, in this process;
  (b) ingest of one large file through the HTTP API of a real server process
      (upload → fingerprint → identify → manifest → timestamp → store → read back → accepted);
  (c) a dossier of many small files (20–200 KB).
(b) and (c) run on a server warmed up by one small transfer. It reports MB/s, the ratio (b)/(a),
files/s for (c), and the server's peak RSS during (b).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._common import free_port, upload  # noqa: E402
from tests.fixtures.dossier import make_large_file, make_small_dossier  # noqa: E402

MIB = 1024 * 1024


def baseline(path: Path) -> float:
    """MB/s of SHA-256 + SHA-512 computed one after the other on each 1 MiB chunk."""
    sha256, sha512 = hashlib.sha256(), hashlib.sha512()
    size = path.stat().st_size
    buf = bytearray(MIB)
    view = memoryview(buf)
    start = time.perf_counter()
    with path.open("rb") as fh:
        while n := fh.readinto(view):
            sha256.update(view[:n])
            sha512.update(view[:n])
    return size / MIB / (time.perf_counter() - start)


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "ARCHIVE_DATA_DIR": str(data_dir),
            "ARCHIVE_SEDA_XSD_DIR": os.environ.get(
                "ARCHIVE_SEDA_XSD_DIR", str(REPO.parent / "shared" / "seda")
            ),
        }
        self.exe = str(Path(sys.executable).parent / "archive-service")

    def bootstrap(self, siret: str) -> str:
        out = subprocess.run(
            [
                self.exe,
                "admin",
                "bootstrap",
                "--tenant",
                "Bench",
                "--org",
                f"{siret}:Acheteur",
                "--json",
            ],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return str(json.loads(out.stdout)["keys"]["platform"]["key"])

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            [self.exe, "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class PeakRss:
    """Samples a process's RSS every 20 ms and keeps the highest value."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def push(url: str, key: str, metadata: dict[str, Any], root: Path) -> float:
    """Send one transfer, wait until it is accepted; return the elapsed seconds.

    The status is polled at intervals of 5 % of the time elapsed so far (5 ms to 100 ms): each
    poll costs the server a request on the same CPU, so polling every few milliseconds for a
    transfer that takes seconds would slow down what it measures, while the error on the
    measured time stays within a few percent.
    """
    headers = {"Authorization": f"Bearer {key}"}
    start = time.perf_counter()
    transfer = upload(url, key, metadata, root)
    with httpx.Client(base_url=url, timeout=600) as client:
        while True:
            status = client.get(f"/v1/transfers/{transfer}", headers=headers).json()
            if status["status"] in ("accepted", "rejected"):
                break
            time.sleep(min(0.1, max(0.005, 0.05 * (time.perf_counter() - start))))
    elapsed = time.perf_counter() - start
    if status["status"] != "accepted":
        raise RuntimeError(f"transfer rejected: {status['reasons']}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the large file (b)")
    parser.add_argument("--files", type=int, default=500, help="number of small files (c)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        big_meta, _ = make_small_dossier(work / "big", 1, message_identifier="BENCH-BIG")
        entry = big_meta["files"][0]
        big_path = work / "big" / entry["path"]
        big_path.unlink()
        entry["path"] = str(Path(entry["path"]).with_suffix(".bin"))
        big_path = work / "big" / entry["path"]
        entry["sha256"] = make_large_file(big_path, args.size_mib * MIB)
        entry.pop("mime_type", None)
        small_meta, _ = make_small_dossier(
            work / "small", args.files, message_identifier="BENCH-SMALL"
        )
        warm_meta, _ = make_small_dossier(work / "warm", 3, message_identifier="BENCH-WARM-UP")

        # (a) baseline, on the same bytes, warm page cache.
        baseline(big_path)
        base = baseline(big_path)

        server = Server(work / "var")
        key = server.bootstrap(big_meta["organization"])
        with server:
            # Warm-up, as (a) is measured on a warm page cache: a fresh server makes its TSA
            # keys and loads Siegfried's signatures on its first transfer, once per process or
            # installation; (b) and (c) measure the ingest itself.
            push(server.url, key, warm_meta, work / "warm")
            with PeakRss(server.proc.pid) as rss:
                big_s = push(server.url, key, big_meta, work / "big")
            small_s = push(server.url, key, small_meta, work / "small")

    big_mbs = args.size_mib / big_s
    rows = [
        ("(a) hashlib SHA-256 + SHA-512, same bytes", f"{base:,.0f} MB/s", "baseline"),
        (
            f"(b) ingest of one {args.size_mib} MiB file over HTTP",
            f"{big_mbs:,.0f} MB/s ({big_s:.1f} s)",
            f"ratio (b)/(a) = {big_mbs / base:.2f}  (target >= 0.50)",
        ),
        (
            "    server peak RSS during (b)",
            f"{rss.peak / MIB:,.0f} MB",
            "target < 300 MB",
        ),
        (
            f"(c) dossier of {args.files} files of 20-200 KB",
            f"{args.files / small_s:,.0f} files/s ({small_s:.1f} s)",
            "target >= 100 files/s",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'result':<26}  note")
    print("-" * (width + 60))
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:<26}  {note}")


if __name__ == "__main__":
    main()
