"""Fixtures for tests that run the real service, on either of its two configurations.

Every test that takes ``settings`` (hence ``env``) runs once per stack named in
``ARCHIVE_TEST_STACKS`` (default ``default,production``):

* ``default`` — the one-machine default: SQLite, one local storage directory, jobs in
  process, built-in TSA.
* ``production`` — the scale-out setup: PostgreSQL (a database of its own per test, created on
  the server at ``ARCHIVE_TEST_POSTGRES_URL``, default
  ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, used only as the maintenance
  connection, and dropped afterwards); two S3 offers with Object Lock (new buckets on the two
  gateways of the real S3 server at ``ARCHIVE_TEST_S3_ENDPOINT`` and
  ``ARCHIVE_TEST_S3_ENDPOINT_2``, a Ceph RGW that ``.ci/run`` starts); jobs sent through Redis
  (``ARCHIVE_TEST_BROKER_URL``, a queue of its own per test) to a real Celery worker. That
  worker runs in the test process, in a thread, on the API's own services, so a test that
  swaps a dependency (a failing TSA, a small staging disk) changes it for the worker too;
  ``test_celery.py`` covers worker *processes* (kill -9, redelivery, both brokers).

A service that is unreachable skips those tests with the reason, and fails them when
``CI=true``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import signals
from celery.contrib.testing.worker import start_worker
from fastapi.testclient import TestClient
from sqlalchemy import URL, create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from archive_service.api.app import create_app
from archive_service.config import Settings
from archive_service.jobs.inprocess import InProcessRunner
from archive_service.storage.s3 import S3BlobStore
from archive_service.tasks.celery_app import make_celery
from archive_service.wiring import Services, build_services
from tests.fixtures.clock import MovableClock
from tests.fixtures.dossier import BUYER_NAME, BUYER_SIRET, make_siren, make_siret
from tests.integration.test_s3 import require_s3, s3_endpoint, s3_keys
from tests.reference import decp_schema_path, in_ci, seda_xsd_dir

OTHER_SIRET = make_siret(make_siren("21750001"))

STACKS = ("default", "production")
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
# Objects locked while their retention start is pending stay this long on the test server.
MIN_RETENTION_DAYS = 1


def selected_stacks() -> list[str]:
    """The stacks named in ``ARCHIVE_TEST_STACKS`` (comma-separated), both by default."""
    raw = os.environ.get("ARCHIVE_TEST_STACKS") or ",".join(STACKS)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = sorted(set(names) - set(STACKS))
    if unknown or not names:
        msg = f"ARCHIVE_TEST_STACKS={raw!r}: choose among {', '.join(STACKS)}"
        raise pytest.UsageError(msg)
    return list(dict.fromkeys(names))


def unavailable(reason: str) -> None:
    """Skip for a missing service; fail under CI, where ``.ci/run`` starts every one."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> URL:
    """The maintenance URL of a reachable PostgreSQL server; skip (fail under CI) otherwise."""
    url = make_url(os.environ.get("ARCHIVE_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL)
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        unavailable(
            f"PostgreSQL unreachable at {url.render_as_string()}: {exc.orig}; start it, point "
            "ARCHIVE_TEST_POSTGRES_URL at one, or set ARCHIVE_TEST_STACKS=default"
        )
    finally:
        engine.dispose()
    return url


@contextlib.contextmanager
def new_postgres_database(
    server: URL, prefix: str = "archive_test", *, before_drop: Callable[[], None] | None = None
) -> Iterator[str]:
    """The URL of a new, empty database on ``server``, dropped (with its connections) after."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = create_engine(server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        if before_drop is not None:
            before_drop()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_database(postgres_server: URL) -> Iterator[str]:
    """A new, empty database for the test."""
    with new_postgres_database(postgres_server) as url:
        yield url


@pytest.fixture(scope="session")
def broker_url() -> str:
    """The Redis broker of the production stack; skip (fail under CI) when unreachable."""
    import redis

    url = os.environ.get("ARCHIVE_TEST_BROKER_URL") or DEFAULT_BROKER_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis unreachable at {url}: {exc}; start it or set ARCHIVE_TEST_STACKS")
    finally:
        client.close()
    return url


def only_stack(name: str) -> pytest.MarkDecorator:
    """Run a test that takes ``settings`` on one stack alone (what the other does not do)."""
    marks = []
    if name not in selected_stacks():
        marks.append(pytest.mark.skip(reason=f"{name} is not in ARCHIVE_TEST_STACKS"))
    return pytest.mark.parametrize("stack", [pytest.param(name, marks=marks)], indirect=True)


def only_postgresql() -> pytest.MarkDecorator:
    """Run a test on the stack with PostgreSQL alone (what SQLite does not do)."""
    return only_stack("production")


@pytest.fixture(params=selected_stacks())
def stack(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def database_url(stack: str, request: pytest.FixtureRequest) -> str | None:
    """``None`` for SQLite (the one-machine default URL), else a fresh PostgreSQL database."""
    if stack == "default":
        return None
    url: str = request.getfixturevalue("postgres_database")
    return url


def s3_offers(
    prefix: str = "archive-it", *, min_retention_seconds: int | None = None
) -> list[dict[str, Any]]:
    """Two S3 offers with new buckets, one on each gateway of the test S3 server.

    ``min_retention_seconds``: the lock floor in seconds instead of ``MIN_RETENTION_DAYS``
    days, for tests that need retention to lapse in real time (disposal)."""
    require_s3()
    access, secret = s3_keys()
    second = os.environ.get("ARCHIVE_TEST_S3_ENDPOINT_2", s3_endpoint())
    suffix = secrets.token_hex(5)
    floor: dict[str, int] = (
        {"min_retention_days": MIN_RETENTION_DAYS}
        if min_retention_seconds is None
        else {"min_retention_seconds": min_retention_seconds}
    )
    return [
        {
            "name": f"ceph-{n}",
            "kind": "s3",
            "endpoint_url": endpoint,
            "bucket": f"{prefix}-{n}-{suffix}",
            "access_key": access,
            "secret_key": secret,
            **floor,
        }
        for n, endpoint in (("a", s3_endpoint()), ("b", second))
    ]


@pytest.fixture
def settings(
    tmp_path: Path, stack: str, database_url: str | None, request: pytest.FixtureRequest
) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "database_url": database_url,
        "seda_xsd_dir": seda_xsd_dir(),
        "decp_schema_path": decp_schema_path(),
        "inprocess_workers": 2,
    }
    if stack == "production":
        queue = f"archive-test-{secrets.token_hex(6)}"
        values.update(
            storage_offers=s3_offers(),
            task_runner="celery",
            broker_url=request.getfixturevalue("broker_url"),
            celery_queue=queue,
            # Keys of its own on Redis: no other test's worker restores or sees its messages.
            celery_broker_transport_options={"global_keyprefix": f"{queue}:"},
            celery_retry_backoff_base=0.05,
            celery_retry_backoff_max=1.0,
        )
    return Settings(**values)


@contextlib.contextmanager
def celery_worker(services: Services) -> Iterator[None]:
    """A Celery worker consuming the jobs ``services`` send, when they send them to a broker.

    It runs in a thread of this process on ``services`` themselves (what the worker app
    would build from the same settings), with the worker configuration of production
    (acks late, retries with backoff); its queue is deleted afterwards.
    """
    if services.settings.task_runner != "celery":
        yield
        return
    app = make_celery(services.settings)
    # Leave the test session's logging alone (the worker would take over the root logger).
    app.conf.worker_hijack_root_logger = False
    # The services belong to the test, which closes them; the worker must not.
    signals.worker_shutdown.disconnect(app.close_services)
    signals.worker_process_shutdown.disconnect(app.close_services)
    app._services, app._services_pid = services, os.getpid()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=60):
            yield
    finally:
        app.close()
        forget_queue(services.settings)
        # The worker's logging set-up changed the root level and captured warnings: undo it.
        root.handlers, root.level = handlers, level
        logging.captureWarnings(False)


def forget_queue(settings: Settings) -> None:
    """Remove what the test's queue left on Redis (its keys carry the queue's prefix)."""
    import redis

    prefix = settings.celery_broker_transport_options.get("global_keyprefix")
    if not prefix:
        return
    client = redis.Redis.from_url(settings.broker_url)
    try:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
    finally:
        client.close()


def bootstrap_tenants(services: Services) -> tuple[dict[str, str], dict[str, str]]:
    """Two tenants' API keys by role: "GIP Test" (two buyers) and "GIP Autre" (one)."""
    keys = {
        k.role.value: k.key
        for k in services.tenancy.bootstrap(
            "GIP Test", [f"{BUYER_SIRET}:{BUYER_NAME}", f"{OTHER_SIRET}:Autre acheteur"]
        ).keys
    }
    other = {
        k.role.value: k.key
        for k in services.tenancy.bootstrap("GIP Autre", [f"{BUYER_SIRET}:{BUYER_NAME}"]).keys
    }
    return keys, other


@contextlib.contextmanager
def open_env(settings: Settings, *, clock: MovableClock | None = None) -> Iterator[Env]:
    """The service for ``settings`` behind a test client, its worker running, two tenants.
    ``clock``: the services go by it (the TSA keeps real time); ``Env.clock`` is it."""
    clock = clock or MovableClock()
    services = build_services(settings, clock=clock)
    try:
        keys, other = bootstrap_tenants(services)
        app = create_app(settings, services=services)
        with celery_worker(services), TestClient(app) as http:
            yield Env(http, services, keys, other, settings, clock)
    finally:
        services.close()


def stored_objects(services: Services) -> set[tuple[str, str]]:
    """(offer, key) of every object in every storage offer, for S3 every version of it and
    every delete marker too (``key@version``): what a failed transfer could have left."""
    found: set[tuple[str, str]] = set()
    for offer in services.offers:
        if isinstance(offer, S3BlobStore):
            pages = offer._s3.get_paginator("list_object_versions").paginate(Bucket=offer.bucket)
            with contextlib.suppress(offer._s3.exceptions.NoSuchBucket):
                for page in pages:
                    for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                        found.add((offer.name, f"{item['Key']}@{item['VersionId']}"))
        else:
            found.update((offer.name, key) for key in offer.iter_keys())
    return found


def stored_keys(services: Services) -> set[tuple[str, str]]:
    """(offer, key) of every object that every offer serves."""
    return {(offer.name, key) for offer in services.offers for key in offer.iter_keys()}


def quick_retries(services: Services) -> None:
    """Retry jobs after a few hundredths of a second (the production stack's settings
    already ask the Celery worker for that)."""
    if isinstance(services.runner, InProcessRunner):
        services.runner._base_delay = 0.05


@dataclass
class Env:
    http: TestClient
    services: Services
    keys: dict[str, str]
    other_tenant_keys: dict[str, str]
    settings: Settings
    clock: MovableClock = field(default_factory=MovableClock)

    def auth(self, role: str = "platform", *, other_tenant: bool = False) -> dict[str, str]:
        keys = self.other_tenant_keys if other_tenant else self.keys
        return {"Authorization": f"Bearer {keys[role]}"}

    def post_transfer(
        self, metadata: dict[str, Any], root: Path, *, role: str = "platform", **kw: Any
    ) -> httpx.Response:
        return post_transfer(self.http, metadata, root, headers=self.auth(role), **kw)

    def poll(
        self, transfer_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 120
    ) -> dict[str, Any]:
        """The transfer's status once ``until`` holds for it (checked every 50 ms)."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.http.get(f"/v1/transfers/{transfer_id}", headers=self.auth())
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            if until(body):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"transfer never got there: {body}")
            time.sleep(0.05)

    def _wait_job_end(self, transfer_id: str, deadline: float) -> None:
        """A transfer reads accepted (or rejected) at its commit; its job then runs the
        dossier listeners (retention recomputation, holds) and, last, empties its staging
        directory. Wait for that too, so that what a test looks at next is settled."""
        with self.services.ingest._uow() as uow:
            transfer = uow.transfers.get_any_tenant(transfer_id)
        if transfer is None or not transfer.staging_dir:
            return
        staged = self.services.staging.root / transfer.staging_dir
        while staged.exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"the job of {transfer_id} never finished ({staged})")
            time.sleep(0.02)

    def wait(self, transfer_id: str, *, role: str = "platform", timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            r = self.http.get(f"/v1/transfers/{transfer_id}", headers=self.auth(role))
            assert r.status_code == 200, r.text
            body = r.json()
            if body["status"] in ("accepted", "rejected"):
                self._wait_job_end(transfer_id, deadline)
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"transfer still {body['status']}: {body}")
            time.sleep(0.05)


def post_transfer(
    http: TestClient,
    metadata: dict[str, Any],
    root: Path,
    *,
    headers: dict[str, str],
    extra_files: dict[str, bytes] | None = None,
    skip: set[str] | None = None,
) -> httpx.Response:
    import json

    files: list[tuple[str, tuple[str | None, Any, str]]] = [
        ("metadata", (None, json.dumps(metadata), "application/json"))
    ]
    for entry in metadata.get("files", []):
        if skip and entry["path"] in skip:
            continue
        path = root / entry["path"]
        files.append((entry["path"], (path.name, path.read_bytes(), "application/octet-stream")))
    for name, data in (extra_files or {}).items():
        files.append((name, (name.rsplit("/", 1)[-1], data, "application/octet-stream")))
    return http.post("/v1/transfers", files=files, headers=headers)


def invoke_cli(env: Env, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    """Run ``archive-service ARGS`` in process on ``env``'s database, offers and data
    directory (its own services, as an operator's command would); (exit code, output)."""
    import json

    from typer.testing import CliRunner

    from archive_service.cli.main import app

    monkeypatch.setenv("ARCHIVE_DATA_DIR", str(env.settings.data_dir))
    monkeypatch.setenv("ARCHIVE_STORAGE_OFFERS", json.dumps(env.settings.storage_offers))
    if env.settings.database_url:
        monkeypatch.setenv("ARCHIVE_DATABASE_URL", env.settings.database_url)
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def env(settings: Settings) -> Iterator[Env]:
    with open_env(settings) as opened:
        yield opened
