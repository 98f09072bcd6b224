"""Celery workers (the scale-out setup): the same jobs as the in-process runner, run elsewhere.

``archive-service worker`` and ``archive-service beat`` build the app with :func:`make_celery`
from the settings; ``celery -A archive_service.tasks.celery_app …`` (inspect, purge) finds a
lazily built ``app``. Nothing is created at import time.

Delivery: a job is acknowledged only after it ran (``task_acks_late``), and a worker process
that dies mid-job gives its message back (``task_reject_on_worker_lost``), so ``kill -9``
loses nothing: the broker delivers the job again (RabbitMQ as soon as the connection drops,
Redis after ``celery_visibility_timeout``). That is safe because jobs take an id and are
idempotent: a resumed ``process_transfer`` finds and checks the keys it had written.

Each worker process builds the services once, lazily, on its first job, so after the fork:
pygfried's Go runtime (``formats/identify.py``) and the database connections must not cross
a ``fork()``.

Retries: only ``Unavailable`` (a dependency is down) is retried, with exponential backoff and
jitter; any other ``ArchiveError`` is final (``IngestService.process`` has already recorded
the rejection). After the last retry the transfer stays waiting, with its reason, and
``archive.resume_unfinished`` (beat) submits it again once it has been untouched for
``celery_resume_after_seconds``.
"""

from __future__ import annotations

import os
import random
import threading
from datetime import timedelta
from typing import Any, cast

import structlog
from celery import Celery, Task, signals

from archive_service.config import Settings, get_settings
from archive_service.errors import ArchiveError, ConfigurationError, Unavailable
from archive_service.jobs.celery_runner import celery_client, task_name, waiting_messages
from archive_service.services.ingest import PROCESS_JOB
from archive_service.wiring import Services, build_services, check_production

log = structlog.get_logger(__name__)

PROCESS_TASK = task_name(PROCESS_JOB)  # archive.process_transfer
RESUME_TASK = "archive.resume_unfinished"
LOGBOOK_CHECKPOINT_TASK = "archive.logbook_checkpoint"
AUDIT_TASK = "archive.audit"
RESUME_BATCH = 1000


class ArchiveCelery(Celery):  # type: ignore[misc]
    """A Celery app that knows the settings and builds the services once per process."""

    archive_settings: Settings
    _services: Services | None = None
    _services_pid: int | None = None
    _services_lock = threading.Lock()

    def services(self) -> Services:
        with self._services_lock:
            if self._services is None or self._services_pid != os.getpid():
                # A fork copied the parent's attributes; never reuse its connections.
                self._services = build_services(self.archive_settings, migrate=False)
                self._services_pid = os.getpid()
            return self._services

    def close_services(self, **_: object) -> None:
        with self._services_lock:
            if self._services is not None and self._services_pid == os.getpid():
                self._services.close()
            self._services = None


def backoff_delay(retries: int, *, base: float, maximum: float) -> float:
    """Seconds before retry ``retries + 1``: ``base * 2**retries`` capped at ``maximum``,
    then a random point in its upper half (jitter spreads retries without losing the growth)."""
    delay = min(maximum, base * 2.0 ** min(retries, 62))
    return delay / 2 + random.random() * delay / 2  # noqa: S311 - jitter, not a secret


class ArchiveTask(Task):  # type: ignore[misc]
    """Base of every job: a log context per run (job name, id, attempt); retries on
    ``Unavailable`` only; other ``ArchiveError`` is logged and final."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        job_id = args[0] if args else None
        with structlog.contextvars.bound_contextvars(
            job=self.name, id=job_id, attempt=self.request.retries + 1
        ):
            try:
                return super().__call__(*args, **kwargs)
            except Unavailable as exc:
                return self._retry_later(exc)
            except ArchiveError as exc:
                log.warning("job.refused", code=exc.code, reason=exc.message)
                return None

    def _retry_later(self, exc: Unavailable) -> None:
        settings = cast("ArchiveCelery", self.app).archive_settings
        retries = self.request.retries
        if retries >= settings.celery_task_max_retries:
            log.error("job.gave_up", reason=exc.message, retries=retries)
            return
        delay = backoff_delay(
            retries,
            base=settings.celery_retry_backoff_base,
            maximum=settings.celery_retry_backoff_max,
        )
        log.warning("job.retry", delay=round(delay, 3), reason=exc.message)
        raise self.retry(exc=exc, countdown=delay, max_retries=settings.celery_task_max_retries)


def make_celery(settings: Settings) -> ArchiveCelery:
    """The worker/beat app for ``settings`` (no connection is made, no service is built)."""
    check_production(settings)
    # The services a worker builds send the jobs they resubmit through the broker too.
    settings = settings.model_copy(update={"task_runner": "celery"})
    app = celery_client(settings, ArchiveCelery)
    visibility = app.conf.broker_transport_options.get("visibility_timeout")
    if visibility is not None and settings.celery_retry_backoff_max >= visibility:
        msg = (
            "ARCHIVE_CELERY_RETRY_BACKOFF_MAX must be below the Redis visibility timeout "
            "(ARCHIVE_CELERY_VISIBILITY_TIMEOUT): Redis would deliver a job waiting for its "
            "retry a second time"
        )
        raise ConfigurationError(msg)
    app.archive_settings = settings
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A job whose broker connection dropped is redelivered elsewhere: stop it here.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        beat_schedule={
            RESUME_TASK: {
                "task": RESUME_TASK,
                "schedule": settings.celery_resume_every_seconds,
                "options": {"expires": settings.celery_resume_every_seconds},
            },
            AUDIT_TASK: {
                "task": AUDIT_TASK,
                "schedule": settings.audit_every_seconds,
                "options": {"expires": settings.audit_every_seconds},
            },
        },
        beat_schedule_filename=str(settings.data_dir.resolve() / "celerybeat-schedule"),
    )

    app.conf.beat_schedule[LOGBOOK_CHECKPOINT_TASK] = {
        "task": LOGBOOK_CHECKPOINT_TASK,
        "schedule": settings.logbook_checkpoint_every_seconds,
        "options": {"expires": settings.logbook_checkpoint_every_seconds},
    }

    @app.task(base=ArchiveTask, name=LOGBOOK_CHECKPOINT_TASK, shared=False)  # type: ignore[untyped-decorator]
    def logbook_checkpoint() -> dict[str, int]:
        """Integrate and checkpoint every tenant's logbook that changed."""
        outcomes = app.services().logbook.checkpoint_all()
        created = [o for o in outcomes if o.status == "created"]
        log.info("logbook.checkpoints", created=len(created), tenants=len(outcomes))
        return {"created": len(created), "tenants": len(outcomes)}

    @app.task(base=ArchiveTask, name=PROCESS_TASK, shared=False)  # type: ignore[untyped-decorator]
    def process_transfer(transfer_id: str) -> str:
        status = app.services().ingest.process(transfer_id)
        log.info("job.done", status=status.value)
        return status.value

    @app.task(base=ArchiveTask, name=RESUME_TASK, shared=False)  # type: ignore[untyped-decorator]
    def resume_unfinished() -> int:
        return resume_stuck(app)

    @app.task(base=ArchiveTask, name=AUDIT_TASK, shared=False)  # type: ignore[untyped-decorator]
    def integrity_audit() -> dict[str, int]:
        return run_audit(app)

    signals.worker_process_shutdown.connect(app.close_services, weak=False)
    signals.worker_shutdown.connect(app.close_services, weak=False)
    return app


def resume_stuck(app: ArchiveCelery) -> int:
    """Submit again the transfers unfinished and untouched for ``celery_resume_after_seconds``.

    Their job was lost (the broker lost it, or it gave up after its last retry) or is still
    queued behind a backlog: so nothing is submitted while the queue holds messages, which
    keeps a backlog from growing with copies. A copy that runs after the original finished
    returns at once (jobs are idempotent).
    """
    settings = app.archive_settings
    waiting = waiting_messages(app, settings.celery_queue)
    if waiting:
        log.info("resume.deferred", waiting=waiting)
        return 0
    services = app.services()
    stuck = services.ingest.stuck(
        untouched_for=timedelta(seconds=settings.celery_resume_after_seconds), limit=RESUME_BATCH
    )
    for transfer_id in stuck:
        services.runner.submit(PROCESS_JOB, transfer_id)
    log.info("resume.submitted", count=len(stuck))
    return len(stuck)


def run_audit(app: ArchiveCelery) -> dict[str, int]:
    """One scheduled integrity audit: ``audit_sample_fraction`` of the copies, least recently
    verified first, repaired if ``audit_repair`` (services/audit.py)."""
    from archive_service.services.audit import AuditScope

    settings = app.archive_settings
    report = app.services().audit.run(
        AuditScope(
            sample=settings.audit_sample_fraction, repair=settings.audit_repair, trigger="beat"
        )
    )
    summary = {
        "checked": report.checked,
        "problems": len(report.problems),
        "repaired": len(report.repaired),
    }
    if report.unresolved:
        log.warning("audit.problems", run_id=report.run_id, **summary)
    else:
        log.info("audit.done", run_id=report.run_id, **summary)
    return summary


_app: ArchiveCelery | None = None


def __getattr__(name: str) -> ArchiveCelery:
    """``app`` for the ``celery`` command (``-A archive_service.tasks.celery_app``)."""
    global _app
    if name != "app":
        raise AttributeError(name)
    if _app is None:
        _app = make_celery(get_settings())
    return _app
