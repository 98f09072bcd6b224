"""Dérogations (Code du patrimoine L213-3, issue 5 item 8): an archivist or admin records
that one named client may read a unit's restricted documents before their délai expires.

A dossier signed on 2025-03-01 keeps its offers restricted until 2050 (secret des affaires,
25 years): archivist A is refused; once an admin grants A's client a dérogation on the dossier,
A reads (the read's log entry names the dérogation) while another archivist and the grantor
are still refused; a revocation or the dérogation's last day passing closes it again; a unit
destroyed stays gone. Every refused grant or revocation writes nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from archive_service.db import tables as t
from tests.integration.conftest import Env
from tests.integration.test_communicability import (
    END,
    archive,
    assert_restricted,
    content,
    documents,
    reads,
    set_access,
)
from tests.integration.test_lifecycle_events import run_cli
from tests.integration.test_logbook_coverage import entries_since, last_id

RULE = "MP-ACC-SA-25A"


def client_of(env: Env, role: str, *, other_tenant: bool = False) -> str:
    keys = env.other_tenant_keys if other_tenant else env.keys
    return env.services.tenancy.authenticate(keys[role]).client_id


def snapshot(env: Env) -> tuple[int, int]:
    """What a refused request must leave unchanged: dérogation rows, logbook entries."""
    with env.services.engine.connect() as conn:
        rows = int(conn.scalar(select(func.count()).select_from(t.AccessDerogation)) or 0)
    return rows, last_id(env)


def grant(env: Env, unit_id: str, role: str = "admin", **body: Any) -> Any:
    return env.http.post(
        f"/v1/archive-units/{unit_id}/derogations", json=body, headers=env.auth(role)
    )


def revoke(env: Env, derogation_id: str, role: str = "admin", reason: str = "fin") -> Any:
    return env.http.post(
        f"/v1/derogations/{derogation_id}/revoke", json={"reason": reason}, headers=env.auth(role)
    )


def second_archivist(env: Env) -> dict[str, str]:
    """Another archivist key of the same tenant (bootstrap issues one more key per role)."""
    issued = env.services.tenancy.bootstrap("GIP Test", [])
    key = next(k.key for k in issued.keys if k.role.value == "archivist")
    return {"Authorization": f"Bearer {key}"}


def test_a_derogation_opens_restricted_offers_to_its_grantee_only(env: Env, tmp_path: Path) -> None:
    root, metadata = archive(env, tmp_path, "derog")
    docs = documents(env, root)
    offer = docs["offres.non_retenue"]
    winning = docs["offres.retenue"]
    files = {f["path"]: (tmp_path / "derog" / f["path"]).read_bytes() for f in metadata["files"]}
    data = files[offer["object"]["path"]]
    other = second_archivist(env)
    grantee = client_of(env, "archivist")
    today = env.clock.now().date()

    # Before any dérogation archivist A is refused, like everyone but the producer.
    assert_restricted(content(env, offer["object"], "archivist"), end=END, pending=False, rule=RULE)

    # A recorded dérogation on the dossier root covers the offers below it.
    mark = last_id(env)
    r = grant(
        env,
        root,
        client_id=grantee,
        reference="AD75-2026-0042",
        decision_date=today.isoformat(),
        reason="Demande de consultation anticipée (recherche historique)",
        until=(today + timedelta(days=30)).isoformat(),
    )
    assert r.status_code == 201, r.text
    derogation = r.json()
    assert derogation["active"] is True and derogation["client_id"] == grantee
    assert derogation["unit_id"] == root and derogation["reference"] == "AD75-2026-0042"
    assert derogation["granted_by"] == "GIP Test admin"
    granted = entries_since(env, mark)
    assert [(e["event_type"], e["outcome"], e["subject_id"]) for e in granted] == [
        ("derogation.granted", "OK", root)
    ]
    assert granted[0]["details"]["derogation_id"] == derogation["id"]
    assert granted[0]["details"]["client_id"] == grantee
    assert granted[0]["actor"] == client_of(env, "admin")

    # A reads the offer (and the winning one); the read's entry names the dérogation.
    mark = last_id(env)
    r = content(env, offer["object"], "archivist")
    assert r.status_code == 200 and r.content == data
    allowed = reads(env, mark)
    assert [(e["outcome"], e["actor"]) for e in allowed] == [("OK", grantee)]
    access = allowed[0]["details"]["access"]
    assert access["reason"] == "derogation" and access["rule_id"] == RULE
    assert access["end_date"] == END.isoformat()
    assert access["derogation"]["id"] == derogation["id"]
    assert access["derogation"]["reference"] == "AD75-2026-0042"
    assert content(env, winning["object"], "archivist").status_code == 200

    # Another archivist and the grantor (admin) are still refused.
    r = env.http.get(offer["object"]["content_url"], headers=other)
    assert_restricted(r, end=END, pending=False, rule=RULE)
    assert_restricted(content(env, offer["object"], "admin"), end=END, pending=False, rule=RULE)

    # A pending délai (signature unknown) is opened to the grantee too.
    set_access(env, winning["unit"]["id"], None, None)
    assert content(env, winning["object"], "archivist").status_code == 200
    r = env.http.get(winning["object"]["content_url"], headers=other)
    assert_restricted(r, end=None, pending=True, rule=RULE)

    # The listing: on the root, and inherited by the offer's unit.
    r = env.http.get(f"/v1/archive-units/{root}/derogations", headers=env.auth("auditor"))
    assert r.status_code == 200, r.text
    assert [d["id"] for d in r.json()["derogations"]] == [derogation["id"]]
    r = env.http.get(
        f"/v1/archive-units/{offer['unit']['id']}/derogations", headers=env.auth("archivist")
    )
    assert r.json()["derogations"] == []
    assert [d["id"] for d in r.json()["inherited"]] == [derogation["id"]]

    # Revoked: A is refused again; the revocation is logged; a second one changes nothing.
    mark = last_id(env)
    r = revoke(env, derogation["id"], reason="Consultation terminée")
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False and r.json()["revoked_by"] == "GIP Test admin"
    revoked = entries_since(env, mark)
    assert [(e["event_type"], e["outcome"]) for e in revoked] == [("derogation.revoked", "OK")]
    assert revoked[0]["details"]["reason"] == "Consultation terminée"
    assert_restricted(content(env, offer["object"], "archivist"), end=END, pending=False, rule=RULE)
    before = snapshot(env)
    assert revoke(env, derogation["id"]).status_code == 409
    assert snapshot(env) == before

    # A dérogation with a last day: it counts through that day, not after.
    last = today + timedelta(days=10)
    r = grant(
        env,
        offer["unit"]["id"],
        client_id=grantee,
        reference="AD75-2026-0043",
        decision_date=today.isoformat(),
        reason="Contentieux",
        until=last.isoformat(),
    )
    assert r.status_code == 201, r.text
    second = r.json()["id"]
    env.clock.advance(days=10)
    assert env.clock.now().date() == last
    assert content(env, offer["object"], "archivist").status_code == 200
    env.clock.advance(days=1)
    assert_restricted(content(env, offer["object"], "archivist"), end=END, pending=False, rule=RULE)
    listed = env.http.get(
        f"/v1/archive-units/{offer['unit']['id']}/derogations", headers=env.auth("admin")
    ).json()
    assert [(d["id"], d["active"]) for d in listed["derogations"]] == [(second, False)]

    # A destroyed unit stays gone, whatever dérogation covers it (status as disposal sets it).
    r = grant(
        env,
        root,
        client_id=grantee,
        reference="AD75-2026-0044",
        decision_date=env.clock.now().date().isoformat(),
        reason="Nouvelle demande",
    )
    assert r.status_code == 201, r.text
    assert content(env, offer["object"], "archivist").status_code == 200
    with env.services.engine.begin() as conn:
        conn.execute(
            update(t.ArchiveUnit)
            .where(t.ArchiveUnit.id == offer["unit"]["id"])
            .values(status="destroyed")
        )
    assert content(env, offer["object"], "archivist").status_code == 410
    before = snapshot(env)
    r = grant(
        env,
        offer["unit"]["id"],
        client_id=grantee,
        reference="AD75-2026-0045",
        decision_date=env.clock.now().date().isoformat(),
        reason="x",
    )
    assert r.status_code == 409, r.text
    assert snapshot(env) == before


def test_refused_grants_and_revocations_write_nothing(env: Env, tmp_path: Path) -> None:
    root, _ = archive(env, tmp_path, "refusals")
    offer = documents(env, root)["offres.non_retenue"]
    grantee = client_of(env, "archivist")
    today = env.clock.now().date()
    good = {
        "client_id": grantee,
        "reference": "AD75-2026-0100",
        "decision_date": today.isoformat(),
        "reason": "Demande de consultation",
    }
    cases: list[tuple[str, str, str, dict[str, Any], int, str]] = [
        ("unknown unit", "admin", "unit-does-not-exist", good, 404, "not-found"),
        ("unknown client", "admin", root, {**good, "client_id": "cl-nope"}, 404, "not-found"),
        (
            "other tenant's client",
            "admin",
            root,
            {**good, "client_id": client_of(env, "archivist", other_tenant=True)},
            404,
            "not-found",
        ),
        (
            "granting to oneself",
            "admin",
            root,
            {**good, "client_id": client_of(env, "admin")},
            403,
            "forbidden",
        ),
        (
            "a last day already past",
            "admin",
            root,
            {**good, "until": (today - timedelta(days=1)).isoformat()},
            422,
            "invalid-input",
        ),
        (
            "a decision dated after today",
            "admin",
            root,
            {**good, "decision_date": (today + timedelta(days=1)).isoformat()},
            422,
            "invalid-input",
        ),
        ("no reference", "admin", root, {**good, "reference": "  "}, 422, "invalid-input"),
        (
            "no reason",
            "admin",
            root,
            {k: v for k, v in good.items() if k != "reason"},
            400,
            "bad-request",
        ),
        ("a malformed date", "admin", root, {**good, "until": "31/12/2030"}, 400, "bad-request"),
        (
            "an auditor as grantee",
            "admin",
            root,
            {**good, "client_id": client_of(env, "auditor")},
            422,
            "invalid-input",
        ),
        ("an auditor grants", "auditor", root, good, 403, "forbidden"),
        ("a platform grants", "platform", root, good, 403, "forbidden"),
    ]
    before = snapshot(env)
    for label, role, unit_id, body, status, problem in cases:
        r = grant(env, unit_id, role, **body)
        assert r.status_code == status, (label, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), label
        if problem:
            assert r.json()["type"].endswith(f":{problem}"), (label, r.json())
        assert snapshot(env) == before, label
    # Another tenant's admin does not see this tenant's unit.
    r = env.http.post(
        f"/v1/archive-units/{root}/derogations",
        json=good,
        headers=env.auth("admin", other_tenant=True),
    )
    assert r.status_code == 404, r.text
    assert snapshot(env) == before
    # Nothing was granted: archivist A is still refused.
    assert_restricted(content(env, offer["object"], "archivist"), end=END, pending=False, rule=RULE)

    # Revocation: unknown, another tenant's, without reason, by a role that may not.
    r = grant(env, root, **good)
    assert r.status_code == 201, r.text
    derogation = r.json()["id"]
    before = snapshot(env)
    assert revoke(env, "drg-unknown").status_code == 404
    r = env.http.post(
        f"/v1/derogations/{derogation}/revoke",
        json={"reason": "x"},
        headers=env.auth("admin", other_tenant=True),
    )
    assert r.status_code == 404
    assert revoke(env, derogation, reason=" ").status_code == 422
    assert revoke(env, derogation, role="auditor").status_code == 403
    assert revoke(env, derogation, role="platform").status_code == 403
    assert snapshot(env) == before
    assert content(env, offer["object"], "archivist").status_code == 200


def test_derogations_from_the_command_line(env: Env, tmp_path: Path, monkeypatch: Any) -> None:
    """The CLI runs on its own services with the real clock (env.clock is not moved here)."""
    root, _ = archive(env, tmp_path, "cli")
    offer = documents(env, root)["offres.non_retenue"]
    grantee = client_of(env, "archivist")
    today = datetime.now(UTC).date()

    def run(*args: str) -> tuple[int, str]:
        return run_cli(env, monkeypatch, "derogation", *args, "--tenant", "GIP Test")

    base = ["--client", grantee, "--reference", "AD-CLI-1", "--reason", "Demande"]
    before = snapshot(env)
    code, out = run("grant", root, *base, "--decision-date", "2026-13-01", "--as", "Marie Dupont")
    assert code == 2 and "--decision-date must be a date" in out
    yesterday = (today - timedelta(days=1)).isoformat()
    code, out = run(
        "grant", root, *base, "--decision-date", today.isoformat(), "--until", yesterday,
        "--as", "Marie Dupont",
    )  # fmt: skip
    assert code == 2 and "already past" in out
    code, out = run(
        "grant", "unit-nope", *base, "--decision-date", today.isoformat(), "--as", "Marie Dupont"
    )
    assert code == 1 and "no archive unit" in out
    # The operator whose name is the grantee's (the archivist key's name) may not grant it.
    code, out = run(
        "grant", root, *base, "--decision-date", today.isoformat(), "--as", "GIP Test archivist"
    )
    assert code == 4 and "own beneficiary" in out
    assert snapshot(env) == before

    code, out = run(
        "grant", root, *base, "--decision-date", today.isoformat(), "--as", "Marie Dupont",
        "--json",
    )  # fmt: skip
    assert code == 0, out
    derogation = json.loads(out)
    assert derogation["granted_by"] == "Marie Dupont" and derogation["active"] is True
    assert content(env, offer["object"], "archivist").status_code == 200

    code, out = run("list", offer["unit"]["id"])
    assert code == 0 and derogation["id"] in out and "active" in out

    code, out = run("revoke", derogation["id"], "--reason", "Fin", "--as", "Marie Dupont")
    assert code == 0 and "revoked" in out
    code, out = run("revoke", derogation["id"], "--reason", "Fin", "--as", "Marie Dupont")
    assert code == 1 and "already revoked" in out
    assert_restricted(content(env, offer["object"], "archivist"), end=END, pending=False, rule=RULE)
    events = [e["event_type"] for e in entries_since(env, before[1])]
    assert events.count("derogation.granted") == 1 and events.count("derogation.revoked") == 1
