"""``archive-service audit``: the integrity audit from the command line (and from cron, on the
one-machine default, where no Celery beat runs).

Exit codes: 0 nothing wrong (or, with ``--repair``, everything found was repaired); 1 problems
found that remain (each printed: kind, offer:key, expected, found); 2 usage error (unknown
offer or unit, sample outside (0, 1]); 3 the database is unavailable.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from archive_service.config import get_settings
from archive_service.errors import ArchiveError

EXIT_CLEAN = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


def audit(
    offer: Annotated[
        list[str] | None,
        typer.Option("--offer", help="Audit only this storage offer (repeat for several)."),
    ] = None,
    unit: Annotated[
        str | None, typer.Option("--unit", help="Audit only the dossier of this archive unit.")
    ] = None,
    sample: Annotated[
        float,
        typer.Option(
            "--sample",
            help="Share of the copies to re-read, least recently verified first (0 < F <= 1).",
        ),
    ] = 1.0,
    repair: Annotated[
        bool, typer.Option("--repair", help="Restore missing or corrupt copies from a healthy one.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Re-read every copy in every offer, recompute its digests and compare them with the
    database and the manifest; exit 1 if a problem remains."""
    from archive_service.cli.main import fail
    from archive_service.services.audit import AuditScope
    from archive_service.wiring import build_services

    if not 0 < sample <= 1:
        Console(stderr=True).print(f"[bold red]error:[/] --sample must be in (0, 1], got {sample}")
        raise typer.Exit(EXIT_USAGE)
    scope = AuditScope(
        offers=tuple(offer or ()), unit_id=unit, sample=sample, repair=repair, trigger="cli"
    )
    try:
        services = build_services(get_settings())
        try:
            report = services.audit.run(scope)
        finally:
            services.close()
    except ArchiveError as exc:
        raise fail(exc) from None
    if as_json:
        json.dump(report.as_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print(report)
    raise typer.Exit(EXIT_PROBLEMS if report.unresolved else EXIT_CLEAN)


def _print(report: object) -> None:
    from archive_service.services.audit import AuditReport

    assert isinstance(report, AuditReport)
    table = Table("offer", "copies verified", "ok", "problems", title=f"audit {report.run_id}")
    for name, outcomes in report.per_offer().items():
        total = sum(outcomes.values())
        ok = outcomes.get("ok", 0)
        bad = ", ".join(f"{k} {n}" for k, n in outcomes.items() if k != "ok") or "-"
        table.add_row(name, str(total), f"[green]{ok}[/]" if ok == total else str(ok), bad)
    Console().print(table)
    # Plain lines, never wrapped: keys are long and scripts read them.
    for p in report.problems:
        line = p.message()
        if p.repaired:
            typer.echo(f"{line} — repaired ({p.repair_detail})")
        else:
            suffix = f" — not repaired: {p.repair_detail}" if p.repair_detail else ""
            typer.echo(line + suffix, err=False)
    megabytes = report.bytes_read / 1e6
    typer.echo(
        f"audited {report.checked} of {report.selected} copies ({report.packages} packages, "
        f"{megabytes:.1f} MB) on {', '.join(report.offers)}: {len(report.problems)} problems, "
        f"{len(report.repaired)} repaired"
    )


def register(app: typer.Typer) -> None:
    """Add ``audit`` to the CLI."""
    app.command("audit")(audit)
