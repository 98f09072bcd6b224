"""Observability as an operator sees it: /metrics after real transfers (stage durations, storage
errors by offer, queue depth), request ids, JSON logs carrying the transfer and job ids, and
the figures of Celery worker *processes* reaching Prometheus (shared metrics directory, or the
worker's own port)."""

from __future__ import annotations

import io
import json
import logging
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from archive_service.api.app import create_app
from archive_service.config import Settings
from archive_service.ports import LockingBlobStore
from archive_service.services.ingest import STAGES
from archive_service.wiring import build_services
from tests.fixtures.dossier import BUYER_NAME, BUYER_SIRET, make_dossier
from tests.integration.conftest import Env, only_stack, open_env
from tests.integration.test_celery import (
    ARCHIVE_SERVICE,
    broker_problem,
    process,
    wait_for,
    worker_command,
)
from tests.log_capture import captured_logs
from tests.reference import decp_schema_path, seda_xsd_dir

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def stage_counts(got: Samples) -> dict[str, float]:
    return {
        dict(labels)["stage"]: value
        for (name, labels), value in got.items()
        if name == "archive_stage_seconds_count"
    }


def storage_errors(got: Samples) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["offer"], dict(labels)["operation"]): value
        for (name, labels), value in got.items()
        if name == "archive_storage_errors_total"
    }


def ingest(env: Env, root: Path) -> dict[str, Any]:
    metadata, _ = make_dossier(root)
    r = env.post_transfer(metadata, root)
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    return done


def test_each_stage_of_a_transfer_is_timed(env: Env, tmp_path: Path) -> None:
    ingest(env, tmp_path / "d")
    got = samples(env.http.get("/metrics").text)
    counts = stage_counts(got)
    offers = len(env.services.offers)
    locking = any(isinstance(o, LockingBlobStore) for o in env.services.offers)
    expected = {stage: 1.0 for stage in STAGES if locking or stage != "lock"}
    expected["store"] = expected["read_back"] = float(offers)  # once per offer
    assert counts == expected
    for stage in expected:
        assert got[("archive_stage_seconds_sum", (("stage", stage),))] >= 0
        assert (
            got[("archive_stage_seconds_bucket", (("le", "+Inf"), ("stage", stage)))]
            == (expected[stage])
        )
    assert storage_errors(got) == {}
    assert got[("archive_jobs_waiting", ())] >= 0


@only_stack("default")
def test_a_failing_offer_is_counted_by_offer_and_operation(
    settings: Settings, tmp_path: Path
) -> None:
    """Two local offers; the second one's disk goes bad (its temporary directory is replaced
    by a file, so no write can start there) after the service started."""
    offers = [
        {"name": name, "kind": "local", "path": str(tmp_path / name)} for name in ("good", "bad")
    ]
    env_settings = settings.model_copy(update={"storage_offers": offers})
    with open_env(env_settings) as env:
        temp = tmp_path / "bad" / ".tmp"
        shutil.rmtree(temp)
        temp.write_bytes(b"")
        metadata, _ = make_dossier(tmp_path / "d")
        r = env.post_transfer(metadata, tmp_path / "d")
        assert r.status_code == 202, r.text
        errors: dict[tuple[str, str], float] = {}

        def counted() -> bool:
            errors.update(storage_errors(samples(env.http.get("/metrics").text)))
            return bool(errors) and env.services.runner.pending_count() == 0  # type: ignore[union-attr]

        wait_for(counted, "a storage error on /metrics", timeout=60)
        assert set(errors) == {("bad", "put")}
        assert errors[("bad", "put")] >= 1
        transfer = env.http.get(f"/v1/transfers/{r.json()['id']}", headers=env.auth()).json()
        assert transfer["status"] == "processing"  # not accepted, not lost


@only_stack("default")
def test_queue_depth_of_a_broker_and_of_a_broker_that_is_down(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    url = "redis://127.0.0.1:6379/0"
    if broker_problem(url):
        pytest.skip(f"Redis unreachable at {url}")
    queue = f"obs-{uuid.uuid4().hex[:12]}"
    up = settings.model_copy(
        update={
            "task_runner": "celery",
            "broker_url": url,
            "celery_queue": queue,
            "celery_broker_transport_options": {"global_keyprefix": f"{queue}:"},
        }
    )
    services = build_services(up)
    try:
        with TestClient(create_app(up, services=services)) as http:
            assert samples(http.get("/metrics").text)[("archive_jobs_waiting", ())] == 0
            for n in range(3):  # no worker consumes this queue
                services.runner.submit("process_transfer", f"tr-{n}")
            assert samples(http.get("/metrics").text)[("archive_jobs_waiting", ())] == 3
    finally:
        with services.runner.app.connection_for_write() as conn:  # type: ignore[union-attr]
            conn.default_channel.queue_purge(queue)
        services.close()

    down = up.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    services = build_services(down)
    try:
        with TestClient(create_app(down, services=services)) as http:
            with caplog.at_level(logging.WARNING):
                r = http.get("/metrics")
            assert r.status_code == 200
            got = samples(r.text)
            assert ("archive_jobs_waiting", ()) not in got  # unknown: absent, not a number
            assert ("archive_transfers", (("status", "accepted"),)) in got  # the rest is there
            assert "jobs.pending_unknown" in caplog.text
    finally:
        services.close()


@only_stack("default")
def test_request_ids_are_returned_and_accepted_from_the_caller(env: Env) -> None:
    generated = env.http.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32
    assert env.http.get("/healthz").headers["x-request-id"] != generated
    given = env.http.get("/healthz", headers={"X-Request-ID": "proxy-7f3a:1"})
    assert given.headers["x-request-id"] == "proxy-7f3a:1"
    odd = env.http.get("/healthz", headers={"X-Request-ID": "not acceptable " + "x" * 200})
    assert len(odd.headers["x-request-id"]) == 32
    refused = env.http.get("/v1/transfers/nope")
    assert refused.status_code == 401
    assert len(refused.headers["x-request-id"]) == 32


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    with captured_logs("json", "INFO") as buffer:
        yield buffer


@only_stack("default")
def test_logs_of_a_transfer_carry_its_request_transfer_and_job_ids(
    env: Env, tmp_path: Path, json_logs: io.StringIO
) -> None:
    done = ingest(env, tmp_path / "d")
    transfer_id = done["id"]
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    by_event: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_event.setdefault(line["event"], []).append(line)

    (registered,) = by_event["transfer.registered"]
    (post,) = [a for a in by_event["http.request"] if a["method"] == "POST"]
    assert post["path"] == "/v1/transfers"
    assert post["status"] == 202
    assert post["duration_ms"] >= 0
    assert registered["request_id"] == post["request_id"]  # logged inside that request
    assert registered["transfer_id"] == transfer_id

    (processed,) = by_event["transfer.processed"]
    assert processed["transfer_id"] == transfer_id
    assert processed["status"] == "accepted"
    assert (processed["job"], processed["id"], processed["attempt"]) == (
        "process_transfer",
        transfer_id,
        1,
    )
    assert "request_id" not in processed  # the job runs outside the request
    for line in lines:
        assert {"timestamp", "level", "event", "logger"} <= set(line)


# -- worker processes ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def celery_settings(tmp_path: Path) -> Iterator[Settings]:
    url = "redis://127.0.0.1:6379/0"
    problem = broker_problem(url)
    if problem:
        pytest.skip(f"Redis unreachable at {url}: {problem}")
    queue = f"obs-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        data_dir=tmp_path / "var",
        seda_xsd_dir=seda_xsd_dir(),
        decp_schema_path=decp_schema_path(),
        task_runner="celery",
        broker_url=url,
        celery_queue=queue,
        celery_broker_transport_options={"global_keyprefix": f"{queue}:"},
        port=free_port(),
        log_format="json",
    )
    yield settings
    import redis

    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"{queue}:*"):
        client.delete(key)
    client.close()


def platform_key(settings: Settings) -> str:
    services = build_services(settings)
    try:
        result = services.tenancy.bootstrap("GIP", [f"{BUYER_SIRET}:{BUYER_NAME}"])
    finally:
        services.close()
    return next(k.key for k in result.keys if k.role.value == "platform")


def archive_over_http(base: str, key: str, root: Path) -> str:
    metadata, _ = make_dossier(root)
    headers = {"Authorization": f"Bearer {key}"}
    files: list[tuple[str, tuple[str | None, Any, str]]] = [
        ("metadata", (None, json.dumps(metadata), "application/json"))
    ]
    for entry in metadata["files"]:
        path = root / entry["path"]
        files.append((entry["path"], (path.name, path.read_bytes(), "application/octet-stream")))
    r = httpx.post(f"{base}/v1/transfers", files=files, headers=headers, timeout=60)
    assert r.status_code == 202, r.text
    transfer_id: str = r.json()["id"]
    state: dict[str, Any] = {}

    def finished() -> bool:
        state.update(httpx.get(f"{base}/v1/transfers/{transfer_id}", headers=headers).json())
        return state["status"] in ("accepted", "rejected")

    wait_for(finished, "the worker to archive the transfer", timeout=120)
    assert state["status"] == "accepted", state
    return transfer_id


def json_lines(log: Path) -> list[dict[str, Any]]:
    """The JSON lines of a process's output (Celery's banner is plain text on stdout)."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_api_metrics_sum_the_stages_observed_by_worker_processes(
    celery_settings: Settings, tmp_path: Path
) -> None:
    settings = celery_settings.model_copy(update={"metrics_dir": tmp_path / "metrics"})
    key = platform_key(settings)
    base = f"http://127.0.0.1:{settings.port}"
    api_log, worker_log = tmp_path / "api.log", tmp_path / "worker.log"
    with (
        process(settings, [ARCHIVE_SERVICE, "serve"], "Application startup complete", api_log),
        process(settings, worker_command(ARCHIVE_SERVICE), " ready.", worker_log),
    ):
        transfer_id = archive_over_http(base, key, tmp_path / "d")
        got = samples(httpx.get(f"{base}/metrics").text)
    counts = stage_counts(got)
    # receive and register ran in the API process, the rest in a worker's pool process.
    assert counts == {stage: 1.0 for stage in STAGES if stage != "lock"}
    assert got[("archive_jobs_waiting", ())] == 0

    worker_lines = json_lines(worker_log)
    assert any(" ready." in line["event"] for line in worker_lines)
    processed = [line for line in worker_lines if line["event"] == "transfer.processed"]
    assert [(p["transfer_id"], p["job"], p["id"]) for p in processed] == [
        (transfer_id, "archive.process_transfer", transfer_id)
    ]
    access = [line for line in json_lines(api_log) if line["event"] == "http.request"]
    assert any(a["method"] == "POST" and a["status"] == 202 for a in access)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_worker_in_a_pod_of_its_own_serves_its_metrics_on_a_port(
    celery_settings: Settings, tmp_path: Path
) -> None:
    settings = celery_settings
    key = platform_key(settings)
    base = f"http://127.0.0.1:{settings.port}"
    metrics_port = free_port()
    command = [*worker_command(ARCHIVE_SERVICE), "--metrics-port", str(metrics_port)]
    with (
        process(
            settings, [ARCHIVE_SERVICE, "serve"], "Application startup complete", tmp_path / "a"
        ),
        process(settings, command, " ready.", tmp_path / "w"),
    ):
        archive_over_http(base, key, tmp_path / "d")
        worker_counts = stage_counts(samples(httpx.get(f"http://127.0.0.1:{metrics_port}").text))
        api_counts = stage_counts(samples(httpx.get(f"{base}/metrics").text))
    assert worker_counts == {s: 1.0 for s in STAGES if s not in ("lock", "receive", "register")}
    assert api_counts == {"receive": 1.0, "register": 1.0}
