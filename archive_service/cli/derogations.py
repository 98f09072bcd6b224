"""``archive-service derogation …``: dérogations (Code du patrimoine L213-3), run on the
server's services by a named archivist (``--as NAME``: who acts, recorded with the dérogation
and in the logbook; nobody grants a dérogation to a client of their own name).

- ``derogation grant UNIT --client CLIENT_ID --reference REF --decision-date YYYY-MM-DD
  --reason R [--until YYYY-MM-DD]``;
- ``derogation revoke DEROGATION --reason R``;
- ``derogation list UNIT``.

Every command takes ``--tenant NAME``. Exit codes (cli/main.py): 0 done; 1 refused or not
found (unknown unit, client or dérogation; already revoked; unit destroyed; key revoked);
2 bad input (a malformed date, a decision dated after today, a last day already past, an empty
reference or reason, a grantee that cannot read content); 3 unavailable; 4 not allowed
(granting to oneself). Nothing is written when a command fails.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

import typer

from archive_service.cli.disposal import AsOpt, JsonOpt, TenantOpt, _dump, _run
from archive_service.errors import InvalidInput

if TYPE_CHECKING:
    from archive_service.ports import Caller
    from archive_service.wiring import Services

derogation_app = typer.Typer(
    help="Dérogations (L213-3): reading before the délai de communicabilité expires.",
    no_args_is_help=True,
)


def _day(value: str | None, option: str) -> date | None:
    from archive_service.cli.main import fail

    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise fail(InvalidInput(f"{option} must be a date (YYYY-MM-DD), not {value!r}")) from None


@derogation_app.command("grant")
def grant(
    unit: Annotated[str, typer.Argument(help="The archive unit (its subtree is covered).")],
    client: Annotated[str, typer.Option("--client", help="The grantee's API key client id.")],
    reference: Annotated[
        str, typer.Option("--reference", help="The decision's reference (authority agreement).")
    ],
    decision_date: Annotated[
        str, typer.Option("--decision-date", help="Date of the decision (YYYY-MM-DD).")
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why (the request it answers).")],
    tenant: TenantOpt,
    name: AsOpt,
    until: Annotated[
        str | None, typer.Option("--until", help="Last day it counts (YYYY-MM-DD).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a dérogation: the client reads the unit's restricted documents before the
    délai expires, until revoked or after --until."""
    from archive_service.services.derogations import derogation_json

    decided = _day(decision_date, "--decision-date")
    last = _day(until, "--until")

    def act(services: Services, caller: Caller) -> dict[str, Any]:
        service = services.derogations
        found = service.grant(
            caller,
            unit,
            client_id=client,
            reference=reference,
            decision_date=decided,
            reason=reason,
            until=last,
        )
        return derogation_json(found, today=service.today())

    body = _run(tenant, name, act)
    if as_json:
        _dump(body)
    else:
        typer.echo(f"dérogation {body['id']} granted on {body['unit_id']} to {body['client_id']}")


@derogation_app.command("revoke")
def revoke(
    derogation: Annotated[str, typer.Argument(help="The dérogation's id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is revoked.")],
    tenant: TenantOpt,
    name: AsOpt,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a dérogation: its grantee is subject to the délai again."""
    from archive_service.services.derogations import derogation_json

    def act(services: Services, caller: Caller) -> dict[str, Any]:
        service = services.derogations
        return derogation_json(
            service.revoke(caller, derogation, reason=reason), today=service.today()
        )

    body = _run(tenant, name, act)
    if as_json:
        _dump(body)
    else:
        typer.echo(f"dérogation {body['id']} revoked")


@derogation_app.command("list")
def list_(
    unit: Annotated[str, typer.Argument(help="The archive unit.")],
    tenant: TenantOpt,
    as_json: JsonOpt = False,
) -> None:
    """The dérogations granted on the unit (revoked ones too) and the active ones above it."""
    body = _run(tenant, None, lambda s, c: s.derogations.view(c, unit).json())
    if as_json:
        _dump(body)
        return
    found = body["derogations"] + body["inherited"]
    typer.echo(f"{unit}: {len(found)} dérogation(s)")
    for d in found:
        if d["revoked_at"]:
            state = f"revoked {d['revoked_at'][:10]}"
        else:
            state = "active" if d["active"] else f"expired after {d['until']}"
        typer.echo(
            f"  {d['id']} on {d['unit_id']} for {d['client_id']} — {d['reference']} — {state}"
        )


def register(app: typer.Typer) -> None:
    """Add ``derogation`` to the CLI."""
    app.add_typer(derogation_app, name="derogation")
