"""``archive-service referential …`` and ``archive-service retention …``: the retention
référentiel and the rules it gives, administered on the server (like ``audit``: the
commands run on the services, as the operator, with the admin role; the operator's login is
in the logbook).

- ``referential show [--version N] [--json] --tenant NAME`` — the version in force (or N);
- ``referential history --tenant NAME`` — every version;
- ``referential replace FILE --comment TEXT --tenant NAME`` — a new version (logged);
- ``referential impact FILE --tenant NAME [--json]`` — which units a change would affect;
- ``retention recompute --tenant NAME [--unit ID]`` — apply the référentiel in force now;
- ``retention relock --tenant NAME [--unit ID]`` — lock again copies whose lock is pending;
- ``retention event UNIT EVENT DATE --tenant NAME`` — record a dossier event.

Exit codes (cli/main.py): 0 done; 1 the impact analysis found changes (``impact``) or locks
stay pending (``relock``, ``recompute``); 2 bad input (unknown tenant, invalid référentiel,
unreadable file); 3 unavailable; 4 not allowed.
"""

from __future__ import annotations

import json
import sys
from datetime import date
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

EXIT_OK = 0
EXIT_CHANGES = 1

referential_app = typer.Typer(
    help="The retention référentiel (DUA, sort final, communicability) of a tenant.",
    no_args_is_help=True,
)
retention_app = typer.Typer(
    help="Retention rules of archived units: events, recomputation, Object Lock.",
    no_args_is_help=True,
)

TenantOpt = Annotated[str, typer.Option("--tenant", help="The tenant's name.")]


def _run(tenant: str, action: Any) -> Any:
    """Build the services, find the tenant, run ``action(services, caller)``; ArchiveError →
    message and exit code."""
    from archive_service.cli.main import fail, operator_name
    from archive_service.services.referentials import cli_caller
    from archive_service.wiring import build_services

    try:
        services = build_services(get_settings())
        try:
            tenant_id = services.referentials.tenant_id(tenant)
            return action(services, cli_caller(tenant_id, operator_name()))
        finally:
            services.close()
    except ArchiveError as exc:
        raise fail(exc) from None


def _read(path: Path) -> str:
    from archive_service.cli.main import fail

    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(InvalidInput(f"cannot read {path}: {exc}")) from None


def _dump(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


@referential_app.command("show")
def show(
    tenant: TenantOpt,
    version: Annotated[
        int | None, typer.Option("--version", help="This version rather than the one in force.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The référentiel's JSON text.")] = False,
) -> None:
    """Show the référentiel in force (or version N): its rules, or its JSON with --json."""
    from archive_service.core.retention import Referential

    def action(services: Services, caller: Caller) -> Any:
        if version:
            return services.referentials.version(caller, version)
        return services.referentials.current(caller)

    found = _run(tenant, action)
    record = found.record
    if as_json:
        sys.stdout.write(record.text if record.text.endswith("\n") else record.text + "\n")
        raise typer.Exit(EXIT_OK)
    ref: Referential = found.referential
    typer.echo(
        f"version {record.version} ({record.label}), sha256 {record.sha256}, "
        f"by {record.created_by} at {record.created_at.isoformat()}: {record.comment or ''}"
    )
    table = Table("rule", "DUA", "start events", "sort final", "label")
    for rule in ref.appraisal_rules.values():
        final = rule.final_action.value + (" + tri" if rule.review else "")
        table.add_row(
            rule.id,
            " / ".join(f"{t.years} y" for t in rule.terms),
            ", ".join(t.start_event for t in rule.terms),
            final,
            rule.label,
        )
    Console(width=200).print(table)


@referential_app.command("history")
def history(tenant: TenantOpt) -> None:
    """Every version of the tenant's référentiel, oldest first (the last is in force)."""

    def action(services: Services, caller: Caller) -> Any:
        return services.referentials.versions(caller)

    for record in _run(tenant, action):
        typer.echo(
            f"{record.version}\t{record.created_at.isoformat()}\t{record.created_by}\t"
            f"{record.label}\t{record.sha256}\t{record.comment or ''}"
        )


@referential_app.command("replace")
def replace(
    file: Annotated[Path, typer.Argument(help="The new référentiel (JSON).")],
    tenant: TenantOpt,
    comment: Annotated[str, typer.Option("--comment", help="Why it changes (logged).")],
) -> None:
    """Make FILE the référentiel in force (a new version); existing units keep their rules
    until recomputed (``retention recompute``)."""
    text = _read(file)

    def action(services: Services, caller: Caller) -> Any:
        return services.referentials.replace(caller, text, comment=comment)

    found = _run(tenant, action)
    typer.echo(
        f"version {found.record.version} ({found.record.label}) in force, sha256 "
        f"{found.record.sha256}; run `archive-service retention recompute --tenant {tenant}` "
        "to apply it to archived units"
    )


@referential_app.command("impact")
def impact(
    file: Annotated[Path, typer.Argument(help="The candidate référentiel (JSON).")],
    tenant: TenantOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Which units' rules, end dates or final actions FILE would change (nothing written);
    exit 1 if any would."""
    text = _read(file)

    def action(services: Services, caller: Caller) -> Any:
        return services.lifecycle.impact(caller, text)

    report = _run(tenant, action)
    if as_json:
        _dump(report)
    else:
        typer.echo(
            f"{report['units_changed']} of {report['units_examined']} units in "
            f"{report['dossiers_changed']} dossiers would change (in force: version "
            f"{report['in_force']['version']}, candidate {report['candidate']['label']})"
        )
        for c in report["changes"]:
            diffs = ", ".join(f"{k} {c['before'][k]} → {c['after'][k]}" for k in c["changed"])
            typer.echo(f"{c['unit_id']}\t{c['category']}\t{diffs}")
    raise typer.Exit(EXIT_CHANGES if report["units_changed"] else EXIT_OK)


def _print_results(results: list[Any]) -> int:
    pending = 0
    for r in results:
        locks = r.locks
        if locks.status == "pending":
            pending += 1
        typer.echo(
            f"{r.root_id}\t{len(r.changes)} units changed\tlocks {locks.status}"
            + (f" {locks.extended}" if locks.extended else "")
            + (f" failed {locks.failed}" if locks.failed else "")
        )
    return pending


def _apply(tenant: str, verb: str, call: Any) -> None:
    results = _run(tenant, call)
    pending = _print_results(results)
    typer.echo(f"{len(results)} dossiers {verb}, {pending} with locks pending")
    raise typer.Exit(EXIT_CHANGES if pending else EXIT_OK)


@retention_app.command("recompute")
def recompute(
    tenant: TenantOpt,
    unit: Annotated[
        str | None, typer.Option("--unit", help="Only the dossier of this archive unit.")
    ] = None,
) -> None:
    """Apply the référentiel in force to archived units now (logged); exit 1 if a lock
    extension stays pending."""
    _apply(tenant, "recomputed", lambda s, caller: s.lifecycle.recompute_all(caller, unit))


@retention_app.command("relock")
def relock(
    tenant: TenantOpt,
    unit: Annotated[
        str | None,
        typer.Option("--unit", help="Lock the whole dossier of this unit, pending or not."),
    ] = None,
) -> None:
    """Extend again the Object Lock of copies whose extension failed (an offer was down);
    exit 1 if some stay pending."""
    _apply(tenant, "relocked", lambda s, caller: s.lifecycle.relock(caller, unit))


@retention_app.command("event")
def event(
    unit: Annotated[str, typer.Argument(help="An archive unit of the dossier.")],
    name: Annotated[str, typer.Argument(help="notification, reception, dispute_opened…")],
    when: Annotated[str, typer.Argument(help="The event's date (YYYY-MM-DD).")],
    tenant: TenantOpt,
    reference: Annotated[str | None, typer.Option("--reference")] = None,
    correction: Annotated[
        str | None, typer.Option("--correction", help="Replace a recorded date; the reason.")
    ] = None,
) -> None:
    """Record an event of a dossier (as the API does, source ``cli``)."""
    try:
        day = date.fromisoformat(when)
    except ValueError:
        from archive_service.cli.main import fail

        raise fail(InvalidInput(f"not an ISO date: {when!r}")) from None

    def action(services: Services, caller: Caller) -> Any:
        return services.lifecycle.record_event(
            caller,
            unit,
            event=name,
            when=day,
            reference=reference,
            correction=correction is not None,
            reason=correction,
            source="cli",
        )

    outcome = _run(tenant, action)
    if not outcome.recorded:
        typer.echo(f"{name} on {when} was already recorded: nothing changed")
        raise typer.Exit(EXIT_OK)
    assert outcome.result is not None
    pending = _print_results([outcome.result])
    raise typer.Exit(EXIT_CHANGES if pending else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add ``referential`` and ``retention`` to the CLI."""
    app.add_typer(referential_app, name="referential")
    app.add_typer(retention_app, name="retention")
