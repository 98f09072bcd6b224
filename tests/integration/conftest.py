"""Fixtures for tests that run the real service: SQLite, local storage, built-in TSA,
in-process jobs, official SEDA XSDs from ../shared."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from archive_service.api.app import create_app
from archive_service.config import Settings
from archive_service.wiring import Services, build_services
from tests.fixtures.dossier import BUYER_NAME, BUYER_SIRET, make_siren, make_siret
from tests.reference import decp_schema_path, seda_xsd_dir

OTHER_SIRET = make_siret(make_siren("21750001"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
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
