"""In-process task runner (the one-machine default): jobs run on a small thread pool.

Jobs take ids and are idempotent, like the Celery jobs of the scale-out setup. A job that
raises ``Unavailable`` is retried with exponential backoff; at start, unfinished transfers
are resubmitted, so a crash loses nothing that was acknowledged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import structlog

from archive_service.errors import Unavailable

_logger = logging.getLogger(__name__)

Handler = Callable[[str], object]


class InProcessRunner:
    def __init__(
        self,
        *,
        workers: int = 2,
        max_attempts: int = 8,
        base_delay: float = 0.5,
        max_delay: float = 60.0,
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._handlers: dict[str, Handler] = {}
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._pending: set[Future[None]] = set()
        self._waiting = 0
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()
        self._closed = False

    def register(self, job_name: str, handler: Handler) -> None:
        self._handlers[job_name] = handler

    def submit(self, job_name: str, job_id: str) -> None:
        if job_name not in self._handlers:
            msg = f"no handler for job {job_name!r}"
            raise LookupError(msg)
        self._submit(job_name, job_id, 1)

    def _submit(self, job_name: str, job_id: str, attempt: int) -> None:
        with self._lock:
            if self._closed:
                return
            future = self._pool.submit(self._start, job_name, job_id, attempt)
            self._pending.add(future)
            self._waiting += 1
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _start(self, job_name: str, job_id: str, attempt: int) -> None:
        with self._lock:
            self._waiting -= 1
        # The same log context as a Celery job (tasks/celery_app.py ArchiveTask).
        with structlog.contextvars.bound_contextvars(job=job_name, id=job_id, attempt=attempt):
            self._run(job_name, job_id, attempt)

    def _run(self, job_name: str, job_id: str, attempt: int) -> None:
        try:
            self._handlers[job_name](job_id)
        except Unavailable as exc:
            if attempt >= self._max_attempts:
                _logger.error("job.gave_up", extra={"job": job_name, "id": job_id})
                return
            delay = min(self._max_delay, self._base_delay * 2 ** (attempt - 1))
            _logger.warning(
                "job.retry",
                extra={"job": job_name, "id": job_id, "delay": delay, "reason": exc.message},
            )
            timer = threading.Timer(delay, self._submit, (job_name, job_id, attempt + 1))
            timer.daemon = True
            with self._lock:
                self._timers.add(timer)
            timer.start()
        except Exception:
            _logger.exception("job.failed", extra={"job": job_name, "id": job_id})

    def pending(self) -> int:
        """Jobs submitted and not started yet (waiting for a free thread)."""
        with self._lock:
            return self._waiting

    def pending_count(self) -> int:
        """Jobs queued or running now (retries waiting for their delay are not counted)."""
        with self._lock:
            return len(self._pending)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until no job is running or queued (retries scheduled later are not waited for)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return True
            for f in pending:
                f.exception(timeout=max(0.0, deadline - time.monotonic()))
        return False

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            for timer in self._timers:
                timer.cancel()
        self._pool.shutdown(wait=True)
