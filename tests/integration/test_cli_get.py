"""``archive-service get`` under communicability (issue 5 item 8): what the caller may not read
is withheld, not fatal.

An archivist downloads a dossier whose offers are under the 25-year secret des affaires: every
other object is downloaded and checked, the offers are written nowhere under ``content/`` but
listed (rule, end date, or what a pending rule waits for) on the console and in
``WITHHELD.json``; ``get`` exits 5, and ``verify`` on the directory exits 5 too, naming them as
withheld, never as verified nor as missing. The producer's platform gets everything (exit 0). A
destroyed unit is withheld as gone, with its disposal request and visa.

The CLI runs as a user runs it (a subprocess of ``python -m archive_service``) against the
stack's app served on the loopback, the same services as ``env`` (its clock included).
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import insert, update

from archive_service.core.package_check import MANIFEST_FILE, WITHHELD_FILE
from archive_service.db import tables as t
from tests.integration.conftest import Env
from tests.integration.test_cli_verify import LiveApi, verify
from tests.integration.test_communicability import (
    END,
    SECRET,
    archive,
    at,
    documents,
    set_access,
)

ACCESS_RESTRICTED = "MP-ACC-SA-25A"


@pytest.fixture
def url(env: Env) -> Iterator[str]:
    """``env``'s app on 127.0.0.1 (its lifespan already runs under ``env.http``)."""
    server = uvicorn.Server(
        uvicorn.Config(env.http.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(600):  # bounded: at most about a minute
        if server.started or not thread.is_alive():
            break
        started.wait(0.1)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def get(env: Env, url: str, role: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return LiveApi(url, env.keys).run("get", *args, role=role)


def content_files(directory: Path) -> set[str]:
    return {
        p.relative_to(directory).as_posix()
        for p in (directory / "content").rglob("*")
        if p.is_file()
    }


def unit_objects(directory: Path) -> dict[str, dict[str, Any]]:
    unit = json.loads((directory / "unit.json").read_text(encoding="utf-8"))
    return {o["uri"]: o for o in unit["objects"]}


def test_an_archivist_gets_what_is_communicable_and_the_offers_are_listed_as_withheld(
    env: Env, url: str, tmp_path: Path
) -> None:
    unit_id, metadata = archive(env, tmp_path, "signed")
    docs = documents(env, unit_id)
    offers = {docs[c]["object"]["uri"]: docs[c] for c in SECRET}
    # One offer archived before the signature: its rule is pending, it has no end date yet.
    pending = docs["offres.non_retenue"]
    set_access(env, pending["unit"]["id"], None, None)
    sources = {f["path"]: (tmp_path / "signed" / f["path"]).read_bytes() for f in metadata["files"]}

    out = tmp_path / "au"
    got = get(env, url, "archivist", unit_id, "-o", out)

    assert got.returncode == 5, got.stdout + got.stderr
    objects = unit_objects(out)
    readable = set(objects) - set(offers)
    assert readable and set(offers) <= set(objects)
    # Every readable object is there, byte for byte; nothing at all for a withheld one.
    assert content_files(out) == readable
    for uri in readable:
        if objects[uri]["path"] in sources:
            assert (out / uri).read_bytes() == sources[objects[uri]["path"]]
    assert not list(out.rglob("*.part"))

    # The console lists each withheld offer: its path, its rule, its end date or pending.
    console = got.stdout.replace("\n", " ")
    assert "3 object(s) withheld" in console and WITHHELD_FILE in console
    for uri, doc in offers.items():
        line = next(li for li in got.stdout.splitlines() if uri in li)
        assert doc["object"]["path"] in line
        assert doc["unit"]["access"]["rule_label"] in line
        if uri == pending["object"]["uri"]:
            assert "pending: 25 years after signature" in line
        else:
            assert f"until {END.isoformat()}" in line
    assert "exit 5" in got.stdout

    # WITHHELD.json says the same for scripts, with the server's problem in full.
    listed = json.loads((out / WITHHELD_FILE).read_text(encoding="utf-8"))
    assert listed["unit_id"] == unit_id
    entries = {e["uri"]: e for e in listed["objects"]}
    assert set(entries) == set(offers)
    for uri, entry in entries.items():
        assert entry["withheld"] == "access-restricted"
        assert entry["id"] == offers[uri]["object"]["id"]
        assert entry["path"] == offers[uri]["object"]["path"]
        assert entry["problem"]["rule_id"] == ACCESS_RESTRICTED
        assert entry["problem"]["status"] == 403
        if uri == pending["object"]["uri"]:
            assert entry["pending"] is True and entry["end_date"] is None
        else:
            assert entry["pending"] is False and entry["end_date"] == END.isoformat()

    # --json: one document, complete false, the withheld objects in it.
    as_json = get(env, url, "archivist", unit_id, "-o", tmp_path / "au-json", "--json")
    assert as_json.returncode == 5, as_json.stdout + as_json.stderr
    result = json.loads(as_json.stdout)
    assert result["ok"] is True and result["complete"] is False
    assert result["objects"] == len(objects)
    assert result["downloaded"] == len(readable)
    assert {w["uri"] for w in result["withheld"]} == set(offers)
    assert "withheld" in as_json.stderr

    # verify: every check on what is there holds, the offers are named as withheld (exit 5).
    checked = verify(out)
    assert checked.returncode == 5, checked.stdout + checked.stderr
    assert "check(s) failed" not in checked.stdout
    assert "checks on the files present hold" in checked.stdout
    withheld_part = checked.stdout.split("withheld by the server", 1)[1]
    for uri in offers:
        assert uri in withheld_part
    assert f"until {END.isoformat()}" in withheld_part
    report = json.loads(verify(out, "--json").stdout)
    assert report["ok"] is False and report["failures"] == []
    assert {w["uri"] for w in report["withheld"]} == set(offers)
    by_subject = {c["subject"]: c for c in report["checks"] if c.get("withheld")}
    assert set(by_subject) == set(offers)
    assert all(not c["ok"] and c["name"].startswith("3.0 withheld") for c in by_subject.values())
    assert any(c["name"].startswith("5.") and c["ok"] for c in report["checks"])

    # A readable object gone missing is a failure, not hidden among the withheld ones.
    victim = sorted(readable)[0]
    data = (out / victim).read_bytes()
    (out / victim).unlink()
    broken = verify(out)
    assert broken.returncode == 1, broken.stdout
    failed = broken.stdout.split("check(s) failed:", 1)[1].split("withheld by the server", 1)[0]
    assert victim in failed and "missing" in failed
    assert all(uri not in failed for uri in offers)
    (out / victim).write_bytes(data)

    # Without WITHHELD.json nothing explains the absent offers: they are missing (exit 1).
    kept = (out / WITHHELD_FILE).read_bytes()
    (out / WITHHELD_FILE).unlink()
    bare = verify(out)
    assert bare.returncode == 1
    failed = bare.stdout.split("check(s) failed:", 1)[1]
    assert all(uri in failed for uri in offers)
    # A list naming an object the manifest does not hold is refused (check 5).
    forged = json.loads(kept)
    forged["objects"].append({**forged["objects"][0], "uri": "content/obj-invente"})
    (out / WITHHELD_FILE).write_text(json.dumps(forged), encoding="utf-8")
    assert verify(out).returncode == 1
    (out / WITHHELD_FILE).write_text("{not json", encoding="utf-8")
    not_json = verify(out)
    assert not_json.returncode == 1 and WITHHELD_FILE in not_json.stdout
    (out / WITHHELD_FILE).write_bytes(kept)
    assert verify(out).returncode == 5

    # Once the delay has run (and the pending offer's signature is known): everything, exit 0.
    set_access(env, pending["unit"]["id"], date(2025, 3, 1), END)
    env.clock.set(at(END, hour=0))
    later = tmp_path / "au-2050"
    whole = get(env, url, "archivist", unit_id, "-o", later)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert not (later / WITHHELD_FILE).exists()
    assert content_files(later) == set(objects)
    assert verify(later).returncode == 0


def test_the_producer_platform_gets_everything(env: Env, url: str, tmp_path: Path) -> None:
    unit_id, metadata = archive(env, tmp_path, "own")
    out = tmp_path / "au"
    got = get(env, url, "platform", unit_id, "-o", out)

    assert got.returncode == 0, got.stdout + got.stderr
    assert "withheld" not in got.stdout + got.stderr
    assert not (out / WITHHELD_FILE).exists()
    objects = unit_objects(out)
    assert content_files(out) == set(objects)
    by_path = {o["path"]: o for o in objects.values()}
    for entry in metadata["files"]:
        source = (tmp_path / "own" / entry["path"]).read_bytes()
        assert (out / by_path[entry["path"]]["uri"]).read_bytes() == source
    checked = verify(out)
    assert checked.returncode == 0, checked.stdout
    assert "All" in checked.stdout and "checks hold" in checked.stdout

    # Any other refusal keeps its old meaning: an auditor reads no content at all (exit 4),
    # and nothing half-written stays.
    refused = get(env, url, "auditor", unit_id, "-o", tmp_path / "audit")
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert not (tmp_path / "audit").exists()


def test_a_destroyed_unit_is_withheld_as_gone_with_its_request_and_visa(
    env: Env, url: str, tmp_path: Path
) -> None:
    unit_id, _ = archive(env, tmp_path, "gone")
    destroyed = documents(env, unit_id)["dce.rc"]
    tenant = env.services.tenancy.authenticate(env.keys["admin"]).tenant_id
    visa = {"reference": "AD45-2031-017", "decision": "approved", "by": "Archives 45"}
    # What a disposal execution leaves (the disposal tests drive the real procedure).
    with env.services.engine.begin() as conn:
        conn.execute(
            update(t.ArchiveUnit)
            .where(t.ArchiveUnit.id == destroyed["unit"]["id"])
            .values(status="destroyed")
        )
        conn.execute(
            insert(t.Tombstone).values(
                unit_id=destroyed["unit"]["id"],
                tenant_id=tenant,
                root_id=unit_id,
                request_id="dr-TEST",
                outcome="destroyed",
                record={"visa": visa, "objects": [{"id": destroyed["object"]["id"]}]},
                at=datetime(2031, 5, 2, tzinfo=UTC),
            )
        )

    out = tmp_path / "au"
    got = get(env, url, "platform", unit_id, "-o", out)

    assert got.returncode == 5, got.stdout + got.stderr
    uri = destroyed["object"]["uri"]
    assert uri not in content_files(out)
    assert content_files(out) == set(unit_objects(out)) - {uri}
    line = next(li for li in got.stdout.splitlines() if uri in li)
    assert "gone" in line and "destroyed" in line
    assert "dr-TEST" in line and "AD45-2031-017" in line and "2031-05-02" in line
    (entry,) = json.loads((out / WITHHELD_FILE).read_text(encoding="utf-8"))["objects"]
    assert entry["withheld"] == "gone" and entry["uri"] == uri
    assert entry["problem"]["status"] == 410
    assert entry["problem"]["tombstone"]["visa"] == visa

    checked = verify(out)
    assert checked.returncode == 5, checked.stdout + checked.stderr
    assert "dr-TEST" in checked.stdout.split("withheld by the server", 1)[1]
    assert (out / MANIFEST_FILE).is_file()
