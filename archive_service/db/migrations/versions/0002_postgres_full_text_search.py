"""PostgreSQL full-text search over archive units

On PostgreSQL, ``unit_search`` mirrors each indexed dossier (title, body, keywords) with a
``tsvector`` kept by the database (a stored generated column) under a GIN index. The vector
holds two readings of the same text, so that a query word matches either:

- ``archive_french``: the ``french`` configuration (Snowball stemmer, French stop words) with
  ``unaccent`` before the stemmer: « équipement » finds « Equipements ».
- ``archive_simple``: the ``simple`` configuration with ``unaccent``: every word as written,
  accents removed, so a prefix the user types matches as it does with SQLite FTS5 (no stemmer
  there), whatever the stemmer makes of a partial word.

``unaccent`` ships with PostgreSQL (contrib) and is a trusted extension: the owner of the
database may create it. Where it cannot be created the configurations are made without it and
a warning says so; accents then count in searches.

SQLite keeps its FTS5 table from 0001; this revision does nothing there. The table is the
search adapter's own (``env.include_name`` leaves it out of autogenerate) and can be rebuilt
from the archive units.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 19:00:00
"""

from __future__ import annotations

import logging

from alembic import op
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

# Token types of the default parser that carry letters; number, e-mail, URL and the like keep
# the mapping they have in the configuration copied.
WORD_TOKENS = "asciiword, asciihword, hword_asciipart, word, hword, hword_part"


def _create_unaccent() -> bool:
    """Create the ``unaccent`` extension if possible; say whether it is there."""
    bind = op.get_bind()
    available = bind.execute(
        text("SELECT count(*) FROM pg_available_extensions WHERE name = 'unaccent'")
    ).scalar()
    if not available:
        log.warning("unaccent is not installed on this server: accents will count in searches")
        return False
    try:
        with bind.begin_nested():
            bind.execute(text("CREATE EXTENSION IF NOT EXISTS unaccent"))
    except DBAPIError as exc:
        log.warning("cannot create the unaccent extension (%s): accents will count", exc.orig)
        return False
    return True


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    unaccent = "unaccent, " if _create_unaccent() else ""
    op.execute("CREATE TEXT SEARCH CONFIGURATION archive_french (COPY = french)")
    op.execute(
        "ALTER TEXT SEARCH CONFIGURATION archive_french ALTER MAPPING FOR "
        f"{WORD_TOKENS} WITH {unaccent}french_stem"
    )
    op.execute("CREATE TEXT SEARCH CONFIGURATION archive_simple (COPY = simple)")
    op.execute(
        "ALTER TEXT SEARCH CONFIGURATION archive_simple ALTER MAPPING FOR "
        f"{WORD_TOKENS} WITH {unaccent}simple"
    )
    op.execute(
        """
        CREATE TABLE unit_search (
            unit_id varchar(40) NOT NULL,
            tenant_id varchar(40) NOT NULL,
            title text NOT NULL,
            body text NOT NULL,
            keywords text NOT NULL,
            document tsvector GENERATED ALWAYS AS (
                to_tsvector('archive_french', title || ' ' || body || ' ' || keywords)
                || to_tsvector('archive_simple', title || ' ' || body || ' ' || keywords)
            ) STORED,
            CONSTRAINT pk_unit_search PRIMARY KEY (unit_id),
            CONSTRAINT fk_unit_search_unit_id_archive_units FOREIGN KEY (unit_id)
                REFERENCES archive_units (id) ON DELETE CASCADE
        )
        """
    )
    op.execute("CREATE INDEX ix_unit_search_document ON unit_search USING gin (document)")
    op.execute("CREATE INDEX ix_unit_search_tenant_id ON unit_search (tenant_id)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TABLE IF EXISTS unit_search")
    op.execute("DROP TEXT SEARCH CONFIGURATION IF EXISTS archive_simple")
    op.execute("DROP TEXT SEARCH CONFIGURATION IF EXISTS archive_french")
    # The unaccent extension stays: it is database-wide, holds no data of ours and another
    # schema may use it; 0002 finds it there when it runs again.
