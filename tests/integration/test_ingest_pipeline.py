"""The archiving job's outcomes beyond the happy path: a rejection after acknowledgement, a
dependency that is down then back, and the logbook each leaves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lxml import etree
from sqlalchemy import select

from archive_service.db import tables as t
from archive_service.errors import Issue, SedaInvalid, Unavailable
from tests.fixtures.dossier import make_dossier
from tests.integration.conftest import Env, quick_retries, stored_keys, stored_objects
from tests.reference import official_schema

NS = {"s": "fr:gouv:culture:archivesdefrance:seda:v2.3"}


def logbook(env: Env, subject_id: str | None = None) -> list[tuple[str, str, str]]:
    with env.services.engine.connect() as conn:
        stmt = select(t.LogbookEntry.event_type, t.LogbookEntry.outcome, t.LogbookEntry.subject_id)
        if subject_id:
            stmt = stmt.where(t.LogbookEntry.subject_id == subject_id)
        return [tuple(r) for r in conn.execute(stmt.order_by(t.LogbookEntry.id))]


class RefusingValidator:
    def validate(self, xml: bytes) -> None:
        raise SedaInvalid(
            "manifest refused",
            issues=[Issue("seda-profile-invalid", "refused for the test", "line 1")],
        )


def test_rejection_after_acknowledgement_leaves_nothing_stored(env: Env, tmp_path: Path) -> None:
    env.services.ingest._validator = RefusingValidator()  # type: ignore[assignment]
    metadata, _ = make_dossier(tmp_path / "d")
    r = env.post_transfer(metadata, tmp_path / "d")
    assert r.status_code == 202
    transfer_id = r.json()["id"]
    done = env.wait(transfer_id)
    assert done["status"] == "rejected"
    assert done["reasons"] == [
        {"code": "seda-profile-invalid", "message": "refused for the test", "location": "line 1"}
    ]
    assert done["archive_unit_id"] is None
    # Nothing stored, nothing staged, and the logbook tells what happened to the transfer.
    assert stored_objects(env.services) == set()
    staging = env.settings.resolved_staging_dir
    assert [p for p in staging.iterdir()] == []
    events = [e[0] for e in logbook(env, transfer_id)]
    assert events == ["transfer.received", "transfer.rejected"]
    assert not any(e[0].endswith(".stored") for e in logbook(env))
    # The reply is a KO ArchiveTransferReply with the reason, valid against the official XSD.
    r = env.http.get(f"/v1/transfers/{transfer_id}/reply", headers=env.auth())
    reply = etree.fromstring(r.content)
    assert official_schema("2.3").validate(reply)
    assert reply.findtext("s:ReplyCode", namespaces=NS) == "KO"
    assert "refused for the test" in r.text


class FlakyTsa:
    """The real TSA behind a switch: unreachable for the first ``failures`` calls."""

    def __init__(self, real: Any, failures: int) -> None:
        self.real = real
        self.failures = failures
        self.calls = 0

    def timestamp(self, data_digest: bytes, *, hash_algorithm: str = "sha256") -> bytes:
        self.calls += 1
        if self.calls <= self.failures:
            raise Unavailable("TSA unreachable (test)")
        return self.real.timestamp(data_digest, hash_algorithm=hash_algorithm)

    def certificate_chain_pem(self) -> bytes:
        return self.real.certificate_chain_pem()


def test_unavailable_tsa_makes_the_transfer_wait_then_complete_once(
    env: Env, tmp_path: Path
) -> None:
    flaky = FlakyTsa(env.services.tsa, failures=2)
    env.services.ingest._tsa = flaky  # type: ignore[assignment]
    quick_retries(env.services)
    metadata, _ = make_dossier(tmp_path / "d")
    r = env.post_transfer(metadata, tmp_path / "d")
    transfer_id = r.json()["id"]
    done = env.wait(transfer_id)
    assert done["status"] == "accepted", done
    assert flaky.calls == 3
    # One package, each object stored once, even though two attempts ran before.
    with env.services.engine.connect() as conn:
        packages = conn.execute(select(t.Package.id)).all()
        copies = conn.execute(select(t.StoredCopy.offer, t.StoredCopy.key)).all()
    assert len(packages) == 1
    per_offer = len(metadata["files"]) + 1 + 2  # + decp, manifest, token
    assert len(copies) == len(set(copies)) == per_offer * len(env.services.offers)
    # Every copy is where the database says, and nothing else is anywhere (no orphan).
    assert {(offer, key) for offer, key in copies} == stored_keys(env.services)
    assert len(stored_objects(env.services)) == len(copies)
    events = [e[0] for e in logbook(env)]
    assert events.count("transfer.accepted") == 1
    offers = len(env.services.offers)  # one entry per copy
    assert events.count("object.stored") == (len(metadata["files"]) + 1) * offers
    assert events.count("manifest.stored") == events.count("timestamp.stored") == offers


def test_waiting_transfer_says_why(env: Env, tmp_path: Path) -> None:
    flaky = FlakyTsa(env.services.tsa, failures=10**6)
    env.services.ingest._tsa = flaky  # type: ignore[assignment]
    metadata, _ = make_dossier(tmp_path / "d")
    r = env.post_transfer(metadata, tmp_path / "d")
    transfer_id = r.json()["id"]
    body = env.poll(transfer_id, lambda b: bool(b["reasons"]))
    assert flaky.calls >= 1
    assert body["status"] == "processing"
    assert body["reasons"][0]["code"] == "unavailable"
    assert "TSA unreachable" in body["reasons"][0]["message"]
    # The token comes before any write: nothing is in storage while it waits.
    assert stored_objects(env.services) == set()
