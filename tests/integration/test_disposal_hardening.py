"""Disposal steps that fail change nothing, and proposals made at the same moment never
share a unit (issue 5 review), on both stacks (production: two Ceph S3 offers, Object Lock).

* Every document a step writes (the proposal's SEDA request, PDF and CSV; the visa reply;
  the archives' transfer reply; the certificate with its signatures and tokens) is written
  unlocked, recorded by the step's commit, and only then locked. A commit that fails leaves
  no object behind, no version, no delete marker (``stored_objects``), no row and no
  logbook entry; the step run again succeeds and its documents are locked.
* The transfer zip is handed out only once its export is recorded: a failed record leaves
  no zip in the work directory.
* Two proposals posted at once: each unit goes to exactly one open request; the loser gets
  409 and its documents are removed. Disjoint selections both succeed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from archive_service.core.model import ReplyCode, TransferReplyInput
from archive_service.core.seda.lifecycle import build_authorization_reply
from archive_service.core.seda.reply import build_transfer_reply
from archive_service.db import tables as t
from archive_service.errors import Unavailable
from archive_service.services.disposal import DisposalService
from tests.integration.conftest import Env, stored_objects
from tests.integration.test_disposal import (
    disposal_env,  # noqa: F401  (the fixture: S3 offers with a short lock floor)
    ingest,
    raw_s3,
    tenant_of,
    units,
    wait_locks_lapsed,
)
from tests.integration.test_logbook_coverage import entries_since, last_id


class _LoggingProxy:
    """``uow.logbook`` that remembers the event types appended in the transaction."""

    def __init__(self, inner: Any, seen: list[str]) -> None:
        self._inner = inner
        self._seen = seen

    def append(self, event: Any) -> Any:
        self._seen.append(event.event_type)
        return self._inner.append(event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _FailingUow:
    """A real unit of work whose commit fails (as a database refusing it would) when the
    transaction appended one of ``fail_on``: everything before it ran for real."""

    def __init__(self, inner: Any, fail_on: set[str], failures: list[str]) -> None:
        self._inner = inner
        self._fail_on = fail_on
        self._failures = failures
        self._seen: list[str] = []

    def __enter__(self) -> _FailingUow:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.__exit__(*exc)

    @property
    def logbook(self) -> Any:
        return _LoggingProxy(self._inner.logbook, self._seen)

    def commit(self) -> None:
        hit = self._fail_on.intersection(self._seen)
        if hit:
            self._failures.extend(sorted(hit))
            raise Unavailable("the database refused the commit (test)")
        self._inner.commit()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextmanager
def commits_failing(env: Env, *events: str) -> Iterator[list[str]]:
    """While inside, the disposal service's commits that would log one of ``events`` fail;
    yields the events whose commit failed (to check the failure really happened)."""
    service: DisposalService = env.services.disposal
    real: Callable[[], Any] = service._uow
    failures: list[str] = []
    service._uow = lambda: _FailingUow(real(), set(events), failures)  # type: ignore[method-assign]
    try:
        yield failures
    finally:
        service._uow = real  # type: ignore[method-assign]


def request_rows(env: Env) -> int:
    with env.services.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(t.DisposalRequest)) or 0)


def disposal_entries(env: Env, mark: int) -> list[str]:
    return [
        e["event_type"]
        for e in entries_since(env, mark)
        if str(e["event_type"]).startswith(("disposal.", "archive_unit."))
    ]


@contextmanager
def nothing_changes(env: Env) -> Iterator[None]:
    """The block must leave every offer, the requests table and the logbook as they were."""
    objects, rows, mark = stored_objects(env.services), request_rows(env), last_id(env)
    yield
    assert stored_objects(env.services) == objects
    assert request_rows(env) == rows
    assert disposal_entries(env, mark) == []


def assert_documents_locked(env: Env, request_id: str, names: set[str]) -> None:
    """Every copy of ``names`` is recorded and served; on S3 each is locked (COMPLIANCE,
    retained beyond now): the lock came after the commit, not never."""
    caller = env.services.tenancy.authenticate(env.keys["auditor"])
    request = env.services.disposal.get(caller, request_id)
    assert names <= set(request.documents)
    stores = {s.name: s for s in raw_s3(env)}
    offers = {o.name for o in env.services.offers}
    now = datetime.now(UTC)
    for name in names:
        doc = request.documents[name]
        assert {c["offer"] for c in doc["copies"]} == offers
        r = env.http.get(
            f"/v1/disposal-requests/{request_id}/documents/{name}", headers=env.auth("auditor")
        )
        assert r.status_code == 200, r.text
        for copy in doc["copies"]:
            store = stores.get(copy["offer"])
            if store is None:
                continue
            retention = store.retention(doc["key"], version_id=copy["version_id"])
            assert retention is not None and retention.mode == "COMPLIANCE", (name, retention)
            assert retention.retain_until is not None and retention.retain_until > now


def propose(env: Env, **body: Any) -> Any:
    return env.http.post(
        "/v1/disposal-requests", json={"kind": "destroy", **body}, headers=env.auth("archivist")
    )


def visa_reply(env: Env, request_id: str, reference: str) -> Any:
    reply = build_authorization_reply(request_id, "OK", reference, datetime.now(UTC))
    return env.http.post(
        f"/v1/disposal-requests/{request_id}/visa",
        content=reply,
        headers={**env.auth("admin"), "Content-Type": "application/xml"},
    )


def test_failed_commits_of_proposal_visa_and_certificate_leave_no_object(
    disposal_env: Env,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = disposal_env
    root = ingest(env, tmp_path, seed=21, notification="2015-02-01", message="HRD-2015-1")

    # The proposal: its three documents were written, then the commit failed.
    with nothing_changes(env), commits_failing(env, "disposal.proposed") as failed:
        r = propose(env, comment="DUA échue")
        assert r.status_code == 503, r.text
        assert failed == ["disposal.proposed"]
    r = propose(env, comment="DUA échue")
    assert r.status_code == 201, r.text
    request_id = r.json()["id"]
    assert_documents_locked(env, request_id, {"request.xml", "bordereau.pdf", "bordereau.csv"})

    # The visa as the authority's reply: the reply document goes with the failed commit.
    with nothing_changes(env), commits_failing(env, "disposal.visa_recorded") as failed:
        assert visa_reply(env, request_id, "AD45-HRD-1").status_code == 503
        assert failed == ["disposal.visa_recorded"]
    state = env.http.get(f"/v1/disposal-requests/{request_id}", headers=env.auth("admin")).json()
    assert state["status"] == "proposed" and "visa-reply.xml" not in state["documents"]
    r = visa_reply(env, request_id, "AD45-HRD-1")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    assert_documents_locked(env, request_id, {"visa-reply.xml", "request.xml"})

    # The execution purges and records the destruction; the certificate's commit fails:
    # none of its seven documents stays on any offer, and running execute again issues it.
    wait_locks_lapsed(env, root)
    prefix = f"tenants/{tenant_of(env)}/disposal/{request_id}/"
    before = {e for e in stored_objects(env.services) if e[1].startswith(prefix)}
    with commits_failing(env, "disposal.certificate_issued") as failed:
        r = env.http.post(f"/v1/disposal-requests/{request_id}/execute", headers=env.auth("admin"))
        assert r.status_code == 503, r.text
        assert failed == ["disposal.certificate_issued"]
    after = {e for e in stored_objects(env.services) if e[1].startswith(prefix)}
    assert after == before
    state = env.http.get(f"/v1/disposal-requests/{request_id}", headers=env.auth("admin")).json()
    assert state["status"] == "executed" and state["certificate"] is None
    assert not any(n.startswith("certificate") for n in state["documents"])
    mark = last_id(env)
    r = env.http.post(f"/v1/disposal-requests/{request_id}/execute", headers=env.auth("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["certificate"]["message_identifier"] == f"{request_id}-ADN"
    assert disposal_entries(env, mark) == ["disposal.certificate_issued"]
    certificate = {
        "certificate.xml",
        "certificate.xml.sig",
        "certificate.xml.tsr",
        "certificate.pdf",
        "certificate.pdf.sig",
        "certificate.pdf.tsr",
        "signing-key.pem",
    }
    assert_documents_locked(env, request_id, certificate | {"request.xml"})
    assert all(u.status == "destroyed" for u in units(env, root) if u.id in r.json()["unit_ids"])


def test_failed_records_of_a_transfer_leave_no_zip_and_no_reply(
    disposal_env: Env,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = disposal_env
    ingest(env, tmp_path, seed=22, notification="2015-05-01", message="HRD-2015-2")
    r = env.http.post(
        "/v1/disposal-requests", json={"kind": "transfer"}, headers=env.auth("archivist")
    )
    assert r.status_code == 201, r.text
    request_id = r.json()["id"]
    assert visa_reply(env, request_id, "AD45-HRD-T").status_code == 200
    work_dir: Path = env.services.export._work_dir

    def zips() -> set[str]:
        return {p.name for p in work_dir.glob("*.zip")} if work_dir.exists() else set()

    url = f"/v1/disposal-requests/{request_id}"
    zips_before = zips()
    with nothing_changes(env), commits_failing(env, "disposal.transfer_exported") as failed:
        r = env.http.get(f"{url}/transfer.zip", headers=env.auth("archivist"))
        assert r.status_code == 503, r.text
        assert failed == ["disposal.transfer_exported"]
    assert zips() == zips_before
    assert env.http.get(url, headers=env.auth("admin")).json()["transfer"] is None
    r = env.http.get(f"{url}/transfer.zip", headers=env.auth("archivist"))
    assert r.status_code == 200 and r.content[:2] == b"PK"
    assert env.http.get(url, headers=env.auth("admin")).json()["transfer"]["exported_at"]

    reply = build_transfer_reply(
        TransferReplyInput(
            message_identifier="AD45-ATR-HRD",
            message_request_identifier=f"{request_id}-AT",
            date=datetime.now(UTC),
            reply_code=ReplyCode.OK,
            archival_agency="AD45",
            transferring_agency="GIP",
        )
    )
    headers = {**env.auth("archivist"), "Content-Type": "application/xml"}
    with nothing_changes(env), commits_failing(env, "disposal.transfer_reply_recorded") as failed:
        r = env.http.post(f"{url}/reply", content=reply, headers=headers)
        assert r.status_code == 503, r.text
        assert failed == ["disposal.transfer_reply_recorded"]
    assert env.http.get(url, headers=env.auth("admin")).json()["status"] == "approved"
    r = env.http.post(f"{url}/reply", content=reply, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "accepted-by-archives"
    assert_documents_locked(env, request_id, {"transfer-reply.xml", "visa-reply.xml"})


@contextmanager
def proposals_meet(env: Env, parties: int = 2) -> Iterator[None]:
    """Hold every proposal, once it has read its candidates and built its request, until
    ``parties`` proposals got there: they all chose their units before any committed."""
    service: DisposalService = env.services.disposal
    barrier = threading.Barrier(parties, timeout=60)
    real = service._validate

    def validate(xml: bytes) -> bool:
        validated = real(xml)
        barrier.wait()
        return validated

    service._validate = validate  # type: ignore[method-assign]
    try:
        yield
    finally:
        service._validate = real  # type: ignore[method-assign]


def open_units(env: Env) -> list[str]:
    """Every unit of every open request, once per request that holds it."""
    r = env.http.get("/v1/disposal-requests", headers=env.auth("auditor"))
    assert r.status_code == 200, r.text
    return [
        u
        for req in r.json()["requests"]
        if req["status"] in ("proposed", "approved", "executing")
        for u in req["unit_ids"]
    ]


def test_proposals_posted_at_once_never_share_a_unit(
    disposal_env: Env,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = disposal_env
    root = ingest(env, tmp_path, seed=23, notification="2015-07-01", message="HRD-2015-3")
    family = units(env, root)
    by_category = {u.category: u for u in family if u.category}

    # Two whole proposals at once: one takes the units, the other is refused (409) and
    # leaves nothing: its documents are removed, no row, no entry.
    objects, mark = stored_objects(env.services), last_id(env)
    with proposals_meet(env), ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: propose(env), range(2)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 409], [a.text for a in answers]
    won = next(a.json() for a in answers if a.status_code == 201)
    lost = next(a.json() for a in answers if a.status_code == 409)
    assert {x["unit_id"] for x in lost["taken"]} == set(won["unit_ids"])
    assert {x["request_id"] for x in lost["taken"]} == {won["id"]}
    # (before reading the requests back: that read is logged too)
    assert disposal_entries(env, mark) == ["disposal.proposed"]
    taken = open_units(env)
    assert len(taken) == len(set(taken)) and set(taken) == set(won["unit_ids"])
    prefix = f"tenants/{tenant_of(env)}/disposal/"
    new = {e for e in stored_objects(env.services) - objects if e[1].startswith(prefix)}
    assert {e[1].split("@", 1)[0].split("/")[3] for e in new} == {won["id"]}
    assert request_rows(env) == 1

    # The visa refused frees them; two proposals of disjoint selections both succeed.
    r = env.http.post(
        f"/v1/disposal-requests/{won['id']}/visa",
        json={"decision": "refused", "reference": "AD45-NON"},
        headers=env.auth("admin"),
    )
    assert r.status_code == 200, r.text
    first, second = by_category["offres.non_retenue"].id, by_category["attribution.rejet"].id
    with proposals_meet(env), ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda u: propose(env, unit_ids=[u]), [first, second]))
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    assert [a.json()["unit_ids"] for a in answers] == [[first], [second]]
    taken = open_units(env)
    assert sorted(taken) == sorted([first, second])
