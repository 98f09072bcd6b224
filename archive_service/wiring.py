"""The one composition root: settings → adapters → services.

This is the only module that chooses implementations. Nothing is created at import time;
entry points call :func:`build_services` once and close what it returns when they stop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from archive_service.config import Settings
from archive_service.core.retention import Referential
from archive_service.core.seda.validate import SedaValidator
from archive_service.core.zipsafe import ZipLimits
from archive_service.db.migrate import upgrade
from archive_service.db.uow import make_engine, uow_factory
from archive_service.errors import ConfigurationError
from archive_service.formats.identify import MagicSiegfriedIdentifier
from archive_service.jobs.celery_runner import CeleryRunner
from archive_service.jobs.inprocess import InProcessRunner
from archive_service.jobs.periodic import PeriodicThread
from archive_service.observability.prometheus import PrometheusMetrics
from archive_service.ports import BlobStore, Clock, TimestampAuthority
from archive_service.search.postgres_fts import PostgresFtsIndex
from archive_service.search.sqlite_fts import SqliteFtsIndex
from archive_service.services.audit import AuditService
from archive_service.services.derogations import DerogationService
from archive_service.services.disposal import DisposalService
from archive_service.services.dossiers import DossierService
from archive_service.services.evidence import EvidenceService
from archive_service.services.export import ExportService
from archive_service.services.holds import HoldService
from archive_service.services.ingest import PROCESS_JOB, IngestService
from archive_service.services.lifecycle import LifecycleService
from archive_service.services.logbook import LogbookService
from archive_service.services.referentials import ReferentialService
from archive_service.services.retrieval import RetrievalService
from archive_service.services.sip_ingest import SipIngest
from archive_service.services.storage_admin import StorageAdminService
from archive_service.services.tenancy import TenancyService
from archive_service.storage.instrumented import instrument
from archive_service.storage.local import LocalDirectoryStore
from archive_service.storage.s3 import S3OfferConfig
from archive_service.storage.staging import LocalStaging
from archive_service.tsa.builtin import BuiltinTimestampAuthority
from archive_service.tsa.http import HttpTimestampAuthority
from archive_service.tsa.logbook_key import generated_signing_key, load_signing_key

PROFILE_DIR = Path(__file__).resolve().parent.parent / "seda_schemas"


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    engine: Engine
    tenancy: TenancyService
    ingest: IngestService
    retrieval: RetrievalService
    tsa: TimestampAuthority
    offers: tuple[BlobStore, ...]
    staging: LocalStaging
    runner: InProcessRunner | CeleryRunner
    validator: SedaValidator
    storage_admin: StorageAdminService
    metrics: PrometheusMetrics
    logbook: LogbookService
    audit: AuditService
    evidence: EvidenceService
    sip: SipIngest
    export: ExportService
    referentials: ReferentialService
    lifecycle: LifecycleService
    dossiers: DossierService
    holds: HoldService
    disposal: DisposalService
    derogations: DerogationService

    def __post_init__(self) -> None:
        # Transfers to the definitive archives are exported by the export service (item 7).
        export = getattr(self, "export", None)
        if self.disposal.outgoing_transfer is None and export is not None:
            self.disposal.outgoing_transfer = export.outgoing_transfer

    def close(self) -> None:
        self.runner.shutdown()
        self.engine.dispose()


def default_referential_text() -> str:
    """The shipped default référentiel (procurement.md §2.4): version 1 of every tenant."""
    text = resources.files("archive_service.data").joinpath("retention_referential.json")
    return text.read_text(encoding="utf-8")


def load_referential() -> Referential:
    return Referential.from_json(default_referential_text())


def decp_validator(schema_path: Path | None) -> Any:
    """A callable checking a DECP ``marche`` against the official JSON schema, if installed."""
    if schema_path is None:
        return None
    if not schema_path.is_file():
        raise ConfigurationError(f"DECP schema not found at {schema_path}")
    import jsonschema

    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    marche = {**schema["definitions"]["marche"], "definitions": schema["definitions"]}
    validator = jsonschema.Draft7Validator(marche)

    def check(decp: dict[str, Any]) -> list[str]:
        return [
            f"{'/'.join(str(p) for p in e.absolute_path) or '(racine)'}: {e.message}"
            for e in sorted(validator.iter_errors(decp), key=lambda e: list(e.absolute_path))
        ]

    return check


def build_tsa(settings: Settings, clock: SystemClock) -> TimestampAuthority:
    if settings.tsa_url:
        if settings.tsa_ca_file is None:
            raise ConfigurationError("ARCHIVE_TSA_URL needs ARCHIVE_TSA_CA_FILE (its chain)")
        return HttpTimestampAuthority(
            settings.tsa_url,
            chain_pem=settings.tsa_ca_file.read_bytes(),
            timeout=settings.tsa_timeout_seconds,
        )
    return BuiltinTimestampAuthority(settings.tsa_dir, clock=clock)


def build_offers(settings: Settings) -> tuple[BlobStore, ...]:
    """The storage offers of the settings, in read-preference order."""
    if not settings.storage_offers:
        return (LocalDirectoryStore("local", settings.resolved_storage_dir),)
    offers: list[BlobStore] = []
    for raw in settings.storage_offers:
        spec = dict(raw)
        kind = spec.pop("kind", "s3")
        if "secret_key_file" in spec:
            spec["secret_key"] = Path(str(spec.pop("secret_key_file"))).read_text().strip()
        if kind == "local":
            name, path = spec.get("name"), spec.get("path")
            if not name or not path:
                raise ConfigurationError("a local storage offer needs a name and a path")
            offers.append(LocalDirectoryStore(str(name), Path(str(path))))
        elif kind == "s3":
            offers.append(S3OfferConfig.from_mapping(spec).store())
        else:
            raise ConfigurationError(f"unknown storage offer kind {kind!r} (s3 or local)")
    names = [o.name for o in offers]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"storage offer names must be unique: {names}")
    return tuple(offers)


def check_production(settings: Settings) -> None:
    if settings.environment != "production" or settings.allow_dev_defaults:
        return
    problems = []
    if not settings.tsa_url:
        problems.append("the built-in TSA (set ARCHIVE_TSA_URL)")
    if not settings.storage_offers or any(
        o.get("kind", "s3") == "local" for o in settings.storage_offers
    ):
        problems.append("local-directory storage (configure S3 offers in ARCHIVE_STORAGE_OFFERS)")
    if settings.api_key_pepper.get_secret_value() == "dev-pepper-change-me":
        problems.append("the default ARCHIVE_API_KEY_PEPPER")
    if settings.logbook_signing_key is None:
        problems.append("a generated logbook signing key (set ARCHIVE_LOGBOOK_SIGNING_KEY)")
    if not problems:
        return
    raise ConfigurationError(
        "production mode refuses development defaults: "
        + "; ".join(problems)
        + " (ARCHIVE_ALLOW_DEV_DEFAULTS=true overrides)"
    )


def logbook_signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The service's Ed25519 key: it signs logbook checkpoints and disposal certificates."""
    if settings.logbook_signing_key is not None:
        return load_signing_key(settings.logbook_signing_key)
    return generated_signing_key(settings.logbook_key_dir)


def build_disposal(
    settings: Settings,
    uow: Any,
    offers: tuple[BlobStore, ...],
    tsa: TimestampAuthority,
    validator: SedaValidator,
    clock: Clock,
    storage_clock: Clock,
) -> DisposalService:
    """Disposal and transfer requests (issue 5 items 6-7): certificates are signed with the
    logbook key; proof documents are retained as long as logbook checkpoints."""
    return DisposalService(
        uow=uow,
        offers=offers,
        clock=clock,
        storage_clock=storage_clock,
        tsa=tsa,
        validator=validator,
        signing_key=logbook_signing_key(settings),
        key_name=settings.logbook_origin_prefix,
        proof_retention=timedelta(days=settings.logbook_checkpoint_retention_days),
        seda_version=settings.seda_version,
    )


def build_logbook(
    settings: Settings,
    uow: Any,
    offers: tuple[BlobStore, ...],
    tsa: TimestampAuthority,
    clock: Clock,
) -> LogbookService:
    key = (
        load_signing_key(settings.logbook_signing_key)
        if settings.logbook_signing_key is not None
        else generated_signing_key(settings.logbook_key_dir)
    )
    return LogbookService(
        uow=uow,
        offers=offers,
        tsa=tsa,
        clock=clock,
        signing_key=key,
        key_name=settings.logbook_origin_prefix,
        origin_prefix=settings.logbook_origin_prefix,
        retention=timedelta(days=settings.logbook_checkpoint_retention_days),
    )


def build_runner(settings: Settings) -> InProcessRunner | CeleryRunner:
    """Jobs run in this process (the default), or in Celery workers fed through the broker."""
    if settings.task_runner == "celery":
        return CeleryRunner.for_settings(settings)
    return InProcessRunner(workers=settings.inprocess_workers)


def build_services(
    settings: Settings, *, migrate: bool = True, clock: Clock | None = None
) -> Services:
    """Every service for ``settings``. ``clock``: the time the services go by (retention due
    dates, communicability, records); tests pass one they can move years ahead. The TSA
    keeps the system clock: a timestamp is the authority's time, never ours."""
    check_production(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    system_clock = SystemClock()
    clock = clock or system_clock
    engine = make_engine(settings.resolved_database_url)
    if migrate:
        upgrade(engine)
    search_factory = PostgresFtsIndex if engine.dialect.name == "postgresql" else SqliteFtsIndex
    uow = uow_factory(engine, search_factory)
    metrics = PrometheusMetrics(metrics_dir=settings.metrics_dir)
    offers = tuple(instrument(offer, metrics) for offer in build_offers(settings))
    staging = LocalStaging(
        settings.resolved_staging_dir,
        max_file_size=settings.max_file_size,
        max_files=settings.max_files_per_transfer,
    )
    runner = build_runner(settings)
    validator = SedaValidator(settings.seda_xsd_dir, PROFILE_DIR)
    tsa = build_tsa(settings, system_clock)
    referentials = ReferentialService(uow=uow, clock=clock, default_text=default_referential_text())
    ingest = IngestService(
        uow=uow,
        staging=staging,
        offers=offers,
        tsa=tsa,
        formats=MagicSiegfriedIdentifier(),
        validator=validator,
        referential=referentials.referential_for,
        clock=clock,
        runner=runner,
        seda_version=settings.seda_version,
        decp_validator=decp_validator(settings.decp_schema_path),
        lease_seconds=settings.job_lease_seconds,
        metrics=metrics,
    )
    runner.register(PROCESS_JOB, ingest.process)
    lifecycle = LifecycleService(uow=uow, offers=offers, clock=clock, referentials=referentials)
    ingest.on_dossier_changed(lifecycle.dossier_changed)
    holds = HoldService(uow=uow, offers=offers, clock=clock)
    ingest.on_dossier_changed(holds.dossier_changed)
    sip = SipIngest(
        ingest=ingest,
        uow=uow,
        staging=staging,
        validator=validator,
        formats=MagicSiegfriedIdentifier(),
        clock=clock,
        runner=runner,
        limits=ZipLimits(
            max_entries=settings.sip_max_entries,
            max_entry_size=min(settings.max_file_size, settings.sip_max_total_size),
            max_total_size=settings.sip_max_total_size,
            max_ratio=settings.sip_max_ratio,
        ),
        seda_version=settings.seda_version,
    )
    storage_admin = StorageAdminService(uow=uow, offers=offers, clock=clock)
    logbook = build_logbook(settings, uow, offers, tsa, clock)
    return Services(
        settings=settings,
        engine=engine,
        tenancy=TenancyService(
            uow=uow, clock=clock, pepper=settings.api_key_pepper.get_secret_value().encode()
        ),
        ingest=ingest,
        retrieval=RetrievalService(uow=uow, offers=offers, clock=clock),
        tsa=tsa,
        offers=offers,
        staging=staging,
        runner=runner,
        validator=validator,
        storage_admin=storage_admin,
        metrics=metrics,
        logbook=logbook,
        audit=AuditService(
            uow=uow,
            offers=offers,
            clock=clock,
            storage_admin=storage_admin,
            window_days=settings.audit_window_days,
        ),
        evidence=EvidenceService(
            uow=uow,
            offers=offers,
            tsa=tsa,
            clock=clock,
            logbook=logbook,
            auditor_objects=settings.evidence_auditor_objects,
        ),
        sip=sip,
        holds=holds,
        disposal=build_disposal(settings, uow, offers, tsa, validator, clock, system_clock),
        export=ExportService(
            uow=uow,
            offers=offers,
            clock=clock,
            validator=validator,
            retrieval=RetrievalService(uow=uow, offers=offers, clock=clock),
            work_dir=settings.data_dir / "exports",
        ),
        referentials=referentials,
        lifecycle=lifecycle,
        dossiers=DossierService(uow=uow, offers=offers, clock=clock),
        derogations=DerogationService(uow=uow, clock=clock),
    )


def resume_unfinished(services: Services) -> int:
    """Resubmit transfers a previous run acknowledged but did not finish.

    In-process only: with Celery, the broker still holds the jobs of unfinished transfers (they
    are acknowledged late) and workers may be running them now, so the beat job
    ``archive.resume_unfinished`` resubmits only the ones untouched for a while.
    """
    if isinstance(services.runner, CeleryRunner):
        return 0
    # This process is the only one running jobs: a lease left by a crashed run is stale.
    services.ingest.release_leases()
    pending = services.ingest.unfinished()
    for transfer_id in pending:
        services.runner.submit(PROCESS_JOB, transfer_id)
    return len(pending)


def periodic_jobs(services: Services) -> list[PeriodicThread]:
    """The periodic jobs this process runs itself: with the in-process runner there is no
    Celery beat, so the API runs the logbook checkpoints (started and stopped by its
    lifespan); with Celery, ``archive-service beat`` sends them to the workers."""
    if isinstance(services.runner, CeleryRunner):
        return []
    return [
        PeriodicThread(
            "logbook.checkpoint",
            services.settings.logbook_checkpoint_every_seconds,
            services.logbook.checkpoint_all,
        )
    ]
