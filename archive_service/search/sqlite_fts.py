"""Full-text search over dossiers with SQLite FTS5 (the one-machine default).

The ``unit_search`` table is created by the migrations; it mirrors archive units and can be
rebuilt from them. Free text is tokenised here and every token quoted, so user input can
never be read as FTS5 query syntax.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.orm import Session

from archive_service.db import tables as t
from archive_service.ports import SearchPage, SearchQuery, UnitRecord
from archive_service.search.common import dossier_select, run_page

_TOKEN = re.compile(r"\w+", re.UNICODE)


def fts_expression(user_text: str) -> str | None:
    """``gymnase jean`` → ``"gymnase"* AND "jean"*``; ``None`` when there is no word."""
    tokens = _TOKEN.findall(user_text)
    if not tokens:
        return None
    return " AND ".join('"' + tok.replace('"', '""') + '"*' for tok in tokens[:20])


class SqliteFtsIndex:
    def __init__(self, session: Session) -> None:
        self._s = session

    def index_unit(self, unit: UnitRecord, *, body: str, keywords: str) -> None:
        self._s.execute(text("DELETE FROM unit_search WHERE unit_id = :id"), {"id": unit.id})
        self._s.execute(
            text(
                "INSERT INTO unit_search (unit_id, tenant_id, title, body, keywords) "
                "VALUES (:id, :tenant, :title, :body, :keywords)"
            ),
            {
                "id": unit.id,
                "tenant": unit.tenant_id,
                "title": unit.title,
                "body": body,
                "keywords": keywords,
            },
        )

    def indexed_body(self, unit_id: str) -> str | None:
        row = self._s.execute(
            text("SELECT body FROM unit_search WHERE unit_id = :id"), {"id": unit_id}
        ).first()
        return None if row is None else str(row[0] or "")

    def remove_unit(self, unit_id: str) -> None:
        self._s.execute(text("DELETE FROM unit_search WHERE unit_id = :id"), {"id": unit_id})

    def search(self, query: SearchQuery) -> SearchPage:
        stmt = dossier_select(query)
        if query.text:
            expr = fts_expression(query.text)
            if expr is None:
                return SearchPage(unit_ids=(), next_cursor=None)
            matching = text(
                "SELECT unit_id FROM unit_search WHERE unit_search MATCH :expr "
                "AND tenant_id = :tenant"
            ).bindparams(expr=expr, tenant=query.tenant_id)
            stmt = stmt.where(t.ArchiveUnit.id.in_(matching.columns(unit_id=t.ArchiveUnit.id.type)))
        return run_page(self._s, stmt, query.limit)
