"""``archive-service logbook checkpoint|verify``: the tenants' Merkle logs from the command line.

``checkpoint`` integrates the entries appended since the last run and signs, timestamps and
stores a checkpoint of each log that changed (what the periodic job does). ``verify``
recomputes each log from the canonical bytes in the database and checks it against every
checkpoint in storage and in the database.

Exit codes: 0 all good; 1 a checkpoint refused, or a problem found (each named: entry edited,
entries deleted, log truncated, checkpoint edited or signed by another key…); 2 unknown
tenant; 3 the database or an offer is unavailable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from archive_service.config import get_settings
from archive_service.errors import ArchiveError

logbook_app = typer.Typer(
    help="The logbook's Merkle log: checkpoints, and detection of tampering.",
    no_args_is_help=True,
)

TenantOption = Annotated[
    str | None, typer.Option("--tenant", help="One tenant (its id); default: every tenant.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
T = TypeVar("T")


def _tenants(services: Any, tenant: str | None) -> list[str]:
    if tenant is None:
        tenants: list[str] = services.logbook.tenants()
        return tenants
    if tenant not in services.logbook.tenants():
        Console(stderr=True).print(f"[bold red]error:[/] no logbook for tenant {tenant}")
        raise typer.Exit(2)
    return [tenant]


def _run(action: Callable[[Any], T]) -> T:
    """``action`` on the services built from the settings; errors become exit codes."""
    from archive_service.cli.main import fail
    from archive_service.wiring import build_services

    try:
        services = build_services(get_settings())
        try:
            return action(services)
        finally:
            services.close()
    except ArchiveError as exc:
        raise fail(exc) from None


@logbook_app.command("checkpoint")
def checkpoint(tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    """Integrate new entries, then sign, timestamp and store a checkpoint of each log that
    changed since its latest one."""
    outcomes = _run(
        lambda services: [services.logbook.checkpoint(t) for t in _tenants(services, tenant)]
    )
    rows = [
        {
            "tenant": o.tenant_id,
            "status": o.status,
            "size": o.checkpoint.size if o.checkpoint else 0,
            "root": o.checkpoint.root.hex() if o.checkpoint else None,
        }
        for o in outcomes
    ]
    if as_json:
        json.dump({"checkpoints": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    for row in rows:
        typer.echo(f"{row['tenant']}: {row['status']} (size {row['size']}, root {row['root']})")


@logbook_app.command("verify")
def verify(tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    """Recompute each log from the database and check it against every checkpoint in
    storage; exit 1 naming each problem found."""
    reports = _run(
        lambda services: [services.logbook.verify(t) for t in _tenants(services, tenant)]
    )
    if as_json:
        json.dump(
            {
                "ok": all(r.ok for r in reports),
                "tenants": [
                    {
                        "tenant": r.tenant_id,
                        "ok": r.ok,
                        "entries": r.entries,
                        "integrated": r.integrated,
                        "checkpoints": r.checkpoints,
                        "checks": r.checks,
                        "notes": r.notes,
                        "problems": [
                            {
                                "code": f.code,
                                "message": f.message,
                                "expected": f.expected,
                                "found": f.found,
                            }
                            for f in r.findings
                        ],
                    }
                    for r in reports
                ],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        for r in reports:
            verdict = "OK" if r.ok else f"{len(r.findings)} PROBLEM(S)"
            typer.echo(
                f"tenant {r.tenant_id}: {verdict} — {r.entries} entries, {r.integrated} "
                f"integrated, checkpoints {r.checkpoints or 'none'}"
            )
            for check in r.checks:
                typer.echo(f"  ok    {check}")
            for note in r.notes:
                typer.echo(f"  note  {note}")
            for f in r.findings:
                typer.echo(f"  FAIL  [{f.code}] {f.message}")
                if f.expected is not None or f.found is not None:
                    typer.echo(f"          expected: {f.expected}")
                    typer.echo(f"          found:    {f.found}")
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``logbook checkpoint`` and ``logbook verify`` to the CLI."""
    app.add_typer(logbook_app, name="logbook")
