"""Events extend Object Lock on the real S3 server (two Ceph RGW gateways), never shorten it,
and a lock extension that an offer refuses stays pending until ``retention relock``.

Retention is read back with the S3 API itself (``get_object_retention``), not through the
service's own adapter.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from archive_service.db import tables as t
from archive_service.errors import Unavailable
from tests.integration.conftest import Env, only_stack
from tests.integration.test_lifecycle_events import (
    add_avenant,
    archive_works_dossier,
    by_category,
    entries,
    post_event,
    retention,
    run_cli,
)
from tests.integration.test_s3 import raw_client

RECEPTION = date(2026, 6, 30)
SOLDE = date(2026, 9, 15)
END = datetime(2036, 9, 15, tzinfo=UTC)


def locks(env: Env, root: str) -> dict[tuple[str, str], tuple[str, datetime]]:
    """(offer, key) → (what the copy is, its S3 retain-until date) for every copy of the
    dossier: ``object:<category>``, ``manifest`` or ``timestamp``."""
    specs = {s["name"]: s for s in env.settings.storage_offers}
    with env.services.engine.connect() as conn:
        rows = conn.execute(
            select(
                t.StoredCopy.offer,
                t.StoredCopy.key,
                t.StoredCopy.version_id,
                t.StoredCopy.kind,
                t.ArchiveUnit.category,
            )
            .join(t.Package, t.Package.id == t.StoredCopy.package_id)
            .outerjoin(t.DataObject, t.DataObject.storage_key == t.StoredCopy.key)
            .outerjoin(t.ArchiveUnit, t.ArchiveUnit.id == t.DataObject.archive_unit_id)
            .where(t.Package.root_unit_id == root)
        ).all()
    out = {}
    for offer, key, version, kind, category in rows:
        spec = specs[offer]
        found = raw_client(spec["endpoint_url"]).get_object_retention(
            Bucket=spec["bucket"], Key=key, VersionId=version
        )["Retention"]
        assert found["Mode"] == "COMPLIANCE"
        what = f"object:{category}" if kind == "object" else kind
        out[(offer, key)] = (what, found["RetainUntilDate"])
    assert {o for o, _ in out} == set(specs)
    return out


def of(found: dict[tuple[str, str], tuple[str, datetime]], what: str) -> dict[str, datetime]:
    return {f"{offer}:{key}": until for (offer, key), (w, until) in found.items() if w == what}


@only_stack("production")
def test_reception_and_solde_extend_object_lock_and_nothing_shortens_it(
    env: Env, tmp_path: Path
) -> None:
    root = archive_works_dossier(env, tmp_path)
    initial = locks(env, root)
    contract = of(initial, "object:attribution.acte_engagement")
    assert len(contract) == 2
    # Pending at ingest: only the offers' minimum (one day on the test server).
    assert all(until < datetime.now(UTC) + timedelta(days=3) for until in contract.values())
    offer_pieces = of(initial, "object:offres.non_retenue")
    assert all(until == datetime(2030, 3, 10, tzinfo=UTC) for until in offer_pieces.values())

    assert post_event(env, root, "reception", RECEPTION).json()["locks"]["status"] == "unchanged"
    r = post_event(env, root, "paiement_solde", SOLDE)
    assert r.status_code == 201, r.text
    report = r.json()["locks"]
    assert report["status"] == "done" and report["failed"] == {}
    assert set(report["extended"]) == {"ceph-a", "ceph-b"}

    extended = locks(env, root)
    for category in (
        "attribution.acte_engagement",
        "execution.ordre_service",
        "offres.retenue",
        "candidatures.retenue",
    ):
        found = of(extended, f"object:{category}")
        assert found and all(until == END for until in found.values()), (category, found)
    # Manifest and token: the package's latest end.
    for what in ("manifest", "timestamp"):
        assert all(until == END for until in of(extended, what).values())
    # Pieces whose end did not move keep their lock as it was.
    assert of(extended, "object:offres.non_retenue") == offer_pieces
    assert of(extended, "object:dce.rc") == of(initial, "object:dce.rc")

    # A correction to an earlier solde moves the due date back in the database; the locks
    # never go back.
    earlier = post_event(
        env, root, "paiement_solde", SOLDE - timedelta(days=14), correction=True, reason="erreur"
    )
    assert earlier.status_code == 201, earlier.text
    body = retention(env, root)
    assert by_category(body, "attribution.acte_engagement")["appraisal_end"] == "2036-09-01"
    assert locks(env, root) == extended
    logged = entries(env, "retention.locks_extended")
    assert logged and logged[-1]["subject"] == root
    assert set(logged[0]["extended"]) == {"ceph-a", "ceph-b"}


cli = run_cli


@only_stack("production")
def test_an_offer_that_fails_leaves_the_lock_pending_until_relock(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = archive_works_dossier(env, tmp_path)
    second = next(o for o in env.services.offers if o.name == "ceph-b")

    def down(key: str, **_: Any) -> datetime:
        raise Unavailable(f"offer ceph-b: cannot reach the S3 endpoint to lock {key}")

    monkeypatch.setattr(second, "lock", down)
    assert post_event(env, root, "reception", RECEPTION).status_code == 201
    r = post_event(env, root, "paiement_solde", SOLDE)
    # The event is a fact: recorded, and the rules follow it, whatever the offers say.
    assert r.status_code == 201, r.text
    report = r.json()["locks"]
    assert report["status"] == "pending"
    assert set(report["failed"]) == {"ceph-b"} and set(report["extended"]) == {"ceph-a"}
    body = retention(env, root)
    assert by_category(body, "attribution.acte_engagement")["appraisal_end"] == "2036-09-15"
    assert body["due"]["lock_pending"] is True
    half = of(locks(env, root), "object:attribution.acte_engagement")
    assert {k.split(":")[0]: v == END for k, v in half.items()} == {
        "ceph-a": True,
        "ceph-b": False,
    }
    pending = entries(env, "retention.locks_pending")
    assert pending[-1]["outcome"] == "FAILED" and "ceph-b" in pending[-1]["failed"]

    # Still down: a relock leaves it pending (and says so).
    admin = env.services.tenancy.authenticate(env.keys["admin"])
    [again] = env.services.lifecycle.relock(admin)
    assert again.root_id == root and again.locks.status == "pending"
    assert retention(env, root)["due"]["lock_pending"] is True

    # The offer is back: the operator's relock (a new process, its own offers) locks every
    # copy of the dossier and clears the mark.
    monkeypatch.delattr(second, "lock")
    code, out = cli(env, monkeypatch, "retention", "relock", "--tenant", "GIP Test")
    assert code == 0, out
    assert "1 dossiers relocked, 0 with locks pending" in out
    after = locks(env, root)
    for category in ("attribution.acte_engagement", "execution.ordre_service"):
        assert all(until == END for until in of(after, f"object:{category}").values())
    assert all(until == END for until in of(after, "manifest").values())
    assert retention(env, root)["due"]["lock_pending"] is False
    # Nothing left to do.
    code, out = cli(env, monkeypatch, "retention", "relock", "--tenant", "GIP Test")
    assert code == 0 and "0 dossiers relocked" in out


@only_stack("production")
def test_a_later_package_is_locked_until_the_end_the_dossier_events_give(
    env: Env, tmp_path: Path
) -> None:
    root = archive_works_dossier(env, tmp_path)
    assert post_event(env, root, "reception", RECEPTION).status_code == 201
    assert post_event(env, root, "paiement_solde", SOLDE).status_code == 201
    add_avenant(env, tmp_path, root)
    found = locks(env, root)
    avenant = of(found, "object:execution.avenant")
    assert len(avenant) == 2 and all(until == END for until in avenant.values())
    # Both packages' manifests and tokens: their package's latest end.
    assert len(of(found, "manifest")) == 4
    assert all(until == END for until in of(found, "manifest").values())
    assert all(until == END for until in of(found, "timestamp").values())
