"""A foreign SEDA 2.3 transfer's management rules are applied, fail-closed, on both stacks.

The zip is generated here: an ``AccessRule`` with our id MP-ACC-SA-25A from 2020-01-01 on a
file unit (its item inherits it), a child lifting it with ``PreventInheritance``, an
``AccessRule`` with an id no référentiel here knows, and two ``AppraisalRule`` MP-DCE-5A
(5 years, Destroy): one started four years before the clock, one started today. The
archivist is refused what a délai or an unknown rule covers (403 naming the end date or
"unknown sender rule"), the producer (the platform serving the transfer's organization)
reads its own records; the old DUA becomes due when the clock passes its end; on S3 the
copies of the other are locked at least until its end; a new référentiel version changes
the délai after ``retention recompute``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any

import pytest

from archive_service.core.model import add_years
from tests.integration.conftest import Env
from tests.integration.test_communicability import nodes
from tests.integration.test_lifecycle_events import run_cli
from tests.integration.test_sip_ingest import post_zip
from tests.unit.test_sip_zipsafe import build_zip

pytestmark = pytest.mark.reference

NS = "fr:gouv:culture:archivesdefrance:seda:v2.3"


def pdf(label: str) -> bytes:
    return b"%PDF-1.4\n" + f"sender rules {label}\n".encode() * 10 + b"%%EOF\n"


FILES = {name: pdf(name) for name in ("offer", "open", "unknown", "old", "recent")}


def group(name: str) -> str:
    data = FILES[name]
    return (
        f'<DataObjectGroup id="og-{name}"><BinaryDataObject id="bdo-{name}">'
        f"<Uri>content/{name}.pdf</Uri>"
        f'<MessageDigest algorithm="SHA-256">{hashlib.sha256(data).hexdigest()}</MessageDigest>'
        f"<Size>{len(data)}</Size></BinaryDataObject></DataObjectGroup>"
    )


def item(uid: str, title: str, management: str = "", children: str = "") -> str:
    ref = (
        f"<DataObjectReference><DataObjectGroupReferenceId>og-{uid}"
        "</DataObjectGroupReferenceId></DataObjectReference>"
        if uid in FILES
        else ""
    )
    return (
        f'<ArchiveUnit id="{uid}">'
        + (f"<Management>{management}</Management>" if management else "")
        + f"<Content><DescriptionLevel>Item</DescriptionLevel><Title>{title}</Title></Content>"
        + children
        + ref
        + "</ArchiveUnit>"
    )


def appraisal(rule: str, start: date) -> str:
    return (
        f"<AppraisalRule><Rule>{rule}</Rule><StartDate>{start.isoformat()}</StartDate>"
        "<FinalAction>Destroy</FinalAction></AppraisalRule>"
    )


def manifest(today: date, message_id: str) -> bytes:
    access_25 = (
        "<AccessRule><Rule>MP-ACC-SA-25A</Rule><StartDate>2020-01-01</StartDate></AccessRule>"
    )
    units = "".join(
        [
            item(
                "file",
                "Offres reçues",
                access_25,
                item("offer", "Offre Alpha")
                + item(
                    "open",
                    "Offre Beta publiée",
                    "<AccessRule><PreventInheritance>true</PreventInheritance></AccessRule>",
                ),
            ),
            item(
                "unknown",
                "Rapport Gamma",
                "<AccessRule><Rule>AR9999</Rule><StartDate>2020-01-01</StartDate></AccessRule>",
            ),
            item("old", "Dossier Delta", appraisal("MP-DCE-5A", add_years(today, -4))),
            item("recent", "Dossier Epsilon", appraisal("MP-DCE-5A", today)),
        ]
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<ArchiveTransfer xmlns="{NS}"><Date>2026-01-02T03:04:05</Date>'
        f"<MessageIdentifier>{message_id}</MessageIdentifier><CodeListVersions/>"
        "<DataObjectPackage>"
        + "".join(group(n) for n in FILES)
        + f"<DescriptiveMetadata>{units}</DescriptiveMetadata><ManagementMetadata/>"
        "</DataObjectPackage>"
        "<ArchivalAgency><Identifier>AA</Identifier></ArchivalAgency>"
        "<TransferringAgency><Identifier>TA</Identifier></TransferringAgency>"
        "</ArchiveTransfer>"
    ).encode()


def sender_zip(today: date, message_id: str = "SENDER-RULES-1") -> bytes:
    return build_zip(
        [
            ("manifest.xml", manifest(today, message_id)),
            *((f"content/{n}.pdf", data) for n, data in FILES.items()),
        ]
    )


def archived(env: Env, blob: bytes) -> dict[str, dict[str, Any]]:
    """By title, each unit of the archived transfer: its tree node and its object."""
    r = post_zip(env, blob)
    assert r.status_code == 202, r.text
    transfer = env.wait(r.json()["id"])
    assert transfer["status"] == "accepted", transfer
    root = transfer["archive_unit_id"]
    view = env.http.get(f"/v1/archive-units/{root}", headers=env.auth("archivist"))
    assert view.status_code == 200, view.text
    objects = {o["archive_unit_id"]: o for o in view.json()["objects"]}
    return {
        n["title"]: {"unit": n, "object": objects.get(n["id"])} for n in nodes(view.json()["tree"])
    }


def read(env: Env, doc: dict[str, Any], role: str) -> Any:
    return env.http.get(doc["object"]["content_url"], headers=env.auth(role))


def rules_of(env: Env, unit_id: str) -> dict[str, Any]:
    from sqlalchemy import select

    from archive_service.db import tables as t

    with env.services.engine.connect() as conn:
        row = conn.execute(
            select(
                t.ArchiveUnit.appraisal,
                t.ArchiveUnit.access,
                t.ArchiveUnit.appraisal_end,
                t.ArchiveUnit.access_end,
                t.ArchiveUnit.content,
            ).where(t.ArchiveUnit.id == unit_id)
        ).one()
    return dict(row._mapping)


def due_ids(env: Env) -> set[str]:
    r = env.http.get("/v1/disposal-requests/due?kind=destroy", headers=env.auth("archivist"))
    assert r.status_code == 200, r.text
    return {u["id"] for u in r.json()["units"]}


def test_the_senders_rules_govern_access_and_disposal(env: Env, stack: str) -> None:
    today = env.clock.now().date()
    docs = archived(env, sender_zip(today))

    # MP-ACC-SA-25A from the sender's StartDate, inherited by the item: 2045-01-01.
    offer = docs["Offre Alpha"]
    refused = read(env, offer, "archivist")
    assert refused.status_code == 403, refused.text
    body = refused.json()
    assert body["type"] == "urn:archive-service:problem:access-restricted"
    assert body["rule_id"] == "MP-ACC-SA-25A" and body["end_date"] == "2045-01-01"
    assert body["start_date"] == "2020-01-01" and body["communicable"] is False
    assert "2045-01-01" in body["detail"]
    stored = rules_of(env, offer["unit"]["id"])
    assert stored["access_end"] == date(2045, 1, 1)
    assert stored["access"]["source"] == "sender" and stored["access"]["declared_on"] == "file"
    # The producer (the platform serving the transfer's organization) reads its own records.
    mine = read(env, offer, "platform")
    assert mine.status_code == 200 and mine.content == FILES["offer"]

    # PreventInheritance (recorded from the manifest) lifts the délai below it.
    opened = docs["Offre Beta publiée"]
    assert rules_of(env, opened["unit"]["id"])["content"]["sender_inheritance"] == {
        "AccessRule": {"prevent_inheritance": True, "ref_non_rule_ids": [], "final_action": None}
    }
    got = read(env, opened, "archivist")
    assert got.status_code == 200 and got.content == FILES["open"]

    # An id the référentiel does not know: not communicable, and the 403 says why.
    unknown = docs["Rapport Gamma"]
    refused = read(env, unknown, "archivist")
    assert refused.status_code == 403, refused.text
    assert refused.json()["reason"] == "unknown-sender-rule"
    assert "unknown sender rule AR9999" in refused.json()["detail"]
    assert refused.json()["end_date"] is None
    assert refused.json()["rule_label"] == "unknown sender rule AR9999"
    stored = rules_of(env, unknown["unit"]["id"])
    assert stored["access"]["unresolved"] is True and stored["access"]["duration_years"] is None
    assert read(env, unknown, "platform").status_code == 200

    # AppraisalRule MP-DCE-5A, Destroy: the old one is due once the clock passes its end.
    old, recent = docs["Dossier Delta"], docs["Dossier Epsilon"]
    old_end = add_years(add_years(today, -4), 5)
    assert rules_of(env, old["unit"]["id"])["appraisal_end"] == old_end
    assert rules_of(env, old["unit"]["id"])["appraisal"]["final_action"] == "Destroy"
    recent_end = add_years(today, 5)
    assert rules_of(env, recent["unit"]["id"])["appraisal_end"] == recent_end
    assert old["unit"]["id"] not in due_ids(env)
    env.clock.advance(years=1, days=2)
    due = due_ids(env)
    assert old["unit"]["id"] in due
    assert recent["unit"]["id"] not in due and offer["unit"]["id"] not in due
    view = env.http.get(
        f"/v1/archive-units/{old['unit']['id']}/retention", headers=env.auth("archivist")
    )
    assert view.status_code == 200, view.text
    shown = {u["id"]: u for u in view.json()["units"]}
    assert shown[old["unit"]["id"]]["due"] is True
    assert shown[old["unit"]["id"]]["final_action"] == "Destroy"
    assert shown[recent["unit"]["id"]]["appraisal_end"] == recent_end.isoformat()

    if stack == "production":
        # The copies of the recent unit's object are locked at least until its DUA's end
        # (read back with the S3 API); an object without a dated DUA keeps the offer's minimum.
        wanted = datetime.combine(recent_end, datetime.min.time(), tzinfo=UTC)
        assert all(until >= wanted for until in retained(env, recent["object"]["id"]))
        assert all(until < wanted for until in retained(env, offer["object"]["id"]))


def retained(env: Env, object_id: str) -> list[datetime]:
    """The S3 retain-until date of every copy of an object, on every offer."""
    from tests.integration.test_s3 import raw_client

    out = []
    for spec in env.settings.storage_offers:
        client = raw_client(spec["endpoint_url"])
        versions = client.list_object_versions(Bucket=spec["bucket"]).get("Versions", [])
        for version in versions:
            if not version["Key"].endswith(f"/content/{object_id}"):
                continue
            retention = client.get_object_retention(
                Bucket=spec["bucket"], Key=version["Key"], VersionId=version["VersionId"]
            )["Retention"]
            assert retention["Mode"] == "COMPLIANCE"
            out.append(retention["RetainUntilDate"])
    assert len(out) == len(env.settings.storage_offers), out
    return out


def test_a_new_referential_version_resolves_the_senders_rules_again(
    env: Env, monkeypatch: pytest.MonkeyPatch, stack: str
) -> None:
    today = env.clock.now().date()
    docs = archived(env, sender_zip(today, "SENDER-RULES-2"))
    offer = docs["Offre Alpha"]
    assert rules_of(env, offer["unit"]["id"])["access_end"] == date(2045, 1, 1)

    shipped = resources.files("archive_service.data").joinpath("retention_referential.json")
    text = json.loads(shipped.read_text(encoding="utf-8"))
    text["version"] = "2026-12-sa30"
    text["access_rules"]["MP-ACC-SA-25A"]["years"] = 30
    text["appraisal_rules"]["MP-DCE-5A"]["terms"][0]["years"] = 7
    r = env.http.put(
        "/v1/referentials/retention",
        content=json.dumps(text),
        headers={**env.auth("admin"), "X-Comment": "secret des affaires 30 ans (test)"},
    )
    assert r.status_code == 201, r.text
    # A new version applies to new computations only: nothing moved yet.
    assert rules_of(env, offer["unit"]["id"])["access_end"] == date(2045, 1, 1)

    code, out = run_cli(env, monkeypatch, "retention", "recompute", "--tenant", "GIP Test")
    assert code == 0, out
    stored = rules_of(env, offer["unit"]["id"])
    assert stored["access_end"] == date(2050, 1, 1)
    assert stored["access"]["duration_years"] == 30
    assert stored["access"]["referential"] == "2026-12-sa30"
    refused = read(env, offer, "archivist")
    assert refused.status_code == 403 and refused.json()["end_date"] == "2050-01-01"
    # The unknown rule stays unknown; the DUA follows the new duration, and so do the locks.
    assert rules_of(env, docs["Rapport Gamma"]["unit"]["id"])["access"]["unresolved"] is True
    recent = docs["Dossier Epsilon"]
    assert rules_of(env, recent["unit"]["id"])["appraisal_end"] == add_years(today, 7)
    if stack == "production":
        wanted = datetime.combine(add_years(today, 7), datetime.min.time(), tzinfo=UTC)
        assert all(until >= wanted for until in retained(env, recent["object"]["id"]))
