"""Liveness, readiness and Prometheus metrics, as Kubernetes and Prometheus see them."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from archive_service.api.app import create_app
from archive_service.config import Settings
from archive_service.wiring import build_services
from tests.fixtures.dossier import make_dossier
from tests.integration.conftest import Env


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_ready_and_metrics_after_a_transfer(env: Env, tmp_path: Path) -> None:
    assert env.http.get("/healthz").json() == {"status": "ok"}
    r = env.http.get("/readyz")
    assert r.status_code == 200, r.text
    names = {c["name"]: c["ok"] for c in r.json()["checks"]}
    expected = {"database": True, "tsa": True}
    expected |= {f"offer:{offer.name}": True for offer in env.services.offers}
    if env.settings.task_runner == "celery":
        expected["broker"] = True
    assert names == expected

    metadata, _ = make_dossier(tmp_path / "d")
    done = env.wait(env.post_transfer(metadata, tmp_path / "d").json()["id"])
    assert done["status"] == "accepted"
    r = env.http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    assert got[("archive_transfers", (("status", "accepted"),))] == 1
    assert got[("archive_transfers", (("status", "rejected"),))] == 0
    assert got[("archive_unfinished_transfers", ())] == 0
    assert got[("archive_database_up", ())] == 1
    total = sum((tmp_path / "d" / f["path"]).stat().st_size for f in metadata["files"])
    assert got[("archive_ingested_bytes_total", ())] > total  # + the DECP record
    assert got[("archive_objects", ())] == len(metadata["files"]) + 1
    for offer in env.services.offers:
        stored = got[("archive_stored_copies", (("offer", offer.name),))]
        assert stored == len(metadata["files"]) + 3


def test_not_ready_names_the_unreachable_offer(settings: Settings) -> None:
    unreachable = {
        "name": "s3-down",
        "kind": "s3",
        "endpoint_url": "http://127.0.0.1:9",
        "bucket": "archive",
        "access_key": "x",
        "secret_key": "y",
    }
    local = {"name": "local", "kind": "local", "path": str(settings.data_dir / "offer")}
    settings = settings.model_copy(update={"storage_offers": [local, unreachable]})
    services = build_services(settings)
    try:
        with TestClient(create_app(settings, services=services)) as http:
            r = http.get("/readyz")
            assert r.status_code == 503
            checks = {c["name"]: c for c in r.json()["checks"]}
            assert checks["offer:local"]["ok"] is True
            assert checks["offer:s3-down"]["ok"] is False
            assert "cannot reach" in checks["offer:s3-down"]["detail"]
            assert checks["database"]["ok"] is True
    finally:
        services.close()


def test_metrics_say_the_database_is_down_and_serve_the_rest(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:9/archive", connect_args={"connect_timeout": 2}
    )
    monkeypatch.setattr(env.services, "engine", unreachable)
    r = env.http.get("/metrics")
    assert r.status_code == 200, r.text
    got = samples(r.text)
    assert got[("archive_database_up", ())] == 0
    assert ("archive_transfers", (("status", "accepted"),)) not in got
    unreachable.dispose()
