"""The production stack end to end, and parts of it failing under load (issue 3, "Proved by").

One stack for the module: the API in this process (``task_runner="celery"``), a real
``archive-service worker`` (two processes) on Redis, a PostgreSQL database of its own, an
external RFC 3161 TSA over HTTP, and two S3 offers: the two gateways of a Ceph cluster this
module starts and owns (``tests/integration/ceph_cluster.py``), since one of them is stopped.

* the step-1 end-to-end scenario on that stack;
* fault case 2: one S3 offer stopped during a burst of transfers: they wait, saying why, and
  complete once it is back;
* fault case 3: PostgreSQL restarted during a burst: the API answers 503 while it is down, and
  every transfer ends accepted (or rejected with a reason), none stuck.

Each test ends with :func:`assert_consistent`: exactly one package per accepted transfer and
none for a rejected one; each bucket holds exactly the object versions the ``stored_copies``
table names, each reading back with its recorded SHA-256; no delete marker, no unfinished
upload; no logbook entry for a copy or a package that is not stored.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import URL, func, select

from archive_service.db import tables as t
from tests.fixtures.dossier import make_dossier, make_small_dossier
from tests.integration.ceph_cluster import PrivateCeph, private_ceph
from tests.integration.conftest import Env, new_postgres_database
from tests.integration.test_celery import (
    ARCHIVE_SERVICE,
    BROKERS,
    SwitchedTsa,
    broker_problem,
    celery_env,
    process,
    tsa,  # noqa: F401 - the module's TSA fixture
    wait_for,
)
from tests.integration.test_s3 import s3_keys
from tests.reference import in_ci, official_schema

pytestmark = pytest.mark.timeout(300)

MIN_RETENTION_DAYS = 30
BURST = 8
OFFER_NAMES = ("ceph-a", "ceph-b")


# -- the stack ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ceph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCeph]:
    with private_ceph(tmp_path_factory.mktemp("ceph")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def redis_url() -> str:
    url = BROKERS["redis"]
    problem = broker_problem(url)
    if problem:
        msg = f"Redis not reachable at {url} ({problem}); .ci/run starts it"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return url


@pytest.fixture(scope="module")
def database(postgres_server: URL) -> Iterator[str]:
    """A PostgreSQL database for the module, dropped afterwards (once the server is back)."""
    with new_postgres_database(
        postgres_server, "archive_fault", before_drop=wait_for_postgres
    ) as url:
        yield url


@pytest.fixture(scope="module")
def offers(ceph: PrivateCeph) -> list[dict[str, Any]]:
    key, secret_key = s3_keys()
    return [
        {
            "name": name,
            "kind": "s3",
            "endpoint_url": endpoint,
            "bucket": f"archive-fault-{name}",
            "access_key": key,
            "secret_key": secret_key,
            "min_retention_days": MIN_RETENTION_DAYS,
        }
        for name, endpoint in zip(OFFER_NAMES, ceph.endpoints, strict=True)
    ]


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    tsa: SwitchedTsa,  # noqa: F811
    database: str,
    offers: list[dict[str, Any]],
) -> Iterator[Env]:
    """The API and one worker (two processes) for the module."""
    root = tmp_path_factory.mktemp("stack")
    with celery_env(
        root,
        redis_url,
        tsa,
        database_url=database,
        storage_offers=offers,
        # Long enough for an outage of a few seconds; a job retries up to about 40 s.
        celery_task_max_retries=25,
        celery_retry_backoff_max=2,
    ) as env:
        name = f"fault-{uuid.uuid4().hex[:8]}@%h"
        command = [ARCHIVE_SERVICE, "worker", "--pool", "prefork", "--concurrency", "2"]
        log = root / "worker.log"
        with process(env.settings, [*command, "--hostname", name], " ready.", log):
            yield env


# -- helpers --------------------------------------------------------------------------------


def small_dossier(root: Path, n: int) -> tuple[dict[str, Any], Path]:
    folder = root / f"d{n}"
    metadata, _ = make_small_dossier(
        folder,
        3,
        sizes=(2_000, 12_000),
        seed=n,
        message_identifier=f"FAULT-{uuid.uuid4().hex[:12]}",
    )
    return metadata, folder


def post(env: Env, dossier: tuple[dict[str, Any], Path]) -> str:
    """Post as a client does: again after a 503 (a replay returns the first transfer)."""
    metadata, root = dossier
    deadline = time.monotonic() + 60
    while True:
        r = env.post_transfer(metadata, root)
        if r.status_code in (200, 202):
            return str(r.json()["id"])
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert time.monotonic() < deadline, r.text
        time.sleep(0.2)


def status(env: Env, transfer_id: str) -> dict[str, Any]:
    r = env.http.get(f"/v1/transfers/{transfer_id}", headers=env.auth())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def wait_all(env: Env, ids: list[str], timeout: float = 90) -> dict[str, dict[str, Any]]:
    final: dict[str, dict[str, Any]] = {}

    def done() -> bool:
        for transfer_id in ids:
            if transfer_id not in final:
                body = status(env, transfer_id)
                if body["status"] in ("accepted", "rejected"):
                    final[transfer_id] = body
        return len(final) == len(ids)

    wait_for(done, f"{len(ids)} transfers to finish", timeout=timeout)
    return final


def versions_of(client: Any, bucket: str) -> tuple[dict[tuple[str, str], int], list[Any]]:
    """Every object version of ``bucket`` ((key, version id) → size) and its delete markers."""
    found: dict[tuple[str, str], int] = {}
    markers: list[Any] = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []):
            found[(v["Key"], v["VersionId"])] = int(v["Size"])
        markers.extend(page.get("DeleteMarkers", []))
    return found, markers


def assert_consistent(env: Env, ceph: PrivateCeph, offers: list[dict[str, Any]]) -> None:
    """The invariants of every fault case (module docstring)."""
    with env.services.engine.connect() as conn:
        transfers = conn.execute(
            select(t.Transfer.id, t.Transfer.status, t.Transfer.reasons, t.Transfer.package_id)
        ).all()
        packages = dict(
            conn.execute(
                select(t.Package.transfer_id, func.count()).group_by(t.Package.transfer_id)
            ).all()
        )
        copies = conn.execute(
            select(
                t.StoredCopy.offer, t.StoredCopy.key, t.StoredCopy.version_id, t.StoredCopy.sha256
            )
        ).all()
        logged = conn.execute(
            select(t.LogbookEntry.event_type, t.LogbookEntry.subject_id, t.LogbookEntry.details)
        ).all()
    for transfer_id, state, reasons, _package in transfers:
        assert state in ("accepted", "rejected"), (transfer_id, state, reasons)
        assert packages.get(transfer_id, 0) == (1 if state == "accepted" else 0), transfer_id
        if state == "rejected":
            assert reasons, transfer_id

    # Each bucket holds exactly the versions the database names, reading back as recorded.
    recorded: dict[str, dict[tuple[str, str], str]] = {name: {} for name in OFFER_NAMES}
    for offer, key, version_id, sha256 in copies:
        recorded[offer][(key, version_id)] = sha256
    assert {k for k, _ in recorded["ceph-a"]} == {k for k, _ in recorded["ceph-b"]}
    for index, spec in enumerate(offers):
        client = ceph.client(index)
        found, markers = versions_of(client, spec["bucket"])
        assert not markers, markers
        assert set(found) == set(recorded[spec["name"]]), spec["name"]
        uploads = client.list_multipart_uploads(Bucket=spec["bucket"]).get("Uploads", [])
        assert not uploads, uploads
        for (key, version_id), sha256 in recorded[spec["name"]].items():
            body = client.get_object(Bucket=spec["bucket"], Key=key, VersionId=version_id)
            assert hashlib.sha256(body["Body"].read()).hexdigest() == sha256, key

    # Nothing logged as stored or accepted that is not.
    stored = {(o, k) for o, k, _, _ in copies}
    accepted = {tid for tid, state, _, _ in transfers if state == "accepted"}
    package_of = {p: tid for tid, _, _, p in transfers}
    for event_type, subject_id, details in logged:
        if event_type.endswith(".stored"):
            assert (details["offer"], details["key"]) in stored, details
            assert package_of[subject_id] in accepted, subject_id
        elif event_type == "transfer.accepted":
            assert details["transfer_id"] in accepted, details
    accepted_entries = [d for e, _, d in logged if e == "transfer.accepted"]
    assert len(accepted_entries) == len(accepted)


def retried(env: Env, reason: str) -> bool:
    """Whether the worker logged a retry for ``reason`` (in text or JSON log format)."""
    log = (env.settings.data_dir.parent / "worker.log").read_text(errors="replace")
    return any("job.retry" in line and reason in line for line in log.splitlines())


def wait_for_postgres(timeout: float = 60) -> None:
    wait_for(
        lambda: (
            subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode == 0
        ),
        "PostgreSQL to accept connections",
        timeout=timeout,
    )


def postgres_cluster() -> list[str]:
    """``pg_ctlcluster`` arguments of the local cluster the tests use (its latest version)."""
    if shutil.which("pg_ctlcluster") is None or not os.path.isdir("/etc/postgresql"):
        reason = "restarting PostgreSQL needs pg_ctlcluster and a cluster in /etc/postgresql"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    versions = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(p) for p in v.split(".")])
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


# -- the end-to-end scenario ------------------------------------------------------------------


def test_end_to_end_on_postgresql_celery_and_two_s3_offers(
    stack: Env, ceph: PrivateCeph, offers: list[dict[str, Any]], tmp_path: Path
) -> None:
    metadata, _ = make_dossier(tmp_path / "d")
    r = stack.post_transfer(metadata, tmp_path / "d")
    assert r.status_code == 202, r.text
    done = stack.wait(r.json()["id"], timeout=90)
    assert done["status"] == "accepted", done
    unit_id = done["archive_unit_id"]
    unit = stack.http.get(f"/v1/archive-units/{unit_id}", headers=stack.auth("archivist"))
    assert unit.status_code == 200, unit.text
    objects = unit.json()["objects"]
    assert len(objects) == len(metadata["files"]) + 1  # and the DECP record

    manifest = stack.http.get(
        f"/v1/archive-units/{unit_id}/manifest", headers=stack.auth("archivist")
    )
    assert manifest.status_code == 200
    assert official_schema("2.3").validate(etree.fromstring(manifest.content))
    for obj in objects:
        r = stack.http.get(f"/v1/objects/{obj['id']}/content", headers=stack.auth("platform"))
        assert r.status_code == 200, r.text
        assert hashlib.sha256(r.content).hexdigest() == obj["sha256"]

    # Every copy on both offers, locked in COMPLIANCE mode at least for the minimum.
    with stack.services.engine.connect() as conn:
        copies = conn.execute(
            select(t.StoredCopy.offer, t.StoredCopy.key, t.StoredCopy.version_id)
        ).all()
    assert {offer for offer, _, _ in copies} == set(OFFER_NAMES)
    assert len(copies) == 2 * (len(objects) + 2)  # objects, manifest, token on each offer
    floor = time.time() + (MIN_RETENTION_DAYS - 1) * 86400
    for offer, key, version_id in copies:
        index = OFFER_NAMES.index(offer)
        retention = ceph.client(index).get_object_retention(
            Bucket=offers[index]["bucket"], Key=key, VersionId=version_id
        )["Retention"]
        assert retention["Mode"] == "COMPLIANCE"
        assert retention["RetainUntilDate"].timestamp() >= floor

    # PostgreSQL full-text search finds it by a word of its title.
    word = next(w for w in metadata["title"].split() if len(w) > 5)
    found = stack.http.get("/v1/archive-units", params={"q": word}, headers=stack.auth())
    assert found.status_code == 200, found.text
    assert unit_id in [item["id"] for item in found.json()["items"]]
    assert_consistent(stack, ceph, offers)


# -- fault case 2: one S3 offer stopped during a burst -------------------------------------


def test_an_offer_stopped_mid_burst_makes_transfers_wait_then_complete(
    stack: Env, ceph: PrivateCeph, offers: list[dict[str, Any]], tmp_path: Path
) -> None:
    dossiers = [small_dossier(tmp_path, n) for n in range(BURST)]
    ids = [post(stack, d) for d in dossiers[: BURST // 2]]
    ceph.stop_gateway(offers[1]["endpoint_url"])
    try:
        ids += [post(stack, d) for d in dossiers[BURST // 2 :]]  # the API takes them all
        accepted_before = {i for i in ids if status(stack, i)["status"] == "accepted"}
        waiting: dict[str, str] = {}

        def all_waiting() -> bool:
            for transfer_id in ids:
                body = status(stack, transfer_id)
                if body["status"] in ("received", "processing") and body["reasons"]:
                    waiting[transfer_id] = body["reasons"][0]["message"]
            return len(waiting) + len(accepted_before) == len(ids)

        wait_for(all_waiting, "every transfer to wait for the stopped offer", timeout=60)
        assert len(waiting) >= BURST // 2  # at least those posted once it was down
        for transfer_id, reason in waiting.items():
            assert reason.startswith("waiting: offer ceph-b: cannot reach"), (transfer_id, reason)
        # Nothing is accepted without its copies on the offer that is down.
        assert {i for i in ids if status(stack, i)["status"] == "accepted"} == accepted_before
    finally:
        ceph.start_gateways()
    final = wait_all(stack, ids)
    assert {body["status"] for body in final.values()} == {"accepted"}, final
    assert all(not body["reasons"] for body in final.values())
    # Retried by Celery (the same job, later), not failed and resubmitted.
    with stack.services.engine.connect() as conn:
        attempts = dict(conn.execute(select(t.Transfer.id, t.Transfer.attempts)).all())
    assert all(attempts[i] > 1 for i in waiting), attempts
    assert retried(stack, "offer ceph-b: cannot reach")
    assert_consistent(stack, ceph, offers)


# -- fault case 3: PostgreSQL restarted during a burst ---------------------------------------


def test_postgresql_restarted_mid_burst_every_transfer_ends(
    stack: Env, ceph: PrivateCeph, offers: list[dict[str, Any]], tmp_path: Path
) -> None:
    cluster = postgres_cluster()
    dossiers = [small_dossier(tmp_path, 100 + n) for n in range(BURST)]
    ids = [post(stack, d) for d in dossiers[: BURST // 2]]
    subprocess.run([*cluster, "stop", "--", "-m", "fast"], check=True, capture_output=True)
    try:
        # While the database is down the API says so: 503 problem+json, not 500.
        metadata, root = dossiers[BURST // 2]
        r = stack.post_transfer(metadata, root)
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "database unavailable" in r.json()["detail"]
        r = stack.http.get(f"/v1/transfers/{ids[0]}", headers=stack.auth())
        assert r.status_code == 503, r.text
        time.sleep(1)  # the workers meet the outage too
    finally:
        subprocess.run([*cluster, "start"], check=True, capture_output=True)
        wait_for_postgres()
    ids += [post(stack, d) for d in dossiers[BURST // 2 :]]
    final = wait_all(stack, ids)
    for transfer_id, body in final.items():
        assert body["status"] == "accepted" or body["reasons"], (transfer_id, body)
    assert {body["status"] for body in final.values()} == {"accepted"}, final
    # The jobs that met the outage were retried, not failed.
    assert retried(stack, "database unavailable")
    assert_consistent(stack, ceph, offers)
