"""Fixtures for tests that run the real service: SQLite or PostgreSQL, local storage, built-in
TSA, in-process jobs, official SEDA XSDs from ../shared.

Every test that takes ``settings`` (hence ``env``) runs once per database named in
``ARCHIVE_TEST_DATABASES`` (default ``sqlite,postgresql``). On PostgreSQL each test gets a
database of its own, created from the server at ``ARCHIVE_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, used only as the maintenance
connection) and dropped afterwards. An unreachable server skips those tests with the reason,
and fails them when ``CI=true``.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import URL, create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from archive_service.api.app import create_app
from archive_service.config import Settings
from archive_service.wiring import Services, build_services
from tests.fixtures.dossier import BUYER_NAME, BUYER_SIRET, make_siren, make_siret
from tests.reference import decp_schema_path, in_ci, seda_xsd_dir

OTHER_SIRET = make_siret(make_siren("21750001"))

DATABASES = ("sqlite", "postgresql")
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def selected_databases() -> list[str]:
    """The databases named in ``ARCHIVE_TEST_DATABASES`` (comma-separated), both by default."""
    raw = os.environ.get("ARCHIVE_TEST_DATABASES") or ",".join(DATABASES)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DATABASES))
    if unknown or not names:
        msg = f"ARCHIVE_TEST_DATABASES={raw!r}: choose among {', '.join(DATABASES)}"
        raise pytest.UsageError(msg)
    return list(dict.fromkeys(names))


@pytest.fixture(scope="session")
def postgres_server() -> URL:
    """The maintenance URL of a reachable PostgreSQL server; skip (fail under CI) otherwise."""
    url = make_url(os.environ.get("ARCHIVE_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL)
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = (
            f"PostgreSQL unreachable at {url.render_as_string()}: {exc.orig}; start it, point "
            "ARCHIVE_TEST_POSTGRES_URL at one, or set ARCHIVE_TEST_DATABASES=sqlite"
        )
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_database(postgres_server: URL) -> Iterator[str]:
    """The URL of a new, empty database, dropped (with its connections) after the test."""
    name = f"archive_test_{secrets.token_hex(6)}"
    admin = create_engine(postgres_server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def only_postgresql() -> pytest.MarkDecorator:
    """Run a test that takes ``settings`` on PostgreSQL alone (what SQLite does not do)."""
    marks = []
    if "postgresql" not in selected_databases():
        marks.append(pytest.mark.skip(reason="postgresql is not in ARCHIVE_TEST_DATABASES"))
    return pytest.mark.parametrize(
        "database_url", [pytest.param("postgresql", marks=marks)], indirect=True
    )


@pytest.fixture(params=selected_databases())
def database_url(request: pytest.FixtureRequest) -> str | None:
    """``None`` for SQLite (the one-machine default URL), else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_database")
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        seda_xsd_dir=seda_xsd_dir(),
        decp_schema_path=decp_schema_path(),
        inprocess_workers=2,
    )


@dataclass
class Env:
    http: TestClient
    services: Services
    keys: dict[str, str]
    other_tenant_keys: dict[str, str]
    settings: Settings

    def auth(self, role: str = "platform", *, other_tenant: bool = False) -> dict[str, str]:
        keys = self.other_tenant_keys if other_tenant else self.keys
        return {"Authorization": f"Bearer {keys[role]}"}

    def post_transfer(
        self, metadata: dict[str, Any], root: Path, *, role: str = "platform", **kw: Any
    ) -> httpx.Response:
        return post_transfer(self.http, metadata, root, headers=self.auth(role), **kw)

    def wait(self, transfer_id: str, *, role: str = "platform", timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            r = self.http.get(f"/v1/transfers/{transfer_id}", headers=self.auth(role))
            assert r.status_code == 200, r.text
            body = r.json()
            if body["status"] in ("accepted", "rejected"):
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


@pytest.fixture
def env(settings: Settings) -> Iterator[Env]:
    services = build_services(settings)
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
    app = create_app(settings, services=services)
    with TestClient(app) as http:
        yield Env(http, services, keys, other, settings)
    services.close()
