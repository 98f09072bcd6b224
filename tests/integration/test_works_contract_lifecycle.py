"""A works contract through ten years, as issue 5 tells it, with the clock moved by hand.

Archived in April 2019, a few weeks after its notification. Five years later the unsuccessful
offer and the other passation pieces are due: proposed, approved by someone else than the
proposer, blocked by a hold placed meanwhile, destroyed on every offer once it is lifted,
with a signed certificate, while the contract pieces stay. The réception and the final
payment, recorded afterwards, date the contract pieces and extend their Object Lock on every
S3 copy (read back with ``get_object_retention``). An execution document added later does
not bring the destroyed titles back into search.

The event dates are in the real past: the S3 offers' retention, which runs on the S3
server's clock, lapses in real time (a floor of a few seconds), as it would after years.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest

from archive_service.config import Settings
from tests.integration.conftest import Env, open_env, s3_offers, stored_keys, stored_objects
from tests.integration.test_disposal import (
    DESTROY_CATEGORIES,
    FLOOR_SECONDS,
    ingest,
    object_keys,
    post_visa,
    raw_s3,
    tenant_of,
    units,
    wait_locks_lapsed,
)
from tests.integration.test_growing_dossiers import addition

#: Words only the titles of destroyed documents hold (the rejection letter, the DCE's
#: règlement, the BOAMP notice): the dossier is found by them until the destruction only.
GONE_WORDS = ("NOTI3", "Règlement", "BOAMP")


@pytest.fixture
def works_env(settings: Settings) -> Iterator[Env]:
    if settings.storage_offers:
        settings = settings.model_copy(
            update={"storage_offers": s3_offers(min_retention_seconds=FLOOR_SECONDS)}
        )
    with open_env(settings) as env:
        yield env


def due(env: Env, kind: str = "destroy") -> dict[str, Any]:
    r = env.http.get(f"/v1/disposal-requests/due?kind={kind}", headers=env.auth("archivist"))
    assert r.status_code == 200, r.text
    return {u["id"]: u for u in r.json()["units"]}


def search(env: Env, words: str) -> list[str]:
    r = env.http.get(f"/v1/archive-units?q={words}", headers=env.auth("archivist"))
    assert r.status_code == 200, r.text
    return [u["id"] for u in r.json()["items"]]


def s3_retention(env: Env, root: str, keys: set[str]) -> dict[tuple[str, str], datetime]:
    """The retain-until date S3 reports for the recorded version of each copy of ``keys``."""
    tenant = tenant_of(env)
    stores = {store.name: store for store in raw_s3(env)}
    out: dict[tuple[str, str], datetime] = {}
    with env.services.ingest._uow() as uow:
        packages = {u.package_id for u in uow.archive.units_of_root(tenant, root)}
        copies = [c for p in packages for c in uow.archive.copies_of_package(tenant, p)]
    for copy in copies:
        store = stores.get(copy.offer)
        if store is None or copy.key not in keys:
            continue
        got = store._s3.get_object_retention(
            Bucket=store.bucket, Key=copy.key, VersionId=copy.version_id
        )
        out[(copy.offer, copy.key)] = got["Retention"]["RetainUntilDate"]
    return out


def test_a_works_contract_over_ten_years(works_env: Env, tmp_path: Path) -> None:
    env = works_env
    env.clock.set(datetime(2019, 4, 1, 9, 0, tzinfo=UTC))
    root = ingest(env, tmp_path, seed=11, notification="2019-03-15", message="TRV-2019-11")
    family = units(env, root)
    by_category = {u.category: u for u in family if u.category}
    offer = by_category["offres.non_retenue"]
    contract = by_category["attribution.acte_engagement"]
    assert offer.appraisal is not None and offer.appraisal["end_date"] == "2024-03-15"
    assert contract.appraisal is not None and contract.appraisal["pending"] is True

    # April 2019: nothing is due.
    assert due(env) == {}

    # Five years on: the unsuccessful offer and the other passation pieces are due, the
    # contract pieces wait for the final payment.
    env.clock.advance(years=5)
    now_due = due(env)
    assert {u["category"] for u in now_due.values() if u["level"] == "Item"} == (DESTROY_CATEGORIES)
    assert offer.id in now_due and contract.id not in now_due

    r = env.http.post(
        "/v1/disposal-requests",
        json={"kind": "destroy", "comment": "DUA de 5 ans échue (R2184-12)"},
        headers=env.auth("archivist"),
    )
    assert r.status_code == 201, r.text
    request = r.json()
    assert offer.id in request["unit_ids"] and contract.id not in request["unit_ids"]
    assert set(request["documents"]) >= {"request.xml", "bordereau.pdf", "bordereau.csv"}
    # The proposer cannot approve alone; the visa of the Archives départementales is
    # recorded by the admin.
    assert (
        post_visa(env, request["id"], "archivist", decision="approved", reference="x").status_code
        == 403
    )
    r = post_visa(env, request["id"], "admin", decision="approved", reference="AD-2024-0412")
    assert r.status_code == 200, r.text

    # A recours is filed before the execution: the hold on the dossier blocks it.
    r = env.http.post(
        f"/v1/archive-units/{root}/holds",
        json={"reason": "Recours indemnitaire d'un candidat évincé", "reference": "TA 2401871"},
        headers=env.auth("archivist"),
    )
    assert r.status_code == 201, r.text
    hold = r.json()["id"]
    before = stored_objects(env.services)
    r = env.http.post(f"/v1/disposal-requests/{request['id']}/execute", headers=env.auth("admin"))
    assert r.status_code == 409, r.text
    assert any(b["kind"] == "hold" for b in r.json()["blocking"])
    assert stored_objects(env.services) == before
    assert (
        env.http.get(f"/v1/objects/{object_id(env, offer.id)}/content", headers=env.auth())
    ).status_code == 200

    # The recours is rejected: the hold is lifted and the destruction goes ahead.
    r = env.http.post(
        f"/v1/holds/{hold}/lift", json={"reason": "Requête rejetée"}, headers=env.auth("admin")
    )
    assert r.status_code == 200, r.text
    for word in GONE_WORDS:
        assert search(env, word) == [root], word
    wait_locks_lapsed(env, root)
    destroyed_keys = object_keys(env, set(request["unit_ids"]))
    kept_keys = object_keys(env, {contract.id})
    r = env.http.post(f"/v1/disposal-requests/{request['id']}/execute", headers=env.auth("admin"))
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "executed" and done["certificate"]["signature"]["signature"]
    certificate = env.http.get(
        f"/v1/disposal-requests/{request['id']}/documents/certificate.xml",
        headers=env.auth("auditor"),
    )
    assert certificate.status_code == 200 and b"AD-2024-0412" in certificate.content
    env.services.validator.validate(certificate.content, profile=False)
    # Destroyed on every offer (no version, no delete marker left); the contract stays.
    left = {entry.split("@", 1)[0] for _, entry in stored_objects(env.services)}
    assert not left & destroyed_keys
    remaining = set(stored_keys(env.services))
    for store in env.services.offers:
        assert kept_keys <= {k for o, k in remaining if o == store.name}, store.name
    gone = env.http.get(f"/v1/objects/{object_id(env, offer.id)}/content", headers=env.auth())
    assert gone.status_code == 410 and "AD-2024-0412" in gone.text
    assert (
        env.http.get(
            f"/v1/objects/{object_id(env, contract.id)}/content", headers=env.auth()
        ).status_code
        == 200
    )

    # Later: réception then final payment. The contract pieces get their end date (10 years
    # from the solde, longer than 10 years from the réception), and every S3 copy of them is
    # locked to it.
    for event, day in (("reception", "2024-01-22"), ("paiement_solde", "2024-03-28")):
        r = env.http.post(
            f"/v1/archive-units/{contract.id}/events",
            json={"event": event, "date": day, "reference": f"{event}-TRV-2019-11"},
            headers=env.auth("archivist"),
        )
        assert r.status_code == 201, r.text
    # The réception alone moved nothing later (the contract pieces wait for the solde); the
    # solde extended the locks on both S3 offers.
    locks = r.json()["locks"]
    if raw_s3(env):
        assert locks["status"] == "done" and set(locks["extended"]) == {
            o.name for o in env.services.offers
        }, locks
    retention = env.http.get(
        f"/v1/archive-units/{root}/retention", headers=env.auth("archivist")
    ).json()
    ends = {u["id"]: u["appraisal_end"] for u in retention["units"]}
    assert ends[contract.id] == "2034-03-28"
    expected = datetime.combine(date(2034, 3, 28), time.min, tzinfo=UTC)
    if raw_s3(env):
        locked = s3_retention(env, root, kept_keys)
        assert len(locked) == 2 * len(kept_keys)  # both offers
        assert all(until >= expected for until in locked.values()), locked
    # Ten years after the réception the contract pieces are still not due.
    env.clock.set(datetime(2034, 1, 23, 9, 0, tzinfo=UTC))
    assert contract.id not in due(env) and contract.id not in due(env, "transfer")

    # An avenant's file arrives late (filed with the dossier): the destroyed titles do not
    # come back into search.
    meta, files = addition(
        tmp_path, root, "late", [("8-Execution/avenant-1.pdf", "execution.avenant", "Avenant 1")]
    )
    r = env.post_transfer(meta, files)
    assert r.status_code == 202, r.text
    assert env.wait(r.json()["id"])["status"] == "accepted"
    assert search(env, "Avenant") == [root]
    for word in GONE_WORDS:
        assert root not in search(env, word), word


def object_id(env: Env, unit_id: str) -> str:
    tenant = tenant_of(env)
    with env.services.ingest._uow() as uow:
        unit = uow.archive.get_unit(tenant, unit_id)
        assert unit is not None
        return next(
            o.id
            for o in uow.archive.objects_of_root(tenant, unit.root_id)
            if o.archive_unit_id == unit_id
        )
