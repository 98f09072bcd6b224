"""Integrity audit benchmark: prints a table. Not a test; run it with
`.venv/bin/python bench/audit.py [--size-mib 1024] [--files 8]`.

One run archives ``--files`` pseudo-random files of ``--size-mib`` in total on the local offer
(the one-machine default: SQLite, one local directory), then measures over the same stored
files, each measure repeated ``--rounds`` times (best kept, page cache warm for all):

  (a) baseline: hashlib SHA-256 alone, 1 MiB chunks, in this process;
  (b) baseline: hashlib SHA-256 + SHA-512 (what the audit computes for archived objects);
  (c) ``AuditService.run``: every copy re-read through the offer and hashed, compared with the
      database and the parsed manifest, verification recorded and logged.

MB/s is bytes of archived copies hashed per second; the target is (c) >= 70 % of (b).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient  # noqa: E402

from archive_service.api.app import create_app  # noqa: E402
from archive_service.config import Settings  # noqa: E402
from archive_service.services.audit import AuditScope  # noqa: E402
from archive_service.wiring import build_services  # noqa: E402
from tests.fixtures.dossier import (  # noqa: E402
    BUYER_NAME,
    BUYER_SIRET,
    make_large_file,
    make_small_dossier,
)
from tests.integration.conftest import post_transfer  # noqa: E402

MIB = 1024 * 1024


def hash_files(paths: list[Path], *, sha512: bool) -> float:
    """MB/s of hashlib over ``paths``, one reused 1 MiB buffer."""
    total = 0
    buf = bytearray(MIB)
    view = memoryview(buf)
    start = time.perf_counter()
    for path in paths:
        h256 = hashlib.sha256()
        h512 = hashlib.sha512() if sha512 else None
        with path.open("rb") as fh:
            while n := fh.readinto(view):
                h256.update(view[:n])
                if h512 is not None:
                    h512.update(view[:n])
                total += n
    return total / 1e6 / (time.perf_counter() - start)


def archive(http: TestClient, key: str, root: Path, files: int, size: int, seed: int) -> None:
    metadata, _ = make_small_dossier(root, 1, sizes=(1_000, 2_000), seed=seed)
    first = metadata["files"][0]
    folder = first["path"].rsplit("/", 1)[0]
    for i in range(files):
        name = f"{folder}/piece-{seed}-{i}.bin"
        digest = make_large_file(root / name, size, seed=seed * 100 + i)
        metadata["files"].append(
            {"path": name, "category": first["category"], "sha256": digest, "title": name}
        )
    r = post_transfer(http, metadata, root, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 202, r.text
    transfer = r.json()["id"]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        body = http.get(f"/v1/transfers/{transfer}", headers={"Authorization": f"Bearer {key}"})
        status = body.json()["status"]
        if status in ("accepted", "rejected"):
            assert status == "accepted", body.text
            return
        time.sleep(0.2)
    raise SystemExit("transfer never finished")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="total archived (MiB)")
    parser.add_argument("--files", type=int, default=8, help="files archived")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "var",
            seda_xsd_dir=os.environ.get("ARCHIVE_SEDA_XSD_DIR", REPO.parent / "shared" / "seda"),
        )
        services = build_services(settings)
        try:
            tenant = services.tenancy.bootstrap("GIP Bench", [f"{BUYER_SIRET}:{BUYER_NAME}"])
            key = next(k.key for k in tenant.keys if k.role.value == "platform")
            per_transfer = 2
            with TestClient(create_app(settings, services=services)) as http:
                size = args.size_mib * MIB // args.files
                for seed in range(0, args.files, per_transfer):
                    root = Path(tmp) / f"d{seed}"
                    archive(http, key, root, min(per_transfer, args.files - seed), size, seed + 1)
                    for path in root.rglob("*"):
                        if path.is_file():
                            path.unlink()
            offer = services.offers[0]
            stored = [settings.resolved_storage_dir / k for k in offer.iter_keys()]
            total_mb = sum(p.stat().st_size for p in stored) / 1e6
            hash_files(stored, sha512=False)  # warm the page cache
            best = {"sha256": 0.0, "sha256+sha512": 0.0, "audit": 0.0}
            for _ in range(args.rounds):
                best["sha256"] = max(best["sha256"], hash_files(stored, sha512=False))
                best["sha256+sha512"] = max(best["sha256+sha512"], hash_files(stored, sha512=True))
                start = time.perf_counter()
                report = services.audit.run(AuditScope(trigger="bench"))
                elapsed = time.perf_counter() - start
                assert report.clean, [p.message() for p in report.problems]
                best["audit"] = max(best["audit"], report.bytes_read / 1e6 / elapsed)
        finally:
            services.close()
    base = best["sha256+sha512"]
    print(f"\n{len(stored)} stored copies, {total_mb:,.0f} MB, local offer, best of {args.rounds}")
    print(f"| {'measure':<44} | {'MB/s':>8} | {'vs SHA-256+SHA-512':>18} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 20}|")
    rows = (
        ("hashlib SHA-256 (baseline)", best["sha256"]),
        ("hashlib SHA-256 + SHA-512 (baseline)", base),
        ("archive-service audit (SHA-256 + SHA-512)", best["audit"]),
    )
    for label, value in rows:
        print(f"| {label:<44} | {value:>8,.0f} | {value / base:>17.0%} |")
    target = "met" if best["audit"] >= 0.7 * base else "NOT met"
    print(f"\ntarget audit >= 70 % of the SHA-256 + SHA-512 baseline: {target}")


if __name__ == "__main__":
    main()
