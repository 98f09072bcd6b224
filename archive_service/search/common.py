"""What every search adapter shares: the dossier filters, the cursor, and the page.

A search returns root archive units (dossiers) of the caller's tenant, newest first; the
cursor is the last id of the previous page, so pages stay stable while dossiers arrive.

The ``communicable`` filter reads the rules as recorded on the units (``access_end`` and the
``pending`` flag of ``access``, both kept current by the events service): a dossier is
restricted on ``as_of`` when one of its active units is still pending or ends after that day
(the end date itself is the first communicable day, core/communicability.py).
"""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, not_, or_, select, true
from sqlalchemy.orm import Session, aliased

from archive_service.db import tables as t
from archive_service.ports import SearchPage, SearchQuery


def encode_cursor(unit_id: str) -> str:
    return base64.urlsafe_b64encode(unit_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.urlsafe_b64decode(padded.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        msg = "invalid cursor"
        raise ValueError(msg) from None


def dossier_select(query: SearchQuery) -> Select[Any]:
    """Ids of the tenant's dossiers matching the structured filters (not the free text)."""
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
    if query.communicable is not None:
        restricted = restricted_dossier(query)
        conditions.append(not_(restricted) if query.communicable else restricted)
    return select(unit.id).where(and_(*conditions))


def restricted_dossier(query: SearchQuery) -> ColumnElement[bool]:
    """True for a dossier holding a unit not communicable on ``query.as_of``."""
    if query.as_of is None:
        msg = "the communicable filter needs the day to judge on (as_of)"
        raise ValueError(msg)
    unit = t.ArchiveUnit
    part = aliased(t.ArchiveUnit)
    return exists().where(
        part.tenant_id == unit.tenant_id,
        part.root_id == unit.id,
        part.status == "active",
        or_(part.access_end > query.as_of, part.access["pending"].as_boolean() == true()),
    )


def run_page(session: Session, stmt: Select[Any], limit: int) -> SearchPage:
    """One page, newest first, with the cursor of the next page when there is one."""
    rows = session.scalars(stmt.order_by(t.ArchiveUnit.id.desc()).limit(limit + 1)).all()
    ids = tuple(rows[:limit])
    next_cursor = encode_cursor(ids[-1]) if len(rows) > limit and ids else None
    return SearchPage(unit_ids=ids, next_cursor=next_cursor)
