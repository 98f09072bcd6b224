"""``archive-service hold …`` and ``archive-service disposal …``: legal holds, disposal and
transfer requests, run on the server's services by a named archivist (``--as NAME``: who
acts, recorded in the request and the logbook; the proposer of a request cannot record its
visa, by name as through the API).

- ``hold place UNIT --reason R [--reference REF]``, ``hold lift HOLD --reason R``,
  ``hold list UNIT``;
- ``disposal due [--kind destroy|transfer]`` — what a request would take now;
- ``disposal propose [--kind] [--unit ID …] [--comment C] [--authority A]``;
- ``disposal list [--status S]``, ``disposal show ID``, ``disposal document ID NAME -o FILE``;
- ``disposal visa ID --reference REF [--refuse] [--comment C]`` or ``--reply FILE.xml``;
- ``disposal execute ID``; ``disposal transfer-zip ID -o FILE``; ``disposal reply ID FILE.xml``;
  ``disposal confirm ID``.

Every command takes ``--tenant NAME``. Exit codes (cli/main.py): 0 done; 1 refused in this
state (nothing due, blocking holds or locks — each printed —, already done); 2 bad input;
3 unavailable; 4 not allowed (e.g. the proposer recording the visa).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from archive_service.config import get_settings
from archive_service.errors import ArchiveError, InvalidInput

if TYPE_CHECKING:
    from archive_service.ports import Caller
    from archive_service.wiring import Services

hold_app = typer.Typer(help="Legal holds (gel) on archive units.", no_args_is_help=True)
disposal_app = typer.Typer(
    help="Disposal (élimination) and transfer requests, their visa and execution.",
    no_args_is_help=True,
)

TenantOpt = Annotated[str, typer.Option("--tenant", help="The tenant's name.")]
AsOpt = Annotated[str, typer.Option("--as", help="Who acts (the archivist's name).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def operator_caller(tenant_id: str, name: str) -> Caller:
    """The archivist ``name`` acting on the server: one identity per name, so that the
    proposer of a request cannot record its visa under another command."""
    from archive_service.ports import Caller, Role

    name = " ".join(name.split())
    if not name:
        raise InvalidInput("--as needs the name of the person who acts")
    return Caller(client_id=f"cli:{name}", tenant_id=tenant_id, role=Role.ARCHIVIST, name=name)


def _run(tenant: str, name: str | None, action: Any) -> Any:
    from archive_service.cli.main import fail
    from archive_service.ports import Caller, Role
    from archive_service.wiring import build_services

    try:
        services = build_services(get_settings())
        try:
            tenant_id = services.referentials.tenant_id(tenant)
            caller = (
                operator_caller(tenant_id, name)
                if name is not None
                else Caller(client_id="cli", tenant_id=tenant_id, role=Role.AUDITOR, name="cli")
            )
            return action(services, caller)
        finally:
            services.close()
    except ArchiveError as exc:
        blocking = exc.extra.pop("blocking", None)
        if isinstance(blocking, list):
            for item in blocking:
                typer.echo(f"  blocking: {item.get('message', item)}", err=True)
        raise fail(exc) from None


def _dump(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _print_request(body: dict[str, Any]) -> None:
    out = Console()
    out.print(
        f"[bold]{body['id']}[/] {body['kind']} — {body['status']} "
        f"(proposed by {body['proposed_by']} on {body['proposed_at'][:10]})"
    )
    if body.get("visa"):
        visa = body["visa"]
        out.print(f"  visa: {visa['decision']} {visa['reference']} (by {visa['recorded_by']})")
    table = Table("unit", "level", "category", "DUA end", "rule", "action")
    for unit in body.get("units", []):
        table.add_row(
            unit["id"],
            unit["level"],
            unit.get("category") or "",
            unit.get("appraisal_end") or "",
            unit.get("rule_id") or "",
            unit.get("final_action") or "",
        )
    out.print(table)
    for name in body.get("documents", {}):
        typer.echo(f"  document {name}")


def _read(path: Path) -> bytes:
    from archive_service.cli.main import fail

    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(InvalidInput(f"cannot read {path}: {exc}")) from None


# -- holds -----------------------------------------------------------------------------------


@hold_app.command("place")
def hold_place(
    unit: Annotated[str, typer.Argument(help="The archive unit to hold (with its subtree).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (litigation, audit…).")],
    tenant: TenantOpt,
    name: AsOpt,
    reference: Annotated[
        str | None, typer.Option("--reference", help="Case or audit reference.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Place a legal hold: nothing under the unit may be destroyed or transferred until it is
    lifted; every copy gets an S3 legal hold."""
    from archive_service.services.holds import hold_json

    def act(services: Services, caller: Caller) -> dict[str, Any]:
        return hold_json(services.holds.place(caller, unit, reason=reason, reference=reference))

    body = _run(tenant, name, act)
    if as_json:
        _dump(body)
    else:
        typer.echo(f"hold {body['id']} placed on {body['unit_id']}")


@hold_app.command("lift")
def hold_lift(
    hold: Annotated[str, typer.Argument(help="The hold's id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is lifted.")],
    tenant: TenantOpt,
    name: AsOpt,
    as_json: JsonOpt = False,
) -> None:
    """Lift a legal hold; copies no other hold covers lose their S3 legal hold."""
    from archive_service.services.holds import hold_json

    def act(services: Services, caller: Caller) -> dict[str, Any]:
        return hold_json(services.holds.lift(caller, hold, reason=reason))

    body = _run(tenant, name, act)
    if as_json:
        _dump(body)
    else:
        typer.echo(f"hold {body['id']} lifted")


@hold_app.command("list")
def hold_list(
    unit: Annotated[str, typer.Argument(help="The archive unit.")],
    tenant: TenantOpt,
    as_json: JsonOpt = False,
) -> None:
    """The holds placed on the unit (lifted ones too) and those covering it from above."""
    from archive_service.services.holds import hold_view_json

    body = _run(tenant, None, lambda s, c: hold_view_json(s.holds.view(c, unit)))
    if as_json:
        _dump(body)
        return
    typer.echo(f"{unit}: {'held' if body['held'] else 'not held'}")
    for h in body["holds"] + body["inherited"]:
        state = "active" if h["active"] else f"lifted {h['lifted_at'][:10]}"
        typer.echo(f"  {h['id']} on {h['unit_id']} — {state} — {h['reason']}")


# -- requests --------------------------------------------------------------------------------


@disposal_app.command("due")
def due(
    tenant: TenantOpt,
    kind: Annotated[str, typer.Option("--kind", help="destroy or transfer.")] = "destroy",
    as_json: JsonOpt = False,
) -> None:
    """The units a request of this kind would take now (nothing is recorded)."""
    from archive_service.services.disposal import candidate_json

    def act(services: Services, caller: Caller) -> list[dict[str, Any]]:
        return [candidate_json(c) for c in services.disposal.read_due(caller, kind)]

    found = _run(tenant, None, act)
    if as_json:
        _dump({"kind": kind, "units": found})
        return
    for unit in found:
        typer.echo(
            f"{unit['id']}  {unit['level']:<8} {unit.get('appraisal_end') or '':<10}  "
            f"{unit.get('final_action') or '':<7} {unit['title']}"
        )
    typer.echo(f"{len(found)} units due ({kind})")


@disposal_app.command("propose")
def propose(
    tenant: TenantOpt,
    name: AsOpt,
    kind: Annotated[str, typer.Option("--kind", help="destroy or transfer.")] = "destroy",
    unit: Annotated[
        list[str] | None,
        typer.Option("--unit", help="Only this unit (repeat); Keep+review units must be named."),
    ] = None,
    comment: Annotated[str | None, typer.Option("--comment")] = None,
    authority: Annotated[
        str | None, typer.Option("--authority", help="The control authority's name.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Propose the due units for destruction or transfer: stores the SEDA request and the
    PDF/CSV bordereaux for the archives authority."""
    from archive_service.services.disposal import request_json

    def act(services: Services, caller: Caller) -> dict[str, Any]:
        return request_json(
            services.disposal.propose(
                caller, kind, unit_ids=unit, comment=comment, control_authority=authority
            )
        )

    body = _run(tenant, name, act)
    if as_json:
        _dump(body)
    else:
        _print_request(body)


@disposal_app.command("list")
def list_requests(
    tenant: TenantOpt,
    status: Annotated[str | None, typer.Option("--status")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The tenant's requests, newest first."""
    from archive_service.services.disposal import request_json

    def act(services: Services, caller: Caller) -> list[dict[str, Any]]:
        return [request_json(r) for r in services.disposal.read_requests(caller, status=status)]

    found = _run(tenant, None, act)
    if as_json:
        _dump({"requests": found})
        return
    for r in found:
        typer.echo(f"{r['id']}  {r['kind']:<8} {r['status']:<20} {len(r['unit_ids'])} units")


@disposal_app.command("show")
def show(
    request_id: Annotated[str, typer.Argument()], tenant: TenantOpt, as_json: JsonOpt = False
) -> None:
    """One request: its units, visa, documents, execution and certificate."""
    from archive_service.services.disposal import request_json

    body = _run(tenant, None, lambda s, c: request_json(s.disposal.read_request(c, request_id)))
    if as_json:
        _dump(body)
    else:
        _print_request(body)


@disposal_app.command("document")
def document(
    request_id: Annotated[str, typer.Argument()],
    name: Annotated[str, typer.Argument(help="request.xml, bordereau.pdf, certificate.xml…")],
    tenant: TenantOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write it.")],
) -> None:
    """Write one of the request's stored documents (digest checked) to a file."""
    data, _ = _run(tenant, None, lambda s, c: s.disposal.read_document(c, request_id, name))
    output.write_bytes(data)
    typer.echo(f"{output} ({len(data)} bytes)")


@disposal_app.command("visa")
def visa(
    request_id: Annotated[str, typer.Argument()],
    tenant: TenantOpt,
    name: AsOpt,
    reference: Annotated[
        str | None, typer.Option("--reference", help="The authority's visa reference.")
    ] = None,
    refuse: Annotated[bool, typer.Option("--refuse", help="The authority refused.")] = False,
    comment: Annotated[str | None, typer.Option("--comment")] = None,
    reply: Annotated[
        Path | None,
        typer.Option("--reply", help="The authority's AuthorizationControlAuthorityRequestReply."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record the archives authority's visa (or refusal): its reference, or its XML reply."""
    from archive_service.cli.main import fail
    from archive_service.services.disposal import request_json

    if (reference is None) == (reply is None):
        raise fail(InvalidInput("give either --reference or --reply FILE.xml"))
    xml = _read(reply) if reply is not None else None

    def act(services: Services, caller: Caller) -> dict[str, Any]:
        if xml is not None:
            return request_json(services.disposal.record_visa_reply(caller, request_id, xml))
        return request_json(
            services.disposal.record_visa(
                caller,
                request_id,
                decision="refused" if refuse else "approved",
                reference=reference or "",
                comment=comment,
            )
        )

    body = _run(tenant, name, act)
    if as_json:
        _dump(body)
    else:
        typer.echo(f"{request_id}: {body['status']} (visa {body['visa']['reference']})")


def _finish(body: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _dump(body)
        return
    execution = body.get("execution") or {}
    typer.echo(
        f"{body['id']}: {body['status']} — {len(body['unit_ids'])} units, "
        f"{execution.get('copies_purged', 0)} copies purged; certificate "
        f"{(body.get('certificate') or {}).get('message_identifier', 'not issued')}"
    )


@disposal_app.command("execute")
def execute(
    request_id: Annotated[str, typer.Argument()],
    tenant: TenantOpt,
    name: AsOpt,
    as_json: JsonOpt = False,
) -> None:
    """Destroy the units of an approved request on every offer, then issue the certificate.
    Refused (exit 1, each blocking hold or lock printed) while anything blocks."""
    from archive_service.services.disposal import request_json

    body = _run(tenant, name, lambda s, c: request_json(s.disposal.execute(c, request_id)))
    _finish(body, as_json)


@disposal_app.command("transfer-zip")
def transfer_zip(
    request_id: Annotated[str, typer.Argument()],
    tenant: TenantOpt,
    name: AsOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the zip.")],
) -> None:
    """Write the SEDA ArchiveTransfer zip of an approved transfer request."""

    def act(services: Services, caller: Caller) -> int:
        path = services.disposal.transfer_zip(caller, request_id)
        try:
            shutil.copyfile(path, output)
        finally:
            path.unlink(missing_ok=True)
        return output.stat().st_size

    size = _run(tenant, name, act)
    typer.echo(f"{output} ({size} bytes)")


@disposal_app.command("reply")
def transfer_reply(
    request_id: Annotated[str, typer.Argument()],
    reply: Annotated[Path, typer.Argument(help="The definitive archives' ArchiveTransferReply.")],
    tenant: TenantOpt,
    name: AsOpt,
    as_json: JsonOpt = False,
) -> None:
    """Record the definitive archives' reply to the transfer (OK accepts, KO rejects)."""
    from archive_service.services.disposal import request_json

    xml = _read(reply)
    body = _run(
        tenant,
        name,
        lambda s, c: request_json(s.disposal.record_transfer_reply(c, request_id, xml)),
    )
    if as_json:
        _dump(body)
    else:
        typer.echo(f"{request_id}: {body['status']}")


@disposal_app.command("confirm")
def confirm(
    request_id: Annotated[str, typer.Argument()],
    tenant: TenantOpt,
    name: AsOpt,
    as_json: JsonOpt = False,
) -> None:
    """Purge the units the definitive archives accepted, then issue the certificate."""
    from archive_service.services.disposal import request_json

    body = _run(tenant, name, lambda s, c: request_json(s.disposal.confirm(c, request_id)))
    _finish(body, as_json)


def register(app: typer.Typer) -> None:
    """Add ``hold`` and ``disposal`` to the CLI."""
    app.add_typer(hold_app, name="hold")
    app.add_typer(disposal_app, name="disposal")
