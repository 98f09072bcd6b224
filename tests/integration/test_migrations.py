"""The Alembic migrations on every database the service supports (SQLite, PostgreSQL): an
operator's ``archive-service db upgrade`` builds the schema the models describe, and the
migrations go down to nothing and up again."""

from __future__ import annotations

import os
import subprocess
import sys

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from archive_service.config import Settings
from archive_service.db.migrate import alembic_config
from archive_service.db.tables import Base


def db_upgrade_cli(settings: Settings) -> None:
    """``archive-service db upgrade`` as an operator runs it, configured by the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    env.update(
        ARCHIVE_DATA_DIR=str(settings.data_dir),
        ARCHIVE_DATABASE_URL=settings.resolved_database_url,
    )
    out = subprocess.run(
        [sys.executable, "-m", "archive_service", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr


def schema(url: str) -> tuple[set[str], set[str]]:
    """(tables, our text search configurations) of the database at ``url``; the FTS5 shadow
    tables of SQLite's ``unit_search`` are left out."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            tables = {
                n for n in inspect(conn).get_table_names() if not n.startswith("unit_search_")
            }
            configs: set[str] = set()
            if conn.dialect.name == "postgresql":
                configs = set(
                    conn.scalars(
                        text("SELECT cfgname FROM pg_ts_config WHERE cfgname LIKE 'archive_%'")
                    )
                )
        return tables, configs
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        engine.dispose()


def test_migrations_match_the_models_then_go_down_and_up_again(settings: Settings) -> None:
    url = settings.resolved_database_url
    cfg = alembic_config(url)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    models = set(Base.metadata.tables)
    searched = {"unit_search"}
    on_postgres = url.startswith("postgresql")
    our_configs = {"archive_french", "archive_simple"} if on_postgres else set()

    db_upgrade_cli(settings)
    assert current_revision(url) == head
    # alembic check raises when the models and the migrated schema differ.
    command.check(cfg)
    assert schema(url) == (models | searched | {"alembic_version"}, our_configs)

    command.downgrade(cfg, "base")
    assert schema(url) == ({"alembic_version"}, set())
    assert current_revision(url) is None

    command.upgrade(cfg, "head")
    command.check(cfg)
    assert schema(url) == (models | searched | {"alembic_version"}, our_configs)
    assert current_revision(url) == head
