"""The ``Metrics`` port over prometheus_client, and what ``/metrics`` exposes of it.

Two modes:

* one process (the default): each :class:`PrometheusMetrics` keeps its figures in a registry
  of its own, which :meth:`PrometheusMetrics.expose` adds to the registry ``/metrics`` serves;
* several processes (``ARCHIVE_METRICS_DIR``: Celery worker processes next to the API):
  every process writes its figures to files in that directory (prometheus_client's
  multiprocess mode) and ``/metrics`` of any of them sums the files of all. The mode must be
  chosen before ``prometheus_client`` is imported: see :func:`use_metrics_dir`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector

from archive_service.errors import ConfigurationError
from archive_service.observability import MULTIPROC_ENV

_logger = logging.getLogger(__name__)

STAGE_METRIC = "archive_stage_seconds"
STORAGE_ERRORS_METRIC = "archive_storage_errors_total"
#: From 1 ms (a lock, a small read-back) to 10 min (a multi-GB store).
STAGE_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, float("inf"),
)  # fmt: skip


def multiprocess_dir() -> Path | None:
    """The directory of prometheus_client's multiprocess mode, if this process is in it."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory or not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return Path(directory)


def check_metrics_dir(wanted: Path | None) -> Path | None:
    """The multiprocess directory in force in this process.

    ``ARCHIVE_METRICS_DIR`` takes effect only if the entry point set it before
    ``prometheus_client`` was imported (``serve`` and ``worker`` do). Elsewhere (an admin
    command, a test) the process reports its own figures only, and says so.
    """
    current = multiprocess_dir()
    if wanted is not None and (current is None or current.resolve() != wanted.resolve()):
        _logger.warning(
            "metrics.dir_not_in_effect",
            extra={"metrics_dir": str(wanted), "in_effect": str(current) if current else None},
        )
    return current


class _Figures:
    """The metric objects, in no registry: :meth:`PrometheusMetrics.expose` chooses."""

    def __init__(self) -> None:
        self.stages = Histogram(
            STAGE_METRIC,
            "Duration of each ingest stage: per transfer, or per transfer and storage offer "
            "for store and read_back.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=None,
        )
        self.storage_errors = Counter(
            STORAGE_ERRORS_METRIC.removesuffix("_total"),
            "Failed operations of each storage offer.",
            ["offer", "operation"],
            registry=None,
        )


_process_figures: dict[int, _Figures] = {}


class PrometheusMetrics:
    """The ``Metrics`` port: a histogram of stage durations, a counter of storage errors."""

    def __init__(self, *, metrics_dir: Path | None = None) -> None:
        self.multiprocess_dir = check_metrics_dir(metrics_dir)
        if self.multiprocess_dir is None:
            self._figures = _Figures()
        else:
            # Values live in this process's files, keyed by metric and labels: one set of
            # metric objects per process, whatever the number of services built in it.
            pid = os.getpid()
            if pid not in _process_figures:
                _process_figures[pid] = _Figures()
            self._figures = _process_figures[pid]

    def observe_stage(self, stage: str, seconds: float) -> None:
        self._figures.stages.labels(stage).observe(seconds)

    def storage_error(self, offer: str, operation: str) -> None:
        self._figures.storage_errors.labels(offer, operation).inc()

    def expose(self, registry: CollectorRegistry) -> None:
        """Make ``registry`` serve these figures: this process's, or in multiprocess mode the
        sum over every process writing to the directory."""
        if self.multiprocess_dir is not None:
            MultiProcessCollector(registry, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        else:
            registry.register(self._figures.stages)
            registry.register(self._figures.storage_errors)


def multiprocess_registry() -> CollectorRegistry:
    """A registry summing every process of the multiprocess directory (a worker's port)."""
    directory = multiprocess_dir()
    if directory is None:
        msg = f"no metrics directory in effect ({MULTIPROC_ENV} unset at import)"
        raise ConfigurationError(msg)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return registry
