"""Every read, search and administration action leaves exactly one logbook entry (who, what,
when, how it ended), in its own tenant's log and nowhere else.

Reads are logged ``OK`` before the first byte leaves; a read the caller may not make, of
something that exists in its tenant, ``REFUSED``; a read storage could not serve, ``FAILED``.
Ids unknown in the caller's tenant and requests without a valid key leave nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import func, select

from archive_service.db import tables as t
from archive_service.errors import Unavailable
from archive_service.ports import StoredBlob
from tests.fixtures.dossier import BUYER_SIRET, make_dossier
from tests.integration.conftest import OTHER_SIRET, Env, only_stack, post_transfer

Entry = dict[str, Any]


def last_id(env: Env) -> int:
    with env.services.engine.connect() as conn:
        return int(conn.scalar(select(func.max(t.LogbookEntry.id))) or 0)


def entries_since(env: Env, mark: int) -> list[Entry]:
    with env.services.engine.connect() as conn:
        rows = conn.execute(
            select(
                t.LogbookEntry.tenant_id,
                t.LogbookEntry.at,
                t.LogbookEntry.event_type,
                t.LogbookEntry.outcome,
                t.LogbookEntry.actor,
                t.LogbookEntry.subject_type,
                t.LogbookEntry.subject_id,
                t.LogbookEntry.details,
            )
            .where(t.LogbookEntry.id > mark)
            .order_by(t.LogbookEntry.id)
        ).all()
    return [dict(r._mapping) for r in rows]


def one_entry(env: Env, mark: int) -> Entry:
    found = entries_since(env, mark)
    assert len(found) == 1, [(e["event_type"], e["outcome"]) for e in found]
    return found[0]


def who(env: Env, role: str, *, other_tenant: bool = False) -> tuple[str, str]:
    """(tenant id, client id) of one of the test keys."""
    keys = env.other_tenant_keys if other_tenant else env.keys
    caller = env.services.tenancy.authenticate(keys[role])
    return caller.tenant_id, caller.client_id


def archive_dossier(env: Env, root: Path) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(metadata, transfer id, the unit as an archivist reads it) of one accepted dossier."""
    metadata, _ = make_dossier(root)
    r = env.post_transfer(metadata, root)
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    unit = env.http.get(
        f"/v1/archive-units/{done['archive_unit_id']}", headers=env.auth("archivist")
    ).json()
    return metadata, r.json()["id"], unit


def test_each_read_leaves_one_entry_with_who_what_and_how_much(env: Env, tmp_path: Path) -> None:
    _, transfer_id, unit = archive_dossier(env, tmp_path / "d")
    unit_id = unit["id"]
    tenant_id, archivist = who(env, "archivist")
    obj = next(o for o in unit["objects"] if o["path"].endswith("RC.pdf"))
    url = f"/v1/objects/{obj['id']}/content"
    data = (tmp_path / "d" / obj["path"]).read_bytes()

    def read(path: str, role: str = "archivist", **headers: str) -> tuple[int, Entry]:
        mark = last_id(env)
        r = env.http.get(path, headers={**env.auth(role), **headers})
        entry = one_entry(env, mark)
        assert entry["tenant_id"] == tenant_id
        assert entry["at"] is not None
        return r.status_code, entry

    status, e = read(f"/v1/archive-units/{unit_id}")
    assert status == 200
    assert (e["event_type"], e["outcome"], e["actor"]) == ("archive_unit.read", "OK", archivist)
    assert (e["subject_type"], e["subject_id"]) == ("archive_unit", unit_id)
    assert e["details"]["actor_role"] == "archivist"
    assert e["details"]["actor_name"] == "GIP Test archivist"
    assert e["details"]["package_id"] == unit["package_id"]
    assert e["details"]["objects"] == len(unit["objects"])

    status, e = read(f"/v1/archive-units/{unit_id}/manifest")
    assert status == 200
    assert (e["event_type"], e["outcome"], e["actor"]) == ("manifest.read", "OK", archivist)
    assert (e["subject_type"], e["subject_id"]) == ("archive_unit", unit_id)
    assert e["details"]["sha256"] == unit["manifest"]["sha256"]
    assert e["details"]["bytes"] == unit["manifest"]["size"]
    assert e["details"]["offer"] == env.services.offers[0].name

    # Auditors read evidence (the token) but no content.
    status, e = read(f"/v1/archive-units/{unit_id}/timestamp", role="auditor")
    assert status == 200
    assert (e["event_type"], e["outcome"]) == ("timestamp.read", "OK")
    assert e["actor"] == who(env, "auditor")[1]
    assert e["details"]["actor_role"] == "auditor"
    assert e["details"]["gen_time"] == unit["timestamp"]["gen_time"]

    status, e = read(url)
    assert status == 200
    assert (e["event_type"], e["outcome"], e["actor"]) == ("object.read", "OK", archivist)
    assert (e["subject_type"], e["subject_id"]) == ("object", obj["id"])
    details = e["details"]
    assert details["unit_id"] == obj["archive_unit_id"]
    assert details["package_id"] == unit["package_id"]
    assert (details["range"], details["bytes"], details["size"]) == (None, len(data), len(data))
    assert details["sha256"] == obj["sha256"]
    assert details["format"] == {"mime_type": "application/pdf", "puid": obj["puid"]}

    # A range request: one entry, with the range.
    status, e = read(url, Range="bytes=10-19")
    assert status == 206
    assert (e["event_type"], e["outcome"]) == ("object.read", "OK")
    assert (e["details"]["range"], e["details"]["bytes"]) == ("bytes=10-19", 10)
    status, e = read(url, Range="bytes=-5")
    assert status == 206
    expected = f"bytes={len(data) - 5}-{len(data) - 1}"
    assert (e["details"]["range"], e["details"]["bytes"]) == (expected, 5)
    status, e = read(url, Range=f"bytes={len(data)}-")
    assert status == 416
    assert (e["event_type"], e["outcome"]) == ("object.read", "REFUSED")
    assert e["details"]["reason"] == "range not satisfiable"
    assert e["details"]["bytes"] == 0
    status, e = read(url, **{"If-None-Match": f'"sha256:{obj["sha256"]}"'})
    assert status == 304
    assert (e["event_type"], e["outcome"]) == ("object.read", "OK")
    assert e["details"]["not_modified"] is True and e["details"]["bytes"] == 0

    # The platform reads its acknowledgement (ArchiveTransferReply).
    status, e = read(f"/v1/transfers/{transfer_id}/reply", role="platform")
    assert status == 200
    assert (e["event_type"], e["outcome"]) == ("transfer_reply.read", "OK")
    assert (e["subject_type"], e["subject_id"]) == ("transfer", transfer_id)
    assert e["actor"] == who(env, "platform")[1]
    assert e["details"]["reply_code"] == "OK"

    # Polling a transfer's status and fetching the TSA's public certificates are not reads
    # of the archive: nothing logged.
    mark = last_id(env)
    assert env.http.get(f"/v1/transfers/{transfer_id}", headers=env.auth()).status_code == 200
    assert env.http.get("/v1/tsa/certificates", headers=env.auth("auditor")).status_code == 200
    assert entries_since(env, mark) == []


def test_refused_reads_are_logged_and_tenants_never_meet(env: Env, tmp_path: Path) -> None:
    _, _, unit = archive_dossier(env, tmp_path / "d")
    unit_id = unit["id"]
    obj = unit["objects"][0]
    content = f"/v1/objects/{obj['id']}/content"
    tenant_id, auditor = who(env, "auditor")

    # An auditor may not read document content: 403, logged REFUSED.
    mark = last_id(env)
    r = env.http.get(content, headers=env.auth("auditor"))
    assert r.status_code == 403
    e = one_entry(env, mark)
    assert (e["event_type"], e["outcome"], e["actor"]) == ("object.read", "REFUSED", auditor)
    assert (e["tenant_id"], e["subject_id"]) == (tenant_id, obj["id"])
    assert "may not read document content" in e["details"]["reason"]

    # A platform of the same tenant that does not transfer for this buyer: answered as not
    # found (the unit's existence is not disclosed), logged REFUSED.
    other_buyer = {
        k.role.value: k.key
        for k in env.services.tenancy.bootstrap("GIP Test", [f"{OTHER_SIRET}:Autre acheteur"]).keys
    }
    limited = env.services.tenancy.authenticate(other_buyer["platform"])
    assert limited.tenant_id == tenant_id
    for path, event, subject in (
        (f"/v1/archive-units/{unit_id}", "archive_unit.read", unit_id),
        (f"/v1/archive-units/{unit_id}/manifest", "manifest.read", unit_id),
        (content, "object.read", obj["id"]),
    ):
        mark = last_id(env)
        r = env.http.get(path, headers={"Authorization": f"Bearer {other_buyer['platform']}"})
        assert r.status_code == 404, path
        e = one_entry(env, mark)
        assert (e["event_type"], e["outcome"], e["actor"]) == (event, "REFUSED", limited.client_id)
        assert e["subject_id"] == subject
        assert e["details"]["reason"] == "organization not allowed"

    # Another tenant's keys, ids that exist nowhere, no key at all: nothing logged anywhere.
    mark = last_id(env)
    for path, headers in (
        (f"/v1/archive-units/{unit_id}", env.auth("archivist", other_tenant=True)),
        (content, env.auth("archivist", other_tenant=True)),
        (content, env.auth("auditor", other_tenant=True)),
        (f"/v1/archive-units/{unit_id}/timestamp", env.auth("auditor", other_tenant=True)),
        ("/v1/objects/obj-NOSUCHOBJECT/content", env.auth("archivist")),
        ("/v1/archive-units/au-NOSUCHUNIT", env.auth("archivist")),
        (content, {}),
        (content, {"Authorization": "Bearer ask_0000000000000000_nope"}),
    ):
        r = env.http.get(path, headers=headers)
        assert r.status_code in (401, 403, 404), (path, r.status_code)
    assert entries_since(env, mark) == []

    # The other tenant works too; neither log mentions anything of the other tenant.
    root = tmp_path / "o"
    metadata, _ = make_dossier(root, message_identifier="AUTRE-1")
    r = post_transfer(env.http, metadata, root, headers=env.auth("platform", other_tenant=True))
    other_unit = _wait_other(env, r.json()["id"])
    other_obj = env.http.get(
        f"/v1/archive-units/{other_unit}", headers=env.auth("archivist", other_tenant=True)
    ).json()["objects"][0]
    r = env.http.get(
        f"/v1/objects/{other_obj['id']}/content", headers=env.auth("archivist", other_tenant=True)
    )
    assert r.status_code == 200
    env.http.get("/v1/archive-units", params={"q": "travaux"}, headers=env.auth("archivist"))
    env.http.get(
        "/v1/archive-units",
        params={"q": "travaux"},
        headers=env.auth("archivist", other_tenant=True),
    )
    logs = _by_tenant(env)
    other_tenant_id = who(env, "archivist", other_tenant=True)[0]
    assert set(logs) == {tenant_id, other_tenant_id}
    for mine, theirs in ((tenant_id, other_tenant_id), (other_tenant_id, tenant_id)):
        foreign = _ids_of(env, theirs)
        for entry in logs[mine]:
            text = json.dumps(entry, default=str)
            leaked = [i for i in foreign if i in text]
            assert not leaked, (entry, leaked)


def _wait_other(env: Env, transfer_id: str) -> str:
    import time

    deadline = time.monotonic() + 120
    while True:
        r = env.http.get(
            f"/v1/transfers/{transfer_id}", headers=env.auth("platform", other_tenant=True)
        )
        body = r.json()
        if body["status"] in ("accepted", "rejected"):
            assert body["status"] == "accepted", body
            return str(body["archive_unit_id"])
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def _by_tenant(env: Env) -> dict[str, list[Entry]]:
    logs: dict[str, list[Entry]] = {}
    for entry in entries_since(env, 0):
        logs.setdefault(entry["tenant_id"], []).append(entry)
    return logs


def _ids_of(env: Env, tenant_id: str) -> set[str]:
    """Every identifier that belongs to ``tenant_id``: itself, its clients, organizations,
    transfers, packages, units and objects."""
    ids = {tenant_id}
    with env.services.engine.connect() as conn:
        for table in (t.Client, t.Organization, t.Transfer, t.Package, t.ArchiveUnit, t.DataObject):
            ids.update(conn.scalars(select(table.id).where(table.tenant_id == tenant_id)))
    return ids


def test_a_storage_failure_before_the_first_byte_is_logged_failed(env: Env, tmp_path: Path) -> None:
    _, _, unit = archive_dossier(env, tmp_path / "d")
    obj = unit["objects"][0]
    _, archivist = who(env, "archivist")

    retrieval = env.services.retrieval

    class DownOffer:
        name = retrieval._offers[0].name  # the database records copies there: it is read

        def open(self, key: str, *, version_id: str | None = None) -> BinaryIO:
            raise Unavailable("offer down for the test")

        def stat(self, key: str, *, version_id: str | None = None) -> StoredBlob | None:
            raise Unavailable("offer down for the test")

    retrieval._offers = (DownOffer(),)  # type: ignore[assignment]
    # (manifests and tokens are read by its RecordedReader, which holds the offers too)
    retrieval._reader = dataclasses.replace(retrieval._reader, offers=retrieval._offers)
    for path, event, subject in (
        (f"/v1/objects/{obj['id']}/content", "object.read", obj["id"]),
        (f"/v1/archive-units/{unit['id']}/manifest", "manifest.read", unit["id"]),
    ):
        mark = last_id(env)
        r = env.http.get(path, headers=env.auth("archivist"))
        assert r.status_code == 503
        e = one_entry(env, mark)
        assert (e["event_type"], e["outcome"], e["actor"]) == (event, "FAILED", archivist)
        assert e["subject_id"] == subject
        assert "offer down for the test" in e["details"]["reason"]
        assert "bytes" not in e["details"]


def test_searches_are_logged_with_their_query_and_count(env: Env, tmp_path: Path) -> None:
    metadata, _, unit = archive_dossier(env, tmp_path / "d")
    tenant_id, archivist = who(env, "archivist")
    word = metadata["title"].split()[-1]
    mark = last_id(env)
    r = env.http.get(
        "/v1/archive-units",
        params={"q": word, "buyer": BUYER_SIRET, "notified_to": "2099-12-31", "limit": 5},
        headers=env.auth("archivist"),
    )
    assert [i["id"] for i in r.json()["items"]] == [unit["id"]]
    e = one_entry(env, mark)
    assert (e["event_type"], e["outcome"], e["actor"]) == ("search.performed", "OK", archivist)
    assert (e["tenant_id"], e["subject_type"], e["subject_id"]) == (tenant_id, "tenant", tenant_id)
    assert e["details"]["query"] == {
        "text": word,
        "buyer": BUYER_SIRET,
        "cpv": None,
        "notified_from": None,
        "notified_to": "2099-12-31",
        "next_page": False,
        "limit": 5,
        "communicable": None,
    }
    assert (e["details"]["results"], e["details"]["more"]) == (1, False)
    # The results themselves are not in the entry.
    assert unit["id"] not in json.dumps(e["details"])

    mark = last_id(env)
    r = env.http.get("/v1/archive-units", params={"q": "introuvablexyz"}, headers=env.auth())
    assert r.json()["items"] == []
    e = one_entry(env, mark)
    assert e["details"]["results"] == 0 and e["details"]["actor_role"] == "platform"
    # An invalid search is refused before it runs: nothing to log.
    mark = last_id(env)
    r = env.http.get(
        "/v1/archive-units", params={"cursor": "garbage"}, headers=env.auth("archivist")
    )
    assert r.status_code == 422
    assert entries_since(env, mark) == []


def test_bootstrap_logs_each_creation(env: Env) -> None:
    tenant_id = who(env, "admin")[0]
    with env.services.engine.connect() as conn:
        rows = conn.execute(
            select(t.LogbookEntry.event_type, t.LogbookEntry.subject_id, t.LogbookEntry.details)
            .where(t.LogbookEntry.tenant_id == tenant_id)
            .order_by(t.LogbookEntry.id)
        ).all()
    events = [r[0] for r in rows]
    assert events == ["tenant.created"] + ["organization.created"] * 2 + ["apikey.created"] * 4
    assert rows[0][1] == tenant_id and rows[0][2]["name"] == "GIP Test"
    assert {r[2]["siret"] for r in rows[1:3]} == {BUYER_SIRET, OTHER_SIRET}
    assert {r[2]["role"] for r in rows[3:]} == {"platform", "archivist", "auditor", "admin"}
    # Bootstrapping again reuses the tenant and its buyers: only the new keys are logged.
    mark = last_id(env)
    env.services.tenancy.bootstrap("GIP Test", [f"{BUYER_SIRET}:X"], operator="cli:test")
    again = entries_since(env, mark)
    assert [e["event_type"] for e in again] == ["apikey.created"] * 4
    assert all(e["details"]["operator"] == "cli:test" for e in again)


def test_an_admin_revokes_a_key_and_it_is_logged(env: Env) -> None:
    tenant_id, admin = who(env, "admin")
    _, platform = who(env, "platform")
    key_id = env.keys["platform"].split("_")[1]

    # Only an admin, only in its own tenant.
    for headers, status in (
        (env.auth("archivist"), 403),
        (env.auth("admin", other_tenant=True), 404),
    ):
        mark = last_id(env)
        r = env.http.delete(f"/v1/admin/api-keys/{key_id}", headers=headers)
        assert r.status_code == status, r.text
        assert entries_since(env, mark) == []
    assert env.http.get("/v1/archive-units", headers=env.auth()).status_code == 200

    mark = last_id(env)
    r = env.http.delete(f"/v1/admin/api-keys/{key_id}", headers=env.auth("admin"))
    assert r.status_code == 204, r.text
    e = one_entry(env, mark)
    assert (e["event_type"], e["outcome"], e["actor"]) == ("apikey.revoked", "OK", admin)
    assert (e["tenant_id"], e["subject_type"], e["subject_id"]) == (tenant_id, "client", platform)
    assert e["details"]["key_id"] == key_id
    assert e["details"]["role"] == "platform"
    assert e["details"]["actor_role"] == "admin"

    mark = last_id(env)
    r = env.http.get("/v1/archive-units", headers=env.auth())
    assert r.status_code == 401
    # Revoking again (here by client id) changes nothing and logs nothing.
    r = env.http.delete(f"/v1/admin/api-keys/{platform}", headers=env.auth("admin"))
    assert r.status_code == 204
    assert entries_since(env, mark) == []


@only_stack("default")
def test_revoke_key_command(env: Env) -> None:
    tenant_id, archivist = who(env, "archivist")
    key_id = env.keys["archivist"].split("_")[1]
    mark = last_id(env)
    run = {**os.environ, "ARCHIVE_DATA_DIR": str(env.settings.data_dir)}
    out = subprocess.run(
        [sys.executable, "-m", "archive_service", "admin", "revoke-key", key_id],
        env=run,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"revoked: key {key_id} (archivist, client {archivist})")
    e = one_entry(env, mark)
    assert (e["event_type"], e["outcome"], e["actor"]) == ("apikey.revoked", "OK", None)
    assert (e["tenant_id"], e["subject_id"]) == (tenant_id, archivist)
    assert e["details"]["operator"].startswith("cli")
    r = env.http.get("/v1/archive-units", headers=env.auth("archivist"))
    assert r.status_code == 401

    out = subprocess.run(
        [sys.executable, "-m", "archive_service", "admin", "revoke-key", "nosuchkey"],
        env=run,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "no API key nosuchkey" in out.stderr
