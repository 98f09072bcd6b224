"""Legal holds, disposal requests (with their visa) and tombstones."""

from __future__ import annotations

from sqlalchemy.orm import Session


class SqlDisposalRepository:
    def __init__(self, session: Session) -> None:
        self._s = session
