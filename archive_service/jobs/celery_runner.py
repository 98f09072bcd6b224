"""Celery task runner (the scale-out setup): ``submit`` only sends a message naming the job.

The job itself runs in an ``archive-service worker`` process (``archive_service.tasks``),
which this module does not import: the API and the workers share nothing but the task name
(``archive.<job name>``), its one argument (the id) and the broker. Messages are JSON.

``celery_client`` holds the broker-side configuration both sides need (serializer, queue,
transport options), so that the worker app (``tasks.celery_app.make_celery``) and this sender
cannot disagree.

A broker that cannot be reached does not fail the request that submitted the job: the
transfer row is committed already, so the submission is logged as failed and the periodic
``archive.resume_unfinished`` job submits it again later.

``pending`` (the queue depth ``/metrics`` reports) asks the broker how many messages wait in
the queue; a broker that does not answer within ``PENDING_TIMEOUT`` makes it ``None`` and a
warning, never an error of the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from celery import Celery
from kombu.exceptions import OperationalError

from archive_service.config import Settings

_logger = logging.getLogger(__name__)

TASK_PREFIX = "archive."

#: Seconds to wait for the broker when counting the waiting jobs (at each metrics scrape).
PENDING_TIMEOUT = 2.0

# Publishing waits at most about 1.5 s for an unreachable broker, then gives up (see above).
_PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


def task_name(job_name: str) -> str:
    """The stable Celery task name of a job: ``process_transfer`` → ``archive.process_transfer``."""
    return TASK_PREFIX + job_name


AppT = TypeVar("AppT", bound=Celery)


def celery_client(settings: Settings, app_class: type[AppT]) -> AppT:
    """A Celery app of ``app_class`` for the broker of ``settings``; no connection is made."""
    app: AppT = app_class("archive_service", set_as_current=False)
    transport: dict[str, object] = {}
    if settings.broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
        # Without timeouts a publish to a vanished Redis can wait forever.
        transport.update(
            visibility_timeout=settings.celery_visibility_timeout,
            socket_connect_timeout=5,
            socket_timeout=30,
        )
    transport.update(settings.celery_broker_transport_options)
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=settings.result_backend,
        task_ignore_result=settings.result_backend is None,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.celery_queue,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        enable_utc=True,
        timezone="UTC",
    )
    return app


def waiting_messages(app: Celery, queue: str, *, timeout: float | None = None) -> int:
    """Messages in ``queue`` not yet delivered to a worker.

    The queue is declared as the workers declare it (a passive declaration misses the queue
    on Redis with a ``global_keyprefix``), which also makes it exist when no worker did yet.
    With ``timeout``, a broker that cannot be reached raises after one connection attempt
    instead of being retried with the app's connection policy.
    """
    with app.connection_for_read() as conn:
        if timeout is not None:
            conn.ensure_connection(max_retries=0, timeout=timeout)
        declared = app.amqp.queues[queue].bind(conn.default_channel).queue_declare()
        return int(declared.message_count)


class CeleryRunner:
    """The ``TaskRunner`` port over a Celery broker."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._names: set[str] = set()

    @classmethod
    def for_settings(cls, settings: Settings) -> CeleryRunner:
        return cls(celery_client(settings, Celery))

    def register(self, job_name: str, handler: Callable[[str], object]) -> None:
        """Declare a job this runner may send; ``handler`` runs in the workers, not here."""
        self._names.add(job_name)

    def submit(self, job_name: str, job_id: str) -> None:
        if job_name not in self._names:
            msg = f"no handler for job {job_name!r}"
            raise LookupError(msg)
        try:
            self.app.send_task(
                task_name(job_name), args=[job_id], retry=True, retry_policy=_PUBLISH_RETRY
            )
        except OperationalError:
            _logger.exception("job.submit_failed", extra={"job": job_name, "id": job_id})

    def pending(self) -> int | None:
        """Jobs waiting in the broker's queue for a worker; ``None`` if the broker does not
        answer (logged: ``jobs.pending_unknown``)."""
        queue = self.app.conf.task_default_queue
        try:
            return waiting_messages(self.app, queue, timeout=PENDING_TIMEOUT)
        except Exception as exc:  # kombu raises many kinds; all mean "unknown now"
            _logger.warning(
                "jobs.pending_unknown",
                extra={"queue": queue, "reason": f"{type(exc).__name__}: {exc}"},
            )
            return None

    def shutdown(self) -> None:
        self.app.close()
