"""Full-text search over dossiers with SQLite FTS5 (the one-machine default).

The ``unit_search`` table is created by the migrations; it mirrors archive units and can be
rebuilt from them. Free text is tokenised here and every token quoted, so user input can
never be read as FTS5 query syntax.
"""

from __future__ import annotations

import base64
import re

from sqlalchemy import and_, select, text
from sqlalchemy.orm import Session

from archive_service.db import tables as t
from archive_service.ports import SearchPage, SearchQuery, UnitRecord

_TOKEN = re.compile(r"\w+", re.UNICODE)


def fts_expression(user_text: str) -> str | None:
    """``gymnase jean`` → ``"gymnase"* AND "jean"*``; ``None`` when there is no word."""
    tokens = _TOKEN.findall(user_text)
    if not tokens:
        return None
    return " AND ".join('"' + tok.replace('"', '""') + '"*' for tok in tokens[:20])


def encode_cursor(unit_id: str) -> str:
    return base64.urlsafe_b64encode(unit_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.urlsafe_b64decode(padded.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        msg = "invalid cursor"
        raise ValueError(msg) from None


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

    def search(self, query: SearchQuery) -> SearchPage:
        unit = t.ArchiveUnit
        conditions = [unit.tenant_id == query.tenant_id, unit.parent_id.is_(None)]
        if query.buyer:
            conditions.append(unit.organization_siret == query.buyer)
        if query.cpv:
            conditions.append(unit.cpv.startswith(query.cpv, autoescape=True))
        if query.notified_from:
            conditions.append(unit.notification_date >= query.notified_from)
        if query.notified_to:
            conditions.append(unit.notification_date <= query.notified_to)
        if query.cursor:
            conditions.append(unit.id < decode_cursor(query.cursor))
        stmt = select(unit.id).where(and_(*conditions))
        if query.text:
            expr = fts_expression(query.text)
            if expr is None:
                return SearchPage(unit_ids=(), next_cursor=None)
            matching = text(
                "SELECT unit_id FROM unit_search WHERE unit_search MATCH :expr "
                "AND tenant_id = :tenant"
            ).bindparams(expr=expr, tenant=query.tenant_id)
            stmt = stmt.where(unit.id.in_(matching.columns(unit_id=t.ArchiveUnit.id.type)))
        rows = self._s.scalars(stmt.order_by(unit.id.desc()).limit(query.limit + 1)).all()
        ids = tuple(rows[: query.limit])
        next_cursor = encode_cursor(ids[-1]) if len(rows) > query.limit and ids else None
        return SearchPage(unit_ids=ids, next_cursor=next_cursor)
