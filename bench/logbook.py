"""Logbook benchmark, pure part: prints a table. Not a test; run it with
`.venv/bin/python bench/logbook.py [--leaves 1000000] [--samples 2000]`.

In one run, on the pure core (archive_service.core.logbook, no database):
  (a) MemoryTree.append of N precomputed leaf hashes, one call per leaf;
  (b) append_nodes in batches of 1,000 into a dict (what a database-backed log computes per
      batch, without the database), leaves/s;
  (c) inclusion proof at size N: generation (subtree() is a list lookup) and verification,
      median and p99 over random indices;
  (d) consistency proof from a random earlier size to N: same;
  (e) canonical_json of a typical logbook entry, and leaf_hash of its bytes: entries/s;
  (f) checkpoint: Ed25519 sign + verify of the signed note.
The database-backed append rate (issue 4's >= 5,000 entries/s) is measured by the service
layer: pass a callable to :func:`measure_store_append` (see its docstring) and add its row.

Then, unless ``--database-seconds 0``, the database-backed log on the one-machine default
(SQLite in a temporary data dir, WAL, synchronous=FULL; the local offer; the built-in TSA):
  (g) append through the logbook repository (its canonical bytes written with the row), 1,000
      entries per transaction, and integrate (leaf indices + Merkle nodes under the head
      lock) every 10,000, until ``--leaves`` entries or ``--database-seconds`` have passed:
      entries/s of each step and of both together. When time runs out first, the table says
      so and at which size: rates are per entry and stay flat with the size (each append is
      two statements; each integration batch reads O(log n) nodes), so they extrapolate;
  (h) inclusion and consistency proofs served from the database at that size (the service's
      method: the entry, then every node in one query), median and p99;
  (i) checkpoint: integrate, root and consistency proof from the database, Ed25519 signature,
      RFC 3161 token, note + token written to the offer and the row committed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from archive_service.core.logbook import (  # noqa: E402
    Checkpoint,
    MemoryTree,
    append_nodes,
    canonical_json,
    leaf_hash,
    sign_checkpoint,
    verify_checkpoint,
    verify_consistency,
    verify_inclusion,
)

Row = tuple[str, str, str]


def entry(i: int) -> dict[str, Any]:
    """A logbook entry of the shape the service writes (logbook-spec.md)."""
    return {
        "v": 1,
        "tenant": "tn-01J9Z3K4W5X6Y7Z8A9B0C1D2E3",
        "id": i,
        "at": "2025-03-14T09:26:53.589793Z",
        "type": "object.stored",
        "outcome": "ok",
        "actor": "client:plateforme-achats",
        "subject": {"type": "data_object", "id": f"do-{i:012d}"},
        "details": {"offer": "s3-primary", "sha256": "ab" * 32, "size": 1048576 + i},
    }


def percentiles(samples: list[float]) -> tuple[float, float]:
    """Median and 99th percentile, in milliseconds."""
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[int(len(ordered) * 0.99)] * 1e3


def bench_append(leaves: list[bytes]) -> tuple[MemoryTree, float]:
    tree = MemoryTree()
    append = tree.append
    start = time.perf_counter()
    for h in leaves:
        append(h)
    return tree, len(leaves) / (time.perf_counter() - start)


def bench_append_nodes(leaves: list[bytes], batch: int = 1000) -> float:
    stored: dict[tuple[int, int], bytes] = {}

    def read(level: int, index: int) -> bytes:
        return stored[level, index]

    start = time.perf_counter()
    for begin in range(0, len(leaves), batch):
        for level, index, h in append_nodes(begin, leaves[begin : begin + batch], read):
            stored[level, index] = h
    return len(leaves) / (time.perf_counter() - start)


def time_proofs(
    label: str,
    samples: int,
    pick: Callable[[], int],
    generate: Callable[[int], list[bytes]],
    verify: Callable[[int, list[bytes]], None],
) -> tuple[Row, Row]:
    """Median and p99 of generating, then verifying, a proof for ``samples`` picked
    arguments (an index, or an earlier tree size)."""
    gen: list[float] = []
    ver: list[float] = []
    for _ in range(samples):
        arg = pick()
        t0 = time.perf_counter()
        proof = generate(arg)
        t1 = time.perf_counter()
        verify(arg, proof)
        t2 = time.perf_counter()
        gen.append(t1 - t0)
        ver.append(t2 - t1)
    g50, g99 = percentiles(gen)
    v50, v99 = percentiles(ver)
    return (
        (f"{label}: generate", f"{g50:.3f} ms (p99 {g99:.3f})", "< 5 ms"),
        ("    verify", f"{v50:.3f} ms (p99 {v99:.3f})", ""),
    )


def bench_proofs(tree: MemoryTree, samples: int, rng: random.Random) -> list[Row]:
    size, root = tree.size, tree.root()
    inclusion = time_proofs(
        f"(c) inclusion proof at {size:,}",
        samples,
        lambda: rng.randrange(size),
        tree.inclusion_proof,
        lambda i, proof: verify_inclusion(tree.subtree(0, i), i, size, proof, root),
    )
    consistency = time_proofs(
        f"(d) consistency proof to {size:,}",
        samples,
        lambda: rng.randrange(1, size),
        tree.consistency_proof,
        lambda m, proof: verify_consistency(m, size, tree.root(m), root, proof),
    )
    return [*inclusion, *consistency]


def bench_canonical(count: int) -> float:
    entries = [entry(i) for i in range(count)]
    start = time.perf_counter()
    for e in entries:
        leaf_hash(canonical_json(e))
    return count / (time.perf_counter() - start)


def bench_checkpoint(tree: MemoryTree, rounds: int = 200) -> float:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    cp = Checkpoint(origin="archive-service/tn-bench", size=tree.size, root=tree.root())
    start = time.perf_counter()
    for _ in range(rounds):
        verify_checkpoint(sign_checkpoint(cp, key, "archive-service"), public, "archive-service")
    return (time.perf_counter() - start) / rounds * 1e3


#: Appends a batch of logbook entries (dicts as :func:`entry` makes) to a database-backed log,
#: committing them (entry rows, canonical bytes, Merkle nodes) before it returns.
StoreAppend = Callable[[Sequence[dict[str, Any]]], None]


def measure_store_append(append_batch: StoreAppend, count: int, batch: int = 1000) -> Row:
    """Hook for the service layer: entries/s of ``append_batch`` over ``count`` entries given
    ``batch`` at a time. Returns a table row; e.g. in a bench script that sets up a database:
    ``rows.append(measure_store_append(lambda es: service.append_many(es), 1_000_000))``."""
    start = time.perf_counter()
    for begin in range(0, count, batch):
        append_batch([entry(i) for i in range(begin, min(begin + batch, count))])
    rate = count / (time.perf_counter() - start)
    return (f"database-backed append, batches of {batch}", f"{rate:,.0f} entries/s", ">= 5,000")


def run_database(max_entries: int, seconds: float, samples: int) -> list[Row]:
    """Sections (g)-(i): the database-backed log through the service, on SQLite."""
    import tempfile
    from datetime import UTC, datetime

    from archive_service.config import Settings
    from archive_service.ports import Caller, LogEvent, Role
    from archive_service.wiring import build_services

    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="bench-logbook-") as tmp:
        services = build_services(Settings(data_dir=Path(tmp)))
        try:
            tenant = services.tenancy.bootstrap("GIP Bench", []).tenant_id
            logbook = services.logbook
            uow = logbook._uow
            at = datetime.now(UTC)
            append_s = integrate_s = 0.0
            count = 0
            deadline = time.perf_counter() + seconds
            while count < max_entries and time.perf_counter() < deadline:
                t0 = time.perf_counter()
                for _ in range(10):
                    with uow() as work:
                        for i in range(count, count + 1000):
                            e = entry(i)
                            work.logbook.append(
                                LogEvent(
                                    tenant_id=tenant,
                                    at=at,
                                    event_type=e["type"],
                                    outcome=e["outcome"],
                                    subject_type=e["subject"]["type"],
                                    subject_id=e["subject"]["id"],
                                    actor=e["actor"],
                                    details=e["details"],
                                )
                            )
                        work.commit()
                    count += 1000
                t1 = time.perf_counter()
                logbook.integrate(tenant)
                integrate_s += time.perf_counter() - t1
                append_s += t1 - t0
            size = logbook.integrate(tenant).size
            reached = "" if count >= max_entries else f" (time ran out at {count:,})"
            rows: list[Row] = [
                (
                    f"(g) append via repository x {count:,}{reached}",
                    f"{count / append_s:,.0f} entries/s",
                    "",
                ),
                ("    integrate, batches of 10,000", f"{count / integrate_s:,.0f} entries/s", ""),
                (
                    "    append + integrate",
                    f"{count / (append_s + integrate_s):,.0f} entries/s",
                    ">= 5,000",
                ),
            ]
            caller = Caller(client_id="bench", tenant_id=tenant, role=Role.AUDITOR, name="bench")
            with uow() as work:
                ids = [e.id for e in work.logbook.entries(tenant, limit=size + 10)]
            first = logbook.checkpoint(tenant)
            inclusion = time_proofs(
                f"(h) inclusion proof from the DB at {size:,}",
                samples,
                lambda: rng.choice(ids),
                lambda entry_id: list(logbook.inclusion(caller, entry_id, size).proof),
                lambda _i, _p: None,
            )
            consistency = time_proofs(
                f"    consistency proof from the DB to {size:,}",
                samples,
                lambda: rng.randrange(1, size),
                lambda m: list(logbook.consistency(caller, m, size).proof),
                lambda _m, _p: None,
            )
            rows += [inclusion[0], consistency[0]]
            assert first.status == "created"
            with uow() as work:
                for i in range(10):
                    work.logbook.append(
                        LogEvent(
                            tenant_id=tenant,
                            at=at,
                            event_type="bench.tail",
                            outcome="OK",
                            subject_type="bench",
                            subject_id=f"tail-{i}",
                        )
                    )
                work.commit()
            t0 = time.perf_counter()
            second = logbook.checkpoint(tenant)
            elapsed = (time.perf_counter() - t0) * 1e3
            assert second.status == "created"
            rows.append(
                (
                    f"(i) checkpoint at {size + 10:,} (10 new entries)",
                    f"{elapsed:.1f} ms",
                    "sign + RFC 3161 + offer + DB",
                )
            )
        finally:
            services.close()
    return rows


def run(leaves_count: int, samples: int, store_append: StoreAppend | None = None) -> list[Row]:
    rng = random.Random(4)
    leaves = [leaf_hash(i.to_bytes(8, "big")) for i in range(leaves_count)]
    tree, append_rate = bench_append(leaves)
    rows: list[Row] = [
        (f"(a) MemoryTree.append x {leaves_count:,}", f"{append_rate:,.0f} leaves/s", ""),
        ("(b) append_nodes, batches of 1,000", f"{bench_append_nodes(leaves):,.0f} leaves/s", ""),
        *bench_proofs(tree, samples, rng),
        ("(e) canonical_json + leaf_hash", f"{bench_canonical(100_000):,.0f} entries/s", ""),
        ("(f) checkpoint sign + verify", f"{bench_checkpoint(tree):.3f} ms", ""),
    ]
    if store_append is not None:
        rows.append(measure_store_append(store_append, leaves_count))
    return rows


def print_table(rows: list[Row]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'result':<28}  target")
    print("-" * (width + 46))
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:<28}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000, help="tree size N")
    parser.add_argument("--samples", type=int, default=2000, help="proofs timed per kind")
    parser.add_argument(
        "--database-seconds",
        type=float,
        default=60.0,
        help="time budget of the database-backed appends (g); 0 skips (g)-(i)",
    )
    args = parser.parse_args()
    rows = run(args.leaves, args.samples)
    if args.database_seconds > 0:
        rows += run_database(args.leaves, args.database_seconds, min(args.samples, 500))
    print_table(rows)


if __name__ == "__main__":
    main()
