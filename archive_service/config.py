"""Typed settings, read once by an entry point and passed down (prefix ``ARCHIVE_``).

Nothing here reads the environment at import time: call :func:`get_settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARCHIVE_", env_file=None, extra="ignore")

    environment: Literal["development", "production"] = "development"
    """`production` refuses development defaults (built-in TSA, local storage) unless allowed."""
    allow_dev_defaults: bool = False

    data_dir: Path = Path("./var")
    """All state of the one-machine default lives here: database, storage, staging, TSA keys."""

    database_url: str | None = None
    """SQLAlchemy URL; default ``sqlite:///<data_dir>/archive.sqlite3``."""

    storage_dir: Path | None = None
    """Local storage offer directory; default ``<data_dir>/storage``."""

    storage_offers: list[dict[str, Any]] = Field(default_factory=list)
    """Storage offers in read-preference order, as a JSON list. Each is
    ``{"name", "kind": "s3", "endpoint_url", "bucket", "access_key", "secret_key"
    (or "secret_key_file"), "region", "path_style", "min_retention_days"}`` or
    ``{"name", "kind": "local", "path"}``. Empty: one local offer in ``<data_dir>/storage``.
    A package is accepted only when every offer holds it."""

    staging_dir: Path | None = None
    """Where uploads land while they are hashed; default ``<data_dir>/staging``."""

    seda_xsd_dir: Path | None = None
    """Directory holding the official SEDA XSDs, one sub-directory per version (``2.2``, ``2.3``),
    or directly the XSDs of one version. Without it, manifests are validated against our own
    RelaxNG profile only."""

    decp_schema_path: Path | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "decp_schema_path", "ARCHIVE_DECP_SCHEMA", "ARCHIVE_DECP_SCHEMA_PATH"
        ),
    )
    """Official DECP JSON schema (schema_decp_v2.0.3.json); optional, used when present.
    Environment: ``ARCHIVE_DECP_SCHEMA`` (as documented), ``ARCHIVE_DECP_SCHEMA_PATH`` too."""

    seda_version: Literal["2.3", "2.2"] = "2.3"

    tsa_url: str | None = None
    """External RFC 3161 TSA; when unset the built-in TSA is used."""
    tsa_ca_file: Path | None = None
    """PEM file with the external TSA's certificate chain (trust anchors for verification)."""
    tsa_timeout_seconds: float = 15.0

    max_file_size: int = 8 * 1024**3
    """Largest single file accepted, in bytes."""
    max_files_per_transfer: int = 10_000

    sip_max_zip_size: int = Field(default=8 * 1024**3, gt=0)
    """Largest foreign SEDA transfer zip accepted (``POST /v1/transfers``, application/zip)."""
    sip_max_entries: int = Field(default=10_000, gt=0)
    """Most entries in a transfer zip."""
    sip_max_total_size: int = Field(default=20 * 1024**3, gt=0)
    """Most bytes a transfer zip may expand to, all entries together (declared and real)."""
    sip_max_ratio: int = Field(default=200, gt=0)
    """Highest compression ratio of an entry expanding to more than 1 MiB (bomb guard)."""

    archival_agency_identifier: str = "ARCHIVE-SERVICE"
    """Identifier of the archives service (SEDA ArchivalAgency) when a tenant has none."""

    task_runner: Literal["inprocess", "celery"] = "inprocess"
    job_lease_seconds: int = Field(default=120, ge=1)
    """A job holds its transfer for this long and renews it every third of it while it runs;
    when a job dies, another may take the transfer over once the lease has run out."""
    inprocess_workers: int = 2

    # --- Celery workers (task_runner="celery"; `archive-service worker` / `beat`) ------------
    broker_url: str = "redis://127.0.0.1:6379/0"
    """Celery broker: ``redis://…`` (default) or ``amqp://user:password@host:5672/vhost``."""
    result_backend: str | None = None
    """Celery result backend; none by default: jobs report through the transfers table."""
    celery_queue: str = "archive"
    """Queue the API sends jobs to and workers consume (one per deployment sharing a broker)."""
    celery_task_max_retries: int = Field(default=12, ge=0)
    """Retries of a job whose dependency is down (``Unavailable``); after the last one the
    transfer stays waiting and the periodic resume job submits it again."""
    celery_retry_backoff_base: float = Field(default=2.0, gt=0)
    """First retry delay in seconds; it doubles each retry, with jitter (half to full delay)."""
    celery_retry_backoff_max: float = Field(default=600.0, gt=0)
    """Longest retry delay in seconds; must stay below the Redis visibility timeout (and below
    RabbitMQ's consumer timeout, 30 min by default): a retry waits unacknowledged in a worker."""
    celery_visibility_timeout: int = Field(default=3600, gt=0)
    """Redis broker only: seconds after which a job delivered to a worker that vanished
    (``kill -9``, lost host) is delivered again; also the longest a job may run without being
    delivered twice. RabbitMQ redelivers as soon as the worker's connection drops."""
    celery_resume_after_seconds: int = Field(default=1800, gt=0)
    """The beat job resubmits transfers unfinished and untouched for this long; it must exceed
    the longest job, since a transfer being processed is not touched until it ends."""
    celery_resume_every_seconds: float = Field(default=300.0, gt=0)
    """Period of the beat job ``archive.resume_unfinished``."""
    celery_broker_transport_options: dict[str, Any] = Field(default_factory=dict)
    """Extra kombu transport options (JSON), e.g. ``{"global_keyprefix": "archive:"}`` for a
    Redis shared with other applications."""

    api_key_pepper: SecretStr = Field(default=SecretStr("dev-pepper-change-me"))
    """Secret mixed into API-key hashes; production refuses the default."""

    host: str = "127.0.0.1"
    port: int = 8000

    # --- integrity audit (`archive-service audit`, beat job `archive.audit`) -----------------
    audit_window_days: int = Field(default=30, ge=1)
    """``/v1/audit/status`` and the metric ``archive_audit_verified_fraction`` count a copy as
    verified when an audit found it healthy within this many days."""
    audit_every_seconds: float = Field(default=86400.0, gt=0)
    """Period of the beat job ``archive.audit`` (Celery); the one-machine default runs
    ``archive-service audit --sample …`` from cron instead."""
    audit_sample_fraction: float = Field(default=0.05, gt=0, le=1)
    """Share of the copies each beat run re-reads, least recently verified first: 0.05 daily
    covers the archive every 20 days, inside the 30-day window."""
    audit_repair: bool = False
    """The beat job repairs what it finds (from a healthy copy); off: it reports only."""

    # --- logbook (Merkle log, checkpoints: `archive-service logbook`, beat job) ----------------
    logbook_origin_prefix: str = Field(default="archive-service", pattern=r"^[^\s+]+$")
    """Checkpoints name each tenant's log ``<prefix>/<tenant id>`` (their origin line); the
    prefix is also the name of the signing key in the signed notes. Use the service's host
    name (e.g. ``archive.example.org``)."""
    logbook_signing_key: Path | None = None
    """PEM file of the Ed25519 private key that signs checkpoints. Unset: a key made once in
    ``<data dir>/logbook/signing-key.pem`` (refused in production)."""
    logbook_checkpoint_every_seconds: float = Field(default=3600.0, gt=0, le=86400)
    """Period of the checkpoint job (beat job ``archive.logbook_checkpoint``, or a thread of
    the API with the in-process runner); never more than a day."""
    logbook_checkpoint_retention_days: int = Field(default=10950, ge=1)
    """S3 Object Lock (COMPLIANCE) on the checkpoints stored in each offer: they are the
    evidence against a rewritten database: 30 years by default, as long as the records they
    vouch for (retention is only ever extended)."""

    # --- evidence bundles (`GET /v1/archive-units/{id}/evidence`, `archive-service evidence`) --
    evidence_auditor_objects: bool = False
    """Auditors may have the objects (document content) in evidence bundles; off: auditors get
    bundles without objects, like every other read of content they may not make."""

    # --- observability ---------------------------------------------------------------------
    log_format: Literal["json", "console"] = "json"
    """``json``: one JSON object per line (timestamp, level, event, logger, and the context:
    request_id, transfer_id, job, id, attempt); ``console``: the same, readable by humans."""
    log_level: str = "INFO"
    metrics_dir: Path | None = None
    """Directory shared by the API and the worker processes of one host: each process writes
    its metrics there and ``/metrics`` sums them (Prometheus multiprocess mode). Empty it
    before the processes start (a tmpfs or an ``emptyDir``). Unset: each process reports
    only its own figures."""

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'archive.sqlite3').resolve()}"

    @property
    def resolved_storage_dir(self) -> Path:
        return (self.storage_dir or self.data_dir / "storage").resolve()

    @property
    def resolved_staging_dir(self) -> Path:
        return (self.staging_dir or self.data_dir / "staging").resolve()

    @property
    def tsa_dir(self) -> Path:
        return (self.data_dir / "tsa").resolve()

    @property
    def logbook_key_dir(self) -> Path:
        return (self.data_dir / "logbook").resolve()


def get_settings(**overrides: object) -> Settings:
    """Read settings from the environment (and explicit overrides, used by tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
