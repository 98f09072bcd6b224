"""The unit of work turns a database that cannot serve into ``Unavailable`` (503, a job
retried), and leaves the errors of a statement itself alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from archive_service.db.uow import make_engine, uow_factory
from archive_service.errors import Unavailable
from archive_service.search.sqlite_fts import SqliteFtsIndex


def test_a_database_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/missing-dir/archive.sqlite3")
    uow = uow_factory(engine, SqliteFtsIndex)
    with pytest.raises(Unavailable, match="database unavailable: unable to open") as caught:
        with uow() as work:
            work.session.execute(text("SELECT 1"))
    assert caught.value.__cause__ is not None
    engine.dispose()


def test_a_constraint_violation_is_not_translated(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/archive.sqlite3")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    uow = uow_factory(engine, SqliteFtsIndex)
    with pytest.raises(IntegrityError):
        with uow() as work:
            work.session.execute(text("INSERT INTO t VALUES (1), (1)"))
            work.commit()
    engine.dispose()
