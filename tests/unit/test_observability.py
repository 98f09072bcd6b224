"""Structured logs, the Metrics port's adapters and the job queue depth, without a socket."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from archive_service.errors import Conflict, NotFound, Unavailable
from archive_service.jobs.inprocess import InProcessRunner
from archive_service.observability.prometheus import PrometheusMetrics
from archive_service.ports import (
    BucketCheck,
    LockingBlobStore,
    NullMetrics,
    RetentionReader,
    StoredBlob,
    timed,
)
from archive_service.storage.instrumented import instrument
from archive_service.storage.local import LocalDirectoryStore
from tests.log_capture import captured_logs


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    with captured_logs("json", "DEBUG") as buffer:
        yield buffer


def parsed(buffer: io.StringIO) -> list[dict[str, Any]]:
    """Every line of ``buffer`` as a JSON object (fails on a line that is not one)."""
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_every_line_is_one_json_object_with_the_bound_context(log_lines: io.StringIO) -> None:
    with structlog.contextvars.bound_contextvars(transfer_id="tr-1"):
        structlog.get_logger("archive_service.test").info("stage.done", stage="identify")
        logging.getLogger("archive_service.other").warning("job.retry", extra={"delay": 1.5})
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logging.getLogger("celery").exception("task failed")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("SAWarning-like warning", UserWarning, stacklevel=1)

    lines = parsed(log_lines)
    assert len(lines) == 5
    for line in lines:
        assert {"timestamp", "level", "event", "logger"} <= set(line)
        assert datetime.fromisoformat(line["timestamp"]).utcoffset().total_seconds() == 0
    structured, stdlib, uvicorn, failed, warned = lines
    assert structured["event"] == "stage.done"
    assert structured["stage"] == "identify"
    assert structured["transfer_id"] == "tr-1"
    assert structured["level"] == "info"
    assert structured["logger"] == "archive_service.test"
    assert stdlib["event"] == "job.retry"
    assert stdlib["delay"] == 1.5
    assert stdlib["transfer_id"] == "tr-1"
    assert stdlib["level"] == "warning"
    assert uvicorn["event"] == "Started server process [42]"
    assert "transfer_id" not in uvicorn  # the context ended with its block
    assert failed["level"] == "error"
    assert "ValueError: boom" in failed["exception"]
    assert warned["logger"] == "py.warnings"
    assert "SAWarning-like warning" in warned["event"]


def test_console_format_is_not_json() -> None:
    with captured_logs("console", "INFO") as buffer:
        logging.getLogger("archive_service.x").info("transfer.processed")
        logging.getLogger("archive_service.x").debug("hidden")
    text = buffer.getvalue()
    assert "transfer.processed" in text
    assert "hidden" not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_in_process_jobs_log_their_name_id_and_attempt(log_lines: io.StringIO) -> None:
    runner = InProcessRunner(workers=1, base_delay=0.01)
    calls: list[str] = []

    def job(job_id: str) -> None:
        calls.append(job_id)
        logging.getLogger("archive_service.test").info("inside")
        if len(calls) == 1:
            raise Unavailable("down for one attempt")

    runner.register("process_transfer", job)
    try:
        runner.submit("process_transfer", "tr-42")
        deadline = threading.Event()
        for _ in range(500):
            if len(calls) == 2 and runner.wait_idle(5):
                break
            deadline.wait(0.01)
    finally:
        runner.shutdown()
    inside = [line for line in parsed(log_lines) if line["event"] == "inside"]
    assert [(x["job"], x["id"], x["attempt"]) for x in inside] == [
        ("process_transfer", "tr-42", 1),
        ("process_transfer", "tr-42", 2),
    ]
    retry = next(line for line in parsed(log_lines) if line["event"] == "job.retry")
    assert retry["id"] == "tr-42"
    assert retry["attempt"] == 1


def test_in_process_runner_counts_jobs_waiting_for_a_thread() -> None:
    runner = InProcessRunner(workers=1)
    release = threading.Event()
    started = threading.Event()

    def job(job_id: str) -> None:
        started.set()
        release.wait(30)

    runner.register("slow", job)
    try:
        assert runner.pending() == 0
        for n in range(3):
            runner.submit("slow", f"job-{n}")
        assert started.wait(30)
        assert runner.pending() == 2  # one running, two waiting
        release.set()
        assert runner.wait_idle(30)
        assert runner.pending() == 0
    finally:
        release.set()
        runner.shutdown()


# -- metrics ------------------------------------------------------------------------------


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_prometheus_metrics_expose_stage_histograms_and_storage_errors() -> None:
    metrics = PrometheusMetrics()
    other = PrometheusMetrics()  # another service set in the same process: its own figures
    with timed(metrics, "identify"):
        pass
    metrics.observe_stage("store", 0.2)
    metrics.observe_stage("store", 30.0)
    metrics.storage_error("ceph-a", "put")
    other.observe_stage("store", 1.0)
    with pytest.raises(RuntimeError), timed(metrics, "manifest"):
        raise RuntimeError("a failed stage is not observed")
    registry = CollectorRegistry()
    metrics.expose(registry)
    got = samples(registry)
    assert got[("archive_stage_seconds_count", (("stage", "identify"),))] == 1
    assert got[("archive_stage_seconds_count", (("stage", "store"),))] == 2
    assert got[("archive_stage_seconds_sum", (("stage", "store"),))] == pytest.approx(30.2)
    assert got[("archive_stage_seconds_bucket", (("le", "0.25"), ("stage", "store")))] == 1
    assert got[("archive_stage_seconds_bucket", (("le", "0.001"), ("stage", "store")))] == 0
    assert ("archive_stage_seconds_count", (("stage", "manifest"),)) not in got
    assert got[("archive_storage_errors_total", (("offer", "ceph-a"), ("operation", "put")))] == 1


WRITER = """
import sys
from archive_service.observability.prometheus import PrometheusMetrics
metrics = PrometheusMetrics()
assert metrics.multiprocess_dir is not None
for _ in range(int(sys.argv[1])):
    metrics.observe_stage("identify", 0.01)
metrics.storage_error("s3-a", "put")
"""


def test_observations_of_several_processes_add_up_in_the_metrics_dir(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    for count in (2, 3):
        subprocess.run([sys.executable, "-c", WRITER, str(count)], env=environment, check=True)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    got = samples(registry)
    assert got[("archive_stage_seconds_count", (("stage", "identify"),))] == 5
    assert got[("archive_storage_errors_total", (("offer", "s3-a"), ("operation", "put")))] == 2


# -- storage errors -----------------------------------------------------------------------


class Recorder(NullMetrics):
    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def storage_error(self, offer: str, operation: str) -> None:
        self.errors.append((offer, operation))


class BrokenOffer:
    """Answers ``stat`` with nothing, refuses one key as existing, fails everything else."""

    name = "broken"

    def put_file(self, key: str, path: Path, *, sha256: str, consume: bool = False) -> StoredBlob:
        raise Unavailable("offer down")

    def put_bytes(self, key: str, data: bytes) -> StoredBlob:
        if key == "exists":
            raise Conflict("key exists")
        raise OSError("disk gone")

    def open(self, key: str, *, version_id: str | None = None) -> Any:
        raise NotFound("absent")

    def stat(self, key: str, *, version_id: str | None = None) -> StoredBlob | None:
        return None

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        yield "a"
        raise Unavailable("listing broke")

    def delete(self, key: str) -> None:
        raise Unavailable("offer down")

    def purge(self, key: str) -> None:
        raise Unavailable("offer down")

    def lock(self, key: str, *, version_id: str, retain_until: datetime, mode: str = "") -> Any:
        raise Unavailable("lock refused")

    def set_legal_hold(self, key: str, *, version_id: str, on: bool) -> None:
        raise Unavailable("down")

    def retention(self, key: str, *, version_id: str) -> None:
        return None

    def ensure_bucket(self) -> None:
        raise Unavailable("down")


def test_failed_offer_operations_are_counted_answers_are_not(tmp_path: Path) -> None:
    recorder = Recorder()
    offer = instrument(BrokenOffer(), recorder)  # type: ignore[arg-type]
    assert isinstance(offer, LockingBlobStore)
    assert isinstance(offer, RetentionReader)
    assert isinstance(offer, BucketCheck)
    source = tmp_path / "f"
    source.write_bytes(b"x")
    with pytest.raises(Unavailable):
        offer.put_file("k", source, sha256="0" * 64)
    with pytest.raises(OSError, match="disk gone"):
        offer.put_bytes("k", b"x")
    with pytest.raises(Conflict):
        offer.put_bytes("exists", b"x")
    with pytest.raises(NotFound):
        offer.open("k")
    assert offer.stat("k") is None
    with pytest.raises(Unavailable):
        list(offer.iter_keys())
    with pytest.raises(Unavailable):
        offer.delete("k")
    with pytest.raises(Unavailable):
        offer.purge("k")
    assert isinstance(offer, LockingBlobStore)
    with pytest.raises(Unavailable):
        offer.lock("k", version_id="v", retain_until=datetime.now().astimezone())
    assert recorder.errors == [
        ("broken", "put"),
        ("broken", "put"),
        ("broken", "list"),
        ("broken", "delete"),
        ("broken", "purge"),
        ("broken", "lock"),
    ]


def test_an_instrumented_local_offer_keeps_its_capabilities_and_attributes(
    tmp_path: Path,
) -> None:
    inner = LocalDirectoryStore("local", tmp_path / "offer")
    offer = instrument(inner, Recorder())
    assert not isinstance(offer, LockingBlobStore)
    assert not isinstance(offer, BucketCheck)
    assert offer.name == "local"
    stored = offer.put_bytes("a/b", b"content")
    assert offer.stat("a/b") == stored
    assert list(offer.iter_keys()) == ["a/b"]
    with offer.open("a/b") as stream:
        assert stream.read() == b"content"
    assert offer.root == inner.root  # type: ignore[attr-defined]
