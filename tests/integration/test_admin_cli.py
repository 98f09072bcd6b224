"""`archive-service admin bootstrap` and `db upgrade`, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from alembic import command

from archive_service.config import Settings
from archive_service.db.migrate import alembic_config
from archive_service.wiring import build_services
from tests.fixtures.dossier import BUYER_SIRET


def cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARCHIVE_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "archive_service", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bootstrap_prints_one_working_key_per_role(tmp_path: Path) -> None:
    data = tmp_path / "var"
    out = cli(
        "admin",
        "bootstrap",
        "--tenant",
        "GIP Maximilien",
        "--org",
        f"{BUYER_SIRET}:Commune de Saint-Aubin",
        "--json",
        data_dir=data,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result["keys"]) == {"platform", "archivist", "auditor", "admin"}
    assert result["organizations"][0]["siret"] == BUYER_SIRET
    services = build_services(Settings(data_dir=data))
    try:
        for role, issued in result["keys"].items():
            caller = services.tenancy.authenticate(issued["key"])
            assert caller.role.value == role
            assert caller.tenant_id == result["tenant"]["id"]
        platform = services.tenancy.authenticate(result["keys"]["platform"]["key"])
        assert platform.organization_ids == {result["organizations"][0]["id"]}
    finally:
        services.close()
    # Only a hash of each key is stored.
    db = (data / "archive.sqlite3").read_bytes()
    for issued in result["keys"].values():
        assert issued["key"].split("_", 2)[2].encode() not in db


def test_bootstrap_refuses_an_invalid_siret_and_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "var"
    bad = BUYER_SIRET[:-1] + str((int(BUYER_SIRET[-1]) + 1) % 10)
    out = cli("admin", "bootstrap", "--tenant", "GIP", "--org", f"{bad}:X", data_dir=data)
    assert out.returncode == 2
    assert "SIRET" in out.stderr
    services = build_services(Settings(data_dir=data))
    try:
        with services.engine.connect() as conn:
            from sqlalchemy import text

            assert conn.execute(text("SELECT count(*) FROM tenants")).scalar() == 0
            assert conn.execute(text("SELECT count(*) FROM clients")).scalar() == 0
    finally:
        services.close()


def test_migrations_match_the_models(tmp_path: Path) -> None:
    data = tmp_path / "var"
    out = cli("db", "upgrade", data_dir=data)
    assert out.returncode == 0, out.stderr
    # alembic check raises when the models and the migrated schema differ.
    command.check(alembic_config(f"sqlite:///{data / 'archive.sqlite3'}"))
