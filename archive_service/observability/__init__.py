"""Monitoring adapters: Prometheus metrics (``prometheus``) and structured logs (``logs``).

Prometheus' multiprocess mode is chosen when ``prometheus_client`` is imported, from the
``PROMETHEUS_MULTIPROC_DIR`` environment variable: :func:`use_metrics_dir` sets it, so entry
points call it before importing anything that imports ``prometheus_client`` (this package's
``__init__`` does not).
"""

from __future__ import annotations

import os
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_metrics_dir(directory: Path) -> Path:
    """Make this process (and the processes it starts) write its metrics to ``directory``,
    where every process of the host that shares it is aggregated at scrape time."""
    resolved = directory.resolve()
    resolved.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(resolved)
    return resolved
