"""The logbook repository: entries with their canonical bytes, the tenant's Merkle tree
(leaves on the entries, higher nodes in ``merkle_nodes``), its head and its checkpoints.

Appending an entry takes no lock on the tree (queueing is separate from integration, as in
Trillian); the integrator locks the tenant's ``log_heads`` row while it assigns leaf indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, union_all, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from archive_service.core.logbook.merkle import EMPTY_ROOT
from archive_service.db import tables as t
from archive_service.db.repositories import _fields, _from_row
from archive_service.errors import NotFound
from archive_service.ports import CheckpointRecord, LogEntryRecord, LogEvent, LogHeadRecord

_ENTRIES = cast("Table", t.LogbookEntry.__table__)
_NODES = cast("Table", t.MerkleNode.__table__)
_HEADS = cast("Table", t.LogHead.__table__)
_CHECKPOINTS = cast("Table", t.Checkpoint.__table__)
_APPEND = insert(_ENTRIES).returning(_ENTRIES.c.id)
_SET_CANONICAL = (
    update(_ENTRIES)
    .where(_ENTRIES.c.id == bindparam("entry_id"))
    .values(canonical=bindparam("bytes"))
)
#: Bound parameters per statement stay well below SQLite's limit (32766).
_CHUNK = 500


def _event(row: Any) -> LogEvent:
    return _from_row(LogEvent, row)


def _entry(row: Any) -> LogEntryRecord:
    return LogEntryRecord(
        id=row.id,
        event=_event(row),
        canonical=bytes(row.canonical),
        leaf_index=row.leaf_index,
        leaf_hash=None if row.leaf_hash is None else bytes(row.leaf_hash),
    )


def _checkpoint(row: t.Checkpoint) -> CheckpointRecord:
    return CheckpointRecord(
        tenant_id=row.tenant_id,
        size=row.size,
        root=bytes(row.root),
        note=bytes(row.note),
        token=bytes(row.token),
        key_name=row.key_name,
        created_at=row.created_at,
        copies=tuple(row.copies or ()),
    )


class SqlLogbookRepository:
    def __init__(self, session: Session) -> None:
        self._s = session

    def _insert(self, table: Any) -> Any:
        dialect = self._s.get_bind().dialect.name
        if dialect == "postgresql":
            return postgresql.insert(table)
        if dialect == "sqlite":
            return sqlite.insert(table)
        return insert(table)

    # -- appending ----------------------------------------------------------------------------

    def append(self, event: LogEvent) -> int:
        # The canonical bytes name the entry's id: insert, then write them in the same
        # transaction (the column is never seen empty outside it). Prepared statements on the
        # session's connection: this runs once per operation, and in bulk in the benchmark.
        conn = self._s.connection()
        values = _fields(event)
        values["canonical"] = b""
        entry_id: int = conn.execute(_APPEND, values).scalar_one()
        conn.execute(_SET_CANONICAL, {"entry_id": entry_id, "bytes": event.canonical(entry_id)})
        return entry_id

    def for_subject(self, tenant_id: str, subject_id: str) -> list[LogEvent]:
        rows = self._s.execute(
            select(_ENTRIES)
            .where(_ENTRIES.c.tenant_id == tenant_id, _ENTRIES.c.subject_id == subject_id)
            .order_by(_ENTRIES.c.id)
        ).all()
        return [_event(r) for r in rows]

    # -- reading entries ----------------------------------------------------------------------

    def get_entry(self, tenant_id: str, entry_id: int) -> LogEntryRecord | None:
        row = self._s.execute(
            select(_ENTRIES).where(_ENTRIES.c.id == entry_id, _ENTRIES.c.tenant_id == tenant_id)
        ).first()
        return None if row is None else _entry(row)

    def entries(
        self,
        tenant_id: str,
        *,
        subject_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[LogEntryRecord]:
        query = select(_ENTRIES).where(_ENTRIES.c.tenant_id == tenant_id, _ENTRIES.c.id > after_id)
        if subject_ids is not None:
            query = query.where(_ENTRIES.c.subject_id.in_(list(subject_ids)))
        if start is not None:
            query = query.where(_ENTRIES.c.at >= start)
        if end is not None:
            query = query.where(_ENTRIES.c.at < end)
        rows = self._s.execute(query.order_by(_ENTRIES.c.id).limit(limit)).all()
        return [_entry(r) for r in rows]

    def entries_by_leaf(
        self, tenant_id: str, *, from_leaf: int, limit: int
    ) -> list[LogEntryRecord]:
        rows = self._s.execute(
            select(_ENTRIES)
            .where(_ENTRIES.c.tenant_id == tenant_id, _ENTRIES.c.leaf_index >= from_leaf)
            .order_by(_ENTRIES.c.leaf_index)
            .limit(limit)
        ).all()
        return [_entry(r) for r in rows]

    def tenants(self) -> list[str]:
        # Every tenant, not only those with entries left: a log deleted whole must be checked.
        return list(self._s.scalars(select(t.Tenant.id).order_by(t.Tenant.id)))

    # -- the integrator and the tree ------------------------------------------------------------

    def lock_head(self, tenant_id: str, *, at: datetime) -> LogHeadRecord:
        # The insert (ignored when the row exists) takes SQLite's write lock at once, so two
        # integrators queue there instead of failing on a stale snapshot; PostgreSQL locks the
        # row itself with FOR UPDATE.
        heads = _HEADS
        self._s.execute(
            self._insert(heads)
            .values(tenant_id=tenant_id, size=0, root=EMPTY_ROOT, updated_at=at)
            .on_conflict_do_nothing(index_elements=["tenant_id"])
        )
        row = self._s.execute(
            select(heads).where(heads.c.tenant_id == tenant_id).with_for_update()
        ).one()
        return LogHeadRecord(tenant_id=tenant_id, size=row.size, root=bytes(row.root))

    def head(self, tenant_id: str) -> LogHeadRecord:
        row = self._s.get(t.LogHead, tenant_id)
        if row is None:
            return LogHeadRecord(tenant_id=tenant_id, size=0, root=EMPTY_ROOT)
        return LogHeadRecord(tenant_id=tenant_id, size=row.size, root=bytes(row.root))

    def pending(self, tenant_id: str, *, limit: int) -> list[tuple[int, bytes]]:
        rows = self._s.execute(
            select(_ENTRIES.c.id, _ENTRIES.c.canonical)
            .where(_ENTRIES.c.tenant_id == tenant_id, _ENTRIES.c.leaf_index.is_(None))
            .order_by(_ENTRIES.c.id)
            .limit(limit)
        ).all()
        return [(r.id, bytes(r.canonical)) for r in rows]

    def assign_leaves(self, tenant_id: str, leaves: Sequence[tuple[int, int, bytes]]) -> None:
        if not leaves:
            return
        self._s.execute(
            update(_ENTRIES)
            .where(_ENTRIES.c.id == bindparam("entry_id"), _ENTRIES.c.tenant_id == tenant_id)
            .values(leaf_index=bindparam("index"), leaf_hash=bindparam("hash")),
            [{"entry_id": i, "index": index, "hash": h} for i, index, h in leaves],
        )

    def add_nodes(self, tenant_id: str, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        if not nodes:
            return
        self._s.execute(
            insert(_NODES),
            [
                {"tenant_id": tenant_id, "level": level, "index": index, "hash": h}
                for level, index, h in nodes
            ],
        )

    def node(self, tenant_id: str, level: int, index: int) -> bytes:
        found = self.nodes(tenant_id, [(level, index)])
        try:
            return found[(level, index)]
        except KeyError:
            raise NotFound(f"no Merkle node ({level}, {index}) in the log of {tenant_id}") from None

    def nodes(
        self, tenant_id: str, coordinates: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        """The stored hashes of the (level, index) subtrees asked for that exist."""
        found: dict[tuple[int, int], bytes] = {}
        leaves = sorted({i for level, i in coordinates if level == 0})
        upper = sorted({(level, i) for level, i in coordinates if level > 0})
        for start in range(0, len(leaves), _CHUNK):
            rows = self._s.execute(
                select(_ENTRIES.c.leaf_index, _ENTRIES.c.leaf_hash).where(
                    _ENTRIES.c.tenant_id == tenant_id,
                    _ENTRIES.c.leaf_index.in_(leaves[start : start + _CHUNK]),
                )
            ).all()
            found.update({(0, int(r[0])): bytes(r[1]) for r in rows if r[1] is not None})
        by_level: dict[int, list[int]] = {}
        for level, index in upper:
            by_level.setdefault(level, []).append(index)
        if by_level:
            # One SELECT per level, so that each is a primary-key lookup (SQLite does not
            # search a WITHOUT ROWID key for an OR, nor for a row-value IN).
            stored = self._s.execute(
                union_all(
                    *(
                        select(_NODES.c.level, _NODES.c.index, _NODES.c.hash).where(
                            _NODES.c.tenant_id == tenant_id,
                            _NODES.c.level == level,
                            _NODES.c.index.in_(indices),
                        )
                        for level, indices in by_level.items()
                    )
                )
            ).all()
            found.update({(int(r[0]), int(r[1])): bytes(r[2]) for r in stored})
        return found

    def set_head(self, tenant_id: str, *, size: int, root: bytes, at: datetime) -> None:
        heads = _HEADS
        self._s.execute(
            update(heads)
            .where(heads.c.tenant_id == tenant_id)
            .values(size=size, root=root, updated_at=at)
        )

    # -- checkpoints ----------------------------------------------------------------------------

    def add_checkpoint(self, checkpoint: CheckpointRecord) -> bool:
        table = _CHECKPOINTS
        result = self._s.execute(
            self._insert(table)
            .values(
                tenant_id=checkpoint.tenant_id,
                size=checkpoint.size,
                root=checkpoint.root,
                note=checkpoint.note,
                token=checkpoint.token,
                key_name=checkpoint.key_name,
                created_at=checkpoint.created_at,
                copies=list(checkpoint.copies),
            )
            .on_conflict_do_nothing(index_elements=["tenant_id", "size"])
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    def latest_checkpoint(self, tenant_id: str) -> CheckpointRecord | None:
        row = self._s.scalar(
            select(t.Checkpoint)
            .where(t.Checkpoint.tenant_id == tenant_id)
            .order_by(t.Checkpoint.size.desc())
            .limit(1)
        )
        return None if row is None else _checkpoint(row)

    def checkpoints(self, tenant_id: str) -> list[CheckpointRecord]:
        rows = self._s.scalars(
            select(t.Checkpoint)
            .where(t.Checkpoint.tenant_id == tenant_id)
            .order_by(t.Checkpoint.size)
        ).all()
        return [_checkpoint(r) for r in rows]
