"""Events drive retention (issue 5, item 3), through the API, on both stacks.

A works contract (make_dossier, contract type T) is archived at notification: its
non-retained offer runs 5 years from the notification, its contract and execution pieces are
pending (10 years from réception and from paiement du solde, the later wins). Events then
date them, a dispute suspends them, a correction moves them, and every step is in the
logbook. Refusals (bad events, auditors, other organizations, other tenants) write nothing.
"""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from archive_service.db import tables as t
from archive_service.errors import Conflict
from tests.fixtures.dossier import make_dossier, pdf_bytes
from tests.integration.conftest import OTHER_SIRET, Env, only_postgresql

NOTIFIED = "2025-03-10"
RECEPTION = date(2026, 6, 30)
SOLDE = date(2026, 9, 15)


def archive_works_dossier(env: Env, tmp_path: Path, *, name: str = "d") -> str:
    metadata, _ = make_dossier(tmp_path / name, contract_type="T", message_identifier=f"EV-{name}")
    r = env.post_transfer(metadata, tmp_path / name)
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    root: str = done["archive_unit_id"]
    return root


def retention(env: Env, unit_id: str, role: str = "archivist") -> dict[str, Any]:
    r = env.http.get(f"/v1/archive-units/{unit_id}/retention", headers=env.auth(role))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def by_category(body: dict[str, Any], category: str) -> dict[str, Any]:
    return next(u for u in body["units"] if u["category"] == category)


def post_event(
    env: Env, unit_id: str, event: str, when: date | str, role: str = "archivist", **extra: Any
) -> Any:
    day = when if isinstance(when, str) else when.isoformat()
    return env.http.post(
        f"/v1/archive-units/{unit_id}/events",
        json={"event": event, "date": day, **extra},
        headers=env.auth(role),
    )


def counts(env: Env) -> tuple[int, int, int]:
    """(dossier events, logbook entries, units with an end date): what a refusal must not
    change."""
    with env.services.engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(t.DossierEvent)).scalar_one(),
            conn.execute(select(func.count()).select_from(t.LogbookEntry)).scalar_one(),
            conn.execute(
                select(func.count())
                .select_from(t.ArchiveUnit)
                .where(t.ArchiveUnit.appraisal_end.is_not(None))
            ).scalar_one(),
        )


def entries(env: Env, event_type: str) -> list[dict[str, Any]]:
    with env.services.engine.connect() as conn:
        return [
            {"actor": a, "outcome": o, "subject": s, **d}
            for a, o, s, d in conn.execute(
                select(
                    t.LogbookEntry.actor,
                    t.LogbookEntry.outcome,
                    t.LogbookEntry.subject_id,
                    t.LogbookEntry.details,
                )
                .where(t.LogbookEntry.event_type == event_type)
                .order_by(t.LogbookEntry.id)
            ).all()
        ]


def test_events_date_pending_rules_suspend_and_correct_them(env: Env, tmp_path: Path) -> None:
    root = archive_works_dossier(env, tmp_path)
    before = retention(env, root)
    assert before["dossier_id"] == root
    assert before["facts"]["contract_type"] == "T"
    assert before["facts"]["events"]["notification"] == NOTIFIED
    assert before["referential"]["version"] == 1
    offer = by_category(before, "offres.non_retenue")
    assert offer["appraisal_end"] == "2030-03-10" and offer["final_action"] == "Destroy"
    contract = by_category(before, "attribution.acte_engagement")
    assert contract["pending"] and contract["appraisal_end"] is None
    assert contract["appraisal"]["rule_id"] == "MP-CONST-TRV-10A"
    assert before["due"]["pending_units"] >= 2
    assert before["due"]["next_end"] == "2030-03-10"

    # Réception alone: the contract pieces still wait for the solde (max of both terms).
    # The id in the URL may be any unit of the dossier.
    r = post_event(env, contract["id"], "reception", RECEPTION, reference="PV de réception 12")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["recorded"] and body["dossier_id"] == root
    assert (
        body["event"]["event"] == "reception" and body["event"]["reference"] == "PV de réception 12"
    )
    assert body["event"]["source"] == "api"
    assert by_category(retention(env, root), "attribution.acte_engagement")["pending"]

    # Paiement du solde: dated, 10 years from the later of the two.
    r = post_event(env, root, "paiement_solde", SOLDE)
    assert r.status_code == 201, r.text
    changed = {c["unit_id"]: c for c in r.json()["changes"]}
    assert contract["id"] in changed
    assert changed[contract["id"]]["before"]["appraisal_end"] is None
    assert changed[contract["id"]]["after"]["appraisal_end"] == "2036-09-15"
    assert offer["id"] not in changed, "the 5-year offer does not depend on the solde"
    after = retention(env, root)
    dated = by_category(after, "attribution.acte_engagement")
    assert dated["appraisal_end"] == "2036-09-15" and not dated["pending"]
    assert dated["start_event"] == "paiement_solde" and dated["start_date"] == "2026-09-15"
    assert dated["appraisal"]["referential_version"] == 1
    assert by_category(after, "execution.ordre_service")["appraisal_end"] == "2036-09-15"
    assert after["due"]["last_end"] == "2036-09-15"

    # The same event again changes nothing; another date needs a correction with a reason.
    snapshot = counts(env)
    again = post_event(env, root, "paiement_solde", SOLDE)
    assert again.status_code == 200 and not again.json()["recorded"]
    other = post_event(env, root, "paiement_solde", SOLDE + timedelta(days=10))
    assert other.status_code == 409, other.text
    assert other.json()["recorded_date"] == SOLDE.isoformat()
    no_reason = post_event(env, root, "paiement_solde", SOLDE + timedelta(days=10), correction=True)
    assert no_reason.status_code == 422
    assert counts(env) == snapshot
    fixed = post_event(
        env,
        root,
        "paiement_solde",
        SOLDE + timedelta(days=10),
        correction=True,
        reason="mandat de paiement du 25 septembre",
    )
    assert fixed.status_code == 201, fixed.text
    assert fixed.json()["event"]["correction"] is True
    assert fixed.json()["event"]["previous_date"] == SOLDE.isoformat()
    assert (
        by_category(retention(env, root), "attribution.acte_engagement")["appraisal_end"]
        == "2036-09-25"
    )
    corrected = entries(env, "dossier.event_corrected")
    assert corrected[-1]["previous_date"] == SOLDE.isoformat()
    assert corrected[-1]["reason"] == "mandat de paiement du 25 septembre"

    # A dispute suspends every DUA of the dossier; closing it pushes the ends by its length.
    opened, closed = date(2026, 10, 1), date(2026, 11, 10)
    assert post_event(env, root, "dispute_closed", closed).status_code == 409
    assert post_event(env, root, "dispute_opened", opened).status_code == 201
    assert post_event(env, root, "dispute_opened", opened + timedelta(days=1)).status_code == 409
    suspended = retention(env, root)
    assert suspended["due"]["suspended"] is True
    for unit in suspended["units"]:
        if unit["appraisal"] is not None:
            assert unit["suspended"] and unit["appraisal_end"] is None, unit
    assert post_event(env, root, "dispute_closed", closed).status_code == 201
    resumed = retention(env, root)
    assert not resumed["due"]["suspended"]
    assert resumed["facts"]["disputes"] == [
        {"opened": opened.isoformat(), "closed": closed.isoformat(), "days": 40}
    ]
    assert (
        by_category(resumed, "attribution.acte_engagement")["appraisal_end"]
        == (date(2036, 9, 25) + timedelta(days=40)).isoformat()
    )
    assert (
        by_category(resumed, "offres.non_retenue")["appraisal_end"]
        == (date(2030, 3, 10) + timedelta(days=40)).isoformat()
    )

    # The history: the transfer's events, then each recorded one, in order.
    history = env.http.get(f"/v1/archive-units/{root}/events", headers=env.auth("auditor"))
    assert history.status_code == 200
    events = [(e["event"], e["source"], e["date"]) for e in history.json()["events"]]
    assert events[:2] == [
        ("signature", "transfer", "2025-03-01"),
        ("notification", "transfer", NOTIFIED),
    ]
    assert events[2:] == [
        ("reception", "api", RECEPTION.isoformat()),
        ("paiement_solde", "api", SOLDE.isoformat()),
        ("paiement_solde", "api", "2026-09-25"),
        ("dispute_opened", "api", opened.isoformat()),
        ("dispute_closed", "api", closed.isoformat()),
    ]

    # Logged: each event with who and when, each recomputation with old and new ends.
    recorded = entries(env, "dossier.event_recorded")
    assert [(e["event"], e["date"]) for e in recorded if e["outcome"] == "OK"] == [
        ("reception", RECEPTION.isoformat()),
        ("paiement_solde", SOLDE.isoformat()),
        ("dispute_opened", opened.isoformat()),
        ("dispute_closed", closed.isoformat()),
    ]
    assert all(e["actor_role"] == "archivist" and e["subject"] == root for e in recorded)
    recomputed = entries(env, "retention.recomputed")
    solde_run = next(e for e in recomputed if e.get("event") == "paiement_solde")
    moved = {u["unit_id"]: u["appraisal_end"] for u in solde_run["units"]}
    assert moved[contract["id"]] == [None, "2036-09-15"]


def test_bad_events_are_refused_with_nothing_written(env: Env, tmp_path: Path) -> None:
    root = archive_works_dossier(env, tmp_path)
    snapshot = counts(env)
    today = env.clock.now().date()
    cases = [
        ({"event": "fin_du_monde", "date": "2026-01-01"}, 422, "unknown-event"),
        ({"event": "reception", "date": (today + timedelta(days=1)).isoformat()}, 422, None),
        ({"event": "reception", "date": "30/06/2026"}, 422, "invalid-date"),
        ({"event": "reception"}, 422, "missing-field"),
        ({"event": "reception", "date": "2026-06-30", "colour": "blue"}, 422, "unknown-field"),
        ({"event": "notification", "date": "2025-03-11"}, 409, "contradicts-recorded-event"),
        (
            {"event": "reception", "date": "2026-06-30", "correction": True, "reason": "x"},
            422,
            "nothing-to-correct",
        ),
    ]
    for body, status, code in cases:
        r = env.http.post(
            f"/v1/archive-units/{root}/events", json=body, headers=env.auth("archivist")
        )
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        if code:
            assert code in {i["code"] for i in r.json()["issues"]}, r.json()
    r = env.http.post(
        f"/v1/archive-units/{root}/events", content=b"{not json", headers=env.auth("archivist")
    )
    assert r.status_code == 400
    missing = post_event(env, "au-does-not-exist", "reception", "2026-06-30")
    assert missing.status_code == 404
    assert counts(env) == snapshot


def test_who_may_record_events(env: Env, tmp_path: Path) -> None:
    root = archive_works_dossier(env, tmp_path)
    # The auditor reads, but may not record.
    assert post_event(env, root, "reception", RECEPTION, role="auditor").status_code == 403
    assert retention(env, root, role="auditor")["dossier_id"] == root
    # Another tenant does not see the dossier at all.
    other = env.http.post(
        f"/v1/archive-units/{root}/events",
        json={"event": "reception", "date": RECEPTION.isoformat()},
        headers=env.auth("archivist", other_tenant=True),
    )
    assert other.status_code == 404
    assert (
        env.http.get(
            f"/v1/archive-units/{root}/retention", headers=env.auth("admin", other_tenant=True)
        ).status_code
        == 404
    )
    # A platform transferring for another organization of the same tenant neither.
    keys = env.services.tenancy.bootstrap("GIP Test", [f"{OTHER_SIRET}:Autre acheteur"]).keys
    stranger = next(k.key for k in keys if k.role.value == "platform")
    r = env.http.post(
        f"/v1/archive-units/{root}/events",
        json={"event": "reception", "date": RECEPTION.isoformat()},
        headers={"Authorization": f"Bearer {stranger}"},
    )
    assert r.status_code == 404
    with env.services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.DossierEvent)).scalar_one() == 0
    refused = [e for e in entries(env, "dossier.event_recorded") if e["outcome"] == "REFUSED"]
    assert {e["actor_role"] for e in refused} == {"auditor", "platform"}
    # The dossier's own platform may.
    mine = post_event(env, root, "reception", RECEPTION, role="platform")
    assert mine.status_code == 201, mine.text
    assert mine.json()["event"]["recorded_by"]


def test_an_infructuosite_event_switches_the_offers_rule(env: Env, tmp_path: Path) -> None:
    """An infructuosité recorded through the API sets the dossier's flag: the offers now
    follow the infructuosité rule, dated from that event."""
    root = archive_works_dossier(env, tmp_path)
    r = post_event(env, root, "infructuosite", "2025-04-01")
    assert r.status_code == 201, r.text
    body = retention(env, root)
    assert body["facts"]["infructueux"] is True
    offer = by_category(body, "offres.non_retenue")
    assert offer["appraisal"]["rule_id"] == "MP-INF-5A"
    assert offer["appraisal_end"] == "2030-04-01"
    # The listener: recomputing the dossier as ingest does after a package changes nothing
    # more (idempotent), and leaves no recomputation entry.
    before = len(entries(env, "retention.recomputed"))
    env.services.lifecycle.dossier_changed(
        env.services.tenancy.authenticate(env.keys["admin"]).tenant_id, root
    )
    assert len(entries(env, "retention.recomputed")) == before


def add_avenant(env: Env, tmp_path: Path, root: str, name: str = "avenant") -> str:
    """A later transfer adding an avenant to the dossier (issue 5 item 2: ``"dossier"`` in
    the metadata); its metadata carries no event. Returns the avenant's unit id."""
    folder = tmp_path / name
    data = pdf_bytes(title="Avenant n° 1", paragraphs=["Avenant n° 1 au marché de travaux."])
    (folder / "5-Execution").mkdir(parents=True)
    (folder / "5-Execution" / "avenant-1.pdf").write_bytes(data)
    metadata = {
        "dossier": root,
        "message_identifier": f"EV-ADD-{name}",
        "files": [
            {
                "path": "5-Execution/avenant-1.pdf",
                "category": "execution.avenant",
                "title": "Avenant n° 1",
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        ],
    }
    r = env.post_transfer(metadata, folder)
    assert r.status_code == 202, r.text
    done = env.wait(r.json()["id"])
    assert done["status"] == "accepted", done
    return next(
        u["id"] for u in retention(env, root)["units"] if u["category"] == "execution.avenant"
    )


def test_a_later_package_follows_the_events_recorded_before_it(env: Env, tmp_path: Path) -> None:
    """A piece added after the solde was recorded through the API is dated from it at once,
    though its transfer's metadata carried no event: the addition's rules are computed over
    the dossier's events as they stand (API-recorded ones included), and the ingest still
    tells the lifecycle service, whose recomputation then finds the piece already right."""
    root = archive_works_dossier(env, tmp_path)
    assert post_event(env, root, "reception", RECEPTION).status_code == 201
    assert post_event(env, root, "paiement_solde", SOLDE).status_code == 201
    avenant = add_avenant(env, tmp_path, root)
    body = retention(env, root)
    unit = next(u for u in body["units"] if u["id"] == avenant)
    assert unit["appraisal"]["rule_id"] == "MP-EXE-TRV-10A"
    assert unit["appraisal_end"] == "2036-09-15" and not unit["pending"]
    assert unit["appraisal"]["referential_version"] == 1
    runs = [
        e
        for e in entries(env, "retention.recomputed")
        if e["subject"] == root and e.get("trigger") == "package"
    ]
    assert all(avenant not in {u["unit_id"] for u in run["units"]} for run in runs)
    assert unit["appraisal"]["start_date"] == SOLDE.isoformat()


def run_cli(env: Env, monkeypatch: Any, *args: str) -> tuple[int, str]:
    """The CLI as an operator runs it on the server, configured by the environment."""
    from typer.testing import CliRunner

    from archive_service.cli.main import app

    monkeypatch.setenv("ARCHIVE_DATA_DIR", str(env.settings.data_dir))
    monkeypatch.setenv("ARCHIVE_STORAGE_OFFERS", json.dumps(env.settings.storage_offers))
    if env.settings.database_url:
        monkeypatch.setenv("ARCHIVE_DATABASE_URL", env.settings.database_url)
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_events_from_the_command_line(env: Env, tmp_path: Path, monkeypatch: Any) -> None:
    root = archive_works_dossier(env, tmp_path)

    def run(*args: str) -> tuple[int, str]:
        return run_cli(env, monkeypatch, *args)

    snapshot = counts(env)
    assert (
        run("retention", "event", root, "reception", "30/06/2026", "--tenant", "GIP Test")[0] == 2
    )
    code, out = run("retention", "event", root, "reception", "2999-01-01", "--tenant", "GIP Test")
    assert code == 2 and "in the future" in out
    code, out = run(
        "retention", "event", root, "dispute_closed", "2026-06-30", "--tenant", "GIP Test"
    )
    assert code == 1 and "no dispute is open" in out
    assert counts(env) == snapshot
    code, out = run("retention", "event", root, "reception", "2026-06-30", "--tenant", "GIP Test")
    assert code == 0, out
    code, out = run("retention", "event", root, "reception", "2026-06-30", "--tenant", "GIP Test")
    assert code == 0 and "already recorded" in out
    history = env.http.get(f"/v1/archive-units/{root}/events", headers=env.auth("archivist"))
    last = history.json()["events"][-1]
    assert (last["event"], last["source"], last["date"]) == ("reception", "cli", "2026-06-30")
    assert last["recorded_by"].startswith("cli")


@only_postgresql()
def test_concurrent_dispute_openings_record_one(env: Env, tmp_path: Path) -> None:
    """The dossier's lock: of two dispute openings sent at once, one is recorded and the
    other sees it (409), never two open disputes."""
    root = archive_works_dossier(env, tmp_path)
    caller = env.services.tenancy.authenticate(env.keys["archivist"])
    barrier = threading.Barrier(2)

    def open_dispute(day: int) -> str:
        barrier.wait()
        try:
            env.services.lifecycle.record_event(
                caller, root, event="dispute_opened", when=date(2026, 10, day)
            )
        except Conflict:
            return "conflict"
        return "recorded"

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = sorted(pool.map(open_dispute, (1, 2)))
    assert outcomes == ["conflict", "recorded"]
    body = retention(env, root)
    assert len(body["facts"]["disputes"]) == 1 and body["facts"]["dispute_open"]
