"""Communicability on every read (issue 5 item 8): a restricted document answers 403 with its
rule and end date until the clock passes it; the producer's platform reads its own records;
metadata stays visible and searchable with an ``access`` block; refusals are logged REFUSED
with the rule, allowed reads with the rule that allowed them; destroyed or transferred units
answer 410 Gone with their tombstone.

Events (``POST /v1/archive-units/{id}/events``) recompute the rules, and the next read obeys
them. An offer archived *before* the signature of a dossier that has a DECP record cannot come
out of an ingest (the DECP brings the notification date, which the référentiel uses in place of
the signature): that state is written through the database, as the events service records it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from archive_service.db import tables as t
from tests.fixtures.dossier import make_small_dossier
from tests.integration.conftest import Env
from tests.integration.test_logbook_coverage import entries_since, last_id

# make_small_dossier cycles through tests.fixtures.dossier.CATEGORIES: with 9 files the
# dossier holds the DCE (free), the winning candidature and offer, and an unsuccessful offer
# (secret des affaires: 25 years after the signature, Code du patrimoine L213-2).
FILES = 9
SECRET = {"candidatures.retenue", "offres.retenue", "offres.non_retenue"}
SIGNED = date(2025, 3, 1)  # make_small_dossier(seed=0)'s signature
END = date(2050, 3, 1)


def reads(env: Env, mark: int, event: str = "object.read") -> list[dict[str, Any]]:
    return [e for e in entries_since(env, mark) if e["event_type"] == event]


def post_event(env: Env, unit_id: str, event: str, when: date) -> None:
    r = env.http.post(
        f"/v1/archive-units/{unit_id}/events",
        json={"event": event, "date": when.isoformat()},
        headers=env.auth("archivist"),
    )
    assert r.status_code == 201, r.text


def archive(env: Env, tmp_path: Path, name: str, **changes: Any) -> tuple[str, dict[str, Any]]:
    metadata, _ = make_small_dossier(
        tmp_path / name, FILES, sizes=(1_500, 3_000), message_identifier=f"COMM-{name}"
    )
    metadata.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del metadata[key]
    r = env.post_transfer(metadata, tmp_path / name)
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    unit_id: str = done["archive_unit_id"]
    return unit_id, metadata


def nodes(tree: dict[str, Any]) -> list[dict[str, Any]]:
    out = [tree]
    for child in tree["children"]:
        out.extend(nodes(child))
    return out


def documents(env: Env, unit_id: str, role: str = "archivist") -> dict[str, dict[str, Any]]:
    """category → {unit: tree node, object: object JSON, data: the file's bytes}."""
    r = env.http.get(f"/v1/archive-units/{unit_id}", headers=env.auth(role))
    assert r.status_code == 200, r.text
    view = r.json()
    objects = {o["archive_unit_id"]: o for o in view["objects"]}
    return {
        n["category"]: {"unit": n, "object": objects[n["id"]]}
        for n in nodes(view["tree"])
        if n["category"] and n["id"] in objects
    }


def content(env: Env, obj: dict[str, Any], role: str, **headers: str) -> Any:
    return env.http.get(obj["content_url"], headers={**env.auth(role), **headers})


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def assert_restricted(r: Any, *, end: date | None, pending: bool, rule: str) -> dict[str, Any]:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == "urn:archive-service:problem:access-restricted"
    assert body["rule_id"] == rule and body["rule_label"]
    assert body["pending"] is pending and body["communicable"] is False
    assert body["end_date"] == (end.isoformat() if end else None)
    return body


def set_access(env: Env, unit_id: str, start: date | None, end: date | None) -> None:
    """What the events service records on an offer when its start event is (or is not) known."""
    with env.services.engine.begin() as conn:
        rule = conn.scalar(select(t.ArchiveUnit.access).where(t.ArchiveUnit.id == unit_id))
        assert rule is not None
        rule = {
            **rule,
            "start_event": "signature",
            "start_date": start.isoformat() if start else None,
            "end_date": end.isoformat() if end else None,
            "pending": start is None,
        }
        conn.execute(
            update(t.ArchiveUnit)
            .where(t.ArchiveUnit.id == unit_id)
            .values(access=rule, access_end=end)
        )


def search(env: Env, role: str = "archivist", **params: Any) -> list[dict[str, Any]]:
    r = env.http.get("/v1/archive-units", params=params, headers=env.auth(role))
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_an_offer_is_restricted_until_the_clock_passes_its_end_date(
    env: Env, tmp_path: Path
) -> None:
    unit_id, metadata = archive(env, tmp_path, "signed")
    docs = documents(env, unit_id)
    assert SECRET <= set(docs) and "dce.rc" in docs
    offer = docs["offres.non_retenue"]
    files = {f["path"]: (tmp_path / "signed" / f["path"]).read_bytes() for f in metadata["files"]}
    data = files[offer["object"]["path"]]

    # Metadata stays visible, with the rule, its end date and whether the caller may read.
    access = offer["unit"]["access"]
    assert access["communicable"] is False and access["you_may_read"] is False
    assert (access["rule_id"], access["start_event"]) == ("MP-ACC-SA-25A", "signature")
    assert (access["start_date"], access["end_date"]) == (SIGNED.isoformat(), END.isoformat())
    assert docs["dce.rc"]["unit"]["access"]["communicable"] is True

    # The archivist (and the admin) are refused, whole or by range; the refusal is logged.
    mark = last_id(env)
    for role in ("archivist", "admin"):
        body = assert_restricted(
            content(env, offer["object"], role), end=END, pending=False, rule="MP-ACC-SA-25A"
        )
        assert body["start_event"] == "signature" and body["start_date"] == SIGNED.isoformat()
        assert "2050-03-01" in body["detail"]
    assert_restricted(
        content(env, offer["object"], "archivist", Range="bytes=0-9"),
        end=END,
        pending=False,
        rule="MP-ACC-SA-25A",
    )
    refused = reads(env, mark)
    assert [(e["event_type"], e["outcome"]) for e in refused] == [("object.read", "REFUSED")] * 3
    assert all(e["subject_id"] == offer["object"]["id"] for e in refused)
    assert refused[0]["details"]["access"]["rule_id"] == "MP-ACC-SA-25A"
    assert refused[0]["details"]["access"]["end_date"] == END.isoformat()
    assert refused[0]["details"]["reason"] == "not communicable"

    # The auditor may not read content at all (role), whatever the rule.
    assert content(env, offer["object"], "auditor").status_code == 403

    # The producer's platform reads its own offers; the DCE is free for everyone.
    mark = last_id(env)
    r = content(env, offer["object"], "platform")
    assert r.status_code == 200 and r.content == data
    r = content(env, offer["object"], "platform", Range="bytes=5-14")
    assert r.status_code == 206 and r.content == data[5:15]
    dce = docs["dce.rc"]["object"]
    r = content(env, dce, "archivist")
    assert r.status_code == 200 and r.content == files[dce["path"]]
    allowed = reads(env, mark)
    assert [(e["event_type"], e["outcome"]) for e in allowed] == [("object.read", "OK")] * 3
    assert allowed[0]["details"]["access"]["reason"] == "producer"
    assert allowed[0]["details"]["access"]["rule_id"] == "MP-ACC-SA-25A"
    assert allowed[2]["details"]["access"]["reason"] == "free"
    platform_view = documents(env, unit_id, "platform")["offres.non_retenue"]["unit"]["access"]
    assert platform_view["communicable"] is False and platform_view["you_may_read"] is True

    # Search still finds the dossier, and says what is restricted until when.
    found = search(env, q=metadata["title"].split()[0])
    hit = next(h for h in found if h["id"] == unit_id)
    assert hit["title"] == metadata["title"]
    assert hit["access"]["communicable"] is False
    assert hit["access"]["restricted_documents"] == len(SECRET)
    assert hit["access"]["restricted_until"] == END.isoformat()
    assert unit_id in {h["id"] for h in search(env, communicable="false")}
    assert unit_id not in {h["id"] for h in search(env, communicable="true")}

    # The day before the end date: still restricted. On the end date: communicable.
    env.clock.set(at(date(2050, 2, 28), hour=23))
    assert_restricted(
        content(env, offer["object"], "archivist"), end=END, pending=False, rule="MP-ACC-SA-25A"
    )
    env.clock.set(at(END, hour=0))
    mark = last_id(env)
    r = content(env, offer["object"], "archivist")
    assert r.status_code == 200 and r.content == data
    r = content(env, offer["object"], "archivist", Range="bytes=-7")
    assert r.status_code == 206 and r.content == data[-7:]
    allowed = reads(env, mark)
    assert [e["outcome"] for e in allowed] == ["OK", "OK"]
    assert allowed[0]["details"]["access"]["reason"] == "elapsed"
    assert allowed[1]["details"]["range"] == f"bytes={len(data) - 7}-{len(data) - 1}"
    hit = next(h for h in search(env, communicable="true") if h["id"] == unit_id)
    assert hit["access"]["communicable"] is True and hit["access"]["restricted_documents"] == 0
    assert unit_id not in {h["id"] for h in search(env, communicable="false")}
    assert documents(env, unit_id)["offres.non_retenue"]["unit"]["access"]["you_may_read"]


def test_an_offer_before_signature_is_pending_then_dated_by_the_signature(
    env: Env, tmp_path: Path
) -> None:
    notified = date(2025, 3, 10)  # make_small_dossier(seed=0)'s notification (its DECP's)
    unit_id, _ = archive(env, tmp_path, "unsigned", events={"notification": notified.isoformat()})
    docs = documents(env, unit_id)
    offers = [docs[c]["unit"]["id"] for c in sorted(SECRET)]
    offer = docs["offres.retenue"]["object"]

    # No signature known: the référentiel counts from the notification that substitutes for it.
    body = assert_restricted(
        content(env, offer, "archivist"), end=date(2050, 3, 10), pending=False, rule="MP-ACC-SA-25A"
    )
    assert body["start_event"] == "notification"

    # An offer archived before the contract was signed: pending, no end date yet.
    for offer_unit in offers:
        set_access(env, offer_unit, None, None)
    body = assert_restricted(
        content(env, offer, "archivist"), end=None, pending=True, rule="MP-ACC-SA-25A"
    )
    assert body["start_date"] is None and body["start_event"] == "signature"
    assert "25 years after « Signature du marché »" in body["detail"]
    assert content(env, offer, "platform").status_code == 200
    hit = next(h for h in search(env) if h["id"] == unit_id)
    assert hit["access"]["pending_documents"] == len(SECRET)
    assert hit["access"]["restricted_until"] is None
    assert unit_id in {h["id"] for h in search(env, communicable="false")}

    # The signature is recorded: the events service recomputes, 25 years from the signature.
    post_event(env, unit_id, "signature", SIGNED)
    assert_restricted(
        content(env, offer, "archivist"), end=END, pending=False, rule="MP-ACC-SA-25A"
    )
    hit = next(h for h in search(env) if h["id"] == unit_id)
    assert hit["access"]["restricted_until"] == END.isoformat()

    # Past the signature's end date (and before the notification's): communicable.
    env.clock.set(at(date(2050, 3, 5)))
    assert content(env, offer, "archivist").status_code == 200
    assert unit_id in {h["id"] for h in search(env, communicable="true")}


def test_an_unsuccessful_procedure_keeps_offers_pending_until_its_declaration(
    env: Env, tmp_path: Path
) -> None:
    """A real ingest with an unknown start event: infructueuse, no declaration date yet."""
    unit_id, _ = archive(env, tmp_path, "infructueux", infructueux=True, decp=None, events=None)
    docs = documents(env, unit_id)
    offer = docs["offres.non_retenue"]
    assert offer["unit"]["access"]["pending"] is True
    body = assert_restricted(
        content(env, offer["object"], "archivist"),
        end=None,
        pending=True,
        rule="MP-ACC-SA-INF-25A",
    )
    assert body["start_event"] == "infructuosite"
    # Preparatory documents stay closed too until the declaration (CADA doctrine).
    prep = docs["preparation.besoin"]["object"]
    assert_restricted(content(env, prep, "archivist"), end=None, pending=True, rule="MP-ACC-INF")
    assert content(env, offer["object"], "platform").status_code == 200
    # Years pass: still pending, an unknown start never runs out.
    env.clock.advance(years=40)
    assert content(env, offer["object"], "archivist").status_code == 403
    # The declaration is recorded (dated 2026-01-10): 25 years from it, already over.
    post_event(env, unit_id, "infructuosite", date(2026, 1, 10))
    r = content(env, offer["object"], "archivist")
    assert r.status_code == 200, r.text
    assert reads(env, 0)[-1]["details"]["access"]["end_date"] == "2051-01-10"


def test_destroyed_and_transferred_units_answer_gone_with_their_tombstone(
    env: Env, tmp_path: Path
) -> None:
    unit_id, _ = archive(env, tmp_path, "gone")
    docs = documents(env, unit_id)
    destroyed = docs["offres.non_retenue"]
    transferred = docs["dce.rc"]
    tenant = env.services.tenancy.authenticate(env.keys["admin"]).tenant_id
    visa = {"reference": "AD45-2031-017", "decision": "approved", "by": "Archives 45"}
    with env.services.engine.begin() as conn:
        conn.execute(
            update(t.ArchiveUnit)
            .where(t.ArchiveUnit.id == destroyed["unit"]["id"])
            .values(status="destroyed")
        )
        conn.execute(
            update(t.ArchiveUnit)
            .where(t.ArchiveUnit.id == transferred["unit"]["id"])
            .values(status="transferred")
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

    mark = last_id(env)
    for role in ("archivist", "platform"):
        r = content(env, destroyed["object"], role)
        assert r.status_code == 410, r.text
        body = r.json()
        assert body["type"] == "urn:archive-service:problem:gone"
        assert body["unit_status"] == "destroyed"
        assert body["tombstone"]["visa"] == visa
        assert body["tombstone"]["request_id"] == "dr-TEST"
        r = content(env, destroyed["object"], role, Range="bytes=0-3")
        assert r.status_code == 410
    # Gone from its status alone when no tombstone was written (transferred out).
    r = content(env, transferred["object"], "archivist")
    assert r.status_code == 410
    assert r.json()["unit_status"] == "transferred" and r.json()["tombstone"] is None
    refused = reads(env, mark)
    assert [e["outcome"] for e in refused] == ["REFUSED"] * 5
    assert refused[0]["details"]["reason"] == "archive unit destroyed"

    # The unit view still shows it, with its status and tombstone.
    after = documents(env, unit_id)["offres.non_retenue"]["unit"]
    assert after["status"] == "destroyed" and after["tombstone"]["visa"] == visa
    r = env.http.get(f"/v1/archive-units/{destroyed['unit']['id']}", headers=env.auth("archivist"))
    assert r.status_code == 200
    assert r.json()["status"] == "destroyed" and r.json()["tombstone"]["outcome"] == "destroyed"


def test_evidence_never_ships_restricted_objects(env: Env, tmp_path: Path) -> None:
    unit_id, _ = archive(env, tmp_path, "evidence")
    url = f"/v1/archive-units/{unit_id}/evidence"
    mark = last_id(env)
    r = env.http.get(url, params={"with_objects": "true"}, headers=env.auth("archivist"))
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["type"] == "urn:archive-service:problem:access-restricted"
    withheld = {o["rule_id"] for o in body["restricted_objects"]}
    assert withheld == {"MP-ACC-SA-25A"} and len(body["restricted_objects"]) == len(SECRET)
    refused = reads(env, mark, "evidence.read")
    assert [e["outcome"] for e in refused] == ["REFUSED"]
    # Without objects the bundle is served (digests only).
    r = env.http.get(url, headers=env.auth("archivist"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    env.clock.set(at(END))
    r = env.http.get(url, params={"with_objects": "true"}, headers=env.auth("archivist"))
    assert r.status_code == 200


def test_a_unit_without_its_own_rule_follows_its_nearest_ancestor(env: Env, tmp_path: Path) -> None:
    unit_id, _ = archive(env, tmp_path, "inherit")
    doc = documents(env, unit_id)["dce.rc"]
    assert content(env, doc["object"], "archivist").status_code == 200
    with env.services.engine.begin() as conn:
        phase = conn.scalar(
            select(t.ArchiveUnit.parent_id).where(t.ArchiveUnit.id == doc["unit"]["id"])
        )
        secret = conn.scalar(
            select(t.ArchiveUnit.access).where(
                t.ArchiveUnit.id == documents(env, unit_id)["offres.retenue"]["unit"]["id"]
            )
        )
        conn.execute(
            update(t.ArchiveUnit).where(t.ArchiveUnit.id == doc["unit"]["id"]).values(access=None)
        )
        conn.execute(
            update(t.ArchiveUnit)
            .where(t.ArchiveUnit.id == phase)
            .values(access=secret, access_end=END)
        )
    body = assert_restricted(
        content(env, doc["object"], "archivist"), end=END, pending=False, rule="MP-ACC-SA-25A"
    )
    assert body["inherited_from"] == phase
    view = documents(env, unit_id)["dce.rc"]["unit"]["access"]
    assert view["inherited_from"] == phase and view["communicable"] is False
