"""`archive-service` command line: serve the API, administer tenants, and the client commands
(ingest, get, verify) for platforms and archivists.

ArchiveError becomes a clear message and an exit code here: 2 bad input, 3 unavailable,
4 authentication or permission, 1 a negative outcome (rejected transfer, failed check).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from archive_service.cli import (
    audit,
    derogations,
    disposal,
    evidence,
    lifecycle,
    logbook,
    remote,
    verify,
)
from archive_service.config import Settings, get_settings
from archive_service.errors import (
    ArchiveError,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    Unavailable,
)

app = typer.Typer(
    name="archive-service",
    help="Archivage électronique des dossiers de marchés publics (SEDA 2.3, RFC 3161).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
admin_app = typer.Typer(
    help="Administration: tenants, organizations, API keys.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
storage_app = typer.Typer(
    help="Storage offers: health, and repair of missing copies.", no_args_is_help=True
)
app.add_typer(admin_app, name="admin")
app.add_typer(db_app, name="db")
app.add_typer(storage_app, name="storage")
err = Console(stderr=True)


def exit_code_for(exc: ArchiveError) -> int:
    if isinstance(exc, (NotAuthenticated, Forbidden)):
        return 4
    if isinstance(exc, InvalidInput):
        return 2
    if isinstance(exc, Unavailable):
        return 3
    return 1


def fail(exc: ArchiveError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc.message}")
    for issue in exc.issues:
        where = f" [dim]({issue.location})[/]" if issue.location else ""
        err.print(f"  - {issue.code}: {issue.message}{where}")
    for name, value in exc.extra.items():
        err.print(f"  {name}: {value}")
    return typer.Exit(exit_code_for(exc))


def start_observability(
    settings: Settings, *, loglevel: str | None = None, celery: bool = False
) -> None:
    """Logs as the settings say (for Celery too), and the shared metrics directory, before
    anything imports prometheus_client (its multiprocess mode is chosen at import)."""
    from archive_service.observability import use_metrics_dir
    from archive_service.observability.logs import configure_logging, take_over_celery_logging

    if settings.metrics_dir is not None:
        use_metrics_dir(settings.metrics_dir)
    configure_logging(settings.log_format, loglevel or settings.log_level)
    if celery:
        take_over_celery_logging(settings.log_format, loglevel or settings.log_level)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
) -> None:
    """Start the HTTP API with the configured defaults (migrations are applied at start)."""
    settings = get_settings()
    start_observability(settings)
    import uvicorn

    from archive_service.api.app import create_app

    try:
        api = create_app(settings)
    except ArchiveError as exc:
        raise fail(exc) from None
    uvicorn.run(
        api,
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's records go through configure_logging's handler
        access_log=False,  # one access line per request comes from the API, with its id
    )


@admin_app.command("bootstrap")
def bootstrap(
    tenant: Annotated[str, typer.Option(help="Tenant name (the operating GIP).")],
    org: Annotated[list[str], typer.Option(help="Buyer as SIRET:NAME; repeat for several.")] = [],  # noqa: B006 - typer needs a list default
    archival_agency: Annotated[
        str | None, typer.Option(help="SEDA ArchivalAgency identifier (default: tenant name).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Create a tenant and its organizations, and print one new API key per role."""
    from archive_service.wiring import build_services

    settings = get_settings()
    try:
        services = build_services(settings)
        try:
            result = services.tenancy.bootstrap(
                tenant, org, archival_agency=archival_agency, operator=operator_name()
            )
        finally:
            services.close()
    except ArchiveError as exc:
        raise fail(exc) from None
    if as_json:
        json.dump(
            {
                "tenant": {"id": result.tenant_id, "name": result.tenant_name},
                "organizations": [
                    {"id": o.id, "siret": o.siret, "name": o.name} for o in result.organizations
                ],
                "keys": {
                    k.role.value: {"client_id": k.client_id, "key": k.key} for k in result.keys
                },
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return
    out = Console()
    out.print(f"Tenant [bold]{result.tenant_name}[/] ({result.tenant_id})")
    for o in result.organizations:
        out.print(f"  organization {o.siret} {o.name} ({o.id})")
    table = Table("role", "client", "API key (shown once)")
    for k in result.keys:
        table.add_row(k.role.value, k.client_id, k.key)
    out.print(table)


def operator_name() -> str:
    """Who runs an administration command, for the logbook: ``cli:<login>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


@admin_app.command("revoke-key")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key id (ask_<key id>_…) or the client id.")],
) -> None:
    """Revoke an API key: its requests are refused from now on (logged apikey.revoked)."""
    from archive_service.wiring import build_services

    try:
        services = build_services(get_settings())
        try:
            client, revoked = services.tenancy.revoke_key(key_id, operator=operator_name())
        finally:
            services.close()
    except ArchiveError as exc:
        raise fail(exc) from None
    state = "revoked" if revoked else "already revoked"
    typer.echo(f"{state}: key {client.key_id} ({client.role.value}, client {client.id})")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations to the configured database."""
    from archive_service.db.migrate import upgrade
    from archive_service.db.uow import make_engine

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    engine.dispose()
    err.print("database schema is up to date")


@storage_app.command("check")
def storage_check(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the storage offers and their health; exit 3 if one is not healthy."""
    from archive_service.wiring import build_services

    try:
        services = build_services(get_settings())
        try:
            health = services.storage_admin.check()
        finally:
            services.close()
    except ArchiveError as exc:
        raise fail(exc) from None
    if as_json:
        json.dump(
            {
                "healthy": all(h.healthy for h in health),
                "offers": [
                    {
                        "name": h.name,
                        "healthy": h.healthy,
                        "object_lock": h.object_lock,
                        "detail": h.detail,
                        "copies": h.copies,
                    }
                    for h in health
                ],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        table = Table("offer", "health", "Object Lock", "copies in database", "detail")
        for h in health:
            table.add_row(
                h.name,
                "[green]healthy[/]" if h.healthy else "[red]unhealthy[/]",
                "yes" if h.object_lock else "no",
                str(h.copies),
                h.detail,
            )
        Console().print(table)
    if not all(h.healthy for h in health):
        raise typer.Exit(3)


@storage_app.command("repair")
def storage_repair(
    unit_id: Annotated[
        str | None, typer.Argument(help="An archive unit: repair its dossier's package.")
    ] = None,
    all_packages: Annotated[bool, typer.Option("--all", help="Repair every package.")] = False,
) -> None:
    """Copy missing or corrupt copies from a healthy offer; exit 1 if one cannot be repaired."""
    from archive_service.wiring import build_services

    if (unit_id is None) == (not all_packages):
        err.print("[bold red]error:[/] give UNIT_ID or --all (not both)")
        raise typer.Exit(2)
    try:
        services = build_services(get_settings())
        try:
            admin = services.storage_admin
            packages = (
                admin.all_packages() if all_packages else admin.packages_of_unit(unit_id or "")
            )
            report = admin.repair(packages)
        finally:
            services.close()
    except ArchiveError as exc:
        raise fail(exc) from None
    # Plain lines, never wrapped: keys are long and scripts read them.
    for o in report.outcomes:
        if o.outcome == "repaired":
            typer.echo(f"repaired {o.offer}:{o.key} from {o.source} ({o.detail})")
        elif o.outcome == "recorded":
            typer.echo(f"recorded {o.offer}:{o.key} ({o.detail})")
        elif o.outcome == "failed":
            typer.echo(f"not repaired {o.offer}:{o.key}: {o.detail}", err=True)
    typer.echo(
        f"checked {report.checked} copies of {report.packages} packages: "
        f"{len(report.repaired)} repaired, {len(report.failed)} not repairable"
    )
    if not report.complete:
        raise typer.Exit(1)


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Processes (threads with --pool threads); default: CPUs.")
    ] = None,
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues (default ARCHIVE_CELERY_QUEUE).")
    ] = None,
    pool: Annotated[str, typer.Option(help="prefork, solo or threads.")] = "prefork",
    hostname: Annotated[str | None, typer.Option(help="Node name (default celery@host).")] = None,
    loglevel: Annotated[
        str | None, typer.Option(help="DEBUG, INFO, WARNING, ERROR (default ARCHIVE_LOG_LEVEL).")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve this worker's Prometheus metrics (all its processes) on this port, "
            "for workers in pods of their own."
        ),
    ] = None,
    metrics_host: Annotated[
        str | None, typer.Option(help="Address of --metrics-port (default ARCHIVE_HOST).")
    ] = None,
) -> None:
    """Start a Celery worker running the archiving jobs (broker: ARCHIVE_BROKER_URL).

    The API must run with ARCHIVE_TASK_RUNNER=celery and the same database, storage and broker;
    the worker does not migrate the database (`serve` or `db upgrade` do). Its metrics reach
    the API's /metrics through ARCHIVE_METRICS_DIR on the same host, or --metrics-port.
    """
    settings = get_settings()
    private_dir = None
    if metrics_port is not None and settings.metrics_dir is None:
        # The pool's processes must write their figures where this one can sum them.
        private_dir = Path(tempfile.mkdtemp(prefix="archive-worker-metrics-"))
        settings = settings.model_copy(update={"metrics_dir": private_dir})
    start_observability(settings, loglevel=loglevel, celery=True)
    from archive_service.tasks.celery_app import make_celery

    try:
        try:
            celery = make_celery(settings)
        except ArchiveError as exc:
            raise fail(exc) from None
        if metrics_port is not None:
            from prometheus_client import start_http_server

            from archive_service.observability.prometheus import multiprocess_registry

            start_http_server(
                metrics_port, addr=metrics_host or settings.host, registry=multiprocess_registry()
            )
        argv = ["worker", f"--pool={pool}", "--without-mingle"]
        argv.append(f"--loglevel={loglevel or settings.log_level}")
        argv.append(f"--queues={queues or celery.archive_settings.celery_queue}")
        if concurrency:
            argv.append(f"--concurrency={concurrency}")
        if hostname:
            argv.append(f"--hostname={hostname}")
        raise typer.Exit(celery.start(argv) or 0)
    finally:
        if private_dir is not None:
            shutil.rmtree(private_dir, ignore_errors=True)


@app.command()
def beat(
    loglevel: Annotated[
        str | None, typer.Option(help="DEBUG, INFO, WARNING, ERROR (default ARCHIVE_LOG_LEVEL).")
    ] = None,
) -> None:
    """Start the Celery beat scheduler: periodic jobs, sent to the workers (run exactly one)."""
    settings = get_settings()
    start_observability(settings, loglevel=loglevel, celery=True)
    from archive_service.tasks.celery_app import make_celery

    try:
        celery = make_celery(settings)
    except ArchiveError as exc:
        raise fail(exc) from None
    raise typer.Exit(celery.start(["beat", f"--loglevel={loglevel or settings.log_level}"]) or 0)


remote.register(app)
verify.register(app)
audit.register(app)
logbook.register(app)
evidence.register(app)
lifecycle.register(app)
disposal.register(app)
derogations.register(app)
