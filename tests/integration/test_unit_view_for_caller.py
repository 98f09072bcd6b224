"""The unit view's ``you_may_read`` is what a content read would answer the caller today
(issue 5 review): a dérogation's grantee sees ``true`` where its read succeeds, anyone else
still ``false``; a destroyed unit is ``false`` whatever its rule. ``RetrievalService.view``
is the public way other services (exports) get a unit's view.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from archive_service.db import tables as t
from tests.integration.conftest import Env
from tests.integration.test_communicability import archive, content, documents, nodes
from tests.integration.test_derogations import client_of, grant, revoke, second_archivist
from tests.integration.test_logbook_coverage import entries_since, last_id


def view_nodes(env: Env, unit_id: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = env.http.get(f"/v1/archive-units/{unit_id}", headers=headers)
    assert r.status_code == 200, r.text
    return nodes(r.json()["tree"])


def consistent(env: Env, unit_id: str, headers: dict[str, str]) -> dict[str, bool]:
    """unit id → you_may_read, after checking that for every unit holding an object the
    flag says exactly whether its content read succeeds (200) for these headers."""
    r = env.http.get(f"/v1/archive-units/{unit_id}", headers=headers)
    assert r.status_code == 200, r.text
    objects = {o["archive_unit_id"]: o for o in r.json()["objects"]}
    out: dict[str, bool] = {}
    for node in nodes(r.json()["tree"]):
        flag = node["access"]["you_may_read"]
        out[node["id"]] = flag
        if node["id"] in objects:
            status = env.http.get(objects[node["id"]]["content_url"], headers=headers).status_code
            assert status in (200, 403, 410), status
            assert flag is (status == 200), (node["category"], flag, status)
    return out


def test_you_may_read_follows_the_callers_derogation(env: Env, tmp_path: Path) -> None:
    root, _ = archive(env, tmp_path, "mayread")
    docs = documents(env, root)
    offer = docs["offres.non_retenue"]
    offer_id = offer["unit"]["id"]
    grantee = client_of(env, "archivist")
    other = second_archivist(env)
    today = env.clock.now().date()

    before = consistent(env, root, env.auth("archivist"))
    assert before[offer_id] is False

    r = grant(
        env,
        root,
        client_id=grantee,
        reference="AD75-2026-0101",
        decision_date=today.isoformat(),
        reason="Recherche",
        until=(today + timedelta(days=30)).isoformat(),
    )
    assert r.status_code == 201, r.text
    derogation = r.json()["id"]

    # The grantee: the rule still says not communicable, but it may read, and is told why.
    mark = last_id(env)
    mine = {n["id"]: n for n in view_nodes(env, root, env.auth("archivist"))}
    access = mine[offer_id]["access"]
    assert access["communicable"] is False and access["reason"] == "delay"
    assert access["you_may_read"] is True
    assert access["your_derogation"]["id"] == derogation
    assert access["your_derogation"]["reference"] == "AD75-2026-0101"
    # Reading the view logs one archive_unit.read, nothing about the dérogation lookups.
    assert [e["event_type"] for e in entries_since(env, mark)] == ["archive_unit.read"]
    granted = consistent(env, root, env.auth("archivist"))
    assert granted[offer_id] is True
    assert {k for k, v in granted.items() if v} > {k for k, v in before.items() if v}

    # Another archivist and the grantor (admin) still may not.
    for headers in (other, env.auth("admin")):
        theirs = consistent(env, root, headers)
        assert theirs == before
        node = {n["id"]: n for n in view_nodes(env, root, headers)}[offer_id]
        assert "your_derogation" not in node["access"]

    # A view of the offer alone (a dérogation on its ancestor) says the same.
    assert consistent(env, offer_id, env.auth("archivist")) == {offer_id: True}

    # Revoked: false again.
    assert revoke(env, derogation).status_code == 200
    assert consistent(env, root, env.auth("archivist")) == before


def test_a_destroyed_unit_is_never_yours_to_read(env: Env, tmp_path: Path) -> None:
    root, _ = archive(env, tmp_path, "gone")
    docs = documents(env, root)
    free = docs["dce.rc"]
    assert free["unit"]["access"]["communicable"] is True
    assert free["unit"]["access"]["you_may_read"] is True
    with env.services.engine.begin() as conn:
        conn.execute(
            update(t.ArchiveUnit)
            .where(t.ArchiveUnit.id == free["unit"]["id"])
            .values(status="destroyed")
        )
    for role in ("archivist", "platform"):
        flags = consistent(env, root, env.auth(role))
        assert flags[free["unit"]["id"]] is False, role
    assert content(env, free["object"], "archivist").status_code == 410


def test_retrieval_view_is_public_and_logs_nothing(env: Env, tmp_path: Path) -> None:
    root, _ = archive(env, tmp_path, "public")
    caller = env.services.tenancy.authenticate(env.keys["archivist"])
    mark = last_id(env)
    view = env.services.retrieval.view(caller, root, event="archive_unit.export")
    assert view.unit.id == root and len(view.units) > 1
    assert set(view.readable) == {u.id for u in view.units}
    assert entries_since(env, mark) == []
    # The export, which builds on it, still answers a DIP.
    r = env.http.get(f"/v1/archive-units/{root}/export", headers=env.auth("archivist"))
    assert r.status_code == 200, r.text
    assert r.content[:2] == b"PK"
