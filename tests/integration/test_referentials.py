"""Versioned retention référentiels per tenant (issue 5, item 4), through the API and the CLI.

Version 1 is the shipped default (procurement.md §2.4). An administrator replaces it; a
change is logged, applies to new computations only (units keep their rules until an event
or an explicit recompute), and its impact can be seen before, without writing anything.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import archive_service
from archive_service.db import tables as t
from tests.integration.conftest import Env
from tests.integration.test_lifecycle_events import (
    archive_works_dossier,
    by_category,
    entries,
    post_event,
    retention,
    run_cli,
)

DEFAULT = Path(archive_service.__file__).parent / "data" / "retention_referential.json"
URL = "/v1/referentials/retention"


def candidate() -> dict[str, Any]:
    """The default with unsuccessful offers kept 7 years, and DCE copies kept (not
    destroyed)."""
    ref: dict[str, Any] = json.loads(DEFAULT.read_text("utf-8"))
    ref["version"] = "2026-12-ad45"
    ref["appraisal_rules"]["MP-NR-5A"]["terms"][0]["years"] = 7
    ref["appraisal_rules"]["MP-NR-5A"]["label"] = "Offres non retenues : 7 ans (AD 45)"
    ref["appraisal_rules"]["MP-DCE-5A"]["final_action"] = "Keep"
    return ref


def invalid() -> dict[str, Any]:
    ref = copy.deepcopy(candidate())
    ref["appraisal_rules"]["MP-NR-5A"]["terms"][0]["years"] = -7
    ref["appraisal_rules"]["MP-DCE-5A"]["final_action"] = "Burn"
    del ref["categories"]["dce.rc"]
    return ref


def versions_in_db(env: Env) -> int:
    with env.services.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(t.RetentionReferential)).scalar_one()


def logbook_size(env: Env) -> int:
    with env.services.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(t.LogbookEntry)).scalar_one()


def unit_rows(env: Env) -> list[tuple[Any, ...]]:
    with env.services.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(
                    t.ArchiveUnit.id,
                    t.ArchiveUnit.appraisal,
                    t.ArchiveUnit.access,
                    t.ArchiveUnit.appraisal_end,
                    t.ArchiveUnit.access_end,
                ).order_by(t.ArchiveUnit.id)
            ).all()
        ]


def test_replace_the_referential_through_the_api(env: Env, tmp_path: Path) -> None:
    root = archive_works_dossier(env, tmp_path)

    # Version 1: the shipped default, byte for byte.
    r = env.http.get(URL, headers=env.auth("archivist"))
    assert r.status_code == 200, r.text
    v1 = r.json()
    shipped = DEFAULT.read_text("utf-8")
    assert v1["version"] == 1 and v1["in_force"] is True
    assert v1["sha256"] == hashlib.sha256(shipped.encode()).hexdigest()
    assert v1["label"] == "2026-11-default"
    assert v1["referential"] == json.loads(shipped)
    assert v1["created_by"] == "archive-service"
    assert env.http.get(URL, headers=env.auth("auditor")).status_code == 200
    assert env.http.get(URL, headers=env.auth("platform")).status_code == 403
    installed = entries(env, "referential.installed")
    assert len(installed) == 1 and installed[0]["version"] == 1

    # Refusals write nothing: not an admin, invalid text (every problem listed), no comment.
    snapshot = (versions_in_db(env), logbook_size(env), unit_rows(env))
    body = json.dumps(candidate())
    for role in ("archivist", "auditor", "platform"):
        r = env.http.put(URL, content=body, params={"comment": "AD 45"}, headers=env.auth(role))
        assert r.status_code == 403, (role, r.text)
    r = env.http.put(
        URL, content=json.dumps(invalid()), params={"comment": "x"}, headers=env.auth("admin")
    )
    assert r.status_code == 422, r.text
    locations = {i.get("location") for i in r.json()["issues"]}
    assert "appraisal_rules.MP-NR-5A.terms[0].years" in locations
    assert "appraisal_rules.MP-DCE-5A.final_action" in locations
    assert any("dce.rc" in i["message"] for i in r.json()["issues"])
    assert (
        env.http.put(
            URL, content=b"{", params={"comment": "x"}, headers=env.auth("admin")
        ).status_code
        == 422
    )
    assert env.http.put(URL, content=body, headers=env.auth("admin")).status_code == 422
    assert (
        env.http.post(
            f"{URL}/impact", content=json.dumps(invalid()), headers=env.auth("admin")
        ).status_code
        == 422
    )
    assert (versions_in_db(env), logbook_size(env), unit_rows(env)) == snapshot

    # Impact: which units would change, before → after; nothing written.
    r = env.http.post(f"{URL}/impact", content=body, headers=env.auth("archivist"))
    assert r.status_code == 200, r.text
    impact = r.json()
    assert impact["in_force"]["version"] == 1
    assert impact["candidate"]["label"] == "2026-12-ad45"
    changed = {c["category"]: c for c in impact["changes"]}
    offer = changed["offres.non_retenue"]
    assert offer["dossier_id"] == root
    assert offer["before"]["appraisal_end"] == "2030-03-10"
    assert offer["after"]["appraisal_end"] == "2032-03-10"
    assert offer["changed"] == ["appraisal_end"]
    assert changed["dce.rc"]["before"]["final_action"] == "Destroy"
    assert changed["dce.rc"]["after"]["final_action"] == "Keep"
    assert "attribution.acte_engagement" not in changed
    assert impact["units_changed"] == len(impact["changes"]) >= 5
    assert impact["dossiers_changed"] == 1
    assert (versions_in_db(env), logbook_size(env), unit_rows(env)) == snapshot

    # Replace (admin, with a comment in the header): version 2, logged.
    r = env.http.put(
        URL, content=body, headers={**env.auth("admin"), "X-Comment": "AD 45 visa 2026-12"}
    )
    assert r.status_code == 201, r.text
    v2 = r.json()
    assert v2["version"] == 2 and v2["label"] == "2026-12-ad45" and v2["in_force"]
    assert v2["sha256"] == hashlib.sha256(body.encode()).hexdigest()
    assert v2["comment"] == "AD 45 visa 2026-12"
    replaced = entries(env, "referential.replaced")
    assert len(replaced) == 1
    assert replaced[0]["previous_version"] == 1 and replaced[0]["version"] == 2
    assert replaced[0]["actor_role"] == "admin" and replaced[0]["comment"] == "AD 45 visa 2026-12"
    assert (
        env.http.put(
            URL, content=body, params={"comment": "again"}, headers=env.auth("admin")
        ).status_code
        == 409
    )

    history = env.http.get(f"{URL}/versions", headers=env.auth("auditor")).json()
    assert history["in_force"] == 2
    assert [(v["version"], v["in_force"]) for v in history["versions"]] == [(1, False), (2, True)]
    old = env.http.get(f"{URL}/versions/1", headers=env.auth("archivist")).json()
    assert old["referential"] == json.loads(shipped) and old["in_force"] is False
    assert env.http.get(f"{URL}/versions/9", headers=env.auth("archivist")).status_code == 404
    assert env.http.get(URL, headers=env.auth("admin")).json()["version"] == 2
    # Another tenant's référentiel is its own.
    assert env.http.get(URL, headers=env.auth("admin", other_tenant=True)).json()["version"] == 1

    # Applies to new computations: the units keep their rules until their dossier changes.
    kept = by_category(retention(env, root), "offres.non_retenue")
    assert kept["appraisal_end"] == "2030-03-10"
    assert post_event(env, root, "reception", "2026-06-30").status_code == 201
    now = retention(env, root)
    assert now["referential"]["version"] == 2
    recomputed = by_category(now, "offres.non_retenue")
    assert recomputed["appraisal_end"] == "2032-03-10"
    assert recomputed["appraisal"]["referential_version"] == 2
    assert recomputed["appraisal"]["label"] == "Offres non retenues : 7 ans (AD 45)"
    assert by_category(now, "dce.rc")["final_action"] == "Keep"
    # A dossier archived now gets version 2 at once.
    second = archive_works_dossier(env, tmp_path, name="second")
    assert (
        by_category(retention(env, second), "offres.non_retenue")["appraisal_end"] == "2032-03-10"
    )


run = run_cli


def test_referential_commands(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = archive_works_dossier(env, tmp_path)
    good = tmp_path / "ad45.json"
    good.write_text(json.dumps(candidate(), ensure_ascii=False, indent=1), encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(invalid()), encoding="utf-8")

    code, out = run(env, monkeypatch, "referential", "show", "--tenant", "GIP Test")
    assert code == 0, out
    assert out.startswith("version 1 (2026-11-default)")
    assert "MP-CONST-TRV-10A" in out
    code, out = run(env, monkeypatch, "referential", "show", "--tenant", "GIP Test", "--json")
    assert code == 0 and json.loads(out) == json.loads(DEFAULT.read_text("utf-8"))
    code, out = run(env, monkeypatch, "referential", "show", "--tenant", "Nobody")
    assert code == 2 and "no tenant named 'Nobody'" in out

    # Impact: exit 1 when units would change, each listed with before → after.
    code, out = run(env, monkeypatch, "referential", "impact", str(good), "--tenant", "GIP Test")
    assert code == 1, out
    assert "units in 1 dossiers would change" in out
    assert "offres.non_retenue\tappraisal_end 2030-03-10 → 2032-03-10" in out
    code, out = run(
        env, monkeypatch, "referential", "impact", str(DEFAULT), "--tenant", "GIP Test", "--json"
    )
    assert code == 0, out
    assert json.loads(out)["units_changed"] == 0

    # Replace: an invalid file is refused (exit 2, every problem printed), nothing written.
    snapshot = (versions_in_db(env), logbook_size(env))
    code, out = run(
        env,
        monkeypatch,
        "referential",
        "replace",
        str(bad),
        "--comment",
        "x",
        "--tenant",
        "GIP Test",
    )
    assert code == 2, out
    assert "terms[0].years" in out and "final_action" in out and "dce.rc" in out
    code, out = run(
        env, monkeypatch, "referential", "replace", str(tmp_path / "missing.json"),
        "--comment", "x", "--tenant", "GIP Test",
    )  # fmt: skip
    assert code == 2 and "cannot read" in out
    assert (versions_in_db(env), logbook_size(env)) == snapshot
    code, out = run(
        env, monkeypatch, "referential", "replace", str(good),
        "--comment", "visa AD 45 du 2 décembre", "--tenant", "GIP Test",
    )  # fmt: skip
    assert code == 0, out
    assert "version 2 (2026-12-ad45) in force" in out
    replaced = entries(env, "referential.replaced")
    assert replaced[-1]["actor"] == "cli" and replaced[-1]["actor_role"] == "admin"
    assert replaced[-1]["actor_name"].startswith("cli")
    assert replaced[-1]["comment"] == "visa AD 45 du 2 décembre"
    code, out = run(env, monkeypatch, "referential", "history", "--tenant", "GIP Test")
    assert code == 0
    lines = out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["1", "2"]
    assert lines[1].endswith("visa AD 45 du 2 décembre")

    # The units still have version 1's rules; recompute applies version 2 on purpose.
    assert by_category(retention(env, root), "offres.non_retenue")["appraisal_end"] == "2030-03-10"
    code, out = run(env, monkeypatch, "retention", "recompute", "--tenant", "GIP Test")
    assert code == 0, out
    assert "1 dossiers recomputed" in out
    assert by_category(retention(env, root), "offres.non_retenue")["appraisal_end"] == "2032-03-10"
    requested = entries(env, "retention.recompute_requested")
    assert requested[-1]["actor"] == "cli" and requested[-1]["dossiers"] == 1
    run_entry = [e for e in entries(env, "retention.recomputed") if e.get("trigger") == "recompute"]
    assert run_entry and run_entry[-1]["referential_version"] == 2
    # Nothing more to change: impact of the version in force is empty.
    code, out = run(env, monkeypatch, "referential", "impact", str(good), "--tenant", "GIP Test")
    assert code == 0 and "0 of" in out
