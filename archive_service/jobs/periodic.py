"""A periodic job in a thread of this process: the one-machine default's beat.

With the in-process runner there is no Celery beat; the API starts one of these per periodic
job (the logbook checkpoints) and stops it when it stops. The first run comes one period
after the start, never at once: a restart does not make a checkpoint by itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import structlog

from archive_service.errors import ArchiveError

_logger = logging.getLogger(__name__)


class PeriodicThread:
    def __init__(self, name: str, every: float, job: Callable[[], object]) -> None:
        if every <= 0:
            msg = f"period of {name} must be positive, got {every}"
            raise ValueError(msg)
        self.name = name
        self.every = every
        self._job = job
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        """Runs completed (successful or not), for tests and health checks."""

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._loop, name=f"periodic-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop after the run in progress, if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_once(self) -> None:
        """One run of the job now, its failure logged (the loop goes on)."""
        with structlog.contextvars.bound_contextvars(job=self.name):
            try:
                self._job()
            except ArchiveError as exc:
                _logger.error("job.failed", extra={"code": exc.code, "reason": exc.message})
            except Exception:
                _logger.exception("job.crashed")
            finally:
                self.runs += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.run_once()
