"""Engine, sessions and the unit of work: the only place that commits."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from archive_service.db.audit_repository import SqlAuditRepository
from archive_service.db.derogation_repository import SqlDerogationRepository
from archive_service.db.disposal_repository import SqlDisposalRepository
from archive_service.db.lifecycle_repository import SqlLifecycleRepository
from archive_service.db.logbook import SqlLogbookRepository
from archive_service.db.repositories import (
    SqlArchiveRepository,
    SqlTenancyRepository,
    SqlTransferRepository,
)
from archive_service.errors import Unavailable
from archive_service.ports import SearchIndex

_logger = logging.getLogger(__name__)

# Per process: up to POOL_SIZE + MAX_OVERFLOW connections. An API process holds one only for
# the length of a unit of work, a worker one per running job, so 5 + 10 covers the request
# threads and the in-process workers while several API and worker processes stay well below
# PostgreSQL's default max_connections (100).
POOL_SIZE = 5
MAX_OVERFLOW = 10


def make_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite (the one-machine default) or PostgreSQL with psycopg 3.

    A bare ``postgresql://`` URL is given the psycopg 3 driver (the one installed) rather than
    SQLAlchemy's default psycopg2.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        return engine
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "postgresql":
        return create_engine(parsed, pool_pre_ping=True)
    return create_engine(
        parsed,
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        pool_timeout=30,
        pool_pre_ping=True,  # a connection dropped by a restart or a firewall is replaced
        pool_recycle=1800,
        connect_args={"connect_timeout": 10, "application_name": "archive-service"},
    )


def unavailable_cause(exc: BaseException) -> Unavailable | None:
    """``Unavailable`` if ``exc`` says the database cannot serve now, else ``None``.

    A server restarting, a dropped connection, a full pool or a database locked for too long
    is the database being down for a while: the request answers 503 and the job is retried
    (DESIGN.md §6.3). Errors of the statement itself (constraint, SQL) are not translated.
    """
    if isinstance(exc, sa_exc.DBAPIError) and (
        exc.connection_invalidated
        or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
    ):
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        return Unavailable(f"database unavailable: {reason}")
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection freed in time
        return Unavailable(f"database unavailable: {exc}")
    return None


class SqlUnitOfWork:
    """One database transaction with the repositories bound to it.

    A database that cannot be reached (see :func:`unavailable_cause`) leaves the block as
    ``Unavailable``, whichever statement or commit met it.
    """

    def __init__(
        self, factory: sessionmaker[Session], search_factory: Callable[[Session], SearchIndex]
    ) -> None:
        self._factory = factory
        self._search_factory = search_factory

    def __enter__(self) -> SqlUnitOfWork:
        self.session = self._factory()
        self.tenancy = SqlTenancyRepository(self.session)
        self.transfers = SqlTransferRepository(self.session)
        self.archive = SqlArchiveRepository(self.session)
        self.logbook = SqlLogbookRepository(self.session)
        self.audit = SqlAuditRepository(self.session)
        self.lifecycle = SqlLifecycleRepository(self.session)
        self.disposal = SqlDisposalRepository(self.session)
        self.derogations = SqlDerogationRepository(self.session)
        self.search = self._search_factory(self.session)
        return self

    def commit(self) -> None:
        self.session.commit()

    def __exit__(self, *exc_info: object) -> None:
        exc = exc_info[1] if len(exc_info) > 1 and isinstance(exc_info[1], BaseException) else None
        try:
            self.session.rollback()
            self.session.close()
        except sa_exc.SQLAlchemyError as cleanup:
            if exc is None:
                down = unavailable_cause(cleanup)
                if down is None:
                    raise
                raise down from cleanup
            # The connection died with the error being raised: that error is the news.
            _logger.debug("db.rollback_failed", exc_info=True)
        down = unavailable_cause(exc) if exc is not None else None
        if down is not None:
            raise down from exc


def uow_factory(
    engine: Engine, search_factory: Callable[[Session], SearchIndex]
) -> Callable[[], SqlUnitOfWork]:
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    return lambda: SqlUnitOfWork(sessions, search_factory)
