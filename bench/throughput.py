"""Throughput of the production stack: prints a table. Not a test (never run by `make test` or
CI); run it with `make bench-throughput` or
`.venv/bin/python bench/throughput.py [--dossiers 200] [--files 20] [--quick] [--json PATH]`.

Dossiers of 20 files of 20-500 KB (PDF, DOCX, XLSX, JPEG scans, ZIP, ODT, XML, CSV: real files
made here, deterministic, every file of every dossier distinct) are pushed through the HTTP API
of a real ``archive-service serve`` process to PostgreSQL (a database of its own, dropped at the
end), Celery on Redis (a queue and key prefix of its own) and two S3 offers with Object Lock:
the two gateways of a private Ceph RGW cluster (``deploy/ceph/start-rgw.sh`` on free ports, in
memory, killed at the end; the shared cluster of the tests is never touched).

Two phases in one run, each on fresh everything (cluster, database, metrics directory, API):
``1`` then ``2`` worker processes. In each phase:

  1. upload: every dossier is POSTed (two client connections at a time) while no worker runs,
     so the queue fills: the API's ``receive`` rate, alone on the machine;
  2. processing: the workers are started and drain the queue; the rate is taken in steady state,
     between the k-th and the last completion (k = 5 % of the dossiers, at least 2: worker
     start-up and the first jobs' warm-up are left out), from the transfers' own completion
     times in the database. The scaling ratio is that rate with 2 workers over 1.

"N worker processes" are N ``archive-service worker --concurrency 1`` services, as workers are
scaled in compose or Kubernetes (one per container or pod): each is a Celery consumer and one
pool process that runs the jobs (``--layout concurrency`` runs one worker with
``--concurrency N`` instead; either way N processes run jobs).

The time per stage is ``archive_stage_seconds`` (sum and mean per stage) read from the API's
``/metrics``: API and workers share ``ARCHIVE_METRICS_DIR``, a fresh directory per phase. CPU is
sampled from /proc (psutil) for the API, the workers, the Ceph daemons, PostgreSQL, Redis and
this client, and the machine's total, during processing: that says whether the S3 server or the
cores are the limit.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
import psycopg
import redis
from botocore.config import Config
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from archive_service.services.ingest import STAGES  # noqa: E402
from bench._common import free_port, upload  # noqa: E402
from tests.fixtures import dossier as fixtures  # noqa: E402

MB = 1_000_000
EXE = str(Path(sys.executable).parent / "archive-service")
START_RGW = REPO / "deploy/ceph/start-rgw.sh"
STOP_RGW = REPO / "deploy/ceph/stop-rgw.sh"
POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
S3_ACCESS, S3_SECRET = "BENCHTHROUGHPUTKEY", "bench-throughput-secret"
#: Stages run by the workers, one after the other (``receive`` and ``register`` run in the API,
#: at upload; ``read_back`` is part of ``store``, once per offer like it).
WORKER_STAGES = ("identify", "describe", "manifest", "timestamp", "store", "lock", "commit")

# -- the corpus ------------------------------------------------------------------------------

#: kind → (weight, smallest, largest size in KB). Text documents (ODT, XML notices) stay small,
#: as they are; PDFs, office files with pictures, scans and zips of photos span 20-500 KB.
KINDS = {
    "pdf": (45, 20, 500),
    "docx": (15, 20, 500),
    "xlsx": (10, 20, 500),
    "jpg": (10, 20, 500),
    "zip": (5, 20, 500),
    "odt": (5, 20, 100),
    "xml": (5, 20, 100),
    "csv": (5, 20, 500),
}
#: Written into each base file, then replaced in each copy by the copy's own reference (same
#: length, so that a PDF's offsets and a JPEG's segment lengths stay right).
MARK = "COPIE-0000-000"


def copy_mark(dossier: int, index: int) -> str:
    return f"COPIE-{dossier:04d}-{index:03d}"


def _noise_jpeg(rng: random.Random, target: int, comment: str) -> bytes:
    """A JPEG "scan" of about ``target`` bytes (noise: as incompressible as a photo gets),
    with ``comment`` in a COM segment."""
    from PIL import Image

    pixels = max(64 * 64, target // 2)
    for _ in range(3):
        side = max(64, int(math.sqrt(pixels)))
        image = Image.frombytes("L", (side, side), rng.randbytes(side * side))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=75, comment=comment.encode())
        data = out.getvalue()
        if abs(len(data) - target) <= target // 20:
            break
        pixels = int(pixels * target / len(data))
    return data


def _docx(rng: random.Random, title: str, target: int) -> bytes:
    """A DOCX (python-docx): a title, some paragraphs and a picture that brings it to size."""
    import docx
    from docx.shared import Cm

    document = docx.Document()
    document.add_heading(title, level=0)
    for text in fixtures.french_paragraphs(rng, rng.randint(3, 30)):
        document.add_paragraph(text)
    picture = max(2_000, target - 40_000)  # python-docx's template is ~36 KB
    document.add_picture(io.BytesIO(_noise_jpeg(rng, picture, title)), width=Cm(12))
    props = document.core_properties
    props.title = title
    props.author = fixtures.BUYER_NAME
    for name in ("created", "modified", "last_printed"):
        setattr(props, name, fixtures.FIXED_DATETIME.replace(tzinfo=None))
    out = io.BytesIO()
    document.save(out)
    return fixtures.normalize_zip(out.getvalue())


def _xlsx(rng: random.Random, title: str, target: int) -> bytes:
    rows = [
        [
            f"L{i:05d}",
            rng.choice(fixtures._OBJECTS),
            rng.randint(1, 500),
            round(rng.uniform(1, 5000), 2),
            f"=C{i + 2}*D{i + 2}",
        ]
        for i in range(max(10, target // 36))  # about 36 bytes a row, measured
    ]
    header = ["Référence", "Désignation", "Quantité", "Prix unitaire HT", "Total HT"]
    return fixtures.xlsx_bytes(title=title, header=header, rows=rows)


def _odt(rng: random.Random, title: str, target: int) -> bytes:
    # Generated French text compresses about 30 times: aim, measure, aim again.
    count = max(20, target * 30 // 690)
    paragraphs = fixtures.french_paragraphs(rng, count)
    for _ in range(3):
        data = fixtures.odt_bytes(title=title, paragraphs=paragraphs)
        if abs(len(data) - target) <= target // 10:
            break
        wanted = max(20, int(len(paragraphs) * target / len(data)))
        if wanted > len(paragraphs):
            paragraphs += fixtures.french_paragraphs(rng, wanted - len(paragraphs))
        else:
            paragraphs = paragraphs[:wanted]
    return data


def _zip(rng: random.Random, title: str, target: int) -> bytes:
    """Photos of the site (JPEG) and a note, zipped as a company sends them."""
    photos = max(1, min(6, target // 40_000))
    members = [("LISEZMOI.txt", f"{title}\r\n".encode())]
    members += [
        (f"photos/photo-{i + 1:02d}.jpg", _noise_jpeg(rng, target // photos, title))
        for i in range(photos)
    ]
    return fixtures.zip_bytes(members)


def _xml(rng: random.Random, title: str, target: int) -> bytes:
    text = ""
    while len(text.encode()) < target - 400:
        text += " ".join(fixtures.french_sentences(rng, 8)) + "\n"
    fields = {"reference": title, "objet": "Avis de marché", "description": text}
    return fixtures.xml_notice_bytes(fields)


def _csv(rng: random.Random, title: str, target: int) -> bytes:
    body = fixtures._sized_csv(rng, target)
    header, rest = body.split(b"\r\n", 1)
    return header + f"\r\n{title};copie;1;0.00\r\n".encode() + rest


def make_base(seed: int, index: int) -> tuple[str, bytes]:
    """Base file ``index``: its kind and bytes, carrying :data:`MARK`."""
    rng = random.Random(f"throughput:{seed}:{index}")
    kind = rng.choices(list(KINDS), weights=[w for w, _lo, _hi in KINDS.values()])[0]
    _weight, low, high = KINDS[kind]
    target = rng.randint(low * 1000, high * 1000)
    title = f"{MARK} Pièce du marché"
    if kind == "pdf":
        data = fixtures._sized_pdf(rng, title, target)
    elif kind == "jpg":
        data = _noise_jpeg(rng, target, title)
    else:
        data = {"docx": _docx, "xlsx": _xlsx, "odt": _odt, "zip": _zip, "xml": _xml, "csv": _csv}[
            kind
        ](rng, title, target)
    return kind, data


def personalize(kind: str, data: bytes, mark: str) -> bytes:
    """The copy of a base file for one place of one dossier: :data:`MARK` replaced by ``mark``.
    Zip containers are rewritten (their members are compressed and checksummed); in the other
    formats the bytes are replaced in place."""
    old, new = MARK.encode(), mark.encode()
    if kind in ("docx", "xlsx", "odt", "zip"):
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
            found = 0
            for info in source.infolist():
                member = source.read(info)
                found += member.count(old)
                target.writestr(info, member.replace(old, new))
        copy = out.getvalue()
    else:
        found = data.count(old)
        copy = data.replace(old, new)
    if not found:
        raise AssertionError(f"{kind}: no mark to personalize")
    return copy


_POOL: list[tuple[str, bytes]] = []


def _set_pool(pool: list[tuple[str, bytes]]) -> None:
    _POOL[:] = pool


def write_dossier(root: Path, dossier: int, files: int, seed: int) -> tuple[dict[str, Any], int]:
    """Dossier ``dossier`` under ``root``: its metadata (make_small_dossier's: buyer, DECP,
    events) with ``files`` files taken in turn from the base pool, and its size in bytes."""
    scratch = root / ".scratch"
    metadata, _made = fixtures.make_small_dossier(
        scratch,
        1,
        sizes=(1, 1),
        seed=seed * 100_000 + dossier,
        message_identifier=f"TP-{dossier:05d}",
    )
    shutil.rmtree(scratch)
    metadata["files"] = []
    total = 0
    for index in range(files):
        kind, base = _POOL[(dossier * files + index) % len(_POOL)]
        data = personalize(kind, base, copy_mark(dossier, index))
        category = fixtures.CATEGORIES[index % len(fixtures.CATEGORIES)]
        folder = fixtures._PHASE_FOLDERS[category.split(".", 1)[0]]
        relative = f"{folder}/piece-{index + 1:03d}.{kind}"
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total += len(data)
        metadata["files"].append(
            {
                "path": relative,
                "category": category,
                "sha256": hashlib.sha256(data).hexdigest(),
                "title": f"Pièce {index + 1:03d} ({category})",
            }
        )
    return metadata, total


@dataclass
class Dossier:
    metadata: dict[str, Any]
    root: Path
    size: int


def make_corpus(work: Path, dossiers: int, files: int, seed: int) -> list[Dossier]:
    """``dossiers`` × ``files`` distinct files, from a pool of at most 200 base files (the
    costly part: reportlab, python-docx, openpyxl, Pillow) personalized for each place."""
    if dossiers > 9999 or files > 999:
        raise SystemExit("at most 9999 dossiers of 999 files")
    pool_size = min(200, dossiers * files)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as executor:
        pool = list(executor.map(make_base, [seed] * pool_size, range(pool_size), chunksize=8))
    with ProcessPoolExecutor(
        max_workers=os.cpu_count() or 2, initializer=_set_pool, initargs=(pool,)
    ) as executor:
        roots = [work / f"dossier-{d:05d}" for d in range(dossiers)]
        made = executor.map(
            write_dossier, roots, range(dossiers), [files] * dossiers, [seed] * dossiers
        )
        return [Dossier(meta, root, size) for root, (meta, size) in zip(roots, made, strict=True)]


# -- processes -------------------------------------------------------------------------------


class Processes:
    """Every process this run starts, each in a process group of its own; :meth:`stop_all`
    ends them (TERM, then KILL after 20 s), whatever happened."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        else:  # its group may outlive it (a pool process)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(self.running[:]):
            self.stop(proc)


@contextmanager
def private_ceph(directory: Path, capacity: int) -> Iterator[tuple[str, str]]:
    """A one-node Ceph cluster in memory with two gateways on free ports: two endpoints."""
    ports = [free_port(), free_port()]
    env = {
        **os.environ,
        "CEPH_MON_PORT": str(free_port()),
        "CEPH_OBJECTSTORE": "memstore",
        "CEPH_MEMSTORE_BYTES": str(capacity),
        "RGW_ACCESS_KEY": S3_ACCESS,
        "RGW_SECRET_KEY": S3_SECRET,
    }
    try:
        started = subprocess.run(
            [START_RGW, directory, *map(str, ports)],
            env=env, capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        if started.returncode != 0:
            raise RuntimeError(f"start-rgw.sh failed:\n{started.stderr}")
        first, second = started.stdout.split()
        yield first, second
    finally:
        subprocess.run([STOP_RGW, directory], capture_output=True, check=False, timeout=120)


def ceph_pids(directory: Path) -> dict[str, list[int]]:
    """The cluster's daemons by kind (``radosgw``, ``ceph-osd``, ``ceph-mon``)."""
    found: dict[str, list[int]] = {}
    for pidfile in (directory / "run").glob("*.pid"):
        try:
            pid = int(pidfile.read_text().strip())
            name = psutil.Process(pid).name()
        except (OSError, ValueError, psutil.Error):
            continue
        found.setdefault(name, []).append(pid)
    return found


@contextmanager
def postgres_database(name: str) -> Iterator[str]:
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- CPU -------------------------------------------------------------------------------------

GROUPS = ("workers", "radosgw", "ceph-osd", "ceph-mon", "postgres", "redis", "api", "client")


class CpuSampler:
    """CPU seconds of each group of processes over a window, sampled every ``interval`` from
    /proc: a process that starts in the window counts from zero; one that ends loses at most
    its last interval. ``machine`` is the busy time of all CPUs (from /proc/stat)."""

    def __init__(self, groups: dict[str, Any], database: str, interval: float = 0.5) -> None:
        self.groups = groups  # group → callable returning root pids (children included)
        self.database = database
        self.interval = interval
        self.seen: dict[tuple[str, int, float], list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _postgres(self) -> list[psutil.Process]:
        """The server's own processes and the backends of this run's database (not those of
        other databases: the server is shared)."""
        chosen = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            if proc.info["name"] != "postgres":
                continue
            command = " ".join(proc.info["cmdline"] or [])
            backend = "(" in command  # "postgres: user database host(port) state"
            if not backend or f" {self.database} " in command:
                chosen.append(proc)
        return chosen

    def _processes(self) -> Iterator[tuple[str, psutil.Process]]:
        for group, roots in self.groups.items():
            for pid in roots():
                try:
                    root = psutil.Process(pid)
                    yield group, root
                    for child in root.children(recursive=True):
                        yield group, child
                except psutil.Error:
                    continue
        for proc in self._postgres():
            yield "postgres", proc
        for proc in psutil.process_iter(["name"]):
            if proc.info["name"] == "redis-server":
                yield "redis", proc
        yield "client", psutil.Process()

    def _sample(self) -> None:
        for group, proc in self._processes():
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    created = proc.create_time()
            except psutil.Error:
                continue
            used = times.user + times.system
            key = (group, proc.pid, created)
            if key not in self.seen:
                self.seen[key] = [0.0 if created >= self.started else used, used]
            self.seen[key][1] = used

    @staticmethod
    def _machine() -> tuple[float, float]:
        """(busy, iowait) seconds of all CPUs since boot."""
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        tick = os.sysconf("SC_CLK_TCK")
        idle, iowait = fields[3], fields[4]
        return (sum(fields[:8]) - idle - iowait) / tick, iowait / tick

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> CpuSampler:
        self.started = time.time()
        self.machine_start = self._machine()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.wall = time.time() - self.started
        busy, iowait = self._machine()
        self.machine_busy = busy - self.machine_start[0]
        self.machine_iowait = iowait - self.machine_start[1]

    def seconds(self) -> dict[str, float]:
        out = dict.fromkeys(GROUPS, 0.0)
        for (group, _pid, _created), (first, last) in self.seen.items():
            out[group] += last - first
        return out


# -- one phase -------------------------------------------------------------------------------


@dataclass
class Phase:
    workers: int
    transfers: int = 0
    upload_seconds: float = 0.0
    processing_wall: float = 0.0
    steady_seconds: float = 0.0
    steady_transfers: int = 0
    steady_bytes: int = 0
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_wall: float = 0.0
    machine_busy: float = 0.0
    machine_iowait: float = 0.0
    copies: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.steady_transfers / self.steady_seconds

    @property
    def mbs(self) -> float:
        return self.steady_bytes / MB / self.steady_seconds


def stage_times(url: str) -> dict[str, dict[str, float]]:
    text = httpx.get(url + "/metrics", timeout=30).text
    sums: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "archive_stage_seconds":
            continue
        for sample in family.samples:
            suffix = sample.name.rsplit("_", 1)[1]
            if suffix in ("sum", "count"):
                sums.setdefault(sample.labels["stage"], {})[suffix] = sample.value
    return sums


def query(database_url: str, sql: str) -> list[Any]:
    """Rows of ``sql``; a server restarted meanwhile (other people's fault tests share it) is
    waited for, up to a minute."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(database_url, connect_timeout=5) as conn:
                return conn.execute(sql).fetchall()
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def wait_drained(database_url: str, expected: int, stall: float = 300) -> None:
    last, changed = -1, time.monotonic()
    while True:
        rows = dict(query(database_url, "SELECT status, count(*) FROM transfers GROUP BY status"))
        done = rows.get("accepted", 0) + rows.get("rejected", 0)
        if done >= expected:
            return
        if done != last:
            last, changed = done, time.monotonic()
        elif time.monotonic() - changed > stall:
            raise RuntimeError(f"no transfer finished for {stall:.0f} s: {rows}")
        time.sleep(0.5)


def check_outcome(database_url: str, sizes: dict[str, int], endpoints: dict[str, Any]) -> Any:
    """Every transfer accepted; every copy the database records is in its bucket, no more.
    Returns the completion times (UTC epoch seconds) with each dossier's size, in order."""
    rows = query(
        database_url,
        "SELECT message_identifier, status, reasons, extract(epoch from updated_at) "
        "FROM transfers ORDER BY updated_at",
    )
    copies = dict(query(database_url, "SELECT offer, count(*) FROM stored_copies GROUP BY offer"))
    refused = [(m, r) for m, status, r, _t in rows if status != "accepted"]
    if refused:
        raise RuntimeError(f"{len(refused)} transfers not accepted, e.g. {refused[:3]}")
    listed = {}
    for offer, (client, bucket) in endpoints.items():
        versions = 0
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
            versions += len(page.get("Versions", []))
        listed[offer] = versions
        if versions != copies.get(offer):
            raise RuntimeError(f"{offer}: {versions} object versions, {copies.get(offer)} copies")
    done = [(float(t), sizes[m]) for m, _s, _r, t in rows]
    return done, {o: {"database": copies[o], "bucket": listed[o]} for o in copies}


def run_phase(
    workers: int, corpus: list[Dossier], work: Path, args: argparse.Namespace, procs: Processes
) -> Phase:
    phase = Phase(workers, len(corpus))
    tag = f"tp{os.getpid()}w{workers}{uuid.uuid4().hex[:6]}"
    corpus_bytes = sum(d.size for d in corpus)
    # Two offers' copies in one memstore, with room for RGW's own objects and Ceph's full ratio.
    capacity = max(2 * 1024**3, int(2 * corpus_bytes * 1.4) + 512 * 1024**2)
    with ExitStack() as stack:
        ceph_dir = work / "ceph"
        print(f"[{workers} worker(s)] starting Ceph, PostgreSQL database, API…", file=sys.stderr)
        endpoint_a, endpoint_b = stack.enter_context(private_ceph(ceph_dir, capacity))
        database_url = stack.enter_context(postgres_database(tag))
        stack.callback(clean_redis, tag)
        offers = [
            {"name": name, "kind": "s3", "endpoint_url": endpoint, "bucket": f"archive-{name}",
             "access_key": S3_ACCESS, "secret_key": S3_SECRET, "min_retention_days": 1}
            for name, endpoint in (("ceph-a", endpoint_a), ("ceph-b", endpoint_b))
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(
            ARCHIVE_DATA_DIR=str(work / "var"),
            ARCHIVE_DATABASE_URL=database_url.replace("postgresql://", "postgresql+psycopg://"),
            ARCHIVE_STORAGE_OFFERS=json.dumps(offers),
            ARCHIVE_TASK_RUNNER="celery",
            ARCHIVE_BROKER_URL=REDIS,
            ARCHIVE_CELERY_QUEUE=tag,
            ARCHIVE_CELERY_BROKER_TRANSPORT_OPTIONS=json.dumps({"global_keyprefix": f"{tag}:"}),
            ARCHIVE_METRICS_DIR=str(work / "metrics"),
            ARCHIVE_SEDA_XSD_DIR=args.seda_xsd_dir,
            ARCHIVE_LOG_LEVEL="INFO",
        )
        if Path(args.decp_schema).is_file():
            env["ARCHIVE_DECP_SCHEMA_PATH"] = args.decp_schema
        out = subprocess.run(
            [EXE, "admin", "bootstrap", "--tenant", "Bench",
             "--org", f"{corpus[0].metadata['organization']}:Acheteur", "--json"],
            env=env, check=False, capture_output=True, text=True,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"admin bootstrap failed:\n{out.stdout}\n{out.stderr}")
        key = json.loads(out.stdout)["keys"]["platform"]["key"]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        api = procs.start([EXE, "serve", "--port", str(port)], env, work / "api.log")
        stack.callback(procs.stop, api)
        wait_http(url + "/healthz", api)

        print(f"[{workers} worker(s)] uploading {len(corpus)} dossiers…", file=sys.stderr)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(lambda d: upload(url, key, d.metadata, d.root), corpus))
        phase.upload_seconds = time.perf_counter() - started

        print(f"[{workers} worker(s)] processing…", file=sys.stderr)
        layout = [(1,)] * workers if args.layout == "processes" else [(workers,)]
        started_workers: list[subprocess.Popen[bytes]] = []
        sampler = CpuSampler(
            {
                "api": lambda: [api.pid],
                "workers": lambda: [p.pid for p in started_workers],
                **{
                    kind: (lambda kind=kind: ceph_pids(ceph_dir).get(kind, []))
                    for kind in ("radosgw", "ceph-osd", "ceph-mon")
                },
            },
            database=tag,
        )
        with sampler:
            t0 = time.time()
            for i, (concurrency,) in enumerate(layout):
                command = [EXE, "worker", "--pool", "prefork", "--concurrency", str(concurrency),
                           "--hostname", f"{tag}-{i}@%h"]  # fmt: skip
                proc = procs.start(command, env, work / f"worker-{i}.log")
                started_workers.append(proc)
                stack.callback(procs.stop, proc)
            wait_drained(database_url, len(corpus))
        phase.cpu, phase.cpu_wall = sampler.seconds(), sampler.wall
        phase.machine_busy, phase.machine_iowait = sampler.machine_busy, sampler.machine_iowait
        phase.stages = stage_times(url)

        s3 = {
            offer["name"]: (s3_client(offer["endpoint_url"]), offer["bucket"]) for offer in offers
        }
        sizes = {d.metadata["message_identifier"]: d.size for d in corpus}
        done, phase.copies = check_outcome(database_url, sizes, s3)
        phase.processing_wall = done[-1][0] - t0
        k = max(2, math.ceil(len(done) / 20))
        phase.steady_seconds = done[-1][0] - done[k - 1][0]
        phase.steady_transfers = len(done) - k
        phase.steady_bytes = sum(size for _t, size in done[k:])
    shutil.rmtree(work, ignore_errors=True)
    return phase


def wait_http(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({proc.returncode})")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=S3_ACCESS,
        aws_secret_access_key=S3_SECRET, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )  # fmt: skip


def clean_redis(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS)
    try:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        # Celery's fanout and reply keys are not prefixed by global_keyprefix in every version.
        for key in client.scan_iter(match=f"*{prefix}*"):
            client.delete(key)
    finally:
        client.close()


# -- the report ------------------------------------------------------------------------------


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(  # noqa: E731
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
    ).rstrip()
    return "\n".join([line(header), "-" * (sum(widths) + 2 * len(widths) - 2), *map(line, rows)])


def report(phases: list[Phase], corpus: list[Dossier], args: argparse.Namespace) -> str:
    files = sum(len(d.metadata["files"]) for d in corpus)
    total = sum(d.size for d in corpus)
    one, two = phases
    ratio = two.rate / one.rate
    head = ("measure", *(f"{p.workers} worker{'s' if p.workers > 1 else ''}" for p in phases))
    rows = [
        ("upload via API, workers stopped: transfers/s",
         *(f"{len(corpus) / p.upload_seconds:.2f}" for p in phases)),
        ("                                  MB/s",
         *(f"{total / MB / p.upload_seconds:.1f}" for p in phases)),
        ("processing, steady state: transfers/s", *(f"{p.rate:.2f}" for p in phases)),
        ("                          MB/s", *(f"{p.mbs:.1f}" for p in phases)),
        ("                          files/s",
         *(f"{p.rate * files / len(corpus):.0f}" for p in phases)),
        ("processing wall, workers' start to last accepted (s)",
         *(f"{p.processing_wall:.1f}" for p in phases)),
    ]  # fmt: skip
    out = [
        f"{len(corpus)} dossiers × {files // len(corpus)} files, {total / MB:,.0f} MB "
        f"({total / files / 1000:.0f} KB a file); 2 S3 offers (Ceph RGW memstore), PostgreSQL, "
        f"Celery/Redis; {os.cpu_count()} CPUs; workers as {args.layout}",
        "",
        table(rows, head),
        "",
        f"scaling ratio 2 workers / 1 worker (steady transfers/s): {ratio:.2f}  (target >= 1.7)",
        "",
    ]
    stage_rows = []
    for stage in STAGES:
        cells = []
        for p in phases:
            figures = p.stages.get(stage, {})
            count = figures.get("count", 0)
            cells += [
                f"{figures.get('sum', 0):.1f}",
                f"{1000 * figures.get('sum', 0) / count:.0f}" if count else "-",
            ]
        stage_rows.append((stage, *cells))
    stage_head = ("stage (archive_stage_seconds)",)
    for p in phases:
        stage_head += (f"sum s ({p.workers}w)", f"mean ms ({p.workers}w)")
    out += [table(stage_rows, stage_head), ""]
    cpu_rows = []
    for group in GROUPS:
        cpu_rows.append((group, *(f"{p.cpu[group] / p.cpu_wall:.2f}" for p in phases)))
    cpu_rows += [
        ("other processes (rest of the machine)",
         *(f"{(p.machine_busy - sum(p.cpu.values())) / p.cpu_wall:.2f}" for p in phases)),
        ("machine busy (all CPUs)", *(f"{p.machine_busy / p.cpu_wall:.2f}" for p in phases)),
        ("machine iowait", *(f"{p.machine_iowait / p.cpu_wall:.2f}" for p in phases)),
        ("CPU-seconds per transfer, this run's processes",
         *(f"{sum(p.cpu.values()) / p.transfers:.2f}" for p in phases)),
        ("  workers", *(f"{p.cpu['workers'] / p.transfers:.2f}" for p in phases)),
        ("  S3 server (radosgw + osd + mon)", *(f"{s3_cpu(p) / p.transfers:.2f}" for p in phases)),
    ]  # fmt: skip
    out += [
        table(cpu_rows, ("CPU during processing (cores used)", *head[1:])),
        "",
        bottleneck(phases),
    ]
    return "\n".join(out)


def s3_cpu(phase: Phase) -> float:
    return phase.cpu["radosgw"] + phase.cpu["ceph-osd"] + phase.cpu["ceph-mon"]


def bottleneck(phases: list[Phase]) -> str:
    """Where the time goes, in words: the stage that takes most of a job, and the cores."""
    cores = os.cpu_count() or 1
    lines = []
    for p in phases:
        worker_stages = {s: p.stages.get(s, {}).get("sum", 0.0) for s in WORKER_STAGES}
        busiest = max(worker_stages, key=worker_stages.__getitem__)
        share = worker_stages[busiest] / sum(worker_stages.values())
        lines.append(
            f"{p.workers} worker(s): machine {p.machine_busy / p.cpu_wall:.2f} of {cores} cores "
            f"busy; workers {p.cpu['workers'] / p.cpu_wall:.2f}, S3 server (radosgw + osd + "
            f"mon) {s3_cpu(p) / p.cpu_wall:.2f}, postgres {p.cpu['postgres'] / p.cpu_wall:.2f}; "
            f"longest stage {busiest} ({share:.0%} of the jobs' time, both offers)"
        )
    one = phases[0]
    own = sum(one.cpu.values()) / one.transfers
    lines.append(
        f"CPU ceiling: the run's own processes take {own:.2f} CPU-seconds per transfer with 1 "
        f"worker; {cores} cores allow at most {cores / own / one.rate:.2f} × the 1-worker rate"
    )
    for p in phases:
        other = (p.machine_busy - sum(p.cpu.values())) / p.cpu_wall
        if other > 0.15:
            lines.append(
                f"WARNING: other processes used {other:.2f} cores during the {p.workers}-worker "
                "phase: the machine was not quiet, run again"
            )
    return "\n".join(lines)


def as_json(phases: list[Phase], corpus: list[Dossier], args: argparse.Namespace) -> Any:
    return {
        "dossiers": len(corpus),
        "files": sum(len(d.metadata["files"]) for d in corpus),
        "bytes": sum(d.size for d in corpus),
        "cpus": os.cpu_count(),
        "layout": args.layout,
        "ratio": phases[1].rate / phases[0].rate,
        "report": report(phases, corpus, args),
        "phases": [
            {
                "workers": p.workers,
                "upload_seconds": p.upload_seconds,
                "processing_wall_seconds": p.processing_wall,
                "steady_seconds": p.steady_seconds,
                "steady_transfers": p.steady_transfers,
                "transfers_per_second": p.rate,
                "mb_per_second": p.mbs,
                "stages": p.stages,
                "cpu_seconds": p.cpu,
                "cpu_wall_seconds": p.cpu_wall,
                "machine_busy_seconds": p.machine_busy,
                "machine_iowait_seconds": p.machine_iowait,
                "copies": p.copies,
            }
            for p in phases
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dossiers", type=int, default=200)
    parser.add_argument("--files", type=int, default=20, help="files per dossier")
    parser.add_argument("--quick", action="store_true", help="20 dossiers × 20 files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clients", type=int, default=2, help="concurrent uploads")
    parser.add_argument(
        "--layout",
        choices=("processes", "concurrency"),
        default="processes",
        help="N workers of --concurrency 1 (default), or one worker of --concurrency N",
    )
    parser.add_argument("--json", type=Path, help="write the figures there too")
    parser.add_argument(
        "--seda-xsd-dir",
        default=os.environ.get("ARCHIVE_SEDA_XSD_DIR", str(REPO.parent / "shared" / "seda")),
    )
    parser.add_argument(
        "--decp-schema",
        default=os.environ.get(
            "ARCHIVE_DECP_SCHEMA_PATH", str(REPO.parent / "shared/decp/schema_decp_v2.0.3.json")
        ),
    )
    args = parser.parse_args()
    if args.quick:
        args.dossiers = 20
    if args.dossiers < 3 or args.files < 1:
        parser.error("at least 3 dossiers of 1 file")

    # A TERM (or a closed terminal) unwinds like Ctrl-C, so that every finally block runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        work = Path(tmp)
        try:
            started = time.perf_counter()
            corpus = make_corpus(work / "corpus", args.dossiers, args.files, args.seed)
            print(
                f"corpus: {args.dossiers} × {args.files} files in "
                f"{time.perf_counter() - started:.0f} s",
                file=sys.stderr,
            )
            phases = [
                run_phase(workers, corpus, work / f"phase-{workers}", args, procs)
                for workers in (1, 2)
            ]
        finally:
            procs.stop_all()
    print(report(phases, corpus, args))
    if args.json:
        args.json.write_text(json.dumps(as_json(phases, corpus, args), indent=2))


if __name__ == "__main__":
    main()
