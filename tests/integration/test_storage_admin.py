"""`archive-service storage check` and `storage repair`, run through the real CLI, on two local
offers: a missing copy and a corrupt copy are rewritten from the healthy one; a blob lost on
every offer is reported, and the command exits 1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from archive_service.cli.main import app
from archive_service.config import Settings
from archive_service.db import tables as t
from tests.fixtures.dossier import make_dossier
from tests.integration.conftest import Env


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    offers = [
        {"name": "a", "kind": "local", "path": str(tmp_path / "offer-a")},
        {"name": "b", "kind": "local", "path": str(tmp_path / "offer-b")},
    ]
    return settings.model_copy(update={"storage_offers": offers})


def run(settings: Settings, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    """Run the CLI as an operator would, configured by the environment from ``settings``."""
    monkeypatch.setenv("ARCHIVE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("ARCHIVE_STORAGE_OFFERS", json.dumps(settings.storage_offers))
    for name, value in (
        ("ARCHIVE_DATABASE_URL", settings.database_url),
        ("ARCHIVE_SEDA_XSD_DIR", settings.seda_xsd_dir),
        ("ARCHIVE_DECP_SCHEMA", settings.decp_schema_path),
    ):
        if value is not None:
            monkeypatch.setenv(name, str(value))
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def rewrite(path: Path, data: bytes) -> None:
    """Alter a stored, read-only object file behind the offer's back."""
    os.chmod(path, 0o644)
    path.write_bytes(data)
    os.chmod(path, 0o444)


def repaired_entries(env: Env) -> list[dict[str, str]]:
    with env.services.engine.connect() as conn:
        return list(
            conn.execute(
                select(t.LogbookEntry.details).where(t.LogbookEntry.event_type == "copy.repaired")
            ).scalars()
        )


def test_repair_rewrites_missing_and_corrupt_copies_from_the_healthy_offer(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metadata, _ = make_dossier(tmp_path / "d")
    r = env.post_transfer(metadata, tmp_path / "d")
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    with env.services.engine.connect() as conn:
        objects = conn.execute(select(t.DataObject.storage_key, t.DataObject.path)).all()
    assert len(objects) >= 3
    root_a, root_b = tmp_path / "offer-a", tmp_path / "offer-b"
    original = {key: (root_a / key).read_bytes() for key, _ in objects}
    sent = {p["path"]: (tmp_path / "d" / p["path"]).read_bytes() for p in metadata["files"]}
    assert all(original[key] == sent[path] for key, path in objects if path in sent)
    missing, corrupt, lost = (key for key, _ in objects[:3])

    (root_b / missing).unlink()
    rewrite(root_a / corrupt, b"not what was archived")

    # The offers themselves answer: check reports them healthy, with the copies recorded.
    code, out = run(env.settings, monkeypatch, "storage", "check", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["healthy"] is True
    expected_copies = len(metadata["files"]) + 3  # objects, DECP record, manifest, token
    assert [(o["name"], o["healthy"], o["copies"]) for o in report["offers"]] == [
        ("a", True, expected_copies),
        ("b", True, expected_copies),
    ]

    code, out = run(env.settings, monkeypatch, "storage", "repair", "--all")
    assert code == 0, out
    assert f"repaired b:{missing} from a" in out
    assert f"repaired a:{corrupt} from b" in out
    assert "2 repaired, 0 not repairable" in out
    for key in (missing, corrupt):
        for root in (root_a, root_b):
            path = root / key
            assert path.read_bytes() == original[key], (root, key)
            assert path.stat().st_mode & 0o777 == 0o444
    entries = repaired_entries(env)
    assert sorted((e["offer"], e["key"], e["was"]) for e in entries) == sorted(
        [("b", missing, "missing"), ("a", corrupt, "corrupt")]
    )
    with env.services.engine.connect() as conn:
        copies = conn.execute(select(t.StoredCopy.offer, t.StoredCopy.key)).all()
    assert len(copies) == 2 * expected_copies  # refreshed, not duplicated

    # Nothing left to do: a second run changes nothing.
    before = {p: p.stat().st_ino for p in (root_a / missing, root_b / corrupt)}
    code, out = run(env.settings, monkeypatch, "storage", "repair", "--all")
    assert code == 0, out
    assert "0 repaired, 0 not repairable" in out
    assert len(repaired_entries(env)) == 2
    assert {p: p.stat().st_ino for p in before} == before

    # Gone from every offer: nothing to copy from. Named, and the command exits 1.
    (root_a / lost).unlink()
    (root_b / lost).unlink()
    code, out = run(env.settings, monkeypatch, "storage", "repair", done["archive_unit_id"])
    assert code == 1, out
    assert f"not repaired a:{lost}" in out
    assert f"not repaired b:{lost}" in out
    assert "0 repaired, 2 not repairable" in out
    assert len(repaired_entries(env)) == 2


def test_repair_needs_a_unit_or_all(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _ = run(env.settings, monkeypatch, "storage", "repair")
    assert code == 2
    code, out = run(env.settings, monkeypatch, "storage", "repair", "no-such-unit")
    assert code == 1
    assert "no archive unit no-such-unit" in out


def test_check_exits_3_naming_an_unreachable_offer(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = {
        "name": "s3-down",
        "kind": "s3",
        "endpoint_url": "http://127.0.0.1:9",
        "bucket": "archive",
        "access_key": "x",
        "secret_key": "y",
    }
    settings = env.settings.model_copy(
        update={"storage_offers": [*env.settings.storage_offers, down]}
    )
    code, out = run(settings, monkeypatch, "storage", "check", "--json")
    assert code == 3, out
    offers = {o["name"]: o for o in json.loads(out)["offers"]}
    assert offers["a"]["healthy"] and offers["b"]["healthy"]
    assert offers["s3-down"]["healthy"] is False
    assert offers["s3-down"]["object_lock"] is True
