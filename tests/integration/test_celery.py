"""Celery workers on a real broker, Redis and RabbitMQ: the API (``task_runner="celery"``) only
sends the job; a real ``archive-service worker`` process archives the dossier. Proves the
retry policy (backoff on ``Unavailable`` only), redelivery after ``kill -9`` of the worker in
the middle of a transfer (acks late), and the beat job that resumes a stuck transfer.

The dependency that goes down is the TSA, an external one here (the built-in TSA served over
HTTP), whose next answers each test chooses. A broker that cannot be reached skips its tests
with the reason, and fails them under CI.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from kombu import Connection
from pydantic import SecretStr
from sqlalchemy import select, update

from archive_service.api.app import create_app
from archive_service.config import Settings
from archive_service.db import tables as t
from archive_service.errors import ConfigurationError
from archive_service.jobs.celery_runner import CeleryRunner
from archive_service.services.ingest import PROCESS_JOB
from archive_service.tasks.celery_app import (
    backoff_delay,
    make_celery,
    resume_stuck,
    waiting_messages,
)
from archive_service.tsa.builtin import BuiltinTimestampAuthority
from archive_service.wiring import build_services, resume_unfinished
from tests.fixtures.dossier import BUYER_NAME, BUYER_SIRET, make_dossier
from tests.integration.conftest import Env
from tests.reference import decp_schema_path, in_ci, seda_xsd_dir
from tests.tsa_helpers import serve_tsa

REPO = Path(__file__).resolve().parents[2]
ARCHIVE_SERVICE = str(Path(sys.executable).with_name("archive-service"))
BROKERS = {
    "redis": os.environ.get("ARCHIVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get("ARCHIVE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}
BACKOFF_BASE = 0.2

pytestmark = pytest.mark.timeout(300)


# -- the broker, the TSA, the environment -------------------------------------------------


def broker_problem(url: str) -> str | None:
    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.connect()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="module", params=sorted(BROKERS))
def broker_url(request: pytest.FixtureRequest) -> str:
    url = BROKERS[request.param]
    problem = broker_problem(url)
    if problem:
        msg = f"{request.param} broker not reachable at {url} ({problem}); .ci/run starts it"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return url


class SwitchedTsa:
    """The built-in TSA behind HTTP; ``plan`` says how the next requests are answered:
    ``down`` (connection dropped: ``Unavailable``), ``garbage`` (not a reply: a rejection)."""

    def __init__(self, directory: Path, url: str) -> None:
        self.tsa = BuiltinTimestampAuthority(directory)
        self.url = url
        self.ca_file = directory / "served-chain.pem"
        self.ca_file.write_bytes(self.tsa.certificate_chain_pem())
        self.plan: list[str] = []
        self.hits: list[float] = []

    def answer(self, request: bytes) -> bytes:
        self.hits.append(time.monotonic())
        mode = self.plan.pop(0) if self.plan else "ok"
        if mode == "down":
            raise ConnectionAbortedError("TSA down (test)")  # the server drops the connection
        if mode == "garbage":
            return b"not a TimeStampResp"
        return self.tsa.respond(request)


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwitchedTsa]:
    switched: SwitchedTsa | None = None

    def answer(request: bytes) -> bytes:
        assert switched is not None
        return switched.answer(request)

    with serve_tsa(answer) as server:
        switched = SwitchedTsa(tmp_path_factory.mktemp("tsa"), server.url)
        yield switched


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a worker process exactly ``settings``."""
    out = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, dict | list):
            value = json.dumps(value)
        out[f"ARCHIVE_{name.upper()}"] = str(value)
    return out


@contextmanager
def celery_env(root: Path, broker_url: str, tsa: SwitchedTsa, **overrides: Any) -> Iterator[Env]:
    """The API in this process with ``task_runner="celery"``, on a queue of its own (and on
    Redis, keys of its own: a worker restores any unacknowledged message of its database whose
    visibility timeout, its own, has passed)."""
    queue = f"test-{uuid.uuid4().hex[:12]}"
    own_keys = {"global_keyprefix": f"{queue}:"} if broker_url.startswith("redis") else {}
    settings = Settings(
        **{
            "data_dir": root / "var",
            "seda_xsd_dir": seda_xsd_dir(),
            "decp_schema_path": decp_schema_path(),
            "task_runner": "celery",
            "broker_url": broker_url,
            "celery_queue": queue,
            "celery_broker_transport_options": own_keys,
            "tsa_url": tsa.url,
            "tsa_ca_file": tsa.ca_file,
            "celery_retry_backoff_base": BACKOFF_BASE,
            "celery_retry_backoff_max": 2,
            "celery_task_max_retries": 6,
            "celery_resume_after_seconds": 600,
            "celery_resume_every_seconds": 1,
            # A killed worker's lease must run out quickly for its job to be taken over.
            "job_lease_seconds": 3,
            **overrides,
        }
    )
    services = build_services(settings)
    result = services.tenancy.bootstrap("GIP Test", [f"{BUYER_SIRET}:{BUYER_NAME}"])
    keys = {k.role.value: k.key for k in result.keys}
    try:
        with TestClient(create_app(settings, services=services)) as http:
            yield Env(http, services, keys, {}, settings)
    finally:
        services.close()
        if own_keys:
            client = redis.Redis.from_url(broker_url)
            for key in client.scan_iter(match=f"{queue}:*"):
                client.delete(key)
            client.close()
        else:
            with Connection(broker_url) as conn:
                conn.default_channel.queue_delete(queue)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def process(
    settings: Settings, command: list[str], ready: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` with ``settings`` in its environment until ``ready`` shows in its log."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **settings_env(settings)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg reaches the pool too
        )
    try:
        wait_for(
            lambda: ready in log.read_text(errors="replace") or proc.poll() is not None,
            f"{command[:2]} to start",
        )
        assert proc.poll() is None, log.read_text(errors="replace")
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def worker_command(*prefix: str) -> list[str]:
    name = f"test-{uuid.uuid4().hex[:8]}@%h"
    return [*prefix, "worker", "--pool", "prefork", "--concurrency", "1", "--hostname", name]


@contextmanager
def worker(env: Env, name: str = "worker") -> Iterator[subprocess.Popen[bytes]]:
    log = env.settings.data_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
    with process(env.settings, worker_command(ARCHIVE_SERVICE), " ready.", log) as proc:
        yield proc


@pytest.fixture(scope="module")
def dossier(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    root = tmp_path_factory.mktemp("dossier")
    metadata, _ = make_dossier(root)
    return metadata, root


@pytest.fixture(scope="module")
def celery(
    broker_url: str, tsa: SwitchedTsa, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    """One API and one worker process for the module, per broker."""
    with celery_env(tmp_path_factory.mktemp("celery"), broker_url, tsa) as env, worker(env):
        yield env


def post(env: Env, dossier: tuple[dict[str, Any], Path]) -> str:
    metadata, root = dossier
    fresh = {**metadata, "message_identifier": f"CEL-{uuid.uuid4().hex[:12]}"}
    r = env.post_transfer(fresh, root)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def transfer_row(env: Env, transfer_id: str) -> Any:
    with env.services.engine.connect() as conn:
        return conn.execute(select(t.Transfer).where(t.Transfer.id == transfer_id)).one()


def package_count(env: Env, transfer_id: str) -> int:
    with env.services.engine.connect() as conn:
        rows = conn.execute(select(t.Package.id).where(t.Package.transfer_id == transfer_id))
        return len(rows.all())


def events(env: Env, subject_id: str) -> list[str]:
    with env.services.engine.connect() as conn:
        stmt = select(t.LogbookEntry.event_type).where(t.LogbookEntry.subject_id == subject_id)
        return list(conn.scalars(stmt.order_by(t.LogbookEntry.id)))


def untouched_for_hours(env: Env, transfer_id: str) -> None:
    with env.services.engine.begin() as conn:
        conn.execute(
            update(t.Transfer)
            .where(t.Transfer.id == transfer_id)
            .values(updated_at=datetime.now(UTC) - timedelta(hours=2))
        )


def storage_files(env: Env) -> dict[str, str]:
    """Every object of the storage offers, as the offers list them: key → SHA-256."""
    found = {}
    for offer in env.services.offers:
        for key in offer.iter_keys():
            with offer.open(key) as stream:
                found[key] = hashlib.sha256(stream.read()).hexdigest()
    return found


# -- with a worker ------------------------------------------------------------------------


def test_a_dossier_posted_over_http_is_archived_by_the_worker(
    celery: Env, dossier: tuple[dict[str, Any], Path]
) -> None:
    assert isinstance(celery.services.runner, CeleryRunner)  # nothing runs in this process
    transfer_id = post(celery, dossier)
    done = celery.wait(transfer_id, timeout=90)
    assert done["status"] == "accepted", done
    unit = celery.http.get(f"/v1/archive-units/{done['archive_unit_id']}", headers=celery.auth())
    assert unit.status_code == 200, unit.text
    manifest = celery.http.get(
        f"/v1/archive-units/{done['archive_unit_id']}/manifest", headers=celery.auth("archivist")
    )
    assert manifest.status_code == 200
    assert package_count(celery, transfer_id) == 1
    assert transfer_row(celery, transfer_id).attempts == 1


def test_a_dependency_down_is_retried_with_backoff_then_completes_once(
    celery: Env, tsa: SwitchedTsa, dossier: tuple[dict[str, Any], Path]
) -> None:
    tsa.plan = ["down"] * 3
    first = len(tsa.hits)
    transfer_id = post(celery, dossier)
    seen: list[dict[str, Any]] = []

    def finished() -> bool:
        r = celery.http.get(f"/v1/transfers/{transfer_id}", headers=celery.auth())
        seen.append(r.json())
        return seen[-1]["status"] in ("accepted", "rejected")

    wait_for(finished, "the transfer to finish", timeout=90)
    assert seen[-1]["status"] == "accepted", seen[-1]
    # While it waited, the transfer said what for.
    assert any(s["reasons"] and s["reasons"][0]["message"].startswith("waiting: TSA") for s in seen)
    # Four calls to the TSA: three refused, one granted, each retry later than the one before.
    hits = tsa.hits[first:]
    assert len(hits) == 4, hits
    gaps = [b - a for a, b in itertools.pairwise(hits)]
    for retry, gap in enumerate(gaps):
        assert gap >= BACKOFF_BASE * 2**retry / 2, gaps
    assert transfer_row(celery, transfer_id).attempts == 4
    assert package_count(celery, transfer_id) == 1
    assert events(celery, transfer_id) == ["transfer.received"]
    assert events(celery, seen[-1]["archive_unit_id"]) == ["transfer.accepted"]


def test_other_errors_are_final_not_retried(
    celery: Env, tsa: SwitchedTsa, dossier: tuple[dict[str, Any], Path]
) -> None:
    tsa.plan = ["garbage"]
    first = len(tsa.hits)
    transfer_id = post(celery, dossier)
    done = celery.wait(transfer_id, timeout=90)
    assert done["status"] == "rejected", done
    time.sleep(4 * BACKOFF_BASE)  # longer than a first retry would wait
    assert len(tsa.hits) - first == 1
    assert transfer_row(celery, transfer_id).attempts == 1
    assert package_count(celery, transfer_id) == 0


class LostMessages:
    """A runner whose messages never reach the broker (a broker that lost them)."""

    def submit(self, job_name: str, job_id: str) -> None:
        pass


def test_beat_resubmits_a_transfer_stuck_for_too_long(
    celery: Env, dossier: tuple[dict[str, Any], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(celery.services.ingest, "_runner", LostMessages())
    stuck, recent = post(celery, dossier), post(celery, dossier)
    untouched_for_hours(celery, stuck)
    log = celery.settings.data_dir / "beat.log"
    with process(celery.settings, [ARCHIVE_SERVICE, "beat"], "beat: Starting", log):
        done = celery.wait(stuck, timeout=60)
        assert done["status"] == "accepted", done
        time.sleep(2 * celery.settings.celery_resume_every_seconds)
    # Untouched for less than celery_resume_after_seconds: its job may still be queued.
    assert transfer_row(celery, recent).status == "received"
    assert package_count(celery, stuck) == 1
    assert "Sending due task archive.resume_unfinished" in log.read_text()


def test_resume_submits_nothing_while_the_queue_holds_messages(
    broker_url: str, tsa: SwitchedTsa, dossier: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    with celery_env(tmp_path, broker_url, tsa) as env:  # and no worker: the message waits
        transfer_id = post(env, dossier)
        untouched_for_hours(env, transfer_id)
        app = make_celery(env.settings)
        queue = env.settings.celery_queue
        try:
            wait_for(lambda: waiting_messages(app, queue) == 1, "the message to be queued")
            assert resume_stuck(app) == 0  # it may be that one: no copy behind a backlog
            with app.connection_for_write() as conn:
                app.amqp.queues[queue].bind(conn.default_channel).purge()
            assert resume_stuck(app) == 1  # the queue is empty: the job was lost
            wait_for(lambda: waiting_messages(app, queue) == 1, "the resubmitted message")
        finally:
            app.close_services()
            app.close()


# -- kill -9 in the middle of a transfer ----------------------------------------------------


def slow_storage_worker(markers: Path, delay: float) -> None:
    """Entry of the test's own worker (``python -m tests.integration.test_celery``): each
    file stored leaves a marker, and the job hangs after the second, to be killed there."""
    from archive_service.storage.local import LocalDirectoryStore

    put_file = LocalDirectoryStore.put_file

    def slow_put_file(self: LocalDirectoryStore, key: str, *args: Any, **kwargs: Any) -> Any:
        stored = put_file(self, key, *args, **kwargs)
        count = len(list(markers.iterdir())) + 1
        (markers / f"{count:04d}").write_text(key)
        if count >= 2:
            time.sleep(delay)  # hang once two objects are stored
        return stored

    LocalDirectoryStore.put_file = slow_put_file  # type: ignore[method-assign]


def test_kill_9_mid_transfer_redelivers_to_a_new_worker_and_completes_once(
    broker_url: str, tsa: SwitchedTsa, dossier: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    # A short visibility timeout, so that Redis gives back the job of the killed worker soon.
    visibility = 3
    with celery_env(
        tmp_path, broker_url, tsa, celery_visibility_timeout=visibility, celery_retry_backoff_max=1
    ) as env:
        markers = tmp_path / "stored"
        markers.mkdir()
        slow = worker_command(
            sys.executable, "-m", "tests.integration.test_celery", str(markers), "30"
        )
        log = tmp_path / "slow-worker.log"
        with process(env.settings, slow, " ready.", log) as doomed:
            transfer_id = post(env, dossier)
            wait_for(lambda: len(list(markers.iterdir())) >= 2, "two objects to be stored")
            os.killpg(doomed.pid, signal.SIGKILL)
            doomed.wait()
        written = storage_files(env)
        assert len(written) >= 2
        assert transfer_row(env, transfer_id).status == "processing"
        assert package_count(env, transfer_id) == 0
        if broker_url.startswith("redis"):
            time.sleep(visibility + 0.5)  # a new worker restores it when it starts
        with worker(env, "recovery"):
            done = env.wait(transfer_id, timeout=90)
        assert done["status"] == "accepted", done
        # Redelivered, not resubmitted (no beat ran, the API resubmits nothing): the second
        # attempt reused what the first had written, and left exactly one package.
        assert transfer_row(env, transfer_id).attempts == 2
        assert package_count(env, transfer_id) == 1
        with env.services.engine.connect() as conn:
            copies = dict(conn.execute(select(t.StoredCopy.key, t.StoredCopy.sha256)).all())
        assert storage_files(env) == copies  # every copy there with its digest; no orphan
        assert all(written[key] == copies[key] for key in written)
        assert events(env, done["archive_unit_id"]) == ["transfer.accepted"]


# -- without a broker ---------------------------------------------------------------------


def test_a_broker_down_does_not_fail_the_request_that_submits(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, task_runner="celery", broker_url="amqp://127.0.0.1:1//")
    runner = CeleryRunner.for_settings(settings)
    runner.register(PROCESS_JOB, lambda _id: None)
    started = time.monotonic()
    runner.submit(PROCESS_JOB, "tr-lost")  # logged; the beat job resumes the transfer later
    assert time.monotonic() - started < 10
    with pytest.raises(LookupError):
        runner.submit("unknown_job", "x")
    runner.shutdown()


def test_the_api_resubmits_nothing_at_start_with_celery(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, task_runner="celery", tsa_url=None)
    services = build_services(settings)
    try:
        assert resume_unfinished(services) == 0
    finally:
        services.close()


def test_backoff_grows_with_jitter_up_to_its_maximum() -> None:
    for retries in range(12):
        full = min(60.0, 2.0 * 2**retries)
        for _ in range(20):
            assert full / 2 <= backoff_delay(retries, base=2.0, maximum=60.0) <= full


def test_a_retry_longer_than_the_redis_visibility_timeout_is_refused(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, celery_visibility_timeout=600, celery_retry_backoff_max=600
    )
    with pytest.raises(ConfigurationError, match="visibility timeout"):
        make_celery(settings)
    amqp = settings.model_copy(update={"broker_url": "amqp://guest:guest@127.0.0.1:5672//"})
    assert make_celery(amqp).conf.task_acks_late is True


if __name__ == "__main__":
    # python -m tests.integration.test_celery MARKERS DELAY worker …: a slowed-down worker.
    slow_storage_worker(Path(sys.argv[1]), float(sys.argv[2]))
    from archive_service.cli.main import app

    app(sys.argv[3:], prog_name="archive-service")
