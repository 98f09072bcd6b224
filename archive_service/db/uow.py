"""Engine, sessions and the unit of work: the only place that commits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from archive_service.db.repositories import (
    SqlArchiveRepository,
    SqlLogbookRepository,
    SqlTenancyRepository,
    SqlTransferRepository,
)
from archive_service.ports import SearchIndex


def make_engine(url: str) -> Engine:
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
    return create_engine(url, pool_pre_ping=True)


class SqlUnitOfWork:
    """One database transaction with the repositories bound to it."""

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
        self.search = self._search_factory(self.session)
        return self

    def commit(self) -> None:
        self.session.commit()

    def __exit__(self, *exc: object) -> None:
        self.session.rollback()
        self.session.close()


def uow_factory(
    engine: Engine, search_factory: Callable[[Session], SearchIndex]
) -> Callable[[], SqlUnitOfWork]:
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    return lambda: SqlUnitOfWork(sessions, search_factory)
