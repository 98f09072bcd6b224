"""Full-text search over dossiers with PostgreSQL (production).

The ``unit_search`` table and its text search configurations are created by migration 0002:
the database keeps a ``tsvector`` of title, body and keywords under a GIN index, read twice:
French stems with accents removed (``archive_french``) and the words as written with accents
removed (``archive_simple``). The semantics are those of :mod:`.sqlite_fts`: free text is the
AND of its words, each word a prefix; filters, tenant scoping, root units only, newest first,
the cursor being the last id of the page.

User text is never read as tsquery syntax: it is cut into ``\\w+`` words here, each word is
quoted and bound as a parameter, and only this module writes operators between them.
"""

from __future__ import annotations

import re
from functools import reduce
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    String,
    Text,
    column,
    delete,
    func,
    literal,
    literal_column,
    select,
    table,
)
from sqlalchemy.dialects.postgresql import TSQUERY, TSVECTOR, insert
from sqlalchemy.orm import Session

from archive_service.db import tables as t
from archive_service.ports import SearchPage, SearchQuery, UnitRecord
from archive_service.search.common import dossier_select, run_page

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_WORDS = 20
# Created by migration 0002 (PostgreSQL only); the search adapter's own table.
unit_search = table(
    "unit_search",
    column("unit_id", String),
    column("tenant_id", String),
    column("title", Text),
    column("body", Text),
    column("keywords", Text),
    column("document", TSVECTOR),
)
_FRENCH: ColumnElement[str] = literal_column("'archive_french'::regconfig")
_SIMPLE: ColumnElement[str] = literal_column("'archive_simple'::regconfig")


def tsquery(user_text: str) -> ColumnElement[Any] | None:
    """``gymnase jean`` → ``(fr('gymnase':*) || simple('gymnase':*)) && (… 'jean':* …)``.

    Each word matches as a French stem or as written (accents ignored in both), as a prefix.
    ``None`` when there is no word. Words only hold ``\\w`` characters and are bound as
    parameters, quoted: tsquery operators can only come from here.
    """
    words = _WORD.findall(user_text)[:MAX_WORDS]
    if not words:
        return None
    per_word = [
        func.to_tsquery(_FRENCH, literal(f"'{word}':*", String)).op("||", return_type=TSQUERY)(
            func.to_tsquery(_SIMPLE, literal(f"'{word}':*", String))
        )
        for word in words
    ]
    return reduce(lambda a, b: a.op("&&", return_type=TSQUERY)(b), per_word)


class PostgresFtsIndex:
    def __init__(self, session: Session) -> None:
        self._s = session

    def index_unit(self, unit: UnitRecord, *, body: str, keywords: str) -> None:
        row = {"tenant_id": unit.tenant_id, "title": unit.title, "body": body, "keywords": keywords}
        stmt = insert(unit_search).values(unit_id=unit.id, **row)
        self._s.execute(
            stmt.on_conflict_do_update(
                index_elements=["unit_id"], set_={name: stmt.excluded[name] for name in row}
            )
        )

    def indexed_body(self, unit_id: str) -> str | None:
        row = self._s.execute(
            select(unit_search.c.body).where(unit_search.c.unit_id == unit_id)
        ).first()
        return None if row is None else str(row[0] or "")

    def remove_unit(self, unit_id: str) -> None:
        self._s.execute(delete(unit_search).where(unit_search.c.unit_id == unit_id))

    def search(self, query: SearchQuery) -> SearchPage:
        stmt = dossier_select(query)
        if query.text:
            words = tsquery(query.text)
            if words is None:
                return SearchPage(unit_ids=(), next_cursor=None)
            matching = select(unit_search.c.unit_id).where(
                unit_search.c.tenant_id == query.tenant_id,
                unit_search.c.document.op("@@", return_type=Boolean)(words),
            )
            stmt = stmt.where(t.ArchiveUnit.id.in_(matching))
        return run_page(self._s, stmt, query.limit)
