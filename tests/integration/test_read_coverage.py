"""Every GET under ``/v1`` that reads archive data leaves exactly one logbook entry (who,
what, how much), and a refused read leaves a ``REFUSED`` entry or nothing that leaks.

The routes are taken from the application itself (``create_app(...).routes``), so a GET
route added without a case here fails ``no case for route …``: whoever adds it says how its
read is logged, or why it is not (``NOT_READS``). Each route is one test item over one
shared, read-only world per
stack: one dossier ingested, a legal hold, a dérogation, an event, a transfer request proposed
(with its documents) and approved, and a logbook checkpoint.

Refusals, decided per route (``Refusal``):

* a platform of the same tenant that transfers for another buyer asks about our dossier:
  404 as if it did not exist (existence not disclosed), logged ``REFUSED``;
* a role that may not read what the route serves (a platform for holds, dérogations, the
  référentiel, disposal requests, the logbook, evidence; an auditor for content): 403,
  logged ``REFUSED``;
* where every role of the tenant may read (search, a transfer's reply to its platform), the
  refused caller is another tenant: its answer holds nothing of ours and our tenant's log
  gets nothing (the other tenant's log may record its own search).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from archive_service.api.app import create_app
from archive_service.config import Settings
from tests.integration.conftest import (
    Env,
    new_postgres_database,
    open_env,
    s3_offers,
    selected_stacks,
)
from tests.integration.test_disposal import ingest, post_visa, units
from tests.integration.test_growing_dossiers import stranger_platform
from tests.integration.test_lifecycle_events import post_event
from tests.integration.test_logbook_coverage import entries_since, last_id
from tests.reference import decp_schema_path, seda_xsd_dir

#: GET routes under /v1 that are not reads of archive data, hence not logged (health,
#: readiness and metrics are outside /v1 and not enumerated).
NOT_READS: dict[str, str] = {
    "/v1/tsa/certificates": "the TSA's public certificate chain: no archive data (README)",
    "/v1/transfers/{transfer_id}": "a platform polling the status of its own transfer; the "
    "acknowledgement (…/reply, the ArchiveTransferReply) is the logged read (README)",
    "/v1/logbook/checkpoints/latest": "a signed tree head (size, root hash, signature): "
    "public by design for offline verification, it names no unit, object or entry",
    "/v1/logbook/proofs/consistency": "hashes between two tree sizes: no entry, no archive data",
    "/v1/audit/status": "per offer, counts of verified copies and open problems: operations "
    "figures, no archive data",
}


@dataclass
class World:
    env: Env
    tenant_id: str
    ids: dict[str, str]
    stranger: dict[str, str]
    routes: set[str] = field(default_factory=set)

    def client(self, role: str, *, other_tenant: bool = False) -> str:
        keys = self.env.other_tenant_keys if other_tenant else self.env.keys
        return self.env.services.tenancy.authenticate(keys[role]).client_id


@dataclass(frozen=True)
class Refusal:
    """Who is refused, the status it gets, and whether our tenant logs it ``REFUSED``
    (otherwise nothing of ours may be logged nor appear in the answer)."""

    caller: str  # "stranger" (same tenant, other buyer's platform), a role, or "other:<role>"
    status: int
    logged: bool = True


STRANGER_404 = Refusal("stranger", 404)
PLATFORM_403 = Refusal("platform", 403)


@dataclass(frozen=True)
class Case:
    path: str  # formatted with World.ids
    role: str
    event: str
    subject: tuple[str, str]  # (subject type, World.ids key or literal)
    refusal: Refusal
    #: ``pytest.mark.xfail(strict=True, reason=…)`` for a read known not to be logged yet.
    read_mark: Any = None
    refusal_mark: Any = None


CASES: dict[str, Case] = {
    "/v1/transfers/{transfer_id}/reply": Case(
        "/v1/transfers/{transfer}/reply",
        "platform",
        "transfer_reply.read",
        ("transfer", "transfer"),
        Refusal("other:platform", 404, logged=False),
    ),
    "/v1/archive-units": Case(
        "/v1/archive-units?q=travaux",
        "archivist",
        "search.performed",
        ("tenant", "tenant"),
        Refusal("other:archivist", 200, logged=False),
    ),
    "/v1/archive-units/{unit_id}": Case(
        "/v1/archive-units/{root}",
        "archivist",
        "archive_unit.read",
        ("archive_unit", "root"),
        STRANGER_404,
    ),
    "/v1/archive-units/{unit_id}/manifest": Case(
        "/v1/archive-units/{root}/manifest",
        "archivist",
        "manifest.read",
        ("archive_unit", "root"),
        STRANGER_404,
    ),
    "/v1/archive-units/{unit_id}/timestamp": Case(
        "/v1/archive-units/{root}/timestamp",
        "auditor",
        "timestamp.read",
        ("archive_unit", "root"),
        STRANGER_404,
    ),
    "/v1/objects/{object_id}/content": Case(
        "/v1/objects/{object}/content",
        "archivist",
        "object.read",
        ("object", "object"),
        Refusal("auditor", 403),
    ),
    "/v1/archive-units/{unit_id}/evidence": Case(
        "/v1/archive-units/{root}/evidence",
        "archivist",
        "evidence.read",
        ("archive_unit", "root"),
        PLATFORM_403,
    ),
    "/v1/archive-units/{unit_id}/export": Case(
        "/v1/archive-units/{root}/export",
        "archivist",
        "archive_unit.export",
        ("archive_unit", "root"),
        STRANGER_404,
    ),
    "/v1/archive-units/{unit_id}/versions": Case(
        "/v1/archive-units/{root}/versions",
        "archivist",
        "dossier_versions.read",
        ("archive_unit", "root"),
        STRANGER_404,
    ),
    "/v1/archive-units/{unit_id}/versions/{sequence}/manifest": Case(
        "/v1/archive-units/{root}/versions/1/manifest",
        "auditor",
        "manifest.read",
        ("archive_unit", "root"),
        STRANGER_404,
    ),
    "/v1/archive-units/{unit_id}/versions/{sequence}/timestamp": Case(
        "/v1/archive-units/{root}/versions/1/timestamp",
        "auditor",
        "timestamp.read",
        ("archive_unit", "root"),
        STRANGER_404,
    ),
    "/v1/archive-units/{unit_id}/events": Case(
        "/v1/archive-units/{root}/events",
        "archivist",
        "dossier_events.read",
        ("archive_unit", "root"),
        STRANGER_404,
    ),
    "/v1/archive-units/{unit_id}/retention": Case(
        "/v1/archive-units/{root}/retention",
        "auditor",
        "retention.read",
        ("archive_unit", "root"),
        STRANGER_404,
    ),
    "/v1/referentials/retention": Case(
        "/v1/referentials/retention",
        "archivist",
        "referential.read",
        ("referential", "retention:1"),
        PLATFORM_403,
    ),
    "/v1/referentials/retention/versions": Case(
        "/v1/referentials/retention/versions",
        "auditor",
        "referential.versions_read",
        ("referential", "retention"),
        PLATFORM_403,
    ),
    "/v1/referentials/retention/versions/{version}": Case(
        "/v1/referentials/retention/versions/1",
        "admin",
        "referential.read",
        ("referential", "retention:1"),
        PLATFORM_403,
    ),
    "/v1/archive-units/{unit_id}/holds": Case(
        "/v1/archive-units/{held}/holds",
        "auditor",
        "holds.read",
        ("archive_unit", "held"),
        PLATFORM_403,
    ),
    "/v1/holds/{hold_id}": Case(
        "/v1/holds/{hold}",
        "archivist",
        "hold.read",
        ("archive_unit", "held"),
        PLATFORM_403,
    ),
    "/v1/archive-units/{unit_id}/derogations": Case(
        "/v1/archive-units/{root}/derogations",
        "auditor",
        "derogations.read",
        ("archive_unit", "root"),
        PLATFORM_403,
    ),
    "/v1/derogations/{derogation_id}": Case(
        "/v1/derogations/{derogation}",
        "admin",
        "derogation.read",
        ("archive_unit", "root"),
        PLATFORM_403,
    ),
    "/v1/disposal-requests/due": Case(
        "/v1/disposal-requests/due?kind=destroy",
        "archivist",
        "disposal.due_read",
        ("tenant", "tenant"),
        PLATFORM_403,
    ),
    "/v1/disposal-requests": Case(
        "/v1/disposal-requests",
        "auditor",
        "disposal.requests_read",
        ("tenant", "tenant"),
        PLATFORM_403,
    ),
    "/v1/disposal-requests/{request_id}": Case(
        "/v1/disposal-requests/{request}",
        "auditor",
        "disposal.request_read",
        ("disposal_request", "request"),
        PLATFORM_403,
    ),
    "/v1/disposal-requests/{request_id}/documents/{name}": Case(
        "/v1/disposal-requests/{request}/documents/request.xml",
        "auditor",
        "disposal.document_read",
        ("disposal_request", "request"),
        PLATFORM_403,
    ),
    "/v1/disposal-requests/{request_id}/transfer.zip": Case(
        "/v1/disposal-requests/{request}/transfer.zip",
        "archivist",
        "disposal.transfer_exported",
        ("disposal_request", "request"),
        Refusal("auditor", 403),
    ),
    "/v1/logbook/entries": Case(
        "/v1/logbook/entries?limit=5",
        "auditor",
        "logbook.entries_read",
        ("tenant", "tenant"),
        PLATFORM_403,
    ),
    "/v1/archive-units/{unit_id}/lifecycle": Case(
        "/v1/archive-units/{root}/lifecycle",
        "auditor",
        "logbook.lifecycle_read",
        ("tenant", "tenant"),  # not the unit: it would join the lifecycle it reads
        PLATFORM_403,
    ),
    "/v1/logbook/proofs/inclusion": Case(
        "/v1/logbook/proofs/inclusion?entry={entry}",
        "auditor",
        "logbook.proof_read",
        ("tenant", "tenant"),
        PLATFORM_403,
    ),
}


def get_routes(app_routes: Any, prefix: str = "") -> set[str]:
    """The paths of the GET routes under /v1, those of included routers too (FastAPI 0.165
    keeps an included router whole, as one route holding ``original_router``)."""
    found: set[str] = set()
    for r in app_routes:
        inner = getattr(r, "original_router", None)
        if inner is not None:
            context = getattr(r, "include_context", None)
            found |= get_routes(inner.routes, prefix + getattr(context, "prefix", ""))
        elif isinstance(r, APIRoute) and "GET" in (r.methods or ()):
            found.add(prefix + r.path)
    return {path for path in found if path.startswith("/v1/")}


#: Collected from the application (nothing is started: services are built at start-up).
ROUTES = sorted(get_routes(create_app(Settings()).routes) - set(NOT_READS))


def _params(mark_of: Callable[[Case], Any]) -> list[Any]:
    out = []
    for route in ROUTES:
        case = CASES.get(route)
        mark = mark_of(case) if case is not None else None
        out.append(pytest.param(route, id=route, marks=[mark] if mark is not None else []))
    return out


def _settings(stack: str, tmp: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """What the ``settings`` fixture gives, for a world shared by the module's tests."""
    values: dict[str, Any] = {
        "data_dir": tmp / "var",
        "seda_xsd_dir": seda_xsd_dir(),
        "decp_schema_path": decp_schema_path(),
        "inprocess_workers": 2,
    }
    if stack == "default":
        yield Settings(**values)
        return
    queue = f"archive-test-{secrets.token_hex(6)}"
    with new_postgres_database(request.getfixturevalue("postgres_server")) as url:
        yield Settings(
            **values,
            database_url=url,
            storage_offers=s3_offers(),
            task_runner="celery",
            broker_url=request.getfixturevalue("broker_url"),
            celery_queue=queue,
            celery_broker_transport_options={"global_keyprefix": f"{queue}:"},
            celery_retry_backoff_base=0.05,
            celery_retry_backoff_max=1.0,
        )


@pytest.fixture(scope="module", params=selected_stacks())
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp(f"reads-{request.param}")
    with contextlib.ExitStack() as stack:
        settings = stack.enter_context(
            contextlib.contextmanager(_settings)(request.param, tmp, request)
        )
        env = stack.enter_context(open_env(settings))
        yield build_world(env, tmp)


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, (r.request.url, r.status_code, r.text)
    return r.json()


def build_world(env: Env, tmp: Path) -> World:
    """One dossier (notified in 2015: its transfer is due), then what each route reads."""
    archivist, admin = env.auth("archivist"), env.auth("admin")
    tenant_id = env.services.tenancy.authenticate(env.keys["archivist"]).tenant_id
    root = ingest(env, tmp, seed=4, notification="2015-06-01", message="READS-2015-1")
    family = units(env, root)
    with env.services.ingest._uow() as uow:
        package = uow.archive.get_package(tenant_id, family[0].package_id)
        assert package is not None
        objects = uow.archive.objects_of_root(tenant_id, root)
    rc = next(o for o in objects if o.path.endswith("RC.pdf"))

    request = ok(
        env.http.post("/v1/disposal-requests", json={"kind": "transfer"}, headers=archivist),
        201,
    )
    assert "request.xml" in request["documents"], request
    ok(post_visa(env, request["id"], "admin", decision="approved", reference="AD45-READS-1"))

    # A hold on a unit the transfer request left out (the tri: Keep + review).
    held = next(u.id for u in family if u.category == "preparation.besoin")
    assert held not in request["unit_ids"]
    hold = ok(
        env.http.post(
            f"/v1/archive-units/{held}/holds", json={"reason": "Recours"}, headers=archivist
        ),
        201,
    )
    today = env.clock.now().date()
    derogation = ok(
        env.http.post(
            f"/v1/archive-units/{root}/derogations",
            json={
                "client_id": env.services.tenancy.authenticate(env.keys["archivist"]).client_id,
                "reference": "AD45-DEROG-1",
                "decision_date": today.isoformat(),
                "reason": "Consultation anticipée",
                "until": (today + timedelta(days=30)).isoformat(),
            },
            headers=admin,
        ),
        201,
    )
    r = post_event(env, root, "reception", date(2016, 6, 30), reference="PV 1")
    assert r.status_code in (200, 201), r.text
    checkpoint = env.http.post("/v1/logbook/checkpoints", headers=admin)
    assert checkpoint.status_code in (200, 201), checkpoint.text
    ids = {
        "tenant": tenant_id,
        "root": root,
        "transfer": package.transfer_id,
        "object": rc.id,
        "held": held,
        "hold": hold["id"],
        "derogation": derogation["id"],
        "request": request["id"],
        "entry": str(last_id(env)),
    }
    stranger = {"Authorization": f"Bearer {stranger_platform(env)}"}
    app = env.http.app
    assert isinstance(app, FastAPI)
    return World(env, tenant_id, ids, stranger, get_routes(app.routes))


def _case(route: str) -> Case:
    case = CASES.get(route)
    assert case is not None, (
        f"no case for route {route}: say in CASES how its read is logged, or in NOT_READS "
        "why it is not a read of archive data"
    )
    return case


def test_cases_name_only_routes_that_exist(world: World) -> None:
    """The routes seen at collection are the running app's, and no case is stale."""
    assert world.routes - set(NOT_READS) == set(ROUTES)
    assert set(CASES) <= world.routes, set(CASES) - world.routes
    assert set(NOT_READS) <= world.routes, set(NOT_READS) - world.routes
    assert not set(CASES) & set(NOT_READS)


@pytest.mark.parametrize("route", _params(lambda c: c.read_mark))
def test_a_read_leaves_one_entry_naming_who_and_what(world: World, route: str) -> None:
    case = _case(route)
    env = world.env
    mark = last_id(env)
    r = env.http.get(case.path.format(**world.ids), headers=env.auth(case.role))
    assert r.status_code == 200, (r.status_code, r.text[:500])
    found = entries_since(env, mark)
    assert len(found) == 1, [(e["event_type"], e["outcome"]) for e in found]
    e = found[0]
    assert e["outcome"] == "OK", e
    assert e["event_type"] == case.event, e
    kind, key = case.subject
    assert (e["subject_type"], e["subject_id"]) == (kind, world.ids.get(key, key)), e
    assert (e["tenant_id"], e["actor"]) == (world.tenant_id, world.client(case.role))
    assert e["details"]["actor_role"] == case.role, e


@pytest.mark.parametrize("route", _params(lambda c: c.refusal_mark))
def test_a_refused_read_is_logged_refused_or_leaks_nothing(world: World, route: str) -> None:
    case = _case(route)
    env, refusal = world.env, case.refusal
    if refusal.caller == "stranger":
        headers, actor = world.stranger, None
    elif refusal.caller.startswith("other:"):
        role = refusal.caller.split(":", 1)[1]
        headers, actor = env.auth(role, other_tenant=True), None
    else:
        headers, actor = env.auth(refusal.caller), world.client(refusal.caller)
    path = case.path.format(**world.ids)
    mark = last_id(env)
    r = env.http.get(path, headers=headers)
    assert r.status_code == refusal.status, (r.status_code, r.text[:500])
    ours = [e for e in entries_since(env, mark) if e["tenant_id"] == world.tenant_id]
    if not refusal.logged:
        assert ours == [], ours
        body = r.text
        # The ids the caller sent may be echoed back ("no transfer …"); nothing else of ours.
        leaked = [v for k, v in world.ids.items() if k != "entry" and v in body and v not in path]
        assert not leaked, (leaked, body[:500])
        return
    assert len(ours) == 1, [(e["event_type"], e["outcome"]) for e in ours]
    e = ours[0]
    assert e["outcome"] == "REFUSED", e
    assert e["event_type"] == case.event, e
    if actor is None:
        actor = env.services.tenancy.authenticate(headers["Authorization"][7:]).client_id
    assert e["actor"] == actor
    assert e["details"]["reason"], e
    kind, key = case.subject
    assert e["subject_type"] == kind, e
    if kind != "referential":  # refused: the référentiel, not one version of it
        assert e["subject_id"] == world.ids.get(key, key), e
