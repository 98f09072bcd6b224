"""Readiness and metrics: what an operator (or Kubernetes, or Prometheus) asks the API.

``/readyz`` checks each dependency the API needs to accept a transfer and answers 503 naming
the ones that fail. ``/metrics`` exposes Prometheus metrics computed from the database at
scrape time, so every API replica reports the same archive-wide figures and nothing is lost
when a process restarts; the queue depth, asked of the task runner at scrape time; and the
stage durations and storage errors the processes observed (observability/prometheus.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from archive_service.db import tables as t
from archive_service.errors import ArchiveError
from archive_service.jobs.celery_runner import CeleryRunner
from archive_service.jobs.inprocess import InProcessRunner
from archive_service.services.audit import verified_fraction
from archive_service.wiring import Services

_log = logging.getLogger(__name__)

PROBE_KEY = "readiness/probe"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def _database(services: Services) -> Check:
    try:
        with services.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return Check("database", True, services.engine.dialect.name)
    except Exception as exc:  # any driver error means "not ready"
        return Check("database", False, type(exc).__name__ + ": " + str(exc).splitlines()[0])


def _offer(services: Services, index: int) -> Check:
    offer = services.offers[index]
    try:
        offer.stat(PROBE_KEY)  # a metadata request: reachability and credentials
        return Check(f"offer:{offer.name}", True, "reachable")
    except ArchiveError as exc:
        return Check(f"offer:{offer.name}", False, exc.message)


def _tsa(services: Services) -> Check:
    try:
        chain = services.tsa.certificate_chain_pem()
    except ArchiveError as exc:
        return Check("tsa", False, exc.message)
    ok = b"BEGIN CERTIFICATE" in chain
    return Check("tsa", ok, "certificate chain available" if ok else "no certificate chain")


def _broker(services: Services) -> Check | None:
    runner = services.runner
    if not isinstance(runner, CeleryRunner):
        return None
    try:
        with runner.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return Check("broker", True, "reachable")
    except Exception as exc:  # kombu raises many kinds; all mean "not ready"
        return Check("broker", False, type(exc).__name__ + ": " + str(exc))


def audit_metrics(services: Services) -> Iterator[Any]:
    """Per offer: the share of copies an integrity audit found healthy within the window
    (``audit_window_days``), and the copies whose last audit found a problem."""
    try:
        statuses = services.audit.offer_status()
    except (ArchiveError, SQLAlchemyError):
        return  # archive_database_up already says so
    fraction = GaugeMetricFamily(
        "archive_audit_verified_fraction",
        "Share of the copies on each offer verified healthy by an integrity audit in the last "
        f"{services.audit.window_days} days (1 when the offer holds none).",
        labels=["offer"],
    )
    problems = GaugeMetricFamily(
        "archive_audit_problems_open",
        "Copies whose last integrity audit found a problem, by offer.",
        labels=["offer"],
    )
    for status in statuses:
        fraction.add_metric([status.offer], verified_fraction(status))
        problems.add_metric([status.offer], float(status.problems_open))
    yield from (fraction, problems)


def readiness(services: Services) -> list[Check]:
    checks = [_database(services)]
    checks += [_offer(services, i) for i in range(len(services.offers))]
    checks.append(_tsa(services))
    broker = _broker(services)
    if broker is not None:
        checks.append(broker)
    return checks


class ArchiveCollector(Collector):
    """Archive-wide figures read from the database when Prometheus scrapes."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[Any]:
        transfers = GaugeMetricFamily(
            "archive_transfers", "Transfers by status.", labels=["status"]
        )
        ingested = CounterMetricFamily(
            "archive_ingested_bytes", "Bytes of archived objects (accepted packages)."
        )
        objects = GaugeMetricFamily("archive_objects", "Archived objects.")
        copies = GaugeMetricFamily(
            "archive_stored_copies", "Stored copies by storage offer.", labels=["offer"]
        )
        queue = GaugeMetricFamily(
            "archive_unfinished_transfers",
            "Transfers received or processing (the work queue as the database sees it).",
        )
        database_up = GaugeMetricFamily(
            "archive_database_up", "1 when this scrape could read the database's figures."
        )
        try:
            with self._services.engine.connect() as conn:
                by_status = dict(
                    conn.execute(
                        select(t.Transfer.status, func.count()).group_by(t.Transfer.status)
                    ).all()
                )
                for status in ("received", "processing", "accepted", "rejected"):
                    transfers.add_metric([status], float(by_status.get(status, 0)))
                size, count = conn.execute(
                    select(func.coalesce(func.sum(t.DataObject.size), 0), func.count())
                ).one()
                ingested.add_metric([], float(size))
                objects.add_metric([], float(count))
                for offer, n in conn.execute(
                    select(t.StoredCopy.offer, func.count()).group_by(t.StoredCopy.offer)
                ).all():
                    copies.add_metric([offer], float(n))
        except SQLAlchemyError as exc:
            # The database is down: say so, and still serve the process's own metrics.
            _log.warning("metrics.database_unavailable", extra={"reason": str(exc)[:200]})
            database_up.add_metric([], 0.0)
            yield database_up
        else:
            database_up.add_metric([], 1.0)
            queue.add_metric(
                [], float(by_status.get("received", 0) + by_status.get("processing", 0))
            )
            yield from (database_up, transfers, ingested, objects, copies, queue)
        yield from audit_metrics(self._services)
        runner = self._services.runner
        waiting = runner.pending()
        if waiting is not None:  # None: the broker did not answer (the runner logged why)
            jobs_waiting = GaugeMetricFamily(
                "archive_jobs_waiting",
                "Jobs submitted and not yet started (the broker's queue, or this process's).",
            )
            jobs_waiting.add_metric([], float(waiting))
            yield jobs_waiting
        if isinstance(runner, InProcessRunner):
            jobs = GaugeMetricFamily(
                "archive_inprocess_jobs", "Jobs queued or running in this API process."
            )
            jobs.add_metric([], float(runner.pending_count()))
            yield jobs
