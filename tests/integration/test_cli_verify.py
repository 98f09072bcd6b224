"""``archive-service verify DIR`` on a package directory laid out as ``get`` writes it, and the
client commands (``ingest``, ``get``) against the real API served on the loopback.

The CLI runs as a user runs it (a subprocess of ``python -m archive_service``); packages are
made by the real SEDA builder and the built-in TSA, or by the service itself end to end.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from archive_service.api.app import create_app
from archive_service.config import Settings
from archive_service.core.package_check import (
    CHAIN_FILE,
    MANIFEST_FILE,
    TOKEN_FILE,
    UNIT_FILE,
)
from archive_service.tsa.builtin import BuiltinTimestampAuthority
from archive_service.wiring import build_services
from tests.fixtures.dossier import BUYER_NAME, BUYER_SIRET, make_dossier
from tests.integration.conftest import celery_worker
from tests.unit.test_package_check import FixedClock, Package, build_package

REPO = Path(__file__).parents[2]


def write_package(package: Package, directory: Path) -> Path:
    """The directory ``archive-service get`` writes: manifest, token, chain, unit, content/."""
    directory.mkdir(parents=True)
    assert package.manifest is not None and package.token is not None
    assert package.chain is not None
    (directory / MANIFEST_FILE).write_bytes(package.manifest)
    (directory / TOKEN_FILE).write_bytes(package.token)
    (directory / CHAIN_FILE).write_bytes(package.chain)
    (directory / UNIT_FILE).write_text(
        json.dumps({"id": "au-dossier", "objects": sorted(package.files)}), encoding="utf-8"
    )
    for uri, data in package.files.items():
        target = directory / uri
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return directory


def verify(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the real CLI, offline: no ARCHIVE_* setting reaches it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    env["COLUMNS"] = "160"
    return subprocess.run(
        [sys.executable, "-m", "archive_service", "verify", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Package:
    tsa = BuiltinTimestampAuthority(tmp_path_factory.mktemp("tsa"), clock=FixedClock())
    return build_package(tsa)


@pytest.fixture
def package_dir(package: Package, tmp_path: Path) -> Path:
    return write_package(package, tmp_path / "paquet")


def flip_one_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x20
    path.write_bytes(bytes(data))


def test_intact_package_exits_0_with_every_check_listed(package_dir: Path) -> None:
    result = verify(package_dir)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "All" in result.stdout and "checks hold" in result.stdout
    for number in ("1.", "2.1", "2.2", "2.3", "3.1", "3.2", "3.3", "3.4", "4."):
        assert number in result.stdout


def test_one_corrupted_byte_in_an_object_exits_1_naming_the_file(
    package: Package, package_dir: Path
) -> None:
    uri = sorted(package.files)[0]
    flip_one_byte(package_dir / uri, 100)

    result = verify(package_dir)

    assert result.returncode == 1, result.stdout + result.stderr
    summary = result.stdout.split("check(s) failed:", 1)[1]
    assert uri in summary
    assert package.filenames[uri] in summary
    others = [u for u in package.files if u != uri]
    assert all(u not in summary for u in others)


def test_corrupted_manifest_exits_1_naming_manifest_xml(package_dir: Path) -> None:
    manifest = package_dir / MANIFEST_FILE
    data = manifest.read_bytes()
    manifest.write_bytes(data.replace(b"2025-T-017", b"2025-T-018"))

    result = verify(package_dir)

    assert result.returncode == 1, result.stdout + result.stderr
    summary = result.stdout.split("check(s) failed:", 1)[1]
    assert MANIFEST_FILE in summary
    assert "2.2" in summary


def test_extra_file_under_content_exits_1_naming_it(package_dir: Path) -> None:
    (package_dir / "content" / "sub").mkdir()
    (package_dir / "content" / "sub" / "ajout.pdf").write_bytes(b"%PDF-1.4 not archived")

    result = verify(package_dir)

    assert result.returncode == 1
    assert "content/sub/ajout.pdf" in result.stdout.split("check(s) failed:", 1)[1]


def test_missing_token_exits_1(package_dir: Path) -> None:
    (package_dir / TOKEN_FILE).unlink()

    result = verify(package_dir)

    assert result.returncode == 1
    assert TOKEN_FILE in result.stdout.split("check(s) failed:", 1)[1]


def test_json_output_is_the_checklist_alone(package: Package, package_dir: Path) -> None:
    uri = sorted(package.files)[1]
    (package_dir / uri).unlink()

    result = verify(package_dir, "--json")

    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False
    failures = [c for c in document["checks"] if not c["ok"]]
    assert [(c["subject"], c["found"]) for c in failures] == [(uri, "missing")]
    assert set(failures[0]) == {"name", "ok", "expected", "found", "subject"}
    assert uri in result.stderr


def test_json_output_of_an_intact_package(package_dir: Path) -> None:
    result = verify(package_dir, "--json")

    assert result.returncode == 0
    document = json.loads(result.stdout)
    assert document["ok"] is True
    assert all(c["ok"] for c in document["checks"])


def test_not_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = verify(tmp_path / "absent")

    assert result.returncode == 2
    assert "not a directory" in result.stderr
    assert result.stdout == ""


def test_a_symlink_leaving_the_package_is_not_followed(
    package: Package, package_dir: Path, tmp_path: Path
) -> None:
    uri = sorted(package.files)[0]
    outside = tmp_path / "outside.bin"
    outside.write_bytes(package.files[uri])
    (package_dir / uri).unlink()
    (package_dir / uri).symlink_to(outside)

    result = verify(package_dir)

    assert result.returncode == 1
    assert uri in result.stdout.split("check(s) failed:", 1)[1]


def test_verify_imports_no_network_nor_settings() -> None:
    code = (
        "import sys, archive_service.cli.verify\n"
        "bad = [m for m in ('httpx', 'archive_service.config', 'archive_service.wiring',"
        " 'sqlalchemy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert result.returncode == 0, result.stderr


# --- end to end: ingest, get, verify against the real API on the loopback --------------------


@dataclass
class LiveApi:
    url: str
    keys: dict[str, str]

    def run(self, *args: str | Path, role: str = "platform") -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
        env.update(ARCHIVE_URL=self.url, ARCHIVE_KEY=self.keys[role], COLUMNS="160")
        return subprocess.run(
            [sys.executable, "-m", "archive_service", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            check=False,
        )


@pytest.fixture
def live_api(settings: Settings) -> Iterator[LiveApi]:
    """The real app of the stack served by uvicorn on 127.0.0.1 (with its Celery worker)."""
    services = build_services(settings)
    worker = contextlib.ExitStack()
    worker.enter_context(celery_worker(services))
    bootstrap = services.tenancy.bootstrap("GIP Test", [f"{BUYER_SIRET}:{BUYER_NAME}"])
    keys = {k.role.value: k.key for k in bootstrap.keys}
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, services=services),
            host="127.0.0.1",
            port=0,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(600):  # bounded: at most about a minute
        if server.started:
            started.set()
            break
        if not thread.is_alive():
            break
        started.wait(0.1)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveApi(f"http://127.0.0.1:{port}", keys)
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        worker.close()
        services.close()


def test_ingest_get_verify_end_to_end(live_api: LiveApi, tmp_path: Path) -> None:
    dossier = tmp_path / "dossier"
    metadata, _paths = make_dossier(dossier, message_identifier="CLI-E2E-0001")
    # Half the entries declare no digest: the client computes them before sending.
    for entry in metadata["files"][::2]:
        del entry["sha256"]
    metadata_file = tmp_path / "metadata.json"
    metadata_file.write_text(json.dumps(metadata, ensure_ascii=False), encoding="utf-8")

    ingest = live_api.run("ingest", dossier, "--metadata", metadata_file, "--json")
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    transfer = json.loads(ingest.stdout)
    assert transfer["status"] == "accepted", transfer
    unit_id = transfer["archive_unit_id"]

    replay = live_api.run("ingest", dossier, "--metadata", metadata_file, "--json")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert json.loads(replay.stdout)["id"] == transfer["id"]

    out = tmp_path / "paquet"
    got = live_api.run("get", unit_id, "-o", out, "--json")
    assert got.returncode == 0, got.stdout + got.stderr
    for name in (MANIFEST_FILE, TOKEN_FILE, CHAIN_FILE, UNIT_FILE):
        assert (out / name).is_file()
    unit = json.loads((out / UNIT_FILE).read_text(encoding="utf-8"))
    # Every object of the package (the sent files, and what the service adds, e.g. DECP data).
    assert json.loads(got.stdout)["objects"] == len(unit["objects"]) >= len(metadata["files"])
    assert sorted(p.name for p in (out / "content").iterdir()) == sorted(
        o["id"] for o in unit["objects"]
    )
    by_path = {o["path"]: o for o in unit["objects"]}
    for entry in metadata["files"]:
        stored = out / by_path[entry["path"]]["uri"]
        assert stored.read_bytes() == (dossier / entry["path"]).read_bytes()

    verified = verify(out)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # 4: an auditor may read the manifest but not the documents; nothing half-written stays.
    refused = live_api.run("get", unit_id, "-o", tmp_path / "audit", role="auditor")
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "403" in refused.stderr
    assert not (tmp_path / "audit").exists()

    victim = by_path[metadata["files"][0]["path"]]
    flip_one_byte(out / victim["uri"], 10)
    broken = verify(out)
    assert broken.returncode == 1
    summary = broken.stdout.split("check(s) failed:", 1)[1]
    assert victim["uri"] in summary
    assert victim["filename"] in summary


def test_remote_exit_codes(live_api: LiveApi, tmp_path: Path) -> None:
    dossier = tmp_path / "dossier"
    metadata, _paths = make_dossier(dossier, message_identifier="CLI-E2E-0002")
    metadata_file = tmp_path / "metadata.json"
    metadata_file.write_text(json.dumps(metadata), encoding="utf-8")

    # 2: a file in the directory that the metadata does not list, named.
    (dossier / "notes personnelles.txt").write_text("à ne pas verser", encoding="utf-8")
    unlisted = live_api.run("ingest", dossier, "--metadata", metadata_file)
    assert unlisted.returncode == 2
    assert "notes personnelles.txt" in unlisted.stderr
    (dossier / "notes personnelles.txt").unlink()

    # 2: metadata that is not JSON.
    bad = tmp_path / "bad.json"
    bad.write_text("{ 'files': [] }", encoding="utf-8")
    not_json = live_api.run("ingest", dossier, "--metadata", bad)
    assert not_json.returncode == 2
    assert "not valid JSON" in not_json.stderr

    # 2: the server refuses a declared digest that does not match; its issues are shown.
    wrong = json.loads(json.dumps(metadata))
    wrong["files"][0]["sha256"] = "0" * 64
    wrong_file = tmp_path / "wrong.json"
    wrong_file.write_text(json.dumps(wrong), encoding="utf-8")
    refused = live_api.run("ingest", dossier, "--metadata", wrong_file, "--json")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    problem = json.loads(refused.stdout)["error"]["problem"]
    assert problem["status"] == 422
    assert wrong["files"][0]["path"] in refused.stderr or "/files/0" in refused.stderr

    # 4: a key the server does not know.
    env_key = dict(live_api.keys, platform="not-a-key")
    denied = LiveApi(live_api.url, env_key).run("ingest", dossier, "--metadata", metadata_file)
    assert denied.returncode == 4, denied.stdout + denied.stderr

    # 2: an unknown archive unit.
    unknown = live_api.run("get", "au-01JAAAAAAAAAAAAAAAAAAAAAAA", "-o", tmp_path / "x")
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr

    # 3: nobody listening.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    down = LiveApi(f"http://127.0.0.1:{free_port}", live_api.keys).run(
        "ingest", dossier, "--metadata", metadata_file
    )
    assert down.returncode == 3
    assert "cannot reach" in down.stderr
